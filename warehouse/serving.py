"""Reads of the published serving snapshot for the REST API (:mod:`pipeline.api`) and the dashboard
(:mod:`pipeline.apps`): :class:`Snapshot` (one read-only connection per published version) and plain SQL over one of
its cursors, rows as ``dict`` of Python values (the API) or DataFrames (the dashboard's ``*_frame`` readers).

Every function takes a cursor of the snapshot (``serving.duckdb``) and returns ``None`` when its table is not in that
snapshot (a snapshot published before the table existed), so the caller decides what a missing table means. Values are
cleaned for JSON: ``NaN``/``inf`` become ``None``, DuckDB ``TIMESTAMP`` (naive, UTC by the warehouse's convention)
becomes an aware UTC :class:`datetime.datetime`, NumPy scalars become Python scalars; ``DATE`` stays a
:class:`datetime.date`.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import threading
from typing import Any

import duckdb

from warehouse.publish import resolve_snapshot

CACHE_ENTRIES = 4096
"""Answers memoised per snapshot version by :meth:`Snapshot.cached` (the snapshot is immutable; a new publish empties
the cache)."""


class SnapshotUnavailable(Exception):
    """No published snapshot (or it lacks the tables asked for)."""


class Snapshot:
    """One read-only DuckDB connection per published version of ``serving_path``; :meth:`cursor` hands out a
    per-request cursor and reopens when the pointer (or an old-layout file's inode) changes.

    Raises :class:`SnapshotUnavailable` when nothing is published.
    """

    def __init__(self, serving_path: str):
        self.path = serving_path
        self._lock = threading.RLock()
        self._key: tuple | None = None
        self._con: duckdb.DuckDBPyConnection | None = None
        self._cache: dict[tuple, bytes] = {}
        self._memo: dict[str, Any] = {}
        self._cache_version: tuple | None = None

    def version(self) -> tuple:
        real = resolve_snapshot(self.path)
        try:
            st = os.stat(real)
        except OSError:
            raise SnapshotUnavailable from None
        return (str(real), st.st_ino, st.st_mtime_ns)

    def cursor(self) -> tuple[duckdb.DuckDBPyConnection, tuple]:
        key = self.version()
        con = self._con
        if key != self._key or con is None:
            with self._lock:
                if key != self._key or self._con is None:
                    try:
                        self._con = duckdb.connect(key[0], read_only=True)
                    except duckdb.Error:
                        raise SnapshotUnavailable from None
                    self._key = key  # the previous connection closes when its last cursor is dropped
                con = self._con
        return con.cursor(), key

    def _fresh(self, version: tuple) -> None:
        if self._cache_version != version:
            self._cache, self._memo, self._cache_version = {}, {}, version

    def cached(self, key: tuple, fn) -> bytes:
        """``fn()`` (a pydantic model, or ``None``) JSON-encoded, memoised per published version (a version never
        changes, so this is exact); at most :data:`CACHE_ENTRIES` answers are kept, oldest dropped first."""
        version = self.version()
        with self._lock:
            self._fresh(version)
            hit = self._cache.get(key)
        if hit is None:
            v = fn()
            hit = b"null" if v is None else v.model_dump_json().encode()
            with self._lock:
                if self._cache_version == version:
                    if len(self._cache) >= CACHE_ENTRIES:
                        self._cache.pop(next(iter(self._cache)))
                    self._cache[key] = hit
        return hit

    def memo(self, key: str, fn):
        """``fn(cursor)`` computed once per published version (the small tables loaded whole). Raises
        :class:`SnapshotUnavailable` when ``fn`` returns ``None`` (its table is not in the snapshot)."""
        version = self.version()
        with self._lock:
            self._fresh(version)
            if key not in self._memo:
                cur, _ = self.cursor()
                try:
                    got = fn(cur)
                except duckdb.CatalogException:
                    raise SnapshotUnavailable from None
                finally:
                    cur.close()
                if got is None:
                    raise SnapshotUnavailable
                self._memo[key] = got
            return self._memo[key]


def clean(v: Any) -> Any:
    """One DuckDB value made JSON-friendly (see the module docstring)."""
    if isinstance(v, dt.datetime):
        return v if v.tzinfo else v.replace(tzinfo=dt.UTC)
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        return clean(v.item())
    return v


def rows(cur: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> list[dict]:
    """``sql`` run on ``cur``; every row as ``{column: clean(value)}``."""
    cur.execute(sql, params or [])
    cols = [d[0] for d in cur.description]
    return [{c: clean(v) for c, v in zip(cols, r)} for r in cur.fetchall()]


def tables(cur: duckdb.DuckDBPyConnection) -> set[str]:
    """``schema.table`` names in the snapshot."""
    return {f"{s}.{t}" for s, t in cur.execute("SELECT schema_name, table_name FROM duckdb_tables()").fetchall()}


def options_daily(cur: duckdb.DuckDBPyConnection) -> list[dict] | None:
    """``signals.options_daily``, newest day first (6,440 rows on the real data)."""
    if "signals.options_daily" not in tables(cur):
        return None
    return rows(cur, "SELECT * FROM signals.options_daily ORDER BY date DESC")


def options_trades(cur: duckdb.DuckDBPyConnection) -> list[dict] | None:
    """``signals.options_trades`` by date and trade type."""
    if "signals.options_trades" not in tables(cur):
        return None
    return rows(cur, "SELECT * FROM signals.options_trades ORDER BY date, trade_type")


def input_errors(cur: duckdb.DuckDBPyConnection, limit: int) -> tuple[int, list[dict]]:
    """``(count, newest rows up to limit)`` of ``ops.input_errors``; ``(0, [])`` without the table."""
    if "ops.input_errors" not in tables(cur):
        return 0, []
    n = cur.execute("SELECT count(*) FROM ops.input_errors").fetchone()[0]
    got = rows(
        cur,
        "SELECT input, partition_key, locator, rule, message, detected_at FROM ops.input_errors "
        f"ORDER BY detected_at DESC NULLS LAST, input LIMIT {int(limit)}",
    )
    return int(n), got


def freshness(cur: duckdb.DuckDBPyConnection) -> dict[str, dict]:
    """The newest row of each input and signal table the snapshot holds (absent tables are left out).

    Returns ``{name: {"table", "rows", ...}}`` with, per name:

    * ``signals`` (``signals.options_daily``), ``onchain`` (``market.onchain_daily``), ``sentiment``
      (``market.sentiment_daily``): ``last_date`` (``datetime.date`` or ``None`` when empty);
    * ``setups`` (``signals.setups``): ``last_ts`` (epoch ms, candle open time of the newest gated signal);
    * ``candles`` (``market.ohlcv``): ``series``, a list of ``{"exchange", "symbol", "timeframe", "last_ts"}``
      (epoch ms open time of each series' newest candle).
    """
    have = tables(cur)
    out: dict[str, dict] = {}
    for name, table in (
        ("signals", "signals.options_daily"),
        ("onchain", "market.onchain_daily"),
        ("sentiment", "market.sentiment_daily"),
    ):
        if table in have:
            last, n = cur.execute(f"SELECT max(date), count(*) FROM {table}").fetchone()
            out[name] = {"table": table, "rows": int(n), "last_date": last}
    if "signals.setups" in have:
        last, n = cur.execute("SELECT max(ts), count(*) FROM signals.setups").fetchone()
        out["setups"] = {"table": "signals.setups", "rows": int(n), "last_ts": last}
    if "market.ohlcv" in have:
        series = rows(
            cur,
            "SELECT exchange, symbol, timeframe, max(ts) AS last_ts, count(*) AS n FROM market.ohlcv "
            "GROUP BY ALL ORDER BY exchange, symbol, timeframe",
        )
        out["candles"] = {"table": "market.ohlcv", "rows": sum(s.pop("n") for s in series), "series": series}
    return out


def setups(cur: duckdb.DuckDBPyConnection) -> list[dict] | None:
    """``signals.setups`` (the setup scanner's gated signals), newest first (by ``ts``, then ``candidate_id``)."""
    if "signals.setups" not in tables(cur):
        return None
    return rows(cur, "SELECT * FROM signals.setups ORDER BY ts DESC, candidate_id")


def latest_backtests(cur: duckdb.DuckDBPyConnection) -> list[dict] | None:
    """The newest ``backtest.runs`` row (by ``created_at``) of every desk × strategy, by desk and strategy."""
    if "backtest.runs" not in tables(cur):
        return None
    return rows(
        cur,
        "SELECT * FROM backtest.runs QUALIFY row_number() OVER (PARTITION BY desk, strategy "
        "ORDER BY created_at DESC NULLS LAST, run_id DESC) = 1 ORDER BY desk, strategy",
    )


def model_runs(cur: duckdb.DuckDBPyConnection) -> list[dict] | None:
    """Every ``ml.model_runs`` row, by model name, newest training first."""
    if "ml.model_runs" not in tables(cur):
        return None
    return rows(cur, "SELECT * FROM ml.model_runs ORDER BY model_name, trained_at DESC NULLS LAST, mlflow_run_id")


# --------------------------------------------------------------------------- the dashboard's reads (DataFrames)


def frame(cur: duckdb.DuckDBPyConnection, sql: str, params: list | None = None):
    """``sql`` on ``cur`` as a pandas DataFrame (DuckDB's own types: TIMESTAMP naive UTC, DATE as datetime64)."""
    return cur.execute(sql, params or []).df()


def _has(cur: duckdb.DuckDBPyConnection, *names: str) -> bool:
    have = tables(cur)
    return all(n in have for n in names)


def run_status_frame(cur: duckdb.DuckDBPyConnection):
    """``ops.run_status`` (the newest run of each job at the last publish: ``job_name, run_id, status, start_time,
    end_time``, naive UTC), newest first; None without the table (a snapshot published before it existed)."""
    if not _has(cur, "ops.run_status"):
        return None
    return frame(cur, "SELECT * FROM ops.run_status ORDER BY start_time DESC NULLS LAST, job_name")


def check_status_frame(cur: duckdb.DuckDBPyConnection):
    """``ops.check_status`` (the newest completed evaluation of each asset check at the last publish: ``asset_key,
    check_name, passed, severity, run_id, evaluated_at, description``), failed first; None without the table."""
    if not _has(cur, "ops.check_status"):
        return None
    return frame(cur, "SELECT * FROM ops.check_status ORDER BY passed::INT, asset_key, check_name")


def series_frame(cur: duckdb.DuckDBPyConnection):
    """Candle series of ``market.ohlcv``: ``symbol, timeframe, first_ts, last_ts, candles`` (epoch ms open times),
    by symbol and timeframe; None without the table."""
    if not _has(cur, "market.ohlcv"):
        return None
    return frame(
        cur,
        "SELECT symbol, timeframe, min(ts) AS first_ts, max(ts) AS last_ts, count(*) AS candles FROM market.ohlcv "
        "GROUP BY ALL ORDER BY symbol, timeframe",
    )


def candles_frame(cur: duckdb.DuckDBPyConnection, symbol: str, timeframe: str, start_ms: int, end_ms: int):
    """Candles of one series with ``start_ms <= ts < end_ms`` (epoch ms open time): ``ts, open_time, open, high, low,
    close, volume`` by ``ts``; None without the table."""
    if not _has(cur, "market.ohlcv"):
        return None
    return frame(
        cur,
        "SELECT ts, make_timestamp(ts * 1000) AS open_time, open, high, low, close, volume FROM market.ohlcv "
        "WHERE symbol = ? AND timeframe = ? AND ts >= ? AND ts < ? ORDER BY ts",
        [symbol, timeframe, int(start_ms), int(end_ms)],
    )


def setups_frame(cur: duckdb.DuckDBPyConnection):
    """``signals.setups`` newest first with ``open_time`` (the signal candle's open, UTC); None without the table."""
    if not _has(cur, "signals.setups"):
        return None
    return frame(
        cur, "SELECT make_timestamp(ts * 1000) AS open_time, * FROM signals.setups ORDER BY ts DESC, candidate_id"
    )


def backtests_frame(cur: duckdb.DuckDBPyConnection):
    """:func:`latest_backtests` as a DataFrame (JSON columns as text); None without ``backtest.runs``."""
    got = latest_backtests(cur)
    if got is None:
        return None
    import pandas as pd

    return pd.DataFrame(got)


def equity_daily_frame(cur: duckdb.DuckDBPyConnection, run_ids: list[str]):
    """Daily closes of ``backtest.equity`` for ``run_ids``: the last row of each UTC day per run, ``run_id, day,
    equity, benchmark_equity, drawdown`` by run and day (the basis ``metrics()`` uses; a 1h curve of 7 years is
    60,000 rows, its daily closes 2,500); None without the table."""
    if not _has(cur, "backtest.equity"):
        return None
    return frame(
        cur,
        "SELECT run_id, date_trunc('day', make_timestamp(ts * 1000)) AS day, arg_max(equity, ts) AS equity, "
        "arg_max(benchmark_equity, ts) AS benchmark_equity, arg_max(drawdown, ts) AS drawdown FROM backtest.equity "
        "WHERE run_id IN (SELECT unnest(?::VARCHAR[])) GROUP BY ALL ORDER BY run_id, day",
        [list(run_ids)],
    )


def trades_frame(cur: duckdb.DuckDBPyConnection, run_id: str):
    """``backtest.trades`` of one run by entry time; None without the table."""
    if not _has(cur, "backtest.trades"):
        return None
    return frame(cur, "SELECT * FROM backtest.trades WHERE run_id = ? ORDER BY entry_ts, trade_id", [run_id])


def meta_scores_frame(cur: duckdb.DuckDBPyConnection, model_name: str = "setup_meta"):
    """Closed, calibrated point-in-time scores of ``model_name`` (``ml.setup_meta_scores``) of its champion version
    (``ml.model_runs.promoted``), else of its newest training: ``mlflow_run_id, model_version, symbol, timeframe, ts,
    p_cal, win, net_pct``; None without the tables."""
    if not _has(cur, "ml.setup_meta_scores", "ml.model_runs"):
        return None
    return frame(
        cur,
        """WITH v AS (SELECT mlflow_run_id FROM ml.model_runs WHERE model_name = ?
                      ORDER BY coalesce(promoted, false) DESC, trained_at DESC NULLS LAST LIMIT 1)
           SELECT mlflow_run_id, model_version, symbol, timeframe, ts, p_cal, win, net_pct FROM ml.setup_meta_scores
           WHERE mlflow_run_id IN (SELECT mlflow_run_id FROM v) AND p_cal IS NOT NULL AND win IS NOT NULL
           ORDER BY ts, candidate_id""",
        [model_name],
    )


def model_runs_frame(cur: duckdb.DuckDBPyConnection):
    """:func:`model_runs` as a DataFrame; None without ``ml.model_runs``."""
    got = model_runs(cur)
    if got is None:
        return None
    import pandas as pd

    return pd.DataFrame(got)


def folds_frame(cur: duckdb.DuckDBPyConnection):
    """``ml.folds`` (per-fold OOS scores of every training) by model, run and fold; None without the table."""
    if not _has(cur, "ml.folds"):
        return None
    return frame(cur, "SELECT * FROM ml.folds ORDER BY model_name, mlflow_run_id, fold")


def latest_predictions_frame(cur: duckdb.DuckDBPyConnection, model_name: str = "baseline_direction"):
    """The newest out-of-sample prediction of ``model_name`` per symbol × timeframe (``ml.predictions``): ``symbol,
    timeframe, ts, open_time, p_cal, p_raw, fold``; None without the table."""
    if not _has(cur, "ml.predictions"):
        return None
    return frame(
        cur,
        "SELECT symbol, timeframe, ts, open_time, p_cal, p_raw, fold FROM ml.predictions WHERE model_name = ? "
        "QUALIFY row_number() OVER (PARTITION BY symbol, timeframe ORDER BY ts DESC) = 1 ORDER BY symbol, timeframe",
        [model_name],
    )


def options_daily_frame(cur: duckdb.DuckDBPyConnection):
    """``signals.options_daily`` by date (state, score, spot and the rest); None without the table."""
    if not _has(cur, "signals.options_daily"):
        return None
    return frame(cur, "SELECT * FROM signals.options_daily ORDER BY date")


def options_trades_frame(cur: duckdb.DuckDBPyConnection):
    """``signals.options_trades`` by date and trade type; None without the table."""
    if not _has(cur, "signals.options_trades"):
        return None
    return frame(cur, "SELECT * FROM signals.options_trades ORDER BY date, trade_type")


PAPER_TABLES = ("paper.state", "paper.equity", "paper.positions", "paper.trades", "paper.orders")


def paper_frames(cur: duckdb.DuckDBPyConnection) -> dict | None:
    """Every desk's current paper book (the rows of its newest ``version`` in each ``paper.*`` table): ``{"state",
    "equity", "positions", "trades", "orders"}`` DataFrames (``state``: ``desk, version, start_ts, last_ts, bars,
    state, created_at``); None when the snapshot has no paper tables."""
    if not _has(cur, *PAPER_TABLES):
        return None
    cur_version = "(desk, version) IN (SELECT (desk, max(version)) FROM paper.state GROUP BY desk)"
    return {
        "state": frame(
            cur,
            f"SELECT desk, version, start_ts, last_ts, bars, created_at FROM paper.state WHERE {cur_version} "
            "ORDER BY desk",
        ),
        "equity": frame(
            cur,
            f"SELECT * EXCLUDE (open_time), make_timestamp(ts * 1000) AS open_time FROM paper.equity WHERE {cur_version} ORDER BY desk, ts",
        ),
        "positions": frame(cur, f"SELECT * FROM paper.positions WHERE {cur_version} ORDER BY desk, entry_ts"),
        "trades": frame(cur, f"SELECT * FROM paper.trades WHERE {cur_version} ORDER BY desk, exit_ts DESC"),
        "orders": frame(cur, f"SELECT * FROM paper.orders WHERE {cur_version} ORDER BY desk, ts DESC"),
    }
