"""Group ``alpha_portfolio``: the book's target weights and their reasons per rebalance hour (``signals/alpha_targets``).

Reads ``signals.alpha_scores`` (the scores asset) and the 1 h candles, runs the hourly rebalance loop of
:func:`pipeline.core.alpha_portfolio.plan_targets` over the whole history (point in time) and replaces
``signals.alpha_targets``: one row per asset per rebalance hour, so "why wasn't X bought at T?" has an answer.
"""

import dagster as dg
import pandas as pd

from assets.common import POOL, if_unchanged, md_table, rounded
from assets.keys import ALPHA_SCORES, ALPHA_TARGETS, GROUP_ALPHA
from pipeline.config import settings
from pipeline.core.alpha_portfolio import panel_of, plan_panel, targets_frame
from resources.warehouse import WarehouseResource
from warehouse import io, readers
from warehouse.schema import PRIMARY_KEYS

CODE_VERSION = "1"
TIMEFRAME = "1h"
#: the scores' content, the input fingerprint of the targets (alphaml's asset need not record its own)
#: the scores' content, order-independent and exact: a floating-point ``sum`` (parallel aggregation) and an unordered
#: ``string_agg`` differ between two reads of the same rows, and the targets were re-planned on every run
SCORES_FINGERPRINT = (
    "SELECT count(*), min(ts), max(ts), bit_xor(hash(symbol, ts, exp_ret_net, rvol_24h, atr_14, regime)), "
    "string_agg(DISTINCT coalesce(model_version, source), ',' ORDER BY coalesce(model_version, source)) "
    "FROM signals.alpha_scores"
)


def plan_rows(con, cfg) -> tuple[pd.DataFrame, dict]:
    """``(signals.alpha_targets rows, figures)`` of the whole history (empty without scores)."""
    scores = readers.alpha_scores(con, cfg.exchange.id)
    if scores.empty:
        return pd.DataFrame(), {}
    symbols = list(cfg.universe.symbols)
    candles = readers.candles_long(con, cfg.exchange.id, symbols, TIMEFRAME, int(scores["ts"].min()))
    panel = panel_of(scores, candles, symbols)
    rows = targets_frame(panel, plan_panel(panel, cfg.alpha_portfolio))
    return rows, {"hours": int(rows["ts"].nunique()), "rows": len(rows)}


@dg.asset(
    key=ALPHA_TARGETS,
    group_name=GROUP_ALPHA,
    pool=POOL,
    deps=[ALPHA_SCORES],
    kinds={"duckdb"},
    code_version=CODE_VERSION,
    description="Seed 004's target weights of the 10-pair book for every rebalance hour (rank by cost-adjusted "
    "expected return, regime slots and cash buffer, tilted inverse volatility, tier / risk caps and the tier-3 sleeve, "
    "rank hysteresis, bands and minimum order), with one reason per asset per hour (kept, added, dropped_rank, "
    "capped_tier, capped_sleeve, capped_risk, band_hold, below_min_order, no_positive_score). Whole history, point in "
    "time: table signals.alpha_targets.",
)
def alpha_targets(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    cfg = settings()
    with warehouse.connect() as con:
        if not io.table_exists(con, "signals.alpha_scores"):
            return dg.MaterializeResult(metadata={"status": "no signals.alpha_scores yet; nothing planned"})
        fp = io.inputs_fingerprint(con, SCORES_FINGERPRINT, CODE_VERSION + cfg.alpha_portfolio.model_dump_json())
        if skip := if_unchanged(context, con, "signals.alpha_targets", fp, "scores unchanged; not re-planned"):
            return skip
        rows, figures = plan_rows(con, cfg)
        with io.transaction(con):
            con.execute("DELETE FROM signals.alpha_targets")
            if len(rows):
                io.upsert(con, "signals.alpha_targets", rows, PRIMARY_KEYS["signals.alpha_targets"])
            io.record_inputs(con, "signals.alpha_targets", fp)
    if rows.empty:
        return dg.MaterializeResult(metadata={"status": "signals.alpha_scores is empty; nothing planned"})
    last = rows[rows["ts"] == rows["ts"].max()].drop(columns=["ts"])
    return dg.MaterializeResult(
        metadata=rounded(
            {
                **figures,
                "last_rebalance": str(pd.Timestamp(int(rows["ts"].max()), unit="ms")),
                "latest_targets": md_table(last),
                "reasons": md_table(rows["reason"].value_counts().rename_axis("reason").reset_index()),
                "sql": "SELECT * FROM signals.alpha_targets WHERE ts = (SELECT max(ts) FROM signals.alpha_targets)",
            }
        )
    )
