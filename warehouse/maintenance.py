"""SQL of the daily warehouse maintenance (seed 002 ``db_checkpoint``; issue 16): ``CHECKPOINT`` and the retention
of the operational logs. Business tables (every schema but ``ops``) are never touched; of ``ops`` only two append-only
logs are pruned (docs/decisions.md "Schedules and health (issue 16)"):

* ``ops.notification_attempts``: the request log of messages that are finished (``sent / silent / failed / off``),
  older than the cut-off. The outbox rows themselves (``ops.notifications``) are kept: their dedup keys are what
  makes enqueueing idempotent, and delivery only reads attempts of the last minute (rate limit) and the newest 429.
* ``ops.publish_log``: serving-snapshot publishes older than the cut-off, the newest row always kept.
"""

from __future__ import annotations

import datetime as dt

import duckdb

from warehouse import io

#: (table, WHERE clause selecting the rows to delete; ``?`` = the cut-off, naive UTC)
PRUNED = {
    "ops.notification_attempts": "started_at < ? AND dedup_key IN (SELECT dedup_key FROM ops.notifications "
    "WHERE status IN ('sent', 'silent', 'failed', 'off'))",
    "ops.publish_log": "published_at < ? AND published_at < (SELECT max(published_at) FROM ops.publish_log)",
}


def row_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """``{schema.table: rows}`` of every table of the warehouse (sorted by name)."""
    names = con.execute(
        "SELECT schema_name || '.' || table_name FROM duckdb_tables() WHERE NOT internal ORDER BY 1"
    ).fetchall()
    return {n: int(con.execute(f"SELECT count(*) FROM {n}").fetchone()[0]) for (n,) in names}


def prune(con: duckdb.DuckDBPyConnection, cutoff: dt.datetime) -> dict[str, int]:
    """Delete the rows of :data:`PRUNED` older than ``cutoff`` (naive UTC), one transaction; ``{table: deleted}``.
    A table absent from an old warehouse counts 0."""
    have = set(row_counts(con))
    out = {}
    with io.transaction(con):
        for table, where in PRUNED.items():
            out[table] = (
                int(con.execute(f"DELETE FROM {table} WHERE {where}", [cutoff]).fetchone()[0]) if table in have else 0
            )
    return out


def checkpoint(con: duckdb.DuckDBPyConnection) -> None:
    """``CHECKPOINT``: write the WAL into the database file and truncate it (DuckDB
    https://duckdb.org/docs/sql/statements/checkpoint)."""
    con.execute("CHECKPOINT")
