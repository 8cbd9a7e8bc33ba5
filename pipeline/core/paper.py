"""Paper trading (pure): resume a desk's engine book on the new closed bars and the logged signals.

Issue 16 "Signal log and paper trading". A paper book is exactly :func:`pipeline.core.engine.run` resumed from its
stored :class:`~pipeline.core.engine.EngineState`; its inputs are built by the backtest's own
:func:`pipeline.core.setup_signals.series_input` (one signal per bar, per-signal SL/TP/leverage/liquidation arrays)
with the backtest's :func:`pipeline.core.setup_signals.execution_params`, so a paper book and a backtest over the same
candles and signals are the same run cut into steps (the engine's resume property: same trades, same per-bar equity).

Time order. A shared book walks one time grid: the finest of its series' timeframes (:func:`grid`, 15m). A coarser
series (1h) runs on its symbol's 15m candles (:func:`pipeline.core.setup_signals.on_base_bars`; its plans sent on the
15m candle that closes with their 1h candle), so every fill, stop and sizing decision is taken at a 15m close on what
is known then. A paper step advances the whole book to one **watermark** ``W`` (:func:`watermark`): the newest base
candle every series has closed, a 1h series counting as closed up to the 15m candle that closes with its newest 1h
candle (its plans are scanned by then). A 15m series' fills are computed at most 45 minutes after their own close
(while the hour's 1h candle is open), and a later step never runs a bar older than one already run, which is the
condition for ``steps == one run``. A sleeves book runs each series on its own candles.

Signal ids are the setup scanner's ``candidate_id``; the engine's trade and order rows are mapped back to them by
``(asset, signal_ts)`` (one signal is sent per series and bar).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field

from pipeline.core.engine import EngineResult, EngineState, Limits, SimParams, run, split_rows
from pipeline.core.params import Params
from pipeline.core.setup_signals import book_params, on_base_bars, restore_signal_ts, series_input
from pipeline.core.timeframes import timeframe_ms

#: columns of a plan in the payload of ``signals.log`` (the setup scanner's ``signals.setups`` row)
PLAN_FIELDS = (
    "side",
    "entry_type",
    "entry",
    "sl",
    "tp1",
    "tp2",
    "leverage",
    "liq_price",
    "qty",
    "notional",
    "p_win",
    "ev_pct",
    "threshold",
    "threshold_source",
    "why",
    "gate_mode",
)
#: order-log statuses written by the paper step itself (the engine's own are ``EXIT_REASONS`` of non-filled rows)
SENT, SAME_BAR, LATE = "sent", "same_bar", "late"


class PaperParams(Params):
    """``paper``: the paper books of the desks (issue 16)."""

    initial_cash: float = Field(100_000.0, gt=0, description="Capital of each desk's paper book, quote currency.")
    start: str | None = Field(
        None,
        description="UTC date/time of the first paper bar (ISO); null = the candle of the desk's oldest logged "
        "signal (a fresh book starts at its first signal).",
    )
    book: Literal["shared", "sleeves"] = Field(
        "shared",
        description="shared = one cash account for every symbol x timeframe; sleeves = one equal account each.",
    )
    max_positions: int | None = Field(
        None, ge=1, description="Shared book: most concurrent positions (null = one per symbol x timeframe)."
    )
    log_recent_candles: int = Field(
        4,
        ge=1,
        description="signals.log takes a gated signal only while its candle is among the newest N candles of its "
        "series (a cold backtest does not log years of history as if just seen).",
    )


def series_names(symbols: list[str], timeframes: list[str]) -> list[str]:
    """The book's assets ``"SYM|tf"`` in (symbol, timeframe) order (the backtest's series order)."""
    return [f"{s}|{tf}" for s, tf in sorted((s, tf) for s in symbols for tf in timeframes)]


def config_hash(*parts) -> str:
    """Short sha256 of JSON-dumped configuration parts (``signals.log.config_hash``, the paper book's identity)."""
    blob = json.dumps([p.model_dump() if hasattr(p, "model_dump") else p for p in parts], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def start_ms(p: PaperParams, oldest_signal_ts: int | None) -> int | None:
    """First paper bar (epoch ms): ``p.start`` or the oldest logged signal's candle; None = nothing to start from."""
    if p.start is not None:
        return int(pd.Timestamp(p.start, tz="UTC").value // 1_000_000)
    return oldest_signal_ts


def new_state(names: list[str], p: PaperParams) -> EngineState:
    """A fresh book: one account of ``initial_cash`` (shared) or ``initial_cash / N`` per series (sleeves)."""
    if p.book == "sleeves":
        return EngineState.new(names, p.initial_cash / max(1, len(names)), np.arange(len(names)))
    return EngineState.new(names, p.initial_cash)


def limits(names: list[str], p: PaperParams) -> Limits:
    """The backtest's limit: at most ``max_positions`` open (null = one per series)."""
    return Limits(max_positions=(p.max_positions or max(1, len(names))) if p.book == "shared" else 0)


def grid(names: list[str], p: PaperParams) -> str | None:
    """The base timeframe a shared book walks (the finest of its series'), None for a sleeves book (each series on
    its own candles)."""
    if p.book != "shared" or not names:
        return None
    return min((n.split("|")[1] for n in names), key=timeframe_ms)


def _shift(name: str, base: str | None) -> int:
    """ms from a series' candle open to the open of the base candle that closes with it (0 on its own candles)."""
    return 0 if base is None else timeframe_ms(name.split("|")[1]) - timeframe_ms(base)


def needed_series(names: list[str], p: PaperParams) -> list[tuple[str, str]]:
    """``(symbol, timeframe)`` whose candles a step reads: every series, and on a shared book each symbol's base."""
    base = grid(names, p)
    keys = {tuple(n.split("|")) for n in names}
    if base is not None:
        keys |= {(s, base) for s, _ in keys}
    return sorted(keys)


def read_from(after: int, names: list[str]) -> int:
    """Oldest candle time a step after ``after`` reads (a coarser series' ATR comes from its last closed candle)."""
    return after - max((timeframe_ms(n.split("|")[1]) for n in names), default=0)


def book_bars(
    names: list[str], p: PaperParams, got: dict[tuple[str, str], pd.DataFrame], after: int
) -> dict[str, pd.DataFrame]:
    """Each series' bars of a step (``ts > after``) from the candles read (:func:`needed_series` from
    :func:`read_from`): its own, or on a shared book its symbol's base candles with its own ATR
    (:func:`pipeline.core.setup_signals.on_base_bars`)."""
    base = grid(names, p)
    out = {}
    for n in names:
        sym, tf = n.split("|")
        own = got.get((sym, tf))
        if base is None or tf == base:
            b = own
        else:
            b = got.get((sym, base))
            b = None if b is None else on_base_bars(b, own, timeframe_ms(tf), timeframe_ms(base))
        if b is not None:
            out[n] = b[b["ts"] > after].reset_index(drop=True)
    return out


def watermark(latest: dict[str, int], base: str | None = None) -> int | None:
    """Newest bar time every series has closed (epoch ms): the min over series ``"SYM|tf"`` with data of their
    newest candle ``ts``, on a ``base`` grid that of the base candle closing with it (``ts + tf - base``)."""
    return min(v + _shift(n, base) for n, v in latest.items()) if latest else None


def plans(log: pd.DataFrame) -> pd.DataFrame:
    """``signals.log`` rows → plan rows (``candidate_id, symbol, timeframe, ts`` + :data:`PLAN_FIELDS` and
    ``score``: EV % or p(win) by the signal's gate mode, the backtest's same-bar tie-break)."""
    if log.empty:
        return pd.DataFrame(columns=["candidate_id", "symbol", "timeframe", "ts", *PLAN_FIELDS, "score"])
    pl = pd.DataFrame([json.loads(v) if isinstance(v, str) else v for v in log["payload"]], index=log.index)
    out = pd.concat(
        [log[["signal_id", "symbol", "timeframe", "ts"]].rename(columns={"signal_id": "candidate_id"}), pl], axis=1
    )
    out["ts"] = out["ts"].astype(np.int64)
    out["side"] = out["side"].astype(np.int64)
    for c in ("entry", "sl", "tp1", "tp2", "leverage", "liq_price", "p_win", "ev_pct"):
        out[c] = pd.to_numeric(out[c], errors="coerce").astype(float)
    out["score"] = np.where(out["gate_mode"] == "p_win", out["p_win"], out["ev_pct"])
    return out


@dataclasses.dataclass
class StepResult:
    """One paper step: the engine result and the signal rows it sent (``candidate_id, asset, ts, status``)."""

    result: EngineResult
    sent: pd.DataFrame


def advance(
    state: EngineState, bars: dict[str, pd.DataFrame], signals: pd.DataFrame, params: SimParams, p: PaperParams
) -> StepResult:
    """Resume ``state`` on the new bars of each series and the signals on those bars (pure; work ∝ new bars).

    Args:
        state: the book after its last step (:func:`new_state` for the first); not modified.
        bars: ``"SYM|tf"`` → the series' bars after the state's watermark (:func:`book_bars`: ``ts, open, high, low,
            close, atr``, sorted); every series of ``state.names`` may be absent or empty.
        signals: :func:`plans` rows whose candle is one of those bars.
        params: :func:`pipeline.core.setup_signals.execution_params` (its ``init_cash`` is ignored: the state's).

    Returns:
        :class:`StepResult`; ``result.state`` is the book after the step; ``sent`` rows carry ``bar_ts``, the bar
        the signal was sent on (its own candle, or on a shared book the base candle closing with it).
    """
    from pipeline.core.engine import AssetInput

    inputs, plist, sent = {}, [], []
    base = grid(state.names, p)
    key = signals["symbol"] + "|" + signals["timeframe"] if len(signals) else pd.Series(dtype=object)
    for name in state.names:
        shift = _shift(name, base)
        plist.append(book_params(params, shift + timeframe_ms(base), timeframe_ms(base)) if base else params)
        b = bars.get(name)
        if b is None or b.empty:
            b = pd.DataFrame({k: pd.Series(dtype=np.float64) for k in ("open", "high", "low", "close", "atr")})
            b.insert(0, "ts", pd.Series(dtype=np.int64))
            inputs[name] = AssetInput(b, np.zeros(0, np.int8))
            continue
        g, one, x = series_input(b.reset_index(drop=True), signals[key == name], "score", shift)
        inputs[name] = x
        if len(g):
            st = np.where(g["candidate_id"].isin(one["candidate_id"]), SENT, SAME_BAR)
            sent.append(
                pd.DataFrame(
                    {
                        "candidate_id": g["candidate_id"],
                        "asset": name,
                        "ts": g["ts"],
                        "bar_ts": g["bar_ts"],
                        "status": st,
                    }
                )
            )
    res = run(inputs, plist, state=state, limits=limits(state.names, p), record_skipped=True)
    cols = ["candidate_id", "asset", "ts", "bar_ts", "status"]
    return StepResult(res, pd.concat(sent, ignore_index=True) if sent else pd.DataFrame(columns=cols))


def history(res: EngineResult, sent: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """``(closed trades, non-filled order outcomes, open positions)`` of a step: the first two are events (appended
    to the paper log), the last the end-of-step snapshot (replaced each step; pending orders are in the state).
    With ``sent`` (``asset, bar_ts, ts`` of the signals sent, this step's and earlier ones'), ``signal_ts`` is each
    plan's own candle time (:func:`pipeline.core.setup_signals.restore_signal_ts`); without, the bar it was sent on."""
    hist, snap = split_rows(res.rows)
    h = dataclasses.replace(res, rows=hist)
    s = dataclasses.replace(res, rows=snap)
    out = (h.trades(), h.orders(), s.trades())
    if sent is None:
        return out
    sent = sent[sent["status"] == SENT] if "status" in sent else sent
    return tuple(restore_signal_ts(f, sent) for f in out)


def equity_rows(res: EngineResult) -> pd.DataFrame:
    """Per bar time of the step: ``ts, equity, cash, position_value, gross_exposure, n_positions, engine_state``."""
    return res.book[["ts", "equity", "cash", "position_value", "gross_exposure", "n_positions", "engine_state"]]


#: trade columns compared by :func:`compare_books` (exact for ints and reasons; floats within ``tol``)
TRADE_KEY = ["asset", "signal_ts", "entry_ts", "exit_ts", "direction", "exit_reason"]
TRADE_VALUES = ["entry_price", "exit_price", "units", "fees", "pnl", "avg_exit_price", "leverage"]


def compare_books(
    paper_trades: pd.DataFrame, sim_trades: pd.DataFrame, paper_eq: pd.DataFrame, sim_eq: pd.DataFrame, tol: float
) -> dict:
    """Paper book versus one re-simulation: ``{"differing_trades", "paper_trades", "sim_trades",
    "equity_max_abs_diff", "equity_bars_missing", "passed"}`` (trades matched on :data:`TRADE_KEY`, values within
    ``tol`` relative to 1 + |value|; equity joined on ``ts``)."""

    def keyed(t):
        t = t[TRADE_KEY + TRADE_VALUES].copy()
        for c in ("signal_ts", "entry_ts", "exit_ts", "direction"):
            t[c] = t[c].astype(np.int64)
        return t.sort_values(TRADE_KEY, kind="stable").reset_index(drop=True)

    a, b = keyed(paper_trades), keyed(sim_trades)
    m = a.merge(b, on=TRADE_KEY, how="outer", suffixes=("_p", "_s"), indicator=True)
    bad = m["_merge"] != "both"
    for c in TRADE_VALUES:
        x, y = m[f"{c}_p"].to_numpy(float), m[f"{c}_s"].to_numpy(float)
        same = (np.isnan(x) & np.isnan(y)) | (np.abs(x - y) <= tol * (1 + np.abs(y)))
        bad |= ~same
    e = paper_eq[["ts", "equity"]].merge(sim_eq[["ts", "equity"]], on="ts", how="outer", suffixes=("_p", "_s"))
    missing = int(e[["equity_p", "equity_s"]].isna().any(axis=1).sum())
    diff = float(np.nanmax(np.abs(e["equity_p"] - e["equity_s"]))) if len(e) else 0.0
    n_bad = int(bad.sum())
    return {
        "differing_trades": n_bad,
        "paper_trades": len(a),
        "sim_trades": len(b),
        "equity_max_abs_diff": diff,
        "equity_bars_missing": missing,
        "passed": n_bad == 0 and missing == 0 and diff <= tol,
    }
