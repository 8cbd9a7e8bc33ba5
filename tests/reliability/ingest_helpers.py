"""Shared helpers of the bad-input reliability tests (issue 13 items 3, 5, 7-10): a small candle chain
(raw -> market -> features -> regimes) over slices of the real data, and bit-level table fingerprints."""

from __future__ import annotations

import contextlib

import dagster as dg
import duckdb
import pandas as pd

from assets.keys import FEATURES, MARKET_OHLCV, RAW_OHLCV, REGIMES
from pipeline.definitions import ALL_ASSETS
from pipeline.partitions import partition_key

CHAIN = dg.AssetSelection.keys(RAW_OHLCV, MARKET_OHLCV, FEATURES, REGIMES)
# table -> columns compared (ingested_at is the wall clock of the ingest; everything else must be identical)
TABLES = {
    "raw.ohlcv": "* EXCLUDE (ingested_at)",
    "market.ohlcv": "*",
    "features.technical": "*",
    "regimes.market": "*",
}


def memory_instance():
    """``with memory_instance() as inst:`` an in-memory Dagster instance, in place of ``dg.instance_for_test()`` where
    the instance itself is not under test (the assets never read it): no sqlite files, no events written to disk."""
    return contextlib.nullcontext(dg.DagsterInstance.ephemeral())


def run_chain(resources, instance, symbol: str, timeframe: str):
    """Materialise raw/market/features/regimes for one partition (fast: one slice)."""
    return dg.materialize(
        ALL_ASSETS,
        resources=resources,
        instance=instance,
        partition_key=str(partition_key(symbol, timeframe)),
        selection=CHAIN,
        raise_on_error=False,
    )


def run_chain_range(resources, instance, tags: dict):
    return dg.materialize(
        ALL_ASSETS, resources=resources, instance=instance, tags=tags, selection=CHAIN, raise_on_error=False
    )


def table_hashes(path: str, where: str = "TRUE") -> dict[str, tuple[int, int]]:
    """``{table: (rows, order-independent hash of every row)}`` over the rows matching ``where``."""
    with duckdb.connect(path, read_only=True) as con:
        out = {}
        for t, cols in TABLES.items():
            n, h = con.execute(
                f"SELECT count(*), sum(hash(q)) FROM (SELECT {cols} FROM {t} WHERE {where}) q"
            ).fetchone()
            out[t] = (n, h)
        return out


def query(path: str, sql: str) -> pd.DataFrame:
    with duckdb.connect(path, read_only=True) as con:
        return con.execute(sql).df()


def check_eval(result, name: str):
    ev = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
    return ev[-1]


def other_warehouse(resources: dict, path) -> dict:
    """``resources`` with a fresh warehouse at ``path`` (for the clean run to compare with)."""
    from resources.warehouse import WarehouseResource

    w = resources["warehouse"]
    return {
        **resources,
        "warehouse": WarehouseResource(path=str(path), serving_path=w.serving_path, exports_dir=w.exports_dir),
    }
