"""Setup scanner: swing pivots, Fibonacci levels, anchored VWAP, ATR trade plans and their outcomes (pure).

Follows ``shared/seeds/002_8095f8f2cecb8ec4.txt`` ("Signal Engine"); where the seed names a concept without a
formula, the rule below is ours (also in ``docs/decisions.md``).

* **Swing pivots** (Bill Williams fractals generalised to ``pivot_window`` = k): bar ``i`` is a pivot high when its
  high is the strict maximum of bars ``i-k .. i+k``. It is **known only at bar ``i+k``** (its confirmation bar);
  every function below uses a pivot from its confirmation bar on.
* **Swing** for a long: the last confirmed pivot low ``L`` followed by a later confirmed pivot high ``H`` (an
  up-leg); for a short, a pivot high followed by a later pivot low. ``fibo_anchors`` = N: the start pivot is one of
  the N most recent confirmed pivot lows (highs), each paired with the latest confirmed pivot high (low) and valid
  only when it precedes it; the most recent anchor whose levels are touched wins (N = 1: only the latest leg). With
  ``lookback_candles`` = W a leg whose start pivot lies more than W − 1 bars before ``t`` is not visible at ``t``.
* **Fibonacci**: retracement level ``r`` of an up-leg is ``H − r·(H − L)``; extension ``e`` is ``L + e·(H − L)``
  (1.272 → TP1, 1.618 → TP2). Mirror images for a down-leg.
* **AVWAP** anchored at the leg's start pivot: ``Σ typical·volume / Σ volume`` from the anchor bar to ``t``,
  typical = (high + low + close) / 3 (Shannon, *Maximum Trading Gains with Anchored VWAP*, 2023).
* **Confluence rule**: at closed bar ``t`` a long candidate exists when the regime is not bear, the bar's low
  touched a retracement level (low ≤ level + ``touch_atr``·ATR) while it closed above it, and the level lies within
  ``confluence_atr``·ATR of the AVWAP. The deepest touched level among ``retracements`` is used. Entry is a limit
  order at the level (valid ``validity_candles``), SL = the next deeper level (or the leg's start) − ``atr_mult_sl``·ATR,
  TP1/TP2 = the 1.272 / 1.618 extensions.
* **Risk** (``RiskParams``): size from risk % of equity over the stop distance; leverage = notional / equity capped
  at ``max_leverage`` and lowered until the isolated-margin liquidation price is ``liq_buffer`` × the stop distance
  beyond the stop.
* **Minimum net TP**: TP1's move net of the round trip ``costs.round_trip_pct(min_tp_cost_mode)`` (default
  ``taker``: a plan must clear the worst case, its limit entry chased as a market order) must be ≥
  ``min_tp_net_pct``; otherwise the candidate is kept with ``reject_reason = "tp1_net_below_min"``. The same round
  trip is deducted from each plan's outcome ``net_pct``. Costs are a :class:`pipeline.core.costs.Costs` argument.
"""

from __future__ import annotations

import numba
import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from pipeline.core.costs import CostMode, Costs
from pipeline.core.params import Params


class SetupParams(Params):
    """``setup_scanner.signals``: the seed's ``signals`` section as the rules use it.

    Seed key → field: ``lookback_candles`` → ``lookback_candles``; ``atr_period`` → ``atr_period``; ``atr_mult_sl`` →
    ``atr_mult_sl``; ``fibo.pivot_window`` / ``fibo.anchors`` → ``pivot_window`` / ``fibo_anchors``;
    ``fibo.retracements`` / ``fibo.extensions`` → ``retracements`` / ``tp1_extension``, ``tp2_extension``;
    ``avwap.use`` → ``use_avwap`` (with the confluence width ``confluence_atr``); ``constraints`` →
    ``min_tp_net_pct`` (with ``min_tp_cost_mode``), ``validity_candles``, ``max_hold_candles``; ``touch_atr``,
    ``min_leg_atr`` and ``allow_in_bear`` are ours. The seed's ``fees`` / ``slippage_pct`` are
    ``setup_scanner.costs`` and ``evaluation.usd_per_trade`` is ``setup_scanner.evaluation.usd_per_trade``.
    """

    lookback_candles: int | None = Field(
        None,
        ge=2,
        description="Bars visible to the scanner at each signal bar: a leg whose start pivot is older than this many "
        "bars (pivot index < t - lookback_candles + 1) is ignored; null = the whole history (the default).",
    )
    atr_period: int = Field(
        14,
        ge=1,
        description="ATR period (Wilder, TA-Lib) of the plans' touch, confluence, stop, leg-size and trail distances; "
        "14 = the stored features.technical.atr_14, any other period is computed from the same candles.",
    )
    pivot_window: int = Field(5, ge=1, description="Bars each side of a pivot (confirmation delay in bars).")
    fibo_anchors: int = Field(
        1,
        ge=1,
        description="Swing anchors considered (seed fibo.anchors): the N most recent confirmed start pivots (pivot "
        "lows for longs, highs for shorts), each paired with the latest confirmed end pivot; the most recent anchor "
        "whose levels are touched wins. 1 = only the latest leg.",
    )
    retracements: list[float] = Field(default_factory=lambda: [0.382, 0.5, 0.618, 0.786])
    tp1_extension: float = 1.272
    tp2_extension: float = 1.618
    touch_atr: float = Field(0.1, ge=0, description="Low within this many ATR above a level counts as a touch.")
    confluence_atr: float = Field(0.5, ge=0, description="Level within this many ATR of the AVWAP (0 = AVWAP ignored).")
    use_avwap: bool = Field(
        True, description="Seed avwap.use: false = no AVWAP, no confluence condition (avwap columns NULL)."
    )
    atr_mult_sl: float = Field(0.5, ge=0, description="SL beyond the next structure level, in ATR.")
    min_leg_atr: float = Field(3.0, ge=0, description="Legs shorter than this many ATR are noise.")
    validity_candles: int = Field(6, ge=1, description="Bars the limit entry stays valid.")
    max_hold_candles: int = Field(96, ge=1, description="Time stop after entry, bars.")
    min_tp_net_pct: float = Field(0.4, description="TP1 move net of costs must be at least this (percent).")
    min_tp_cost_mode: CostMode = Field(
        "taker",
        description="Round trip of setup_scanner.costs deducted by the "
        "minimum-net-TP rule and from the outcomes' net_pct: taker (default) = a plan "
        "must clear the worst case, its limit entry chased as a market order; auto = "
        "maker entry + taker exit (the EV gate's gating.costs_mode); maker.",
    )
    allow_in_bear: bool = False


class RiskMode(Params):
    """One risk profile of ``setup_scanner.risk.modes`` (seed ``risk``: mode-based risk per trade, max leverage,
    liquidation buffer)."""

    risk_pct: float = Field(gt=0, description="Loss at the stop, percent of equity.")
    max_leverage: float = Field(ge=1, description="Leverage cap of a plan.")
    liq_buffer: float = Field(ge=1, description="Liquidation must be this many stop distances beyond the stop.")


#: the shipped risk profiles; ``normal`` is the scanner's behaviour before modes existed (1 %, 10x, 1.5)
RISK_MODES = {
    "conservative": {"risk_pct": 0.5, "max_leverage": 5.0, "liq_buffer": 2.0},
    "normal": {"risk_pct": 1.0, "max_leverage": 10.0, "liq_buffer": 1.5},
    "aggressive": {"risk_pct": 2.0, "max_leverage": 20.0, "liq_buffer": 1.2},
}


class RiskParams(Params):
    """``setup_scanner.risk``: risk per trade, leverage cap and liquidation buffer (isolated margin) by mode.

    ``mode`` names one profile of ``modes`` (seed: mode-based risk); its ``risk_pct``, ``max_leverage`` and
    ``liq_buffer`` are the values every rule reads. Giving ``risk_pct`` / ``max_leverage`` / ``liq_buffer`` directly
    overrides that one value of the selected mode (null = the mode's value); after validation the three fields always
    hold the values in force.

    Raises:
        pydantic.ValidationError: ``mode`` is not a key of ``modes``.
    """

    mode: str = Field(
        "normal", description="Risk profile in force: a key of modes (conservative / normal / aggressive)."
    )
    modes: dict[str, RiskMode] = Field(
        default_factory=lambda: {k: RiskMode(**v) for k, v in RISK_MODES.items()},
        description="Risk profiles by name: risk_pct (percent of equity lost at the stop), max_leverage, liq_buffer.",
    )
    equity: float = Field(10_000.0, gt=0, description="Account equity, quote currency.")
    risk_pct: float | None = Field(None, gt=0, description="Override of the mode's risk_pct (null = the mode's).")
    max_leverage: float | None = Field(None, ge=1, description="Override of the mode's max_leverage.")
    maintenance_margin_pct: float = Field(0.5, ge=0, description="Maintenance margin rate, percent.")
    liq_buffer: float | None = Field(None, ge=1, description="Override of the mode's liq_buffer.")

    @model_validator(mode="after")
    def _resolve_mode(self) -> "RiskParams":
        if self.mode not in self.modes:
            raise ValueError(f"risk.mode {self.mode!r} is not one of risk.modes {sorted(self.modes)}")
        m = self.modes[self.mode]
        for f in ("risk_pct", "max_leverage", "liq_buffer"):
            if getattr(self, f) is None:
                object.__setattr__(self, f, getattr(m, f))
        return self


class SetupExecutionConfig(Params):
    """``setup_scanner.execution``: how a filled plan is managed (:func:`plan_outcomes` and the simulator)."""

    tp1_fraction: float = Field(0.5, ge=0, le=1, description="Share closed at TP1.")
    breakeven_after_tp1: bool = Field(True, description="Move the stop to entry after TP1.")
    trail_atr: float = Field(1.0, ge=0, description="ATR trail after TP1 (0 = off).")


class SetupEvaluationConfig(Params):
    """``setup_scanner.evaluation`` (seed ``signals.evaluation``): how results are accounted in the reports."""

    usd_per_trade: float = Field(
        100.0,
        gt=0,
        description="Nominal stake per trade, USD (seed evaluation.usd_per_trade): the reports' pnl_usd = "
        "usd_per_trade x net_pct / 100 summed over trades, each trade as if this much were staked "
        "(independent of the risk-based size the simulator uses).",
    )


def swing_pivots(high: np.ndarray, low: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Boolean (n,) arrays marking pivot highs / lows **at the pivot bar** (known at ``i + k``).

    Strict: a tie with a neighbour is not a pivot. The last ``k`` bars are never pivots (not confirmed yet).
    """
    h, lo = pd.Series(np.asarray(high, float)), pd.Series(np.asarray(low, float))
    w = 2 * k + 1
    hmax = h.rolling(w, center=True, min_periods=w).max()
    lmin = lo.rolling(w, center=True, min_periods=w).min()
    ph = (h == hmax).to_numpy()
    pl = (lo == lmin).to_numpy()
    eq_h = np.zeros(len(h), bool)
    eq_l = np.zeros(len(h), bool)
    for j in range(1, k + 1):  # k small: a tie with any neighbour disqualifies
        eq_h |= (h == h.shift(j)).to_numpy() | (h == h.shift(-j)).to_numpy()
        eq_l |= (lo == lo.shift(j)).to_numpy() | (lo == lo.shift(-j)).to_numpy()
    return ph & ~eq_h, pl & ~eq_l


def pivots_settled(high: np.ndarray, low: np.ndarray, k: int, anchors: int, upto: int) -> bool:
    """Whether a window of bars (the newest bars of a longer series) yields, at every bar ``t >= upto``, the same
    legs as the whole series: at ``upto`` (and so at every later bar, pivots only accumulate) at least ``anchors``
    pivot highs and ``anchors`` pivot lows are confirmed (index ``<= upto - k``) at indices ``>= k``.

    A pivot at index ``i`` needs bars ``i - k .. i + k``: the window finds exactly the series' pivots from index
    ``k`` on (none before), so when the ``anchors`` most recent pivots of each kind lie there, every leg of
    :func:`candidates` at ``t >= upto`` (its end pivot: the latest; its start: one of the ``anchors`` latest) is the
    series' own. ``upto`` is the row index in the window of the first bar to be recomputed, minus one (the AVWAP
    slope reads the bar before)."""
    if upto < 0:
        return False
    ph, pl = swing_pivots(high, low, k)
    lo, hi = k, upto - k
    if hi < lo:
        return False
    return bool(ph[lo : hi + 1].sum() >= anchors and pl[lo : hi + 1].sum() >= anchors)


def _nth_last_known(mask: np.ndarray, values: np.ndarray, k: int, j: int) -> tuple[np.ndarray, np.ndarray]:
    """At each bar t: index and value of the ``j``-th most recent pivot (j = 1: the latest) confirmed by t (pivot
    index ≤ t − k); -1 / NaN if fewer than ``j`` are confirmed."""
    n = len(mask)
    piv = np.flatnonzero(mask)
    count = np.searchsorted(piv + k, np.arange(n), side="right")  # pivots confirmed by t
    pos = count - j
    idx = np.where(pos >= 0, piv[np.maximum(pos, 0)] if len(piv) else -1, -1).astype(np.int64)
    val = np.where(idx >= 0, np.asarray(values, float)[np.maximum(idx, 0)], np.nan)
    return idx, val


def with_atr(bars: pd.DataFrame, period: int) -> pd.DataFrame:
    """``bars`` whose ``atr`` column is ATR(``period``) (Wilder smoothing, ``talib.ATR``, quote currency).

    ``period == 14`` keeps the stored ``atr`` column (``features.technical.atr_14``, the same formula); any other
    period is computed from the frame's own ``high, low, close`` (causal: bar t uses bars ≤ t; NaN during the first
    ``period`` bars). Returns a copy when the column changes.
    """
    if period == 14 and "atr" in bars:
        return bars
    import talib

    h, lo, c = (bars[k].to_numpy(np.float64) for k in ("high", "low", "close"))
    return bars.assign(atr=talib.ATR(h, lo, c, timeperiod=period))


def avwap(high, low, close, volume, anchor: np.ndarray) -> np.ndarray:
    """Anchored VWAP at each bar from its own anchor bar index (``anchor[t] ≤ t``; -1 → NaN)."""
    tp = (np.asarray(high, float) + np.asarray(low, float) + np.asarray(close, float)) / 3.0
    v = np.asarray(volume, float)
    cpv, cv = np.cumsum(tp * v), np.cumsum(v)
    a = np.asarray(anchor, np.int64)
    ok = a >= 0
    prev = np.maximum(a - 1, 0)
    base_pv = np.where(a > 0, cpv[prev], 0.0)
    base_v = np.where(a > 0, cv[prev], 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (cpv - base_pv) / (cv - base_v)
    return np.where(ok & (cv - base_v > 0), out, np.nan)


PLAN_COLUMNS = [
    "ts",
    "side",
    "level",
    "entry_type",
    "entry",
    "sl",
    "tp1",
    "tp2",
    "atr",
    "avwap",
    "avwap_dist_atr",
    "avwap_slope_atr",
    "leg_low",
    "leg_high",
    "leg_atr",
    "rr_tp1",
    "tp1_net_pct",
    "sl_pct",
    "qty",
    "notional",
    "leverage",
    "liq_price",
    "validity_candles",
    "reject_reason",
]


def _leg_levels(side, start_i, start_v, end_i, end_v, oldest, regime, h, lo, c, vol, atr, p: SetupParams) -> dict:
    """The deepest touched retracement of one leg per bar (NaN where none): ``chosen`` level price, ``chosen_r`` ratio,
    ``deeper`` (next deeper level or the leg's start), ``start_v``, ``rng`` (leg size), ``vw`` / ``vw_slope`` (AVWAP
    anchored at the start pivot and its one-bar change in ATR)."""
    n = len(h)
    leg_ok = (start_i >= 0) & (end_i >= 0) & (start_i < end_i) & (start_i >= oldest)
    rng = np.abs(end_v - start_v)
    leg_ok &= rng >= p.min_leg_atr * atr
    if not p.allow_in_bear:
        leg_ok &= regime != ("bear" if side > 0 else "bull")
    anchor = np.where(leg_ok, start_i, -1)
    vw = avwap(h, lo, c, vol, anchor) if p.use_avwap else np.full(n, np.nan)
    vw_slope = (vw - np.r_[np.nan, vw[:-1]]) / atr
    levels = sorted(p.retracements)
    chosen = np.full(n, np.nan)
    chosen_r = np.full(n, np.nan)
    deeper = np.full(n, np.nan)
    for j, r in enumerate(levels):  # deepest touched level wins (later levels overwrite)
        lvl = end_v - side * r * rng
        nxt = end_v - side * levels[j + 1] * rng if j + 1 < len(levels) else start_v
        touched = (
            (lo <= lvl + p.touch_atr * atr) & (c > lvl) if side > 0 else (h >= lvl - p.touch_atr * atr) & (c < lvl)
        )
        conf = np.abs(lvl - vw) <= p.confluence_atr * atr if p.use_avwap and p.confluence_atr > 0 else np.ones(n, bool)
        hit = leg_ok & touched & conf & np.isfinite(atr)
        chosen = np.where(hit, lvl, chosen)
        chosen_r = np.where(hit, r, chosen_r)
        deeper = np.where(hit, nxt, deeper)
    return {
        "chosen": chosen,
        "chosen_r": chosen_r,
        "deeper": deeper,
        "start_v": start_v,
        "rng": rng,
        "vw": vw,
        "vw_slope": vw_slope,
    }


def candidates(
    bars: pd.DataFrame, p: SetupParams, risk: RiskParams, trend_regime: np.ndarray | None, costs: Costs
) -> pd.DataFrame:
    """Long/short candidates with full trade plans for one symbol × timeframe.

    Args:
        bars: sorted candles ``ts`` (epoch ms UTC), ``open high low close volume`` (quote currency / base volume) and
            ``atr`` (ATR(14), quote currency), e.g. ``market.ohlcv`` joined with ``features.technical.atr_14``; with
            ``p.atr_period`` other than 14 the ATR is recomputed from the candles (:func:`with_atr`).
        trend_regime: (n,) ``bull`` / ``sideways`` / ``bear`` per bar (``regimes.market``); None = no filter.
        costs: fees and slippage; ``tp1_net_pct`` deducts ``costs.round_trip_pct(p.min_tp_cost_mode)``.

    Returns:
        One row per candidate (:data:`PLAN_COLUMNS` plus ``bar`` = row position of the signal bar), ``side`` +1/-1,
        prices in quote currency, percentages in percent, ``reject_reason`` NULL for valid plans. Each row uses bars
        ``<= ts`` only.
    """
    bars = with_atr(bars, p.atr_period)
    h, lo, c = (bars[k].to_numpy(float) for k in ("high", "low", "close"))
    vol, atr, ts = bars["volume"].to_numpy(float), bars["atr"].to_numpy(float), bars["ts"].to_numpy(np.int64)
    n = len(bars)
    k = p.pivot_window
    ph, pl = swing_pivots(h, lo, k)
    regime = (
        np.asarray(trend_regime, dtype=object) if trend_regime is not None else np.full(n, "sideways", dtype=object)
    )
    oldest = np.arange(n) - (p.lookback_candles - 1) if p.lookback_candles else np.full(n, -1)
    out = []
    for side in (1, -1):
        # up-leg for longs: low pivot before high pivot; down-leg for shorts: high before low
        start_mask, start_px, end_mask, end_px = (pl, lo, ph, h) if side > 0 else (ph, h, pl, lo)
        end_i, end_v = _nth_last_known(end_mask, end_px, k, 1)
        cols = ("chosen", "chosen_r", "deeper", "start_v", "rng", "vw", "vw_slope")
        sel = {c_: np.full(n, np.nan) for c_ in cols}
        for j in range(1, p.fibo_anchors + 1):  # the most recent anchor with a touch wins
            start_i, start_v = _nth_last_known(start_mask, start_px, k, j)
            leg = _leg_levels(side, start_i, start_v, end_i, end_v, oldest, regime, h, lo, c, vol, atr, p)
            take = ~np.isfinite(sel["chosen"]) & np.isfinite(leg["chosen"])
            for c_ in cols:
                sel[c_] = np.where(take, leg[c_], sel[c_])
        chosen, chosen_r, deeper, start_v, rng, vw, vw_slope = (sel[c_] for c_ in cols)
        m = np.isfinite(chosen)
        if not m.any():
            continue
        i = np.flatnonzero(m)
        entry, a = chosen[i], atr[i]
        sl = deeper[i] - side * p.atr_mult_sl * a
        tp1 = start_v[i] + side * p.tp1_extension * rng[i]
        tp2 = start_v[i] + side * p.tp2_extension * rng[i]
        cost_pct = costs.round_trip_pct(p.min_tp_cost_mode)
        tp1_net = side * (tp1 / entry - 1) * 100 - cost_pct
        sl_pct = side * (entry / sl - 1) * 100
        plan = position_size(entry, sl, side, risk)
        out.append(
            pd.DataFrame(
                {
                    "bar": i,
                    "ts": ts[i],
                    "side": side,
                    "level": chosen_r[i],
                    "entry_type": "limit",
                    "entry": entry,
                    "sl": sl,
                    "tp1": tp1,
                    "tp2": tp2,
                    "atr": a,
                    "avwap": vw[i],
                    "avwap_dist_atr": (entry - vw[i]) / a,
                    "avwap_slope_atr": vw_slope[i],
                    "leg_low": np.minimum(start_v[i], end_v[i]),
                    "leg_high": np.maximum(start_v[i], end_v[i]),
                    "leg_atr": rng[i] / a,
                    "rr_tp1": np.abs(tp1 - entry) / np.abs(entry - sl),
                    "tp1_net_pct": tp1_net,
                    "sl_pct": sl_pct,
                    **plan,
                    "validity_candles": p.validity_candles,
                    "reject_reason": np.where(
                        tp1_net < p.min_tp_net_pct,
                        "tp1_net_below_min",
                        np.where(plan["leverage"] <= 0, "liquidation_before_stop", None),
                    ),
                }
            )
        )
    if not out:
        return pd.DataFrame(columns=["bar", *PLAN_COLUMNS])
    return pd.concat(out, ignore_index=True).sort_values(["ts", "side"], kind="stable").reset_index(drop=True)


def position_size(entry, sl, side, r: RiskParams) -> dict[str, np.ndarray]:
    """Quantity, notional, leverage and isolated-margin liquidation price per plan (arrays).

    ``qty = equity·risk% / |entry − sl|``; leverage = notional / equity, capped at ``max_leverage`` and lowered until
    the liquidation distance ``entry·(1/lev − mmr)`` is at least ``liq_buffer`` × the stop distance; when even 1×
    cannot satisfy it, leverage is 0 (rejected).
    """
    entry, sl = np.asarray(entry, float), np.asarray(sl, float)
    dist = np.abs(entry - sl)
    with np.errstate(divide="ignore", invalid="ignore"):
        qty = r.equity * r.risk_pct / 100 / dist
        notional = qty * entry
        lev = np.clip(notional / r.equity, 1.0, r.max_leverage)
        mmr = r.maintenance_margin_pct / 100
        # liquidation distance (fraction) = 1/lev - mmr must be >= liq_buffer * dist/entry
        max_lev_liq = 1.0 / (r.liq_buffer * dist / entry + mmr)
    lev = np.where(max_lev_liq >= 1.0, np.minimum(lev, np.floor(max_lev_liq * 100) / 100), 0.0)
    liq = np.where(lev > 0, entry * (1 - side * (1 / np.where(lev > 0, lev, 1) - mmr)), np.nan)
    return {"qty": qty, "notional": notional, "leverage": lev, "liq_price": liq}


#: outcome codes of :func:`plan_outcomes`
OUTCOMES = {0: "EXPIRED", 1: "TP", 2: "SL", 3: "TP1_TRAIL", 4: "TIMEOUT", 5: "OPEN"}


@numba.njit(cache=True)
def _outcomes_kernel(
    o, h, l, c, bar, side, entry, sl, tp1, tp2, atr, validity, max_hold, tp1_frac, be_after_tp1, trail_atr
):  # pragma: no cover - compiled
    m = bar.shape[0]
    n = h.shape[0]
    status = np.zeros(m, np.int8)
    fill_bar = np.full(m, -1, np.int64)
    exit_bar = np.full(m, -1, np.int64)
    exit_px = np.full(m, np.nan)
    gross = np.full(m, np.nan)
    tp1_hit = np.zeros(m, np.bool_)
    for j in range(m):
        s, e = side[j], entry[j]
        f = -1
        for t in range(bar[j] + 1, min(bar[j] + 1 + validity[j], n)):  # limit fill after the signal bar
            if (s > 0 and l[t] <= e) or (s < 0 and h[t] >= e):
                f = t
                break
        if f < 0:
            status[j] = 0 if bar[j] + validity[j] < n else 5
            continue
        fill_bar[j] = f
        stop = sl[j]
        took_tp1 = False
        p1 = tp1[j]  # TP1 fill price
        best = e
        done = False
        for t in range(f, min(f + max_hold, n)):
            hit_sl = (s > 0 and l[t] <= stop) or (s < 0 and h[t] >= stop)
            if hit_sl:  # stop first inside a bar (conservative)
                # a bar after the fill that opens through the stop (fixed, break-even or trail) fills at the open
                px = o[t] if t > f and ((s > 0 and o[t] <= stop) or (s < 0 and o[t] >= stop)) else stop
                if took_tp1:
                    gross[j] = tp1_frac * s * (p1 / e - 1) + (1 - tp1_frac) * s * (px / e - 1)
                    status[j] = 3
                else:
                    gross[j] = s * (px / e - 1)
                    status[j] = 2
                exit_bar[j], exit_px[j], done = t, px, True
                break
            if not took_tp1 and ((s > 0 and h[t] >= tp1[j]) or (s < 0 and l[t] <= tp1[j])):
                took_tp1 = True
                tp1_hit[j] = True
                if t > f and ((s > 0 and o[t] >= tp1[j]) or (s < 0 and o[t] <= tp1[j])):
                    p1 = o[t]  # opened through TP1: filled at the open
                if be_after_tp1:
                    stop = e
            if took_tp1 and ((s > 0 and h[t] >= tp2[j]) or (s < 0 and l[t] <= tp2[j])):
                p2 = o[t] if t > f and ((s > 0 and o[t] >= tp2[j]) or (s < 0 and o[t] <= tp2[j])) else tp2[j]
                gross[j] = tp1_frac * s * (p1 / e - 1) + (1 - tp1_frac) * s * (p2 / e - 1)
                status[j], exit_bar[j], exit_px[j], done = 1, t, p2, True
                break
            if took_tp1 and trail_atr > 0:
                best = max(best, h[t]) if s > 0 else min(best, l[t])
                trail = best - s * trail_atr * atr[j]
                stop = max(stop, trail) if s > 0 else min(stop, trail)
        if not done:
            last = min(f + max_hold, n) - 1
            if f + max_hold <= n:
                px = c[last]
                gross[j] = (
                    (tp1_frac * s * (p1 / e - 1) + (1 - tp1_frac) * s * (px / e - 1)) if took_tp1 else s * (px / e - 1)
                )
                status[j], exit_bar[j], exit_px[j] = 4, last, px
            else:
                status[j] = 5
    return status, fill_bar, exit_bar, exit_px, gross, tp1_hit


def plan_outcomes(
    bars: pd.DataFrame,
    plans: pd.DataFrame,
    p: SetupParams,
    *,
    costs: Costs,
    tp1_fraction: float = 0.5,
    breakeven_after_tp1: bool = True,
    trail_atr: float = 1.0,
) -> pd.DataFrame:
    """The outcome of each plan **taken on its own** (the meta-model's label; the portfolio run uses the simulator).

    Limit fill within ``validity_candles`` after the signal bar; then SL / TP1 (``tp1_fraction`` closed, stop to
    break-even, ATR trail) / TP2 / time stop. Stop first when both are inside one bar. After the fill bar, a bar that
    opens through the stop in force (fixed, break-even or trail) exits at its open, the simulator's gap rule (issue 12
    item 11; ``exit_price`` used to be the stop level, a price such a bar never traded). Net return in percent after
    the round trip ``costs.round_trip_pct(p.min_tp_cost_mode)`` (the one :func:`candidates` deducts from TP1).

    Returns:
        ``status`` (EXPIRED / TP / SL / TP1_TRAIL / TIMEOUT / OPEN = not resolved by the data's end), ``fill_ts``,
        ``exit_ts`` (epoch ms, -1 if none), ``exit_price``, ``net_pct``, ``tp1_hit`` and ``win`` (1.0 when TP1 was reached
        before the stop — the seed's winning statuses TP / TP1_TRAIL — else 0.0; NaN if unresolved or
        never filled), aligned with ``plans``.
    """
    o, h, l, c = (bars[k].to_numpy(float) for k in ("open", "high", "low", "close"))
    ts = bars["ts"].to_numpy(np.int64)
    st, fb, eb, px, gross, hit1 = _outcomes_kernel(
        o,
        h,
        l,
        c,
        plans["bar"].to_numpy(np.int64),
        plans["side"].to_numpy(np.int64),
        plans["entry"].to_numpy(float),
        plans["sl"].to_numpy(float),
        plans["tp1"].to_numpy(float),
        plans["tp2"].to_numpy(float),
        plans["atr"].to_numpy(float),
        np.full(len(plans), p.validity_candles, np.int64),
        p.max_hold_candles,
        tp1_fraction,
        breakeven_after_tp1,
        trail_atr,
    )
    net = gross * 100 - costs.round_trip_pct(p.min_tp_cost_mode)
    resolved = np.isin(st, [1, 2, 3, 4])
    return pd.DataFrame(
        {
            "status": pd.Series(st).map(OUTCOMES).to_numpy(),
            "fill_ts": np.where(fb >= 0, ts[np.maximum(fb, 0)], -1),
            "exit_ts": np.where(eb >= 0, ts[np.maximum(eb, 0)], -1),
            "exit_price": px,
            "net_pct": np.where(resolved, net, np.nan),
            "tp1_hit": np.where(resolved, hit1.astype(float), np.nan),
            "win": np.where(resolved, hit1.astype(float), np.nan),
        },
        index=plans.index,
    )


#: statuses of an executed signal (``signals.setups.status``)
SIGNAL_STATUSES = ("NEW", "OPEN", "TP", "SL", "TP1_TRAIL", "TIMEOUT", "EXPIRED", "REJECTED", "SKIPPED")


def nominal_pnl_by(signals: pd.DataFrame, keys: list[str], usd_per_trade: float) -> pd.DataFrame:
    """Signals per ``keys`` group with the seed's nominal-stake accounting.

    Args:
        signals: rows with ``keys`` and ``net_pct`` (net PnL in percent of the entry notional; NaN = no trade).
        usd_per_trade: nominal stake per trade, USD (``setup_scanner.evaluation.usd_per_trade``).

    Returns:
        ``keys`` + ``n`` (rows), ``trades`` (rows with a ``net_pct``), ``avg_net_pct`` and ``pnl_usd``
        (= ``usd_per_trade`` × Σ ``net_pct`` / 100), sorted by ``keys``.
    """
    x = signals.assign(_net=pd.to_numeric(signals["net_pct"], errors="coerce").astype(float))
    out = (
        x.groupby(keys, sort=True)
        .agg(n=("_net", "size"), trades=("_net", "count"), avg_net_pct=("_net", "mean"), _sum=("_net", "sum"))
        .reset_index()
    )
    out["pnl_usd"] = usd_per_trade * out.pop("_sum") / 100
    return out


def one_signal_per_bar(signals: pd.DataFrame, score: str) -> pd.DataFrame:
    """Keep the best-``score`` signal of each bar (a long and a short can fire on the same candle)."""
    return (
        signals.sort_values(["bar", score], ascending=[True, False], kind="stable")
        .drop_duplicates("bar", keep="first")
        .reset_index(drop=True)
    )


def signal_arrays(n: int, signals: pd.DataFrame) -> dict[str, np.ndarray]:
    """Simulator inputs for one series of ``n`` bars from plan rows (``bar``, ``side``, ``entry``, ``sl``, ``tp1``,
    ``tp2``, ``leverage``, ``liq_price``; at most one per bar): ``signal`` (int8 ±1), ``limit_price``, ``sl_price``,
    ``tp1_price``, ``tp_price``, ``leverage`` and ``liq_price`` (float64, NaN where no signal).

    Each signal executes at **its plan's** leverage and isolated-margin liquidation price (:func:`position_size`), so
    the simulator accepts exactly the plans the scanner accepted (a 1x plan with a wide stop is not checked against
    the configured maximum leverage). Margin = the whole sleeve, so the notional cap is sleeve x plan leverage; the
    risk-per-trade size is the binding one for every plan with leverage below ``max_leverage``.
    """
    b = signals["bar"].to_numpy(np.int64)
    out = {"signal": np.zeros(n, np.int8)}
    out["signal"][b] = signals["side"].to_numpy(np.int8)
    for k, col in (
        ("limit_price", "entry"),
        ("sl_price", "sl"),
        ("tp1_price", "tp1"),
        ("tp_price", "tp2"),
        ("leverage", "leverage"),
        ("liq_price", "liq_price"),
    ):
        a = np.full(n, np.nan)
        a[b] = signals[col].to_numpy(float)
        out[k] = a
    return out


#: why a signal that never became a position has its status (``status_reason``; ``{since}`` = UTC time)
STATUS_REASONS = {
    "skipped_position": "position open since {since} (one position per symbol x timeframe)",
    "skipped_order": "limit order of the signal at {since} still resting (one order per symbol x timeframe)",
    "pending": "entry order waiting at the data's end",
    "expired": "limit not filled within its validity",
    "rejected_liq": "liquidation price before the stop at the fill",
    "rejected_levels": "SL/TP on the wrong side of the fill",
}


def seed_status(exit_reason, tp1_hit, order_status=None) -> np.ndarray:
    """Seed 002 status (object array) of engine rows: ``exit_reason`` (:data:`pipeline.core.engine.EXIT_REASONS`
    name of a trade, NaN / None for an order row), ``tp1_hit`` bool, ``order_status`` (an order row's status, or
    None): ``OPEN, TP, SL, TP1_TRAIL, TIMEOUT, EXPIRED, REJECTED, NEW``, else ``SKIPPED`` (see
    :func:`execution_status`)."""
    r = np.asarray(exit_reason, dtype=object)
    hit = np.asarray(tp1_hit, dtype=bool)
    os_ = np.full(r.shape, None, dtype=object) if order_status is None else np.asarray(order_status, dtype=object)
    return np.select(
        [
            r == "open",
            r == "tp",
            np.isin(r, ["sl", "liquidation"]) & ~hit,
            np.isin(r, ["sl", "breakeven", "trail", "liquidation"]),
            r == "time",
            os_ == "expired",
            np.isin(os_, ["rejected_liq", "rejected_levels"]),
            os_ == "pending",
        ],
        ["OPEN", "TP", "SL", "TP1_TRAIL", "TIMEOUT", "EXPIRED", "REJECTED", "NEW"],
        "SKIPPED",
    )


def execution_status(signal_bar: np.ndarray, trades: pd.DataFrame, orders: pd.DataFrame) -> pd.DataFrame:
    """Status of each signal after one simulator run of its series (seed: NEW → OPEN → TP / SL / TP1_TRAIL / EXPIRED).

    The run must have ``record_skipped=True`` so every signal has exactly one trade or order row. ``TP`` = TP2
    reached; ``TP1_TRAIL`` = TP1 taken, the rest stopped at break-even or by the ATR trail; ``SL`` = stopped before
    TP1 (liquidation included); ``TIMEOUT`` = time stop; ``EXPIRED`` = limit never filled; ``REJECTED`` = levels or
    liquidation invalid at the fill; ``OPEN`` = in a position at the data's end; ``NEW`` = its entry order is still
    waiting at the data's end; ``SKIPPED`` = the series already had a position or a resting order when it fired (one
    at a time per symbol × timeframe; ``status_reason`` names since when). A signal with no row at all reads
    ``SKIPPED`` ("not sent to the simulator").

    Returns:
        Aligned with ``signal_bar``: ``status``, ``status_reason`` (text, None for executed trades), ``entry_ts``,
        ``exit_ts`` (epoch ms, -1 none), ``entry_price``, ``exit_price`` (the last fill), ``exit_reason``, ``pnl``
        (quote), ``net_pct`` (net PnL / entry notional, percent), ``tp1_hit``.
    """
    sb = np.asarray(signal_bar, np.int64)
    out = pd.DataFrame({"signal_bar": sb})
    tcols = ["signal_bar", "entry_ts", "exit_ts", "entry_price", "exit_price", "exit_reason", "pnl", "notional"]
    t = trades[[*tcols, "tp1_hit"]] if len(trades) else pd.DataFrame(columns=[*tcols, "tp1_hit"])
    t = t.assign(
        signal_bar=t["signal_bar"].astype(np.int64), net_pct=100 * t["pnl"].astype(float) / t["notional"].astype(float)
    )
    m = out.merge(t.drop(columns="notional"), on="signal_bar", how="left")
    o = (
        orders[["signal_bar", "status", "since_ts"]].rename(columns={"status": "order_status"})
        if len(orders)
        else pd.DataFrame(columns=["signal_bar", "order_status", "since_ts"])
    )
    m = m.merge(o.astype({"signal_bar": np.int64}), on="signal_bar", how="left")
    r, hit = m["exit_reason"].to_numpy(dtype=object), m["tp1_hit"].fillna(False).to_numpy(bool)
    os_ = m["order_status"].to_numpy(dtype=object)
    status = seed_status(r, hit, os_)
    since = pd.to_datetime(pd.to_numeric(m["since_ts"], errors="coerce"), unit="ms").dt.strftime("%Y-%m-%d %H:%M UTC")
    reason = [
        STATUS_REASONS[x].format(since=w) if isinstance(x, str) else None for x, w in zip(os_, since, strict=True)
    ]
    m["status_reason"] = np.where(
        pd.isna(r) & pd.isna(os_), "not sent to the simulator", pd.Series(reason, dtype=object)
    )
    m["status"] = status
    m["entry_ts"] = m["entry_ts"].fillna(-1).astype(np.int64)
    m["exit_ts"] = np.where(
        np.isin(status, ["OPEN", "NEW", "SKIPPED", "EXPIRED", "REJECTED"]), -1, m["exit_ts"].fillna(-1)
    ).astype(np.int64)
    m["tp1_hit"] = hit
    return m[
        [
            "status",
            "status_reason",
            "entry_ts",
            "exit_ts",
            "entry_price",
            "exit_price",
            "exit_reason",
            "pnl",
            "net_pct",
            "tp1_hit",
        ]
    ]
