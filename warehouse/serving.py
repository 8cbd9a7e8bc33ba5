"""Reads of the published serving snapshot for the REST API (:mod:`pipeline.api`): plain SQL over one read-only
cursor, rows as ``dict`` of Python values.

Every function takes a cursor of the snapshot (``serving.duckdb``) and returns ``None`` when its table is not in that
snapshot (a snapshot published before the table existed), so the caller decides what a missing table means. Values are
cleaned for JSON: ``NaN``/``inf`` become ``None``, DuckDB ``TIMESTAMP`` (naive, UTC by the warehouse's convention)
becomes an aware UTC :class:`datetime.datetime`, NumPy scalars become Python scalars; ``DATE`` stays a
:class:`datetime.date`.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import duckdb


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
