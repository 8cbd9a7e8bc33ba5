"""Group ``setup_scanner``: Fibonacci / AVWAP / ATR candidates with trade plans and their simulated outcomes.

Pure code: :mod:`pipeline.core.setups` (pivots, levels, AVWAP, plans, risk, outcomes) and
:mod:`pipeline.core.setup_gating` (EV, overrides, tuner). This asset reads candles, ATR and regimes for every
scanned symbol × timeframe, calls them and writes ``signals.setup_candidates``: every candidate with its plan, its
rejection reason (NULL = valid) and the outcome it would have had if taken on its own (the meta-model's label).
The whole table is recomputed when its inputs or the configuration change (about 20 series, seconds), else skipped.

**Incremental scan** (``incremental: true``, the live job's run config; issue 16, speed): per series only the bars
after the last scanned bar are scanned, plus the candidates whose outcome was still ``OPEN`` (their outcome moves
with the new bars) and the last ``exchange.overlap_candles`` bars (the exchange may have revised them), over a window
of the newest bars long enough that every leg of those bars is the whole series' one
(:func:`pipeline.core.setups.pivots_settled`; the window doubles until it is, or is the whole series). Those rows
replace the series' rows from the first rescanned bar on. It falls back to the full scan when a series has no mark
of a scan with the same configuration (``ops.scan_marks``), when the bars up to the mark changed in number, or with
an ATR period other than the stored ATR(14) (Wilder's smoothing carries the whole history). Rows equal the full
scan's up to floating-point rounding of the anchored VWAP sums (its running sums start at the window's first bar
instead of the series' first: relative differences about 1e-13, docs/decisions.md).
"""

import dagster as dg
import numpy as np
import pandas as pd

from assets.checks import count_result
from assets.common import POOL, if_unchanged, md_table, rounded
from assets.keys import FEATURES, GROUP_SETUPS, PLANS_CONSISTENT, REGIMES, SETUP_CANDIDATES
from pipeline.config import settings
from pipeline.core.setups import candidates, pivots_settled, plan_outcomes
from pipeline.core.validity import inconsistent_plans
from resources.warehouse import WarehouseResource
from warehouse import io, readers

CODE_VERSION = "3"  # 3: outcomes obey the gap rule (issue 12 item 11)
TABLE = "signals.setup_candidates"
#: newest bars read first by the incremental scan (doubled until the legs are settled)
TAIL_BARS = 2048


class ScanConfig(dg.Config):
    """Run config of ``signals/setup_candidates``: ``incremental`` rescans only the new bars (the live job's)."""

    incremental: bool = False


def scan_series(bars: pd.DataFrame, sc) -> pd.DataFrame:
    """Candidates + independent outcomes of one series under the ``setup_scanner`` section ``sc`` (pure wiring)."""
    c = candidates(bars, sc.signals, sc.risk, bars["trend_regime"].to_numpy(), sc.costs)
    if c.empty:
        return c
    o = plan_outcomes(
        bars,
        c,
        sc.signals,
        costs=sc.costs,
        tp1_fraction=sc.execution.tp1_fraction,
        breakeven_after_tp1=sc.execution.breakeven_after_tp1,
        trail_atr=sc.execution.trail_atr,
    )
    reg = bars.iloc[c["bar"].to_numpy()]
    return pd.concat([c, o], axis=1).assign(
        trend_regime=reg["trend_regime"].to_numpy(), volatility_level=reg["volatility_level"].to_numpy()
    )


def _static_fingerprint(con, sc, symbols: list[str]) -> str:
    """What a scan mark is valid for: the configuration, the symbols, this module's and the candle layers' code."""
    return io.inputs_fingerprint(
        con,
        "SELECT asset, fingerprint FROM ops.asset_inputs WHERE asset LIKE 'code:%' ORDER BY ALL",
        extra=sc.model_dump_json() + ",".join(symbols) + CODE_VERSION,
    )


def _fingerprint(con, sc, symbols: list[str], tfs: list[str]) -> str:
    tf_list = ", ".join(repr(t) for t in tfs)
    return io.inputs_fingerprint(
        con,
        f"""SELECT symbol, timeframe, max(ts)::VARCHAR, count(*) FROM features.technical
                 WHERE timeframe IN ({tf_list}) GROUP BY ALL UNION ALL SELECT asset, fingerprint, epoch_ms(updated_at)::VARCHAR, 0
                 FROM ops.asset_inputs WHERE asset LIKE 'code:%' ORDER BY ALL""",
        extra=sc.model_dump_json() + ",".join(symbols) + CODE_VERSION,
    )


def _labelled(s: pd.DataFrame, ex: str, sym: str, tf: str) -> pd.DataFrame:
    out = s.drop(columns=["bar"]).assign(exchange=ex, symbol=sym, timeframe=tf)
    out["candidate_id"] = (
        out["symbol"] + "|" + out["timeframe"] + "|" + out["ts"].astype(str) + "|" + out["side"].astype(str)
    )
    return out


def scan(con, sc, ex: str, symbols: list[str], tfs: list[str], marks: list | None = None) -> pd.DataFrame:
    """Every candidate of every scanned series (series under 100 bars are skipped), with its ``candidate_id``
    (``symbol|timeframe|ts|side``). ``marks``: a list that receives each series' scan mark
    ``(symbol, timeframe, last_ts, bars)``."""
    parts = []
    for sym in symbols:
        for tf in tfs:
            b = readers.bars(con, ex, sym, tf)
            if marks is not None:
                marks.append((sym, tf, int(b["ts"].iloc[-1]) if len(b) else -1, len(b)))
            if len(b) < 100:
                continue
            s = scan_series(b, sc)
            if len(s):
                parts.append(_labelled(s, ex, sym, tf))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def rescan_series(
    tail, last_ts: int, open_ts: int | None, sc, overlap: int, first_read: int = TAIL_BARS
) -> tuple[pd.DataFrame, int | None, int, int]:
    """One series' incremental scan: ``(candidates with ts >= ts_from, ts_from, newest ts, bars)``.

    Args:
        tail: ``tail(n)`` returns the series' newest ``n`` bars (:func:`warehouse.readers.bars_tail`).
        last_ts: the newest bar the previous scan saw. open_ts: its oldest candidate still ``OPEN`` (None: none).
        overlap: bars before the first new one rescanned as well (revised candles).
        first_read: bars of the first read (doubled until the legs are settled).

    ``ts_from`` is the first rescanned bar: the earliest of the first new bar minus ``overlap`` bars and ``open_ts``;
    None when no bar is newer than ``last_ts`` (nothing to do). The frame has :func:`scan_series`' columns and
    ``bar`` (position in the window read); the last item is the window's length (the bars read).
    """
    n = first_read
    while True:
        b = tail(n)
        ts = b["ts"].to_numpy(np.int64)
        whole = len(b) < n
        new = np.flatnonzero(ts > last_ts)
        if not len(new):
            return pd.DataFrame(), None, last_ts, len(b)
        first = max(int(new[0]) - overlap, 0)
        ts_from = int(ts[first]) if open_ts is None else min(int(ts[first]), int(open_ts))
        i0 = int(np.searchsorted(ts, ts_from))
        p = sc.signals
        settled = ts_from >= ts[0] and pivots_settled(
            b["high"].to_numpy(float), b["low"].to_numpy(float), p.pivot_window, p.fibo_anchors, i0 - 1
        )
        if whole or settled:
            break
        n *= 2
    if len(b) < 100:
        return pd.DataFrame(), ts_from, int(ts[-1]), len(b)
    s = scan_series(b, sc)
    return (s[s["ts"] >= ts_from] if len(s) else s), ts_from, int(ts[-1]), len(b)


def scan_incremental(con, sc, ex: str, symbols: list[str], tfs: list[str], static_fp: str, overlap: int):
    """The incremental scan written to ``signals.setup_candidates`` series by series: ``{"series": n, "rows": m,
    "new": rescanned rows}``, or None (nothing written) when the full scan is needed (see the module docstring)."""
    if sc.signals.atr_period != 14 or not io.table_exists(con, TABLE):
        return None
    marks = readers.scan_marks(con, TABLE, ex).set_index(["symbol", "timeframe"])
    for sym in symbols:
        for tf in tfs:
            if (sym, tf) not in marks.index or marks.loc[(sym, tf), "fingerprint"] != static_fp:
                return None
            m = marks.loc[(sym, tf)]
            if m["last_ts"] >= 0 and readers.bar_count(con, ex, sym, tf, int(m["last_ts"])) != int(m["bars"]):
                return None
    parts, rows = [], 0
    newest = io.watermarks(con, "features.technical", ex)
    for sym in symbols:
        for tf in tfs:
            m = marks.loc[(sym, tf)]
            if newest.get((sym, tf), -1) <= m["last_ts"]:  # no new bar: nothing moved (OPEN outcomes neither)
                continue
            key = {"exchange": ex, "symbol": sym, "timeframe": tf}
            open_ts = readers.oldest_open_candidate(con, ex, sym, tf)
            s, ts_from, last, _ = rescan_series(
                lambda n, sym=sym, tf=tf: readers.bars_tail(con, ex, sym, tf, n),
                int(m["last_ts"]),
                open_ts,
                sc,
                overlap,
            )
            if ts_from is None:
                continue
            out = _labelled(s, ex, sym, tf) if len(s) else pd.DataFrame()
            bars = readers.bar_count(con, ex, sym, tf, last)
            with io.transaction(con):
                io.replace_slice(con, TABLE, out, key, ts_from=ts_from, allow_empty=True)
                _write_marks(con, ex, [(sym, tf, last, bars)], static_fp)
            parts.append(out)
            rows += len(out)
    new = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    return {"series": len(parts), "new": new}


def _incremental_result(con, inc: dict, max_leverage: float) -> dg.MaterializeResult:
    """The incremental scan's metadata (the rescanned rows; the plans check on them: older rows were checked when
    written)."""
    new = inc["new"]
    bad = inconsistent_plans(new[new["reject_reason"].isna()], max_leverage) if len(new) else 0
    total = io.fetch_one(con.execute(f"SELECT count(*) FROM {TABLE}"))[0]
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": int(total),
            "mode": "incremental",
            "series_rescanned": inc["series"],
            "rows_rescanned": len(new),
        },
        check_results=[count_result(PLANS_CONSISTENT, bad, "inconsistent_plans")],
    )


def _write_marks(con, ex: str, marks: list, static_fp: str, replace: bool = False) -> None:
    """Upsert scan marks ``(symbol, timeframe, last_ts, bars)``; ``replace`` first drops every mark of the scan."""
    if replace:
        con.execute("DELETE FROM ops.scan_marks WHERE asset = ? AND exchange = ?", [TABLE, ex])
    df = pd.DataFrame(marks, columns=["symbol", "timeframe", "last_ts", "bars"])
    io.upsert(
        con,
        "ops.scan_marks",
        df.assign(asset=TABLE, exchange=ex, fingerprint=static_fp, updated_at=io.now_utc()),
        ["asset", "exchange", "symbol", "timeframe"],
    )


def _report(out: pd.DataFrame) -> dict:
    valid = out[out["reject_reason"].isna()]
    closed = valid[valid["win"].notna()]
    summary = (
        closed.groupby(["symbol", "timeframe"])
        .agg(candidates=("win", "size"), win_rate=("win", "mean"), avg_net_pct=("net_pct", "mean"))
        .reset_index()
    )
    return {
        "dagster/row_count": len(out),
        "valid": len(valid),
        "rejected": md_table(out["reject_reason"].value_counts().rename_axis("reason").reset_index()),
        "outcomes": md_table(valid["status"].value_counts().rename_axis("status").reset_index()),
        "ungated_by_series": md_table(summary, 40),
        "ungated_win_rate": float(closed["win"].mean()) if len(closed) else None,
        "ungated_avg_net_pct": float(closed["net_pct"].mean()) if len(closed) else None,
    }


@dg.asset(
    key=SETUP_CANDIDATES,
    group_name=GROUP_SETUPS,
    pool=POOL,
    deps=[FEATURES, REGIMES],
    kinds={"duckdb", "numba"},
    code_version=CODE_VERSION,
    check_specs=[
        dg.AssetCheckSpec(
            PLANS_CONSISTENT,
            asset=SETUP_CANDIDATES,
            blocking=True,
            description="Valid plans: SL on the losing side, TP1 beyond entry, TP2 beyond TP1, "
            "0 < leverage <= max_leverage, positive size.",
        )
    ],
    description="Every Fibonacci retracement + AVWAP confluence candidate per symbol x timeframe x closed candle with "
    "its full trade plan (entry, SL, TP1/TP2, size, leverage, liquidation, net TP1), the rejection reason, "
    "and the outcome if taken alone (TP / SL / TP1_TRAIL / TIMEOUT / EXPIRED / OPEN, net %).",
)
def signals_setup_candidates(
    context: dg.AssetExecutionContext, config: ScanConfig, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    cfg = settings()
    sc, ex = cfg.setup_scanner, cfg.exchange.id
    symbols = sc.symbols or cfg.universe.symbols
    tfs = [t for t in sc.timeframes if t in cfg.universe.timeframes]
    with warehouse.connect() as con:
        fp = _fingerprint(con, sc, symbols, tfs)
        if skip := if_unchanged(context, con, TABLE, fp, "inputs unchanged; not rescanned", checks=(PLANS_CONSISTENT,)):
            return skip
        static = _static_fingerprint(con, sc, symbols)
        inc = (
            scan_incremental(con, sc, ex, symbols, tfs, static, cfg.exchange.overlap_candles)
            if config.incremental
            else None
        )
        if inc is not None:
            io.record_inputs(con, TABLE, fp)
            return _incremental_result(con, inc, sc.risk.max_leverage)
        marks: list = []
        out = scan(con, sc, ex, symbols, tfs, marks)
        if out.empty:
            raise dg.Failure("no setup candidates in any series; check setup_scanner.timeframes and the features")
        with io.transaction(con):
            io.replace_table(con, TABLE, out)
            io.record_inputs(con, TABLE, fp)
            _write_marks(con, ex, marks, static, replace=True)
    bad = inconsistent_plans(out[out["reject_reason"].isna()], sc.risk.max_leverage)
    return dg.MaterializeResult(
        metadata=rounded({**_report(out), "mode": "full"}),
        check_results=[count_result(PLANS_CONSISTENT, bad, "inconsistent_plans")],
    )
