"""Group ``ops``: the read-only serving snapshot and Parquet exports people query while runs write, published
as one versioned set (:mod:`warehouse.publish`)."""

import dagster as dg
import pandas as pd

from assets.common import POOL, if_unchanged, md_table, rounded
from assets.keys import (
    BASELINE,
    BASELINE_BACKTEST,
    FEATURES,
    GROUP_OPS,
    MARKET_OHLCV,
    ONCHAIN_DAILY,
    ONCHAIN_FEATURES,
    OPTIONS_BACKTEST,
    OPTIONS_DAILY,
    OPTIONS_MODELS,
    OPTIONS_TRADES,
    PAPER_SETUPS,
    REGIMES,
    SENTIMENT_DAILY,
    SETUP_BACKTEST,
    SETUP_CANDIDATES,
    SETUP_META,
    SETUP_NOTICES,
    SETUP_THRESHOLDS,
    SETUPS,
    SIGNALS_LOG,
    SNAPSHOT,
)
from pipeline.status import check_keys, check_results, last_runs
from resources.warehouse import WarehouseResource
from warehouse import io
from warehouse.publish import fingerprint, publish_snapshot, resolve_version
from warehouse.schema import SERVING_TABLES, STATUS_TABLES


@dg.asset(
    key=SNAPSHOT,
    group_name=GROUP_OPS,
    pool=POOL,
    kinds={"duckdb", "parquet"},
    code_version="1",
    deps=[
        MARKET_OHLCV,
        ONCHAIN_DAILY,
        SENTIMENT_DAILY,
        FEATURES,
        REGIMES,
        BASELINE,
        BASELINE_BACKTEST,
        ONCHAIN_FEATURES,
        OPTIONS_DAILY,
        OPTIONS_TRADES,
        OPTIONS_BACKTEST,
        OPTIONS_MODELS,
        SETUP_CANDIDATES,
        SETUP_META,
        SETUP_THRESHOLDS,
        SETUPS,
        SETUP_BACKTEST,
        # the live job publishes last: its notifications do not wait for the publish, and the snapshot has this
        # step's signal log and paper book (not the previous step's)
        SIGNALS_LOG,
        PAPER_SETUPS,
        SETUP_NOTICES,
    ],
    description="Copies the curated tables into a new version exports/<version>/ (serving.duckdb + one Parquet file "
    "per table; incremental: unchanged tables are kept and their Parquet hard-linked, changed ones copied by 7-day "
    "blocks) and switches the exports/current pointer to it atomically (serving.duckdb links to "
    "exports/current/serving.duckdb). Skipped when no table changed since the last publish.",
)
def serving_snapshot(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    with warehouse.connect() as con:
        fp = fingerprint(con, SERVING_TABLES)
        meta = {"path": warehouse.serving_path}
        if skip := if_unchanged(
            context, con, "ops.serving_snapshot", fp, "tables unchanged; snapshot kept", metadata=meta
        ):
            return skip
        # the pipeline's own status goes along (read by the dashboard's health; not part of the fingerprint)
        io.replace_table(con, "ops.run_status", last_runs(context.instance))
        io.replace_table(con, "ops.check_status", check_results(context.instance, check_keys(context)))
        how: dict = {}
        rows = publish_snapshot(
            con, SERVING_TABLES + STATUS_TABLES, warehouse.serving_path, warehouse.exports_dir, report=how
        )
        version = str(resolve_version(warehouse.exports_dir))
        io.record_inputs(con, "ops.serving_snapshot", fp)
        io.upsert(
            con,
            "ops.publish_log",
            pd.DataFrame([{"published_at": io.now_utc(), "fingerprint": fp, "tables": len(rows), "path": version}]),
            ["published_at"],
        )
    return dg.MaterializeResult(
        metadata=rounded(
            {
                "path": dg.MetadataValue.path(warehouse.serving_path),
                "version": dg.MetadataValue.path(version),
                "tables": md_table(
                    pd.DataFrame(
                        [{"table": t, "rows": n, **how.get(t, {})} for t, n in rows.items()],
                    )
                ),
                "rows_copied": int(sum(v.get("rows_copied", 0) for v in how.values())),
                "tables_copied": sum(v.get("mode") != "linked" for v in how.values()),
            }
        )
    )
