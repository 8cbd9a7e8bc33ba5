"""Read/write helpers over a DuckDB connection (no Dagster).

Every write is one transaction: ``BEGIN; DELETE <slice or keys>; INSERT INTO t BY NAME ...; COMMIT``.
If anything fails the transaction is rolled back, so rows already stored are never lost or
half-replaced. Inserts are ``BY NAME`` (column order of the frame does not matter).
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import duckdb
import pandas as pd
from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_exponential

from warehouse.schema import DDL


@retry(
    retry=retry_if_exception_type(duckdb.IOException),
    wait=wait_exponential(multiplier=0.1, max=5),
    stop=stop_after_delay(60),
    reraise=True,
)
def _connect(path: str, read_only: bool) -> duckdb.DuckDBPyConnection:
    # DuckDB's own progress bar (printed on stdout by queries over ~2 s) would break the CLI's tables and run display
    con = duckdb.connect(path, read_only=read_only)
    con.execute("SET enable_progress_bar = false")
    return con


@contextmanager
def connect(path: str, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the warehouse (retrying ~60 s while another process holds the write lock) and close it after.

    A read-write open creates the file, its folder and every table of :mod:`warehouse.schema`.

    Raises:
        duckdb.IOException: the lock is still held after the retry window.
    """
    if not read_only:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    con = _connect(path, read_only)
    try:
        if not read_only:
            for stmt in DDL:
                con.execute(stmt)
        yield con
    finally:
        con.close()


_IN_TRANSACTION: set[int] = set()


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """``BEGIN`` … ``COMMIT``, or ``ROLLBACK`` and re-raise on any error.

    Re-entrant: inside an open transaction on the same connection it joins it, so helpers that write in
    their own transaction (``upsert``, ``replace_slice``) compose into one atomic write.
    """
    if id(con) in _IN_TRANSACTION:
        yield con
        return
    con.execute("BEGIN TRANSACTION")
    _IN_TRANSACTION.add(id(con))
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    finally:
        _IN_TRANSACTION.discard(id(con))
    con.execute("COMMIT")


def fetch_one(cursor: duckdb.DuckDBPyConnection) -> tuple | None:
    """First row of an executed statement (``None`` if empty), consuming the whole result.

    DuckDB 2 keeps a partly-fetched result open and refuses other work on the connection.
    """
    rows = cursor.fetchall()
    return rows[0] if rows else None


def _where(filters: dict[str, object]) -> tuple[str, list[object]]:
    if not filters:
        return "TRUE", []
    return " AND ".join(f"{k} = ?" for k in filters), list(filters.values())


def upsert(con: duckdb.DuckDBPyConnection, table: str, df: pd.DataFrame, keys: list[str]) -> int:
    """Insert ``df`` into ``table``, replacing rows with the same ``keys`` (idempotent). Returns rows written."""
    return upsert_many(con, [(table, df, keys)])


def upsert_many(con: duckdb.DuckDBPyConnection, writes: list[tuple[str, pd.DataFrame, list[str]]]) -> int:
    """Several key-based upserts in **one** transaction (e.g. candles and their checkpoint)."""
    names = []
    try:
        with transaction(con):
            for i, (table, df, keys) in enumerate(writes):
                if df.empty:
                    continue
                name = f"_upsert_df{i}"
                con.register(name, df)
                names.append(name)
                cond = " AND ".join(f"t.{k} = s.{k}" for k in keys)
                con.execute(f"DELETE FROM {table} t USING {name} s WHERE {cond}")
                con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM {name}")
    finally:
        for name in names:
            con.unregister(name)
    return sum(len(df) for _, df, _ in writes)


def replace_slice(
    con: duckdb.DuckDBPyConnection,
    table: str,
    df: pd.DataFrame,
    filters: dict[str, object],
    ts_from: int | None = None,
    ts_column: str = "ts",
    *,
    allow_empty: bool = False,
) -> int:
    """Replace the rows of ``table`` matching ``filters`` (and ``ts >= ts_from`` if given) with ``df``.

    Raises:
        ValueError: ``df`` is empty and ``allow_empty`` is False — replacing a slice with nothing
            deletes it, which only an explicit full refresh may do.
    """
    if df.empty and not allow_empty:
        raise ValueError(f"refusing to replace a slice of {table} {filters} with no rows (pass allow_empty=True)")
    where, params = _where(filters)
    if ts_from is not None:
        where += f" AND {ts_column} >= ?"
        params.append(ts_from)
    if df.empty:  # DuckDB cannot register a frame without columns; nothing to insert anyway
        with transaction(con):
            con.execute(f"DELETE FROM {table} WHERE {where}", params)
        return 0
    con.register("_slice_df", df)
    try:
        with transaction(con):
            con.execute(f"DELETE FROM {table} WHERE {where}", params)
            con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _slice_df")
    finally:
        con.unregister("_slice_df")
    return len(df)


_DUCK_TYPES = {"int64": "BIGINT", "Int64": "BIGINT", "float64": "DOUBLE", "bool": "BOOLEAN", "boolean": "BOOLEAN"}


def replace_table(
    con: duckdb.DuckDBPyConnection, table: str, df: pd.DataFrame, date_columns: tuple[str, ...] = ()
) -> int:
    """Atomically replace a small, schema-from-data table (e.g. ``market.onchain_daily``)."""
    cols = []
    for c, dt in df.dtypes.items():
        t = "DATE" if c in date_columns else _DUCK_TYPES.get(str(dt))
        if t is None:
            t = "TIMESTAMP" if str(dt).startswith("datetime64") else "VARCHAR"
        cols.append(f'"{c}" {t}')
    con.register("_table_df", df)
    try:
        with transaction(con):
            con.execute(f"CREATE OR REPLACE TABLE {table} ({', '.join(cols)})")
            con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _table_df")
    finally:
        con.unregister("_table_df")
    return len(df)


def read_df(con: duckdb.DuckDBPyConnection, sql: str, params: list[object] | None = None) -> pd.DataFrame:
    """Run a query and return a pandas frame."""
    return con.execute(sql, params or []).df()


def table_exists(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    schema, name = table.split(".")
    return bool(
        fetch_one(
            con.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
                [schema, name],
            )
        )[0]
    )


def max_ts(con: duckdb.DuckDBPyConnection, table: str, filters: dict[str, object]) -> int | None:
    """Last ``ts`` stored for a slice, or None."""
    where, params = _where(filters)
    v = fetch_one(con.execute(f"SELECT max(ts) FROM {table} WHERE {where}", params))[0]
    return None if v is None else int(v)


def watermarks(con: duckdb.DuckDBPyConnection, table: str, exchange: str) -> dict[tuple[str, str], int]:
    """``{(symbol, timeframe): max(ts)}`` for every stored slice, in one scan."""
    return {
        (r[0], r[1]): int(r[2])
        for r in con.execute(
            f"SELECT symbol, timeframe, max(ts) FROM {table} WHERE exchange = ? GROUP BY ALL", [exchange]
        ).fetchall()
    }


def now_utc() -> pd.Timestamp:
    """Current UTC time as a naive timestamp (the warehouse stores naive UTC)."""
    return pd.Timestamp(time.time(), unit="s").floor("s")


def inputs_fingerprint(con: duckdb.DuckDBPyConnection, sql: str, extra: str = "") -> str:
    """Hash of a query's rows (e.g. upstream checkpoints) plus ``extra`` (config/code version)."""
    import hashlib

    rows = con.execute(sql).fetchall()
    return hashlib.sha256((repr(rows) + extra).encode()).hexdigest()[:16]


def inputs_unchanged(con: duckdb.DuckDBPyConnection, asset: str, fingerprint: str) -> bool:
    """True when ``asset`` was last built from inputs with this ``fingerprint`` (skip recomputation)."""
    r = fetch_one(con.execute("SELECT fingerprint FROM ops.asset_inputs WHERE asset = ?", [asset]))
    return bool(r and r[0] == fingerprint)


def record_inputs(con: duckdb.DuckDBPyConnection, asset: str, fingerprint: str) -> None:
    upsert(
        con,
        "ops.asset_inputs",
        pd.DataFrame([{"asset": asset, "fingerprint": fingerprint, "updated_at": now_utc()}]),
        ["asset"],
    )


def _code_key(table: str, exchange: str, symbol: str, timeframe: str) -> str:
    return f"code:{table}:{exchange}:{symbol}:{timeframe}"


def stale_code_slices(
    con: duckdb.DuckDBPyConnection, table: str, exchange: str, slices: list[tuple[str, str]], code_version: str
) -> set[tuple[str, str]]:
    """Slices of ``table`` whose stored rows were computed by another code version (or an unknown one).

    Incremental assets rebuild those slices from scratch, so changing a formula can never leave old rows
    beside new ones.
    """
    stored = {
        r[0]: r[1]
        for r in con.execute(
            "SELECT asset, fingerprint FROM ops.asset_inputs WHERE asset LIKE ?", [f"code:{table}:{exchange}:%"]
        ).fetchall()
    }
    return {(s, tf) for s, tf in slices if stored.get(_code_key(table, exchange, s, tf)) != code_version}


def record_code(
    con: duckdb.DuckDBPyConnection, table: str, exchange: str, slices: list[tuple[str, str]], code_version: str
) -> None:
    """Remember that these slices of ``table`` are now computed by ``code_version``."""
    if slices:
        upsert(
            con,
            "ops.asset_inputs",
            pd.DataFrame(
                [
                    {"asset": _code_key(table, exchange, s, tf), "fingerprint": code_version, "updated_at": now_utc()}
                    for s, tf in slices
                ]
            ),
            ["asset"],
        )


def replace_input_errors(
    con: duckdb.DuckDBPyConnection, input_name: str, partition_keys: list[str], errors: pd.DataFrame
) -> None:
    """Make ``ops.input_errors`` hold exactly ``errors`` for ``input_name`` × ``partition_keys`` (issue 13 item 9).

    ``errors`` columns: ``partition_key, locator, rule, message`` (``input`` and ``detected_at`` are filled in).
    Rows of partitions not in ``partition_keys`` are kept (a run over a subset does not clear the others);
    a partition that ingested cleanly this time loses its rows.
    """
    with transaction(con):
        if partition_keys:
            con.execute(
                "DELETE FROM ops.input_errors WHERE input = ? AND partition_key IN (SELECT unnest(?))",
                [input_name, list(partition_keys)],
            )
        if len(errors):
            upsert(
                con,
                "ops.input_errors",
                errors.assign(input=input_name, detected_at=now_utc()),
                ["input", "partition_key", "locator"],
            )


def mark_dirty(con: duckdb.DuckDBPyConnection, table: str, exchange: str, slices: list[tuple[str, str]]) -> None:
    """Record that these slices of ``table`` must be rebuilt from scratch (their source rows were rewritten, not
    appended to: e.g. a fixed file dropped a bad candle, issue 13 item 5)."""
    if slices:
        upsert(
            con,
            "ops.asset_inputs",
            pd.DataFrame(
                [
                    {"asset": f"dirty:{table}:{exchange}:{s}:{tf}", "fingerprint": "rewritten", "updated_at": now_utc()}
                    for s, tf in slices
                ]
            ),
            ["asset"],
        )


def dirty_slices(
    con: duckdb.DuckDBPyConnection, table: str, exchange: str, slices: list[tuple[str, str]]
) -> set[tuple[str, str]]:
    """The slices of ``slices`` marked by :func:`mark_dirty`."""
    marked = {
        r[0]
        for r in con.execute(
            "SELECT asset FROM ops.asset_inputs WHERE asset LIKE ?", [f"dirty:{table}:{exchange}:%"]
        ).fetchall()
    }
    return {(s, tf) for s, tf in slices if f"dirty:{table}:{exchange}:{s}:{tf}" in marked}


def clear_dirty(con: duckdb.DuckDBPyConnection, table: str, exchange: str, slices: list[tuple[str, str]]) -> None:
    """Forget the :func:`mark_dirty` marks of rebuilt slices, and the code records of the tables built on them
    (``features.technical``, ``regimes.market``), so those rebuild from scratch too."""
    keys = [f"dirty:{table}:{exchange}:{s}:{tf}" for s, tf in slices]
    keys += [_code_key(t, exchange, s, tf) for t in ("features.technical", "regimes.market") for s, tf in slices]
    if keys:
        con.execute("DELETE FROM ops.asset_inputs WHERE asset IN (SELECT unnest(?))", [keys])
