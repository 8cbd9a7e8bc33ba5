"""Setup scanner, from scored candidates to executed signals (pure): gate, simulator parameters, execution.

Seed ``002``: ``scan_signals`` gates each scored candidate (p(win) of the meta-model in force, EV after costs) against
the threshold in force when it fired (regime → tuned → configured → global, :func:`pipeline.core.setup_gating
.resolve_threshold`); ``execute_signals`` runs the passing signals of each symbol × timeframe through the shared
simulator (one position or resting order at a time; TP1 share, break-even after TP1, ATR trail armed after TP1) and
reads each signal's status back (:func:`pipeline.core.setups.execution_status`). Live scans, the retro-scan and the
gated-versus-ungated backtest call the same functions, so a backtest and a live signal can never disagree.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from pipeline.core.costs import Costs
from pipeline.core.engine import AssetInput, EngineResult, Limits, run, split_rows
from pipeline.core.setup_gating import (
    UNKNOWN_REGIME,
    GatingParams,
    gate,
    regime_key,
    resolve_threshold,
    threshold_in_force,
)
from pipeline.core.setups import (
    RiskParams,
    SetupExecutionConfig,
    SetupParams,
    execution_status,
    one_signal_per_bar,
    signal_arrays,
)
from pipeline.core.simulator import SimParams, SimResult
from pipeline.core.timeframes import timeframe_ms

#: execution statuses of a closed trade (:func:`pipeline.core.setups.execution_status`)
CLOSED_STATUSES = ["TP", "SL", "TP1_TRAIL", "TIMEOUT"]
RULES_ONLY_WHY = "rules only: no @champion meta-model (or meta.enabled false); every valid candidate passes"


def gate_scored(
    c: pd.DataFrame, tuned_rows: pd.DataFrame | None, g: GatingParams, has_champion: bool
) -> tuple[pd.DataFrame, str]:
    """Gate scored candidates: ``(frame, mode)`` with ``threshold``, ``threshold_source``, ``passed`` and ``why`` added.

    Args:
        c: valid candidates with ``p_win`` (calibrated, NaN = not scored) and ``ev_pct`` (percent of notional).
        tuned_rows: every ``signals.setup_thresholds`` version (None before the first tuning).
        has_champion: a meta-model is in force; without one the gate is **rules only** (every candidate passes).

    Returns:
        ``mode`` is ``ev`` / ``p_win`` / ``rules_only``. With a champion, candidates without a score (before its
        first calibrated fold) are dropped, so the frame is out of sample.
    """
    if not has_champion:
        return c.assign(threshold=np.nan, threshold_source="none", passed=True, why=RULES_ONLY_WHY), "rules_only"
    c = c[c["p_win"].notna()].copy()
    tuned = threshold_in_force(tuned_rows, c["symbol"], c["timeframe"], c["ts"])
    regime = regime_key(c["trend_regime"], c["volatility_level"])
    thr, src = resolve_threshold(c["symbol"], c["timeframe"], regime, g, tuned)
    c["threshold"], c["threshold_source"] = thr, src
    c["passed"] = gate(c["p_win"], c["ev_pct"], thr, g)
    score = c["ev_pct"] if g.use_ev else c["p_win"]
    c["why"] = (
        ("EV % " if g.use_ev else "p(win) ")
        + score.round(4).astype(str)
        + np.where(c["passed"], " >= ", " < ")
        + c["threshold"].round(4).astype(str)
        + " ("
        + c["threshold_source"]
        + ")"
        + np.where(regime == UNKNOWN_REGIME, " [no regime on the signal bar]", "")
    )
    return c, ("ev" if g.use_ev else "p_win")


def execution_params(
    signals: SetupParams, risk: RiskParams, execution: SetupExecutionConfig, costs: Costs, init_cash: float
) -> SimParams:
    """Simulator parameters of the setup scanner (seed ``execution`` + ``risk``; fees and slippage from ``costs``).

    Risk-per-trade sizing at ``risk.risk_pct`` of the sleeve, limit entries valid ``validity_candles`` bars, time stop
    ``max_hold_candles``, the ATR trail armed after TP1, no reversal while a position is open. ``leverage`` =
    ``risk.max_leverage`` is only the fallback: each signal executes at its own plan's leverage and liquidation
    price (per-signal arrays of :func:`pipeline.core.setups.signal_arrays`).
    """
    e = execution
    return SimParams(
        init_cash=init_cash,
        size_fraction=1.0,
        risk_per_trade=risk.risk_pct / 100,
        leverage=risk.max_leverage,
        maintenance_margin=risk.maintenance_margin_pct / 100,
        tp1_fraction=e.tp1_fraction,
        breakeven_after_tp1=e.breakeven_after_tp1,
        trail_atr=e.trail_atr if e.trail_atr > 0 else float("nan"),
        trail_after_tp1=True,
        max_bars=signals.max_hold_candles,
        limit_validity_bars=signals.validity_candles,
        allow_reverse=False,
        **costs.sim_kwargs(),
    )


def _series_inputs(bars_by_series, signals: pd.DataFrame, score: str, start_ts: int | None):
    """Per series ``"SYM|tf"``: ``(symbol, timeframe, bars, signals with their bar, the one sent per bar, engine
    input)``, series in (symbol, timeframe) order."""
    out = {}
    for (sym, tf), g in signals.groupby(["symbol", "timeframe"], sort=True):
        b = bars_by_series[(sym, tf)]
        if start_ts is not None:
            b = b[b["ts"] >= start_ts].reset_index(drop=True)
        if b.empty:
            continue
        g, one, x = series_input(b, g, score)
        out[f"{sym}|{tf}"] = (sym, tf, b, g, one, x)
    return out


def series_input(
    b: pd.DataFrame, g: pd.DataFrame, score: str, shift_ms: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame, AssetInput]:
    """One series' engine input from its bars ``b`` (sorted ``ts``) and plan rows ``g``: ``(g with its bar index
    and that bar's ``bar_ts`` (signals after the last bar dropped), the one signal sent per bar (best ``score``),
    engine input)``. The backtest and paper trading build their inputs with this one function
    (:mod:`pipeline.core.paper`).

    ``shift_ms``: a plan of candle ``ts`` is sent on the first bar of ``b`` with ``ts >= plan ts + shift_ms``: 0 for
    the series' own bars; ``tf - base`` on a shared book's base grid (:func:`on_base_bars`), the base bar that closes
    with the plan's candle."""
    bt = b["ts"].to_numpy(np.int64)
    g = g.assign(bar=np.searchsorted(bt, g["ts"].to_numpy(np.int64) + shift_ms))
    g = g[(g["bar"] < len(b))]
    g = g.assign(bar_ts=bt[g["bar"].to_numpy(np.int64)])
    one = one_signal_per_bar(g, score)
    arr = signal_arrays(len(b), one)
    return g, one, AssetInput(b, arr.pop("signal"), **arr)


def base_timeframe(timeframes) -> str:
    """The finest of ``timeframes``: the grid a shared multi-timeframe book walks (:func:`on_base_bars`)."""
    return min(timeframes, key=timeframe_ms)


def on_base_bars(base: pd.DataFrame, coarse: pd.DataFrame | None, tf_ms: int, base_ms: int) -> pd.DataFrame:
    """A coarser series on its symbol's base bars, for a shared book over several timeframes.

    One engine run walks one time grid. A series of a coarser timeframe (1h) in a book with a finer one (15m) is run
    on the symbol's **base** candles: its position is managed, and its stops and targets are checked, on every 15m
    candle, and its plans are sent on the 15m candle that closes with their 1h candle (:func:`series_input` with
    ``shift_ms = tf_ms - base_ms``), so they fill at the next 1h open as on the 1h bars. Every account decision is
    then taken at a 15m close on what is known at that close: with 1h bars in the same run, a 1h bar opening at ``T``
    was processed whole (its stops inside the hour, its close as the mark) before the 15m bars opening at
    ``T+15 … T+45`` were sized (look-ahead). The bar-count parameters scale with the timeframes (:func:`book_params`).

    A coarse candle with no base candle inside it (before the symbol's 15m history begins: the real 15m files start in
    2023, the 1h ones in 2017-2020) becomes ``tf_ms / base_ms`` base rows that reveal nothing before its close: the
    first ones flat at its open, the last with its high, low and close. The book then learns the hour's range when the
    hour closes, as with the 1h candle itself, and every fill and exit of such an hour is at its open or inside its
    range.

    Args:
        base: the symbol's base candles ``ts, open, high, low, close`` (sorted, epoch ms open time; may be empty).
        coarse: the series' own candles ``ts, open, high, low, close, atr`` (sorted), or None when ``tf_ms == base_ms``.
        tf_ms, base_ms: candle lengths, ms (``tf_ms`` a multiple of ``base_ms``).

    Returns:
        Rows ``ts, open, high, low, close, atr`` sorted by ``ts``: ``base``'s candles and the rows of the uncovered
        coarse candles, ``atr`` = the ATR of the latest coarse candle closed by each row's close (point in time; NaN
        before the first). ``base`` itself when ``tf_ms == base_ms``.
    """
    if tf_ms == base_ms or coarse is None:
        return base
    cols = ["ts", "open", "high", "low", "close"]
    bts = base["ts"].to_numpy(np.int64)
    cts = coarse["ts"].to_numpy(np.int64)
    covered = np.zeros(len(cts), bool)
    if len(bts):  # a base candle opens inside [T, T + tf)
        first = np.searchsorted(bts, cts)
        covered = (first < len(bts)) & (bts[np.minimum(first, len(bts) - 1)] < cts + tf_ms)
    u = coarse.loc[~covered, cols]
    k = tf_ms // base_ms
    if len(u):
        o = np.repeat(u["open"].to_numpy(np.float64), k).reshape(-1, k)
        h, lo, c = o.copy(), o.copy(), o.copy()
        h[:, -1], lo[:, -1], c[:, -1] = (u[x].to_numpy(np.float64) for x in ("high", "low", "close"))
        rows = pd.DataFrame(
            {
                "ts": (u["ts"].to_numpy(np.int64)[:, None] + np.arange(k, dtype=np.int64) * base_ms).ravel(),
                "open": o.ravel(),
                "high": h.ravel(),
                "low": lo.ravel(),
                "close": c.ravel(),
            }
        )
        out = pd.concat([base[cols], rows], ignore_index=True).sort_values("ts", kind="stable").reset_index(drop=True)
    else:
        out = base[cols].reset_index(drop=True)
    j = np.searchsorted(cts + tf_ms, out["ts"].to_numpy(np.int64) + base_ms, "right") - 1
    atr = coarse["atr"].to_numpy(np.float64)
    out["atr"] = np.where(j >= 0, atr[np.clip(j, 0, None)], np.nan) if len(atr) else np.nan
    return out


def book_params(params: SimParams, tf_ms: int, base_ms: int) -> SimParams:
    """``params`` of a ``tf_ms`` series on ``base_ms`` bars: the time stop, a limit's validity and the latency keep
    their length in time (bar counts × ``tf_ms / base_ms``)."""
    k = tf_ms // base_ms
    if k == 1:
        return params
    return dataclasses.replace(
        params,
        max_bars=params.max_bars * k,
        limit_validity_bars=params.limit_validity_bars * k,
        latency_bars=params.latency_bars * k,
    )


def restore_signal_ts(frame: pd.DataFrame, sent: pd.DataFrame) -> pd.DataFrame:
    """Engine trade / order rows (``asset``, ``signal_ts`` = the bar the signal was sent on) with ``signal_ts`` set to
    the plan's own candle ``ts``, from ``sent`` rows ``asset, bar_ts, ts`` (:func:`series_input`'s ``one``); rows of
    signals not in ``sent`` keep theirs. A no-op on a series' own bars (``bar_ts == ts``)."""
    if frame.empty or sent.empty:
        return frame
    m = (
        sent[["asset", "bar_ts", "ts"]]
        .drop_duplicates(["asset", "bar_ts"])
        .rename(columns={"bar_ts": "signal_ts", "ts": "_plan_ts"})
    )
    out = frame.merge(m.astype({"signal_ts": np.int64}), on=["asset", "signal_ts"], how="left")
    out["signal_ts"] = out.pop("_plan_ts").fillna(out["signal_ts"]).astype(np.int64)
    out.index = frame.index
    return out


def _sleeve(res: EngineResult, t: pd.DataFrame, o: pd.DataFrame, j: int, name: str, b: pd.DataFrame) -> SimResult:
    """One series of an engine run (its trades ``t`` and orders ``o``) as :func:`pipeline.core.simulator.simulate`
    returns it."""
    t = t[t["asset"] == name].drop(columns="asset").reset_index(drop=True)
    o = o[o["asset"] == name].drop(columns="asset").reset_index(drop=True)
    k = res.asset_bars["asset"] == j
    ts = b["ts"].to_numpy(np.int64)
    return SimResult(
        t, o, ts, res.asset_bars["position"][k], b["close"].to_numpy(np.float64), res.asset_bars["equity"][k]
    )


def simulate_signals(
    bars_by_series: dict[tuple[str, str], pd.DataFrame],
    signals: pd.DataFrame,
    score: str,
    params: SimParams,
    start_ts: int | None = None,
):
    """Run each symbol × timeframe's signals through the engine, one equal sleeve each (from ``start_ts``, epoch ms).

    Args:
        bars_by_series: simulator bars (``ts, open, high, low, close, atr``) per ``(symbol, timeframe)`` of ``signals``.
        signals: plan rows (``candidate_id, symbol, timeframe, ts, side, entry, sl, tp1, tp2, leverage, liq_price``
            and ``score``); each executes at its plan's leverage and liquidation price
            (:func:`pipeline.core.setups.signal_arrays`).
        score: column that decides between a long and a short on the same bar (the better one is sent).

    Returns:
        ``(statuses aligned with signals, {"SYM|tf": SimResult}, {symbol: closes})``; statuses as
        :func:`pipeline.core.setups.execution_status` (with ``status_reason``); a signal whose bar-mate won is
        ``SKIPPED``; closes prefer the 1h series (the buy-and-hold benchmark's).
    """
    series = _series_inputs(bars_by_series, signals, score, start_ts)
    parts, sleeves, closes = [], {}, {}
    res = run({k: v[5] for k, v in series.items()}, params, account="sleeves", record_skipped=True)
    t_all, o_all = res.trades(), res.orders()
    for j, (name, (sym, tf, b, g, one, _)) in enumerate(series.items()):
        r = _sleeve(res, t_all, o_all, j, name, b)
        st = execution_status(g["bar"].to_numpy(), r.trades, r.orders)
        st.index = g.index
        # the losing side of a same-bar pair was never sent to the simulator
        chosen = g["candidate_id"].isin(one["candidate_id"]).to_numpy()
        st.loc[~chosen, ["status", "status_reason", "entry_ts", "exit_ts"]] = [
            "SKIPPED",
            f"a better-{score} signal on the same bar was sent",
            -1,
            -1,
        ]
        parts.append(st)
        sleeves[name] = r
        r.trades.insert(0, "symbol", sym)
        r.trades.insert(1, "timeframe", tf)
        if tf == "1h" or sym not in closes:
            closes[sym] = b[["ts", "close"]]
    out = pd.concat(parts) if parts else pd.DataFrame(columns=["status", "status_reason", "entry_ts", "exit_ts"])
    return out.reindex(signals.index), sleeves, closes


def simulate_book(
    bars_by_series: dict[tuple[str, str], pd.DataFrame],
    signals: pd.DataFrame,
    score: str,
    params: SimParams,
    init_cash: float,
    max_positions: int | None = None,
    start_ts: int | None = None,
    base_tf: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The signals of every symbol × timeframe as **one shared-cash book** (the setup scanner's backtest).

    Each plan is risk-sized on the book's equity (``params.risk_per_trade``), its margin capped by the free margin,
    and at most ``max_positions`` positions are open at once (null = one per series; an entry beyond it is denied,
    order row ``denied_max_positions``). Every series runs on its symbol's ``base_tf`` candles (null = the finest
    timeframe of ``signals``; :func:`on_base_bars`), so ``bars_by_series`` must hold ``(symbol, base_tf)`` for every
    symbol traded on a coarser timeframe. Same signal arrays as :func:`simulate_signals`.

    Returns:
        ``(book per base bar time, trades with symbol and timeframe, orders with symbol and timeframe)``; the book as
        :attr:`pipeline.core.engine.EngineResult.book`, ``signal_ts`` the plan's own candle time.

    Raises:
        KeyError: a coarser series' symbol has no ``base_tf`` bars.
    """
    if base_tf is None and len(signals):
        base_tf = base_timeframe(signals["timeframe"].unique())
    inputs, plist, sent = {}, [], []
    for (sym, tf), g in signals.groupby(["symbol", "timeframe"], sort=True):
        tf_ms, base_ms = timeframe_ms(tf), timeframe_ms(base_tf)
        coarse = bars_by_series[(sym, tf)]
        b = on_base_bars(bars_by_series[(sym, base_tf)] if tf_ms != base_ms else coarse, coarse, tf_ms, base_ms)
        if start_ts is not None:
            b = b[b["ts"] >= start_ts].reset_index(drop=True)
        if b.empty:
            continue
        name = f"{sym}|{tf}"
        _, one, inputs[name] = series_input(b, g, score, tf_ms - base_ms)
        plist.append(book_params(params, tf_ms, base_ms))
        sent.append(one[["bar_ts", "ts"]].assign(asset=name))
    k = max_positions or max(1, len(inputs))
    plist = [dataclasses.replace(p, init_cash=init_cash) for p in plist]
    res = run(inputs, plist, init_cash=init_cash, limits=Limits(max_positions=k), record_skipped=True)
    sent = pd.concat(sent, ignore_index=True) if sent else pd.DataFrame(columns=["asset", "bar_ts", "ts"])
    trades, orders = (restore_signal_ts(f, sent) for f in (res.trades(), res.orders()))
    for f in (trades, orders):
        name = f.pop("asset").astype(str)
        f.insert(0, "symbol", name.str.split("|").str[0])
        f.insert(1, "timeframe", name.str.split("|").str[1])
    return res.book, trades, orders


def every_nth_bar(c: pd.DataFrame, stride: int, step_ms: pd.Series) -> pd.DataFrame:
    """Candidates on every ``stride``-th bar of their timeframe (``ts // step % stride == 0``; retro-scan speed)."""
    return c if stride <= 1 else c[(c["ts"] // step_ms) % stride == 0]


def first_per_series(signals: pd.DataFrame, limit: int) -> pd.DataFrame:
    """The first ``limit`` signals in time of each symbol × timeframe (0 = all)."""
    s = signals.sort_values("ts")
    return s.groupby(["symbol", "timeframe"], sort=False).head(limit) if limit else s


def executed_by_series(signals: pd.DataFrame) -> pd.DataFrame:
    """Closed trades per symbol × timeframe of executed signals: ``trades``, ``win_rate`` (net PnL > 0),
    ``avg_net_pct`` (percent of the entry notional)."""
    closed = signals[signals["status"].isin(CLOSED_STATUSES)]
    return (
        closed.assign(win=closed["net_pct"] > 0)
        .groupby(["symbol", "timeframe"])
        .agg(trades=("win", "size"), win_rate=("win", "mean"), avg_net_pct=("net_pct", "mean"))
        .reset_index()
    )


#: columns of a passed signal the engine reads (:func:`series_input`): equal on both sides = same engine input
ENGINE_INPUTS = ["candidate_id", "ts", "side", "entry", "sl", "tp1", "tp2", "leverage", "liq_price"]


def checkpoint_ts(ts: np.ndarray, overlap: int, oldest_open: int | None) -> int | None:
    """The newest bar a live resume can checkpoint a series' book at (epoch ms), None when none.

    The next incremental scan rescans from ``min(first new bar - overlap bars, oldest OPEN candidate)``
    (``assets/setup_scanner/candidates.py``), so every engine input up to the bar before ``min(ts[-1 - overlap],
    oldest_open)`` stays as it is now: the book's state after that bar can be resumed next time.

    Args:
        ts: the series' bar times (sorted, epoch ms); overlap: ``exchange.overlap_candles``;
        oldest_open: ``ts`` of its oldest candidate whose outcome is ``OPEN`` (None: none).
    """
    if len(ts) <= overlap + 1:
        return None
    bound = int(ts[-1 - overlap])
    if oldest_open is not None:
        bound = min(bound, int(oldest_open))
    i = int(np.searchsorted(ts, bound)) - 1
    return int(ts[i]) if i >= 0 else None


def resume_signals(
    segments: dict[str, tuple[pd.DataFrame, int, int]],
    signals: pd.DataFrame,
    carried: pd.DataFrame,
    score: str,
    params: SimParams,
    state,
) -> tuple[pd.DataFrame, pd.DataFrame, object]:
    """:func:`simulate_signals` resumed from a stored book state on the new bars only (live; work ∝ new bars).

    The engine's resume property (``run(bars[:t])`` then ``run(bars[t:], state)`` = ``run(bars)``) makes the
    statuses equal those of one :func:`simulate_signals` run over the whole history of every series, given the same
    bars and signals up to each series' stored checkpoint. The run is cut once more at each series' next checkpoint
    and the state there is returned.

    Args:
        segments: ``"SYM|tf"`` → ``(bars after the stored checkpoint, sorted, ``ts, open, high, low, close, atr``;
            the number of the series' bars run before them (bar indices continue); the next checkpoint ts, bars up to
            it form the first cut)``, every name of ``state.names`` present.
        signals: passed plan rows (``candidate_id, symbol, timeframe, ts``, the plan columns and ``score``) newer than
            their series' stored checkpoint.
        carried: passed signals at or before it: ``symbol, timeframe, ts`` (index = the caller's row id); those
            whose trade or order was still open or waiting at the checkpoint get their status from this run.
        state: :class:`pipeline.core.engine.EngineState` after each series' checkpoint (``account="sleeves"``).

    Returns:
        ``(statuses of signals (aligned with its index), statuses of the carried signals that moved (index ⊆
        carried's), the state at the next checkpoints)``; statuses as :func:`simulate_signals`'.
    """
    key = signals["symbol"] + "|" + signals["timeframe"] if len(signals) else pd.Series(dtype=object)
    ckey = carried["symbol"] + "|" + carried["timeframe"] if len(carried) else pd.Series(dtype=object)
    cut, first, second = {}, {}, {}
    for name in state.names:
        b, _, nxt = segments[name]
        b = b.reset_index(drop=True)
        bts = b["ts"].to_numpy(np.int64)
        k = int(np.searchsorted(bts, nxt, "right")) if nxt is not None else 0
        edge = int(bts[k - 1]) if k else -(2**62)
        g = signals[key == name]
        cut[name] = k
        first[name] = (b.iloc[:k], g[g["ts"] <= edge])
        second[name] = (b.iloc[k:].reset_index(drop=True), g[g["ts"] > edge])
    prep_a = {n: series_input(bb, gg, score) for n, (bb, gg) in first.items()}
    res_a = run({n: v[2] for n, v in prep_a.items()}, params, state=state, record_skipped=True)
    hist_a, _ = split_rows(res_a.rows)
    prep_b = {n: series_input(bb, gg, score) for n, (bb, gg) in second.items()}
    res_b = run({n: v[2] for n, v in prep_b.items()}, params, state=res_a.state, record_skipped=True)
    res = dataclasses.replace(res_b, rows=np.vstack([hist_a, res_b.rows]) if len(hist_a) else res_b.rows)
    t_all, o_all = res.trades(), res.orders()
    # one status call for every series: a signal bar made unique across series (series code x 2^40 + bar index)
    code = {n: i for i, n in enumerate(state.names)}
    big = np.int64(1) << 40

    def keyed(f: pd.DataFrame) -> pd.DataFrame:
        a = f["asset"].map(code).to_numpy(np.int64)
        return f.assign(signal_bar=a * big + f["signal_bar"].to_numpy(np.int64))

    t_k, o_k = keyed(t_all), keyed(o_all)
    bars, index, chosen = [np.zeros(0, np.int64)], [], [np.zeros(0, bool)]
    for name in state.names:
        before = segments[name][1]
        for j, (g, one, _) in enumerate((prep_a[name], prep_b[name])):
            bars.append(code[name] * big + g["bar"].to_numpy(np.int64) + before + (cut[name] if j else 0))
            index.append(g.index)
            chosen.append(g["candidate_id"].isin(one["candidate_id"]).to_numpy())
    out = execution_status(np.concatenate(bars), t_k, o_k)
    out.index = index[0].append(index[1:]) if index else pd.Index([])
    lost = ~np.concatenate(chosen)
    out.loc[lost, ["status", "status_reason", "entry_ts", "exit_ts"]] = [
        "SKIPPED",
        f"a better-{score} signal on the same bar was sent",
        -1,
        -1,
    ]
    # carried signals: own-grid series, so a signal's bar time is its candle ts; their rows were sent before the cut
    sent = pd.concat([t_all[["asset", "signal_ts", "signal_bar"]], o_all[["asset", "signal_ts", "signal_bar"]]])
    first_bar = sent["asset"].map({n: segments[n][1] for n in state.names}).to_numpy(np.int64)
    sent = sent[sent["signal_bar"].to_numpy(np.int64) < first_bar].rename(columns={"signal_ts": "ts"})
    m = pd.DataFrame(
        {"asset": ckey.to_numpy(dtype=object), "ts": carried["ts"].to_numpy(np.int64), "_i": carried.index}
    )
    m = m.merge(sent.astype({"ts": np.int64}), on=["asset", "ts"], how="inner")
    moved = execution_status(
        m["asset"].map(code).to_numpy(np.int64) * big + m["signal_bar"].to_numpy(np.int64), t_k, o_k
    )
    moved.index = pd.Index(m["_i"].to_numpy())
    return out.reindex(signals.index), moved, res_a.state
