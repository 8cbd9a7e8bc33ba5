"""Publish a read-only serving snapshot and Parquet exports (no Dagster).

DuckDB allows one writer *or* many readers per file, so people never query the writer's file:
the pipeline copies the curated tables into a new file, then atomically renames it over
``serving.duckdb`` (readers that reconnect see the new data; open readers keep the old inode), and
writes one Parquet file per table to ``exports/<schema>.<table>.parquet`` the same way.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import duckdb

from warehouse.io import fetch_one, table_exists


def fingerprint(con: duckdb.DuckDBPyConnection, tables: list[str]) -> str:
    """Cheap content fingerprint: row count and max of the first sortable key per table."""
    parts = []
    for t in tables:
        if not table_exists(con, t):
            parts.append(f"{t}:missing")
            continue
        cols = [r[0] for r in con.execute(f"DESCRIBE {t}").fetchall()]
        key = "ts" if "ts" in cols else ("date" if "date" in cols else None)
        agg = f", max({key}), sum(hash(*columns(*)))" if key else ", sum(hash(*columns(*)))"
        parts.append(f"{t}:{fetch_one(con.execute(f'SELECT count(*){agg} FROM {t}'))}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def publish_snapshot(
    con: duckdb.DuckDBPyConnection, tables: list[str], serving_path: str, exports_dir: str
) -> dict[str, int]:
    """Copy ``tables`` from the open writer connection into ``serving_path`` and Parquet exports.

    Returns rows per table. The old snapshot stays valid until the final ``os.replace``.
    """
    serving = Path(serving_path)
    serving.parent.mkdir(parents=True, exist_ok=True)
    tmp = serving.with_name(serving.name + f".tmp{os.getpid()}")
    tmp.unlink(missing_ok=True)
    exports = Path(exports_dir)
    exports.mkdir(parents=True, exist_ok=True)
    rows: dict[str, int] = {}
    con.execute(f"ATTACH '{tmp}' AS snap")
    try:
        for t in tables:
            if not table_exists(con, t):
                continue
            schema, name = t.split(".")
            con.execute(f"CREATE SCHEMA IF NOT EXISTS snap.{schema}")
            con.execute(f"CREATE TABLE snap.{schema}.{name} AS SELECT * FROM {t}")
            rows[t] = fetch_one(con.execute(f"SELECT count(*) FROM snap.{schema}.{name}"))[0]
            pq_tmp = exports / f"{t}.parquet.tmp"
            con.execute(f"COPY (SELECT * FROM {t}) TO '{pq_tmp}' (FORMAT parquet, COMPRESSION zstd)")
            os.replace(pq_tmp, exports / f"{t}.parquet")
    finally:
        con.execute("DETACH snap")
    os.replace(tmp, serving)
    return rows
