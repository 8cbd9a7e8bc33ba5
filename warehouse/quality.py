"""Data-quality queries over stored candles and features (SQL, no Dagster).

Each function returns a frame with one row per ``symbol × timeframe`` slice so one query serves every
partition of a run; the asset checks turn them into pass/fail with metadata.
"""

from __future__ import annotations

import duckdb
import pandas as pd

from pipeline.core.indicators import FEATURE_COLUMNS, MAX_WARMUP
from pipeline.core.timeframes import TIMEFRAME_MS

_TF_CASE = "CASE timeframe " + " ".join(f"WHEN '{k}' THEN {v}" for k, v in TIMEFRAME_MS.items()) + " END"


def _slices_clause(slices: list[tuple[str, str]]) -> str:
    vals = ", ".join(f"('{s}', '{t}')" for s, t in slices)
    return f"(symbol, timeframe) IN (SELECT * FROM (VALUES {vals}))" if slices else "FALSE"


def candle_integrity(
    con: duckdb.DuckDBPyConnection, table: str, exchange: str, slices: list[tuple[str, str]]
) -> pd.DataFrame:
    """Per slice: rows, first/last ts, duplicate keys, OHLC violations, off-grid timestamps, gaps.

    ``bad_ohlc`` counts rows with a non-positive or non-finite (``inf``/NaN) price or volume, negative volume or ``low > min(open, close)``
    / ``high < max(open, close)``; ``off_grid`` rows whose ``ts`` is not a multiple of the timeframe;
    ``missing_bars`` / ``max_gap_bars`` come from consecutive-``ts`` differences.
    """
    sql = f"""
    WITH s AS (
        SELECT symbol, timeframe, ts, open, high, low, close, volume, {_TF_CASE} AS step,
               ts - lag(ts) OVER (PARTITION BY symbol, timeframe ORDER BY ts) AS dts
        FROM {table} WHERE exchange = ? AND {_slices_clause(slices)})
    SELECT symbol, timeframe, count(*) AS rows, min(ts) AS first_ts, max(ts) AS last_ts,
           count(*) - count(DISTINCT ts) AS duplicates,
           count(*) FILTER (WHERE open <= 0 OR high <= 0 OR low <= 0 OR close <= 0 OR volume < 0
                               OR low > least(open, close) OR high < greatest(open, close)
                               OR NOT (isfinite(open) AND isfinite(high) AND isfinite(low) AND isfinite(close)
                                       AND isfinite(volume))) AS bad_ohlc,
           count(*) FILTER (WHERE ts % step <> 0) AS off_grid,
           count(*) FILTER (WHERE dts > step) AS n_gaps,
           coalesce(sum(dts // step - 1) FILTER (WHERE dts > step), 0) AS missing_bars,
           coalesce(max(dts // step - 1) FILTER (WHERE dts > step), 0) AS max_gap_bars,
           any_value(step) AS step
    FROM s GROUP BY ALL ORDER BY symbol, timeframe"""
    return con.execute(sql, [exchange]).df()


def gap_list(
    con: duckdb.DuckDBPyConnection, table: str, exchange: str, slices: list[tuple[str, str]], limit: int = 200
) -> pd.DataFrame:
    """The largest gaps: ``symbol, timeframe, before (last bar), after (next bar), missing_bars``."""
    sql = f"""
    WITH s AS (
        SELECT symbol, timeframe, ts, {_TF_CASE} AS step,
               lead(ts) OVER (PARTITION BY symbol, timeframe ORDER BY ts) AS nxt
        FROM {table} WHERE exchange = ? AND {_slices_clause(slices)})
    SELECT symbol, timeframe, make_timestamp(ts * 1000) AS before, make_timestamp(nxt * 1000) AS after,
           (nxt - ts) // step - 1 AS missing_bars
    FROM s WHERE nxt - ts > step ORDER BY missing_bars DESC, symbol, timeframe, before LIMIT {int(limit)}"""
    return con.execute(sql, [exchange]).df()


def feature_nulls_past_warmup(
    con: duckdb.DuckDBPyConnection, exchange: str, slices: list[tuple[str, str]], warmup: int = MAX_WARMUP
) -> pd.DataFrame:
    """Per slice: rows after the first ``warmup`` bars with a NULL in any feature column.

    ``volume_zscore_20`` is excluded: it is NULL by definition when 20 bars have identical volume
    (e.g. zero-volume bars around exchange outages).
    """
    cols = [c for c in FEATURE_COLUMNS if c != "volume_zscore_20"]
    any_null = " OR ".join(f"{c} IS NULL" for c in cols)
    per_col = ", ".join(f"count(*) FILTER (WHERE {c} IS NULL) AS {c}" for c in cols)
    sql = f"""
    WITH s AS (SELECT *, row_number() OVER (PARTITION BY symbol, timeframe ORDER BY ts) AS rn
               FROM features.technical WHERE exchange = ? AND {_slices_clause(slices)})
    SELECT symbol, timeframe, count(*) AS rows_past_warmup,
           count(*) FILTER (WHERE {any_null}) AS null_rows, {per_col}
    FROM s WHERE rn > {int(warmup)} GROUP BY ALL ORDER BY symbol, timeframe"""
    return con.execute(sql, [exchange]).df()


def cached(
    con: duckdb.DuckDBPyConnection,
    kind: str,
    exchange: str,
    slices: list[tuple[str, str]],
    changed: set[tuple[str, str]],
    compute,
) -> pd.DataFrame:
    """Per-slice stats of ``compute(con, exchange, slices)``, recomputed only for ``changed`` slices.

    Stats of unchanged slices come from ``ops.slice_quality`` (written when they last changed), so a
    run with no new data re-scans nothing. A slice never measured before counts as changed.
    """
    import json

    known = {
        (r[0], r[1])
        for r in con.execute(
            "SELECT symbol, timeframe FROM ops.slice_quality WHERE tbl = ? AND exchange = ?", [kind, exchange]
        ).fetchall()
    }
    todo = [s for s in slices if s in changed or s not in known]
    if todo:
        fresh = compute(con, exchange, todo)
        rows = pd.DataFrame(
            {
                "tbl": kind,
                "exchange": exchange,
                "symbol": fresh["symbol"],
                "timeframe": fresh["timeframe"],
                "stats": [
                    json.dumps(
                        {
                            k: (
                                None
                                if pd.isna(v)
                                else (int(v) if hasattr(v, "__int__") and not isinstance(v, str) else v)
                            )
                            for k, v in r.items()
                        }
                    )
                    for r in fresh.to_dict("records")
                ],
                "checked_at": pd.Timestamp.now("UTC").tz_localize(None),
            }
        )
        con.execute("BEGIN TRANSACTION")
        try:
            for sym, tf in todo:
                con.execute(
                    "DELETE FROM ops.slice_quality WHERE tbl=? AND exchange=? AND symbol=? AND timeframe=?",
                    [kind, exchange, sym, tf],
                )
            if len(rows):
                con.register("_q", rows)
                con.execute("INSERT INTO ops.slice_quality BY NAME SELECT * FROM _q")
                con.unregister("_q")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    got = con.execute(
        f"SELECT stats FROM ops.slice_quality WHERE tbl = ? AND exchange = ? AND {_slices_clause(slices)}",
        [kind, exchange],
    ).fetchall()
    return pd.DataFrame([json.loads(r[0]) for r in got])


def invalid_regime_labels(con: duckdb.DuckDBPyConnection, exchange: str) -> int:
    """``regimes.market`` rows of ``exchange`` with a label outside its vocabulary, a confidence or stability outside
    ``[0, 1]`` or an age below one bar."""
    return int(
        con.execute(
            """SELECT count(*) FROM regimes.market WHERE exchange = ? AND (
            trend_regime NOT IN ('bull','bear','sideways') OR trend_strength NOT IN ('weak','moderate','strong','very_strong')
            OR volatility_level NOT IN ('low','normal','high') OR regime_confidence NOT BETWEEN 0 AND 1
            OR regime_stability NOT BETWEEN 0 AND 1 OR regime_age_bars < 1)""",
            [exchange],
        ).fetchone()[0]
    )


def checkpoints_without_rows(con: duckdb.DuckDBPyConnection, exchange: str) -> pd.DataFrame:
    """File checkpoints that claim rows (``rows > 0``) while ``raw.ohlcv`` holds none of their locator's candles
    (issue 13 item 3: such a checkpoint would make every later run skip the file as "unchanged")."""
    return con.execute(
        """SELECT c.symbol, c.timeframe, c.locator, c.rows FROM raw.ingest_checkpoints c
        WHERE c.source_kind = 'files' AND c.exchange = ? AND c.rows > 0 AND NOT EXISTS (
            SELECT 1 FROM raw.ohlcv r WHERE r.exchange = c.exchange AND r.symbol = c.symbol
            AND r.timeframe = c.timeframe AND r.locator = c.locator)
        ORDER BY ALL""",
        [exchange],
    ).df()
