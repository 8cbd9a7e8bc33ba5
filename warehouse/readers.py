"""Every warehouse read used twice or more: one function per question, SQL written once.

Assets, the CLI and the API call these with a connection they opened (the writer's file, read-only, or the serving
snapshot); nothing here writes. Time columns are epoch ms UTC (``ts``) unless named ``date``; frames come back
sorted as documented and empty (with their columns) when there is nothing to read.
"""

from __future__ import annotations

import json

import duckdb
import pandas as pd

from warehouse import io


def series(
    con: duckdb.DuckDBPyConnection, exchange: str, symbol: str, timeframe: str, start_ts: int | None = None
) -> pd.DataFrame:
    """Candles ⋈ technical features ⋈ regimes of one series, sorted by ``ts`` (optionally ``ts >= start_ts``).

    Columns: ``ts, open, high, low, close``, every ``features.technical`` column but the key, ``open_time`` and
    ``close``, then ``trend_regime, volatility_level, natr_pct_rank, regime_confidence`` (NULL where no regime row).
    Only bars that have a feature row are returned (inner join on ``features.technical``).
    """
    return io.read_df(
        con,
        """
        SELECT o.ts, o.open, o.high, o.low, o.close, f.* EXCLUDE (exchange, symbol, timeframe, ts, close, open_time),
               r.trend_regime, r.volatility_level, r.natr_pct_rank, r.regime_confidence
        FROM market.ohlcv o
        JOIN features.technical f USING (exchange, symbol, timeframe, ts)
        LEFT JOIN regimes.market r USING (exchange, symbol, timeframe, ts)
        WHERE o.exchange = ? AND o.symbol = ? AND o.timeframe = ? AND o.ts >= ? ORDER BY o.ts""",
        [exchange, symbol, timeframe, -(2**62) if start_ts is None else int(start_ts)],
    )


def nth_bar_before(con: duckdb.DuckDBPyConnection, exchange: str, symbol: str, timeframe: str, ts: int, n: int) -> int:
    """``ts`` of the ``n``-th feature row before ``ts`` of one series (its first row when it has fewer): where a
    :func:`series` read must start for ``n`` rows of look-back before ``ts``."""
    (got,) = io.fetch_one(
        con.execute(
            """SELECT min(ts) FROM (SELECT ts FROM features.technical WHERE exchange = ? AND symbol = ? AND timeframe = ?
           AND ts < ? ORDER BY ts DESC LIMIT ?)""",
            [exchange, symbol, timeframe, int(ts), int(n)],
        )
    )
    return int(ts) if got is None else int(got)


def bars_signature(
    con: duckdb.DuckDBPyConnection, exchange: str, symbol: str, timeframe: str, start_ts: int | None, upto_ts: int
) -> list:
    """``[rows, hash sum]`` of one series' :func:`bars` (``ts``, OHLC, ATR) with ``start_ts <= ts <= upto_ts``: the
    check that the bars a stored engine state was run on are still the same."""
    lo = -(2**62) if start_ts is None else int(start_ts)
    n, h = io.fetch_one(
        con.execute(
            """SELECT count(*), sum(hash(o.ts, o.open, o.high, o.low, o.close, f.atr_14))::VARCHAR
           FROM market.ohlcv o JOIN features.technical f USING (exchange, symbol, timeframe, ts)
           WHERE o.exchange = ? AND o.symbol = ? AND o.timeframe = ? AND o.ts BETWEEN ? AND ?""",
            [exchange, symbol, timeframe, lo, int(upto_ts)],
        )
    )
    return [int(n), h]


def candidates_signature(
    con: duckdb.DuckDBPyConnection, exchange: str, symbol: str, timeframe: str, upto_ts: int
) -> list:
    """``[rows, hash sum]`` of one series' ``signals.setup_candidates`` rows (every column) with ``ts <= upto_ts``."""
    n, h = io.fetch_one(
        con.execute(
            """SELECT count(*), sum(hash(*columns(*)))::VARCHAR FROM signals.setup_candidates
           WHERE exchange = ? AND symbol = ? AND timeframe = ? AND ts <= ?""",
            [exchange, symbol, timeframe, int(upto_ts)],
        )
    )
    return [int(n), h]


def bars(
    con: duckdb.DuckDBPyConnection,
    exchange: str,
    symbol: str,
    timeframe: str,
    start_ts: int | None = None,
    end_ts: int | None = None,
) -> pd.DataFrame:
    """The simulator's bars of one series: ``ts, open, high, low, close, volume, atr`` (ATR(14), quote currency) and
    ``trend_regime, volatility_level``, sorted by ``ts``, optionally limited to ``start_ts <= ts <= end_ts``."""
    lo = -(2**62) if start_ts is None else int(start_ts)
    hi = 2**62 if end_ts is None else int(end_ts)
    return io.read_df(
        con,
        """SELECT o.ts, o.open, o.high, o.low, o.close, o.volume, f.atr_14 AS atr, r.trend_regime,
               r.volatility_level FROM market.ohlcv o JOIN features.technical f USING (exchange, symbol, timeframe, ts)
               LEFT JOIN regimes.market r USING (exchange, symbol, timeframe, ts)
               WHERE o.exchange = ? AND o.symbol = ? AND o.timeframe = ? AND o.ts BETWEEN ? AND ? ORDER BY o.ts""",
        [exchange, symbol, timeframe, lo, hi],
    )


def bars_tail(con: duckdb.DuckDBPyConnection, exchange: str, symbol: str, timeframe: str, n: int) -> pd.DataFrame:
    """The newest ``n`` rows of :func:`bars` (fewer when the series is shorter), sorted by ``ts``: the ``n``-th newest
    feature row's ``ts`` first (one top-n over ``features.technical``), then :func:`bars` from it, so the join reads
    only those bars."""
    (first,) = con.execute(
        """SELECT min(ts) FROM (SELECT ts FROM features.technical WHERE exchange = ? AND symbol = ? AND timeframe = ?
           ORDER BY ts DESC LIMIT ?)""",
        [exchange, symbol, timeframe, int(n)],
    ).fetchone()
    return bars(con, exchange, symbol, timeframe, start_ts=-(2**62) if first is None else int(first))


def bar_count(con: duckdb.DuckDBPyConnection, exchange: str, symbol: str, timeframe: str, upto_ts: int) -> int:
    """Rows of one series' :func:`bars` with ``ts <= upto_ts`` (a scan mark's check that history was not rewritten)."""
    return int(
        con.execute(
            """SELECT count(*) FROM market.ohlcv o JOIN features.technical f USING (exchange, symbol, timeframe, ts)
               WHERE o.exchange = ? AND o.symbol = ? AND o.timeframe = ? AND o.ts <= ?""",
            [exchange, symbol, timeframe, int(upto_ts)],
        ).fetchone()[0]
    )


def oldest_open_candidate(con: duckdb.DuckDBPyConnection, exchange: str, symbol: str, timeframe: str) -> int | None:
    """``ts`` of the series' oldest ``signals.setup_candidates`` row whose outcome is still ``OPEN`` (None: none)."""
    (ts,) = io.fetch_one(
        con.execute(
            "SELECT min(ts) FROM signals.setup_candidates WHERE exchange = ? AND symbol = ? AND timeframe = ? "
            "AND status = 'OPEN'",
            [exchange, symbol, timeframe],
        )
    )
    return None if ts is None else int(ts)


def scan_marks(con: duckdb.DuckDBPyConnection, asset: str, exchange: str) -> pd.DataFrame:
    """``ops.scan_marks`` of ``asset``: ``symbol, timeframe, last_ts, bars, fingerprint`` per scanned series."""
    return io.read_df(
        con,
        "SELECT symbol, timeframe, last_ts, bars, fingerprint FROM ops.scan_marks WHERE asset = ? AND exchange = ?",
        [asset, exchange],
    )


def high_low(
    con: duckdb.DuckDBPyConnection, exchange: str, symbol: str, timeframe: str, start_ts: int, end_ts: int
) -> pd.DataFrame:
    """``ts, high, low`` of a finer timeframe between ``start_ts`` and ``end_ts`` (resolves bars where SL and TP meet)."""
    return io.read_df(
        con,
        "SELECT ts, high, low FROM market.ohlcv WHERE exchange=? AND symbol=? AND timeframe=? "
        "AND ts BETWEEN ? AND ? ORDER BY ts",
        [exchange, symbol, timeframe, start_ts, end_ts],
    )


# ---- model runs (ml.model_runs) -------------------------------------------------------------------------------------


def latest_run(con: duckdb.DuckDBPyConnection, model_name: str) -> pd.Series | None:
    """The newest ``ml.model_runs`` row of ``model_name`` (by ``trained_at``), or None."""
    r = io.read_df(
        con, "SELECT * FROM ml.model_runs WHERE model_name = ? ORDER BY trained_at DESC LIMIT 1", [model_name]
    )
    return None if r.empty else r.iloc[0]


def champion_run(con: duckdb.DuckDBPyConnection, model_name: str) -> pd.Series | None:
    """The champion's ``ml.model_runs`` row: the newest one with ``promoted``, or None."""
    r = io.read_df(
        con,
        "SELECT * FROM ml.model_runs WHERE model_name = ? AND promoted ORDER BY trained_at DESC LIMIT 1",
        [model_name],
    )
    return None if r.empty else r.iloc[0]


def latest_runs(con: duckdb.DuckDBPyConnection, model_names: list[str]) -> pd.DataFrame:
    """The newest ``ml.model_runs`` row of each of ``model_names`` (one row per model that has one)."""
    return io.read_df(
        con,
        """SELECT * FROM ml.model_runs WHERE model_name IN (SELECT unnest(?::VARCHAR[]))
        QUALIFY row_number() OVER (PARTITION BY model_name ORDER BY trained_at DESC) = 1""",
        [list(model_names)],
    )


def champion_run_ids(con: duckdb.DuckDBPyConnection, model_names: list[str]) -> list[str]:
    """MLflow run ids of every promoted ``ml.model_runs`` row of ``model_names``, sorted (a fingerprint input)."""
    rows = con.execute(
        "SELECT mlflow_run_id FROM ml.model_runs WHERE promoted AND model_name IN (SELECT unnest(?::VARCHAR[])) "
        "ORDER BY 1",
        [list(model_names)],
    ).fetchall()
    return [r[0] for r in rows]


def folds(con: duckdb.DuckDBPyConnection, mlflow_run_id: str) -> pd.DataFrame:
    """``ml.folds`` rows of one training run, by fold."""
    return io.read_df(con, "SELECT * FROM ml.folds WHERE mlflow_run_id = ? ORDER BY fold", [mlflow_run_id])


# ---- stored scores --------------------------------------------------------------------------------------------------


def baseline_predictions(con: duckdb.DuckDBPyConnection, model_name: str, timeframe: str) -> pd.DataFrame:
    """``symbol, ts, p_cal`` of the baseline's stored out-of-sample predictions at ``timeframe``."""
    return io.read_df(
        con,
        "SELECT symbol, ts, p_cal FROM ml.predictions WHERE model_name = ? AND timeframe = ?",
        [model_name, timeframe],
    )


def predictions_run(con: duckdb.DuckDBPyConnection, model_name: str) -> tuple[str | None, int]:
    """``(mlflow_run_id, rows)`` of the predictions stored for ``model_name`` (one run at a time)."""
    r = io.fetch_one(
        con.execute("SELECT any_value(mlflow_run_id), count(*) FROM ml.predictions WHERE model_name = ?", [model_name])
    )
    return (r[0], int(r[1])) if r else (None, 0)


def options_champion_scores(con: duckdb.DuckDBPyConnection, model_name: str) -> pd.DataFrame:
    """``date, p, model_version`` of the champion of ``model_name`` in ``ml.options_scores`` (empty without one)."""
    return io.read_df(
        con,
        """SELECT date, p_cal AS p, model_version FROM ml.options_scores WHERE mlflow_run_id =
        (SELECT mlflow_run_id FROM ml.model_runs WHERE model_name = ? AND promoted ORDER BY trained_at DESC LIMIT 1)""",
        [model_name],
    )


def setup_meta_scores(con: duckdb.DuckDBPyConnection, mlflow_run_id: str) -> pd.DataFrame:
    """``candidate_id, p_cal, fold`` stored by one meta-model training run."""
    return io.read_df(
        con, "SELECT candidate_id, p_cal, fold FROM ml.setup_meta_scores WHERE mlflow_run_id = ?", [mlflow_run_id]
    )


# ---- setup scanner ---------------------------------------------------------------------------------------------------


def valid_candidates(con: duckdb.DuckDBPyConnection, start_ts: int | None = None, ordered: bool = True) -> pd.DataFrame:
    """Valid ``signals.setup_candidates`` rows (``reject_reason IS NULL``) with ``ts >= start_ts``; sorted by symbol,
    timeframe, ts when ``ordered``, else in stored order (the scan's order)."""
    where = "" if start_ts is None else f" AND ts >= {int(start_ts)}"
    return io.read_df(
        con,
        "SELECT * FROM signals.setup_candidates WHERE reject_reason IS NULL"
        + where
        + (" ORDER BY symbol, timeframe, ts" if ordered else ""),
    )


def tuned_thresholds(con: duckdb.DuckDBPyConnection) -> pd.DataFrame | None:
    """Every ``signals.setup_thresholds`` version, or None before the first tuning."""
    return (
        io.read_df(con, "SELECT * FROM signals.setup_thresholds")
        if io.table_exists(con, "signals.setup_thresholds")
        else None
    )


def table(con: duckdb.DuckDBPyConnection, name: str, order_by: str | None = None) -> pd.DataFrame:
    """A whole table (``signals.setups``, ``features.onchain``, ...), optionally ordered by ``order_by``."""
    return io.read_df(con, f"SELECT * FROM {name}" + (f" ORDER BY {order_by}" if order_by else ""))


# ---- on-chain --------------------------------------------------------------------------------------------------------


def btc_price(con: duckdb.DuckDBPyConnection) -> pd.Series:
    """BTC's daily USD price from ``market.onchain_daily``, indexed by ``date`` (datetime64), sorted."""
    px = io.read_df(con, "SELECT date, price_usd FROM market.onchain_daily ORDER BY date")
    return px.assign(date=pd.to_datetime(px["date"])).set_index("date")["price_usd"]


def asset_fingerprints(assets: list[str]) -> str:
    """SQL selecting the recorded input fingerprints of ``assets`` (``ops.asset_inputs``), sorted: the input of
    :func:`warehouse.io.inputs_fingerprint` for an asset that depends on those assets."""
    names = ", ".join(repr(a) for a in sorted(assets))
    return f"SELECT asset, fingerprint FROM ops.asset_inputs WHERE asset IN ({names}) ORDER BY 1"


# ---- candle-layer slices (incremental features and regimes) ------------------------------------------------------------


def tail(
    con: duckdb.DuckDBPyConnection, table: str, cols: str, key: dict, after_ts: int | None, warmup: int
) -> pd.DataFrame:
    """Rows of one series (``key`` = exchange, symbol, timeframe) with ``ts > after_ts`` plus the ``warmup`` rows before
    them, sorted by ``ts`` (every row when ``after_ts`` is None): the input of an incremental recompute."""
    where = "exchange=? AND symbol=? AND timeframe=?"
    params = [key["exchange"], key["symbol"], key["timeframe"]]
    if after_ts is None:
        return io.read_df(con, f"SELECT {cols} FROM {table} WHERE {where} ORDER BY ts", params)
    return io.read_df(
        con,
        f"""SELECT {cols} FROM {table} WHERE {where} AND ts >= coalesce((
        SELECT min(ts) FROM (SELECT ts FROM {table} WHERE {where} AND ts <= ? ORDER BY ts DESC LIMIT {int(warmup)})), ?)
        ORDER BY ts""",
        params + params + [after_ts, after_ts + 1],
    )


def regime_state_before(con: duckdb.DuckDBPyConnection, key: dict, ts: int) -> tuple[str, int] | None:
    """``(trend_regime, regime_age_bars)`` of the series' last stored regime row before ``ts``, or None."""
    r = io.fetch_one(
        con.execute(
            "SELECT trend_regime, regime_age_bars FROM regimes.market WHERE exchange=? AND symbol=? AND timeframe=? "
            "AND ts < ? ORDER BY ts DESC LIMIT 1",
            [key["exchange"], key["symbol"], key["timeframe"], int(ts)],
        )
    )
    return (r[0], r[1] or 0) if r else None


def feature_null_ratio(con: duckdb.DuckDBPyConnection, exchange: str, columns: list[str]) -> pd.DataFrame:
    """One row: the share of NULLs of each feature column over ``features.technical`` of ``exchange``."""
    nulls = ", ".join(f"round(avg(({c} IS NULL)::INT), 5) AS {c}" for c in columns)
    return io.read_df(con, f"SELECT {nulls} FROM features.technical WHERE exchange = ?", [exchange])


def regime_distribution(con: duckdb.DuckDBPyConnection, exchange: str) -> pd.DataFrame:
    """Bars per timeframe × trend regime × volatility level in ``regimes.market``."""
    return io.read_df(
        con,
        "SELECT timeframe, trend_regime, volatility_level, count(*) AS bars FROM regimes.market "
        "WHERE exchange = ? GROUP BY ALL ORDER BY ALL",
        [exchange],
    )


def incomplete_periods(con: duckdb.DuckDBPyConnection, exchange: str) -> int:
    """``market.ohlcv`` periods of ``exchange`` flagged with missing source bars (``bar_count < expected_bars``)."""
    return int(
        con.execute(
            "SELECT count(*) FROM market.ohlcv WHERE bar_count < expected_bars AND exchange = ?", [exchange]
        ).fetchone()[0]
    )


def onchain_metrics_summary(con: duckdb.DuckDBPyConnection) -> tuple[int, pd.DataFrame]:
    """``(rows, per source: rows, first, last date, metrics)`` of ``raw.onchain_metrics``."""
    total = int(con.execute("SELECT count(*) FROM raw.onchain_metrics").fetchone()[0])
    per = con.execute(
        "SELECT source, count(*) AS rows, min(date) AS first, max(date) AS last, count(DISTINCT metric) "
        "AS metrics FROM raw.onchain_metrics GROUP BY 1 ORDER BY 1"
    ).df()
    return total, per


def onchain_source_rows(con: duckdb.DuckDBPyConnection, source: str) -> pd.DataFrame:
    """Stored ``raw.onchain_metrics`` rows (``date, source, metric, value``) of one vendor source."""
    return io.read_df(
        con,
        "SELECT date, source, metric, value FROM raw.onchain_metrics WHERE source = ? ORDER BY date, metric",
        [source],
    )


def onchain_withdrawn(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """``raw.onchain_withdrawn``: values a re-read vendor file no longer has, kept and flagged (by date)."""
    return io.read_df(con, "SELECT * FROM raw.onchain_withdrawn ORDER BY date, source, metric")


def taken_option_trades(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Taken ``signals.options_trades`` rows with their day's ``state``, by date."""
    return io.read_df(
        con,
        "SELECT t.*, d.state FROM signals.options_trades t JOIN signals.options_daily d USING (date) "
        "WHERE t.cooldown_status = 'taken' ORDER BY date",
    )


def slice_extent(con: duckdb.DuckDBPyConnection, table: str, exchange: str) -> pd.DataFrame:
    """Per stored ``(symbol, timeframe)`` slice of a candle-keyed table: ``rows``, ``first_ts``, ``last_ts`` (ms).

    One scan (partition metadata of ``features.technical`` / ``regimes.market``, issue 14 item 3)."""
    return con.execute(
        f"SELECT symbol, timeframe, count(*) AS rows, min(ts) AS first_ts, max(ts) AS last_ts FROM {table} "
        "WHERE exchange = ? GROUP BY ALL ORDER BY ALL",
        [exchange],
    ).df()


# ---- live operations (issue 16): the daily options decision, the health checks --------------------------------------


def options_decision(con: duckdb.DuckDBPyConnection, model_names: dict[str, str]) -> dict | None:
    """What the latest day's options decision block is made of, or None when ``signals.options_daily`` is empty:
    ``row`` (that day's ``signals.options_daily`` row, Series), ``trades`` (its ``signals.options_trades`` rows by
    ``trade_type``), ``last`` (that day, ``YYYY-MM-DD``), ``ready`` (its ``available_at``), ``features``
    (``features.onchain`` up to that day, only read when an indicator is unavailable, else empty) and ``candidates``
    (per score without a champion value, the latest candidate's ``(p_cal, model_version, promotion_reasons)`` of the
    day or None; ``model_names``: ``options_desk.models.names``)."""
    from pipeline.core.options_explain import is_unavailable

    d = io.read_df(con, "SELECT * FROM signals.options_daily ORDER BY date DESC LIMIT 1")
    if d.empty:
        return None
    r = d.iloc[0]
    day = str(pd.Timestamp(r["date"]).date())
    trades = io.read_df(con, "SELECT * FROM signals.options_trades WHERE date = ? ORDER BY trade_type", [day])
    features = (
        io.read_df(con, "SELECT * FROM features.onchain WHERE date <= ? ORDER BY date", [day])
        if is_unavailable(r)
        else pd.DataFrame()
    )
    candidates = {}
    for t, name in model_names.items():
        if r.get(t) is not None and pd.notna(r.get(t)):
            continue
        c = io.read_df(
            con,
            """SELECT s.p_cal, r.model_version, r.promotion_reasons FROM ml.options_scores s JOIN ml.model_runs r
               USING (mlflow_run_id) WHERE s.model_name = ? AND s.date = ? ORDER BY r.trained_at DESC LIMIT 1""",
            [name, day],
        )
        candidates[t] = None if c.empty else tuple(c[["p_cal", "model_version", "promotion_reasons"]].iloc[0])
    return {
        "row": r,
        "trades": trades,
        "last": day,
        "ready": r.get("available_at"),
        "features": features,
        "candidates": candidates,
    }


def computed_at_ms(con: duckdb.DuckDBPyConnection, asset: str) -> int | None:
    """Epoch ms (wall clock) when ``asset`` was last recomputed from new inputs (``ops.asset_inputs.updated_at``,
    naive UTC), or None."""
    r = io.fetch_one(con.execute("SELECT updated_at FROM ops.asset_inputs WHERE asset = ?", [asset]))
    return None if r is None or r[0] is None else int(pd.Timestamp(r[0]).value // 10**6)


# ---- alpha portfolio (issue 18) ----------------------------------------------------------------------------------------


def alpha_scores(con: duckdb.DuckDBPyConnection, exchange: str) -> pd.DataFrame:
    """``signals.alpha_scores`` of ``exchange`` (``symbol, ts, regime, exp_ret_net, rvol_24h, atr_14, close, tier,
    source, model_version``) sorted by ``ts, symbol``; empty when the table does not exist yet."""
    if not io.table_exists(con, "signals.alpha_scores"):
        return pd.DataFrame(columns=["symbol", "ts", "regime", "exp_ret_net", "rvol_24h", "atr_14", "close", "source"])
    return io.read_df(
        con,
        """SELECT symbol, ts, regime, exp_ret_net, rvol_24h, atr_14, close, tier, source, model_version
        FROM signals.alpha_scores WHERE exchange = ? ORDER BY ts, symbol""",
        [exchange],
    )


def candles_long(con: duckdb.DuckDBPyConnection, exchange: str, symbols: list[str], timeframe: str, start_ts: int):
    """``market.ohlcv`` candles ``symbol, ts, open, high, low, close`` of ``symbols`` × ``timeframe`` from
    ``start_ts`` (epoch ms) on, sorted by ``ts, symbol``."""
    return io.read_df(
        con,
        """SELECT symbol, ts, open, high, low, close FROM market.ohlcv
        WHERE exchange = ? AND timeframe = ? AND ts >= ? AND list_contains(?, symbol) ORDER BY ts, symbol""",
        [exchange, timeframe, int(start_ts), list(symbols)],
    )


def alpha_targets(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Every ``signals.alpha_targets`` row sorted by ``ts, symbol``."""
    return io.read_df(con, "SELECT * EXCLUDE (open_time) FROM signals.alpha_targets ORDER BY ts, symbol")


def latest_backtest(con: duckdb.DuckDBPyConnection, desk: str) -> tuple[str, dict] | None:
    """``(run_id, metrics)`` of ``desk``'s newest ``backtest.runs`` row (e.g. the research baseline), or None."""
    r = io.fetch_one(
        con.execute("SELECT run_id, metrics FROM backtest.runs WHERE desk = ? ORDER BY created_at DESC LIMIT 1", [desk])
    )
    return None if r is None else (str(r[0]), json.loads(r[1] or "{}"))


def candles(con: duckdb.DuckDBPyConnection, exchange: str, symbol: str, timeframe: str) -> pd.DataFrame:
    """``ts, open, high, low, close, volume`` of one ``market.ohlcv`` series, sorted by ``ts``."""
    return io.read_df(
        con,
        "SELECT ts, open, high, low, close, volume FROM market.ohlcv WHERE exchange = ? AND symbol = ? AND timeframe = ? "
        "ORDER BY ts",
        [exchange, symbol, timeframe],
    )


def alpha_features(con: duckdb.DuckDBPyConnection, exchange: str, timeframe: str = "1h") -> pd.DataFrame:
    """Every ``features.alpha`` row of ``exchange`` / ``timeframe`` without the key's constant columns
    (``symbol, ts`` + features + ``close``), sorted by ``symbol, ts``."""
    return io.read_df(
        con,
        "SELECT * EXCLUDE (exchange, timeframe, open_time) FROM features.alpha WHERE exchange = ? AND timeframe = ? "
        "ORDER BY symbol, ts",
        [exchange, timeframe],
    )


def alpha_regime(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """``regimes.alpha_market`` (``ts, regime`` and the rule's inputs), sorted by ``ts``."""
    return io.read_df(con, "SELECT * EXCLUDE (open_time) FROM regimes.alpha_market ORDER BY ts")


def alpha_predictions(con: duckdb.DuckDBPyConnection, model_name: str, mlflow_run_id: str) -> pd.DataFrame:
    """One run's point-in-time predictions in ``ml.predictions``: ``symbol, ts, fold, pred`` (= ``p_raw``) and
    ``pred_cal`` (= ``p_cal``, the scaled expected vol-normalised return), sorted by ``symbol, ts``."""
    return io.read_df(
        con,
        "SELECT symbol, ts, fold, p_raw AS pred, p_cal AS pred_cal FROM ml.predictions WHERE model_name = ? "
        "AND mlflow_run_id = ? ORDER BY symbol, ts",
        [model_name, mlflow_run_id],
    )
