"""The signal log and the paper books (issue 16): SQL of ``signals.log`` and ``paper.*``.

* ``signals.log`` is **append-only**: :func:`log_signals` inserts only signal ids not yet logged for the desk, so
  recomputing history (a re-gated ``signals.setups``) never rewrites a row or its ``first_seen``.
* A paper step is written by :func:`write_step` in **one transaction** (orders, trades, equity, positions and the
  next state version): a process killed anywhere inside it leaves the previous version in force, and the next step
  redoes the same bars from it. ``TRADER_PAPER_CRASH_AT=<point>`` makes the process ``os._exit(9)`` at that point of
  the write (``begin``, ``orders``, ``trades``, ``equity``, ``positions``, ``state``, ``commit``) — the crash-safety
  test's kill -9.
"""

from __future__ import annotations

import json
import os

import duckdb
import pandas as pd

from warehouse import io

LOG_COLUMNS = [
    "desk",
    "signal_id",
    "symbol",
    "timeframe",
    "ts",
    "first_seen",
    "payload",
    "model_version",
    "config_hash",
]
PAPER_TABLES = ("paper.orders", "paper.trades", "paper.positions", "paper.equity", "paper.state")


def _crash_point(name: str) -> None:
    if os.environ.get("TRADER_PAPER_CRASH_AT") == name:
        os._exit(9)


def log_signals(con: duckdb.DuckDBPyConnection, rows: pd.DataFrame) -> int:
    """Append the rows of ``rows`` (:data:`LOG_COLUMNS`) whose ``(desk, signal_id)`` is not logged yet; returns how
    many were new. Already-logged ids are left exactly as they are (payload, ``first_seen``)."""
    if rows.empty:
        return 0
    rows = rows.drop_duplicates(["desk", "signal_id"])[LOG_COLUMNS]
    con.register("_log_new", rows)
    try:
        with io.transaction(con):
            n = io.fetch_one(
                con.execute(
                    """SELECT count(*) FROM _log_new n WHERE NOT EXISTS
                       (SELECT 1 FROM signals.log l WHERE l.desk = n.desk AND l.signal_id = n.signal_id)"""
                )
            )[0]
            con.execute(
                """INSERT INTO signals.log BY NAME SELECT * FROM _log_new n WHERE NOT EXISTS
                   (SELECT 1 FROM signals.log l WHERE l.desk = n.desk AND l.signal_id = n.signal_id)"""
            )
    finally:
        con.unregister("_log_new")
    return int(n)


def logged(con: duckdb.DuckDBPyConnection, desk: str, start_ts: int, end_ts: int) -> pd.DataFrame:
    """The desk's logged signals with ``start_ts <= ts <= end_ts``, by ``ts, signal_id``."""
    return io.read_df(
        con,
        "SELECT * EXCLUDE (open_time) FROM signals.log WHERE desk = ? AND ts BETWEEN ? AND ? ORDER BY ts, signal_id",
        [desk, start_ts, end_ts],
    )


def late_signals(con: duckdb.DuckDBPyConnection, desk: str, start_ts: int, upto_ts: int) -> pd.DataFrame:
    """Logged signals of the book's window already run (``start_ts <= ts <= upto_ts``) that the paper book never saw
    (no ``paper.orders`` row): logged after their candle was stepped."""
    return io.read_df(
        con,
        """SELECT signal_id, symbol || '|' || timeframe AS asset, ts FROM signals.log l
           WHERE desk = ? AND ts BETWEEN ? AND ? AND NOT EXISTS
           (SELECT 1 FROM paper.orders o WHERE o.desk = l.desk AND o.signal_id = l.signal_id) ORDER BY ts""",
        [desk, start_ts, upto_ts],
    )


def oldest_signal_ts(con: duckdb.DuckDBPyConnection, desk: str) -> int | None:
    v = io.fetch_one(con.execute("SELECT min(ts) FROM signals.log WHERE desk = ?", [desk]))[0]
    return None if v is None else int(v)


def latest_state(con: duckdb.DuckDBPyConnection, desk: str) -> dict | None:
    """The desk's newest ``paper.state`` row as a dict (``state`` parsed from JSON), or None for a fresh book."""
    df = io.read_df(con, "SELECT * FROM paper.state WHERE desk = ? ORDER BY version DESC LIMIT 1", [desk])
    if df.empty:
        return None
    r = df.iloc[0].to_dict()
    r["state"] = json.loads(r["state"])
    return r


def write_step(
    con: duckdb.DuckDBPyConnection,
    desk: str,
    prev_version: int,
    state_row: dict,
    orders: pd.DataFrame,
    trades: pd.DataFrame,
    equity: pd.DataFrame,
    positions: pd.DataFrame,
) -> int:
    """Write one paper step of ``desk`` in one transaction; returns the new version (``prev_version + 1``).

    Raises:
        RuntimeError: the stored newest version is no longer ``prev_version`` (another step won; nothing written).
    """
    version = prev_version + 1
    with io.transaction(con):
        _crash_point("begin")
        cur = io.fetch_one(con.execute("SELECT coalesce(max(version), 0) FROM paper.state WHERE desk = ?", [desk]))[0]
        if int(cur) != prev_version:
            raise RuntimeError(f"paper book {desk!r}: version {cur} stored, this step started from {prev_version}")
        for table, df, point in (
            ("paper.orders", orders, "orders"),
            ("paper.trades", trades, "trades"),
            ("paper.equity", equity, "equity"),
        ):
            if len(df):
                _insert(con, table, df.assign(desk=desk, version=version))
            _crash_point(point)
        con.execute("DELETE FROM paper.positions WHERE desk = ?", [desk])
        if len(positions):
            _insert(con, "paper.positions", positions.assign(desk=desk, version=version))
        _crash_point("positions")
        row = {**state_row, "desk": desk, "version": version, "state": json.dumps(state_row["state"])}
        _insert(con, "paper.state", pd.DataFrame([row]))
        _crash_point("state")
    _crash_point("commit")
    return version


def _insert(con: duckdb.DuckDBPyConnection, table: str, df: pd.DataFrame) -> None:
    con.register("_paper_rows", df)
    try:
        con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _paper_rows")
    finally:
        con.unregister("_paper_rows")


def reset(con: duckdb.DuckDBPyConnection, desk: str) -> dict[str, int]:
    """Delete the desk's paper book (every ``paper.*`` row; ``signals.log`` is kept); returns rows deleted per table.
    The next step starts a fresh book (``paper.start`` / the oldest logged signal)."""
    out = {}
    with io.transaction(con):
        for t in PAPER_TABLES:
            out[t] = int(io.fetch_one(con.execute(f"SELECT count(*) FROM {t} WHERE desk = ?", [desk]))[0])
            con.execute(f"DELETE FROM {t} WHERE desk = ?", [desk])
    return out


def book(con: duckdb.DuckDBPyConnection, desk: str | None = None) -> dict[str, pd.DataFrame]:
    """What ``trader paper status`` shows: per desk the newest state row, open positions, closed-trade summary and
    the last equity row (``desk`` None = every desk)."""
    where, params = ("WHERE desk = ?", [desk]) if desk else ("", [])
    return {
        "state": io.read_df(
            con,
            f"""SELECT desk, version, start_ts, last_ts, bars, config_hash, created_at FROM paper.state {where}
                   QUALIFY row_number() OVER (PARTITION BY desk ORDER BY version DESC) = 1 ORDER BY desk""",
            params,
        ),
        "positions": io.read_df(con, f"SELECT * FROM paper.positions {where} ORDER BY desk, asset", params),
        "trades": io.read_df(
            con,
            f"""SELECT desk, count(*) AS trades, sum(pnl) AS realised_pnl, sum(fees) AS fees,
                   avg((pnl > 0)::INT) AS win_rate FROM paper.trades {where} GROUP BY desk ORDER BY desk""",
            params,
        ),
        "equity": io.read_df(
            con,
            f"""SELECT * EXCLUDE (open_time) FROM paper.equity {where}
                QUALIFY row_number() OVER (PARTITION BY desk ORDER BY ts DESC) = 1 ORDER BY desk""",
            params,
        ),
        "orders": io.read_df(
            con,
            f"SELECT desk, status, count(*) AS n FROM paper.orders {where} GROUP BY ALL ORDER BY desk, status",
            params,
        ),
    }


def book_frames(con: duckdb.DuckDBPyConnection, desk: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(closed trades, equity per bar)`` of the desk's paper book, for :func:`pipeline.core.paper.compare_books`."""
    return (
        io.read_df(con, "SELECT * FROM paper.trades WHERE desk = ? ORDER BY asset, entry_ts", [desk]),
        io.read_df(con, "SELECT * EXCLUDE (open_time) FROM paper.equity WHERE desk = ? ORDER BY ts", [desk]),
    )


def late_ids(con: duckdb.DuckDBPyConnection, desk: str) -> list[str]:
    """Signal ids the paper book recorded as ``late`` (logged after their candle was run)."""
    return [
        r[0]
        for r in con.execute("SELECT signal_id FROM paper.orders WHERE desk = ? AND status = 'late'", [desk]).fetchall()
    ]


def sent_ids(con: duckdb.DuckDBPyConnection, desk: str, assets: list[str], min_bar_ts: int) -> pd.DataFrame:
    """``asset, signal_ts, signal_id, bar_ts`` of the signals the book sent to the engine on a bar at or after
    ``min_bar_ts`` (``bar_ts``: the bar the signal was sent on, the ``ts`` of its ``sent`` order row; the engine's
    ``signal_ts`` of its trades)."""
    if not assets:
        return pd.DataFrame(columns=["asset", "signal_ts", "signal_id", "bar_ts"])
    return io.read_df(
        con,
        f"""SELECT asset, signal_ts, signal_id, ts AS bar_ts FROM paper.orders WHERE desk = ? AND status = 'sent'
            AND ts >= ? AND asset IN ({", ".join("?" * len(assets))})""",
        [desk, min_bar_ts, *assets],
    )


def new_bars(
    con: duckdb.DuckDBPyConnection, exchange: str, series: list[tuple[str, str]], after_ts: int, upto_ts: int
) -> dict[tuple[str, str], pd.DataFrame]:
    """The bars of a paper step in **one** query: per ``(symbol, timeframe)`` of ``series`` its candles with
    ``after_ts < ts <= upto_ts`` and the stored ATR(14) (``ts, open, high, low, close, atr``, sorted by ``ts``; the
    same rows as :func:`warehouse.readers.bars`: candles that have a ``features.technical`` row); empty when none."""
    keys = pd.DataFrame(series, columns=["symbol", "timeframe"])
    con.register("_paper_series", keys)
    try:
        df = io.read_df(
            con,
            """SELECT o.symbol, o.timeframe, o.ts, o.open, o.high, o.low, o.close, f.atr_14 AS atr
               FROM market.ohlcv o JOIN _paper_series s USING (symbol, timeframe)
               JOIN features.technical f USING (exchange, symbol, timeframe, ts)
               WHERE o.exchange = ? AND o.ts > ? AND o.ts <= ? ORDER BY o.symbol, o.timeframe, o.ts""",
            [exchange, after_ts, upto_ts],
        )
    finally:
        con.unregister("_paper_series")
    groups = {
        k: g.drop(columns=["symbol", "timeframe"]).reset_index(drop=True)
        for k, g in df.groupby(["symbol", "timeframe"])
    }
    empty = df.drop(columns=["symbol", "timeframe"]).iloc[:0]
    return {k: groups.get(k, empty) for k in series}


def unnotified(
    con: duckdb.DuckDBPyConnection, desk: str, window_ms: int = 2 * 86_400_000
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(signals, trades)`` of ``desk`` that have no message in ``ops.notifications`` yet: the ``signals.log`` rows
    (dedup key ``signal:<signal_id>``) and the closed ``paper.trades`` (dedup keys ``trade_closed:<signal_id>:…``)
    that exited within ``window_ms`` of the book's newest exit (a book that existed before notifications were on
    does not send its whole history)."""
    sig = con.execute(
        """SELECT l.* EXCLUDE (open_time) FROM signals.log l WHERE l.desk = ? AND NOT EXISTS
           (SELECT 1 FROM ops.notifications n WHERE n.dedup_key = 'signal:' || l.signal_id) ORDER BY l.ts, l.signal_id""",
        [desk],
    ).df()
    trades = con.execute(
        """SELECT t.* FROM paper.trades t WHERE t.desk = ? AND t.exit_ts >= 0
             AND t.exit_ts >= (SELECT max(exit_ts) FROM paper.trades WHERE desk = ?) - ?
             AND NOT EXISTS (SELECT 1 FROM ops.notifications n WHERE n.dedup_key LIKE 'trade_closed:' || t.signal_id || ':%')
           ORDER BY t.exit_ts, t.signal_id""",
        [desk, desk, window_ms],
    ).df()
    return sig, trades
