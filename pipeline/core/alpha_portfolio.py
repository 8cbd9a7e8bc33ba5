"""Seed 004's portfolio construction, risk sizing and the hourly rebalance backtest on the engine (pure).

Portfolio construction (seed 004 "Portfolio construction", issue 18), one function per rule, each vectorised over the
N assets of one rebalance hour (float64 ``(N,)`` arrays in the universe's order):

1. :func:`rank_scores` — rank by the cost-adjusted expected return ``exp_ret_net`` (fraction over the holding
   horizon, after the round-trip cost of the project's one cost model); only positive, finite scores with a finite,
   positive volatility are eligible (the others get ``no_positive_score``).
2. :func:`select_positions` — the regime's most positions (trend 8, chop 6, down 4) with hysteresis: a holding is
   kept while it ranks within ``rank_buffer`` places below the cut; the free slots go to the best-ranked others.
3. :func:`tilted_inverse_vol` — inverse-volatility weights tilted by score: ``raw_i ∝ (1/σ_i) · (s_i / s̄)^tilt``
   (σ = 24 h realised volatility of 1 h log returns, s = ``exp_ret_net``, s̄ the selected names' mean).
4. :func:`position_caps` — per-position caps: the tier cap (tier 1 15 %, tier 2 10 %, tier 3 5 %) and the risk cap
   of :func:`risk_cap` (the ATR stop must not lose more than 1.75 % of equity), the lesser of the two.
5. :func:`cap_and_redistribute` — scales the raw weights to the invested budget ``1 − cash buffer`` (cash buffer
   trend 10 %, chop 20 %, down 60 %), clips capped names and the tier-3 sleeve (12 % in total), redistributes the
   excess over the names still free, and leaves what cannot be placed in cash: the buffer is never eaten.
6. :func:`apply_bands` — a weight change trades only if it is at least ``band_weight`` of equity, at least
   ``band_notional`` in quote currency and at least the exchange's minimum order; otherwise the current weight is
   held (``band_hold`` / ``below_min_order``) unless holding it would break a cap or the budget.

:func:`target_weights` chains them for one hour on pandas Series (index = symbol) and returns the weights and one
reason per asset (:data:`REASONS`). :func:`plan_targets` runs the hourly loop over a ``(T, N)`` panel, point in time
(the decision at hour ``t`` uses rows ``<= t`` only), and :func:`run_book` feeds the targets to the one engine
(:func:`pipeline.core.engine.run_panel`, one shared cash account, ATR stop / trail and drawdown scaling of
:class:`pipeline.core.engine.Limits`, fills at the next open with the cost model's taker fee and slippage).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field

from pipeline.core.backtest import buy_and_hold
from pipeline.core.costs import Costs, spot_costs
from pipeline.core.engine import EngineResult, Limits, SimParams, run_panel
from pipeline.core.metrics import metrics
from pipeline.core.params import Params

#: reason codes of ``signals.alpha_targets.reason`` (index = code); ``capped_risk`` is the 1.75 % max-loss cap
REASONS = (
    "kept",
    "added",
    "dropped_rank",
    "capped_tier",
    "capped_sleeve",
    "band_hold",
    "below_min_order",
    "no_positive_score",
    "capped_risk",
)
(R_KEPT, R_ADDED, R_DROPPED, R_CAP_TIER, R_CAP_SLEEVE, R_BAND, R_MIN_ORDER, R_NO_SCORE, R_CAP_RISK) = range(
    len(REASONS)
)
REGIMES = ("trend", "chop", "down")
_EPS = 1e-12
HOUR_MS = 3_600_000


def _pairs(*bases: str) -> list[str]:
    return [f"{b}/USDT" for b in bases]


class TierParams(Params):
    """``alpha_portfolio.tiers``: the seed's three tiers and their caps (fractions of equity)."""

    tier1: list[str] = Field(
        default_factory=lambda: _pairs("BTC", "ETH", "SOL", "BNB", "XRP"), description="Tier 1 (major coins)."
    )
    tier2: list[str] = Field(
        default_factory=lambda: _pairs("ADA", "LINK", "AVAX", "DOT"), description="Tier 2 (mid caps)."
    )
    tier3: list[str] = Field(default_factory=lambda: _pairs("DOGE"), description="Tier 3 (meme / small caps).")
    cap_tier1: float = Field(0.15, gt=0, le=1, description="Most weight of one tier-1 position (seed 15 %).")
    cap_tier2: float = Field(0.10, gt=0, le=1, description="Most weight of one tier-2 position (seed 10 %).")
    cap_tier3: float = Field(0.05, gt=0, le=1, description="Most weight of one tier-3 position (seed 5 %).")
    sleeve_cap_tier3: float = Field(0.12, gt=0, le=1, description="Most weight of all tier-3 positions (seed 12 %).")
    unlisted_tier: int = Field(3, ge=1, le=3, description="Tier of a universe symbol no tier lists.")

    def tier_of(self, symbols: list[str]) -> np.ndarray:
        """int64 ``(N,)``: each symbol's tier (1, 2, 3)."""
        m = {s: 1 for s in self.tier1} | {s: 2 for s in self.tier2} | {s: 3 for s in self.tier3}
        return np.array([m.get(s, self.unlisted_tier) for s in symbols], np.int64)

    def cap_of(self, tier: np.ndarray) -> np.ndarray:
        """float64 ``(N,)``: the tier cap of each tier number."""
        return np.array([self.cap_tier1, self.cap_tier2, self.cap_tier3])[np.asarray(tier, np.int64) - 1]


class PortfolioParams(Params):
    """``alpha_portfolio.portfolio``: construction rules per regime, tilt and hysteresis (docs/decisions.md)."""

    max_positions: dict[str, int] = Field(
        default_factory=lambda: {"trend": 8, "chop": 6, "down": 4}, description="Most positions per regime (seed)."
    )
    cash_buffer: dict[str, float] = Field(
        default_factory=lambda: {"trend": 0.10, "chop": 0.20, "down": 0.60},
        description="Cash kept uninvested per regime, fraction of equity (seed).",
    )
    score_tilt: float = Field(
        1.0,
        ge=0,
        description="Exponent of the score tilt: weight ∝ (1/vol) x (score / mean score)^tilt (0 = pure 1/vol).",
    )
    rank_buffer: int = Field(
        2, ge=0, description="Hysteresis: a holding is kept while its rank is within this many places below the cut."
    )
    band_weight: float = Field(
        0.01, ge=0, description="A weight change trades only if |target - current| >= this (fraction of equity)."
    )
    band_notional: float = Field(
        25.0, ge=0, description="... and only if the order is at least this notional (quote currency)."
    )

    def regime_rules(self, regime: str) -> tuple[int, float]:
        """``(max positions, cash buffer)`` of ``regime``.

        Raises:
            ValueError: a regime neither table lists.
        """
        if regime not in self.max_positions or regime not in self.cash_buffer:
            raise ValueError(f"unknown regime {regime!r}: expected one of {sorted(self.max_positions)}")
        return int(self.max_positions[regime]), float(self.cash_buffer[regime])


class AlphaRiskParams(Params):
    """``alpha_portfolio.risk``: ATR stop and trail per position, max loss per position, drawdown scaling."""

    stop_atr: float = Field(1.3, gt=0, description="Initial stop below the entry, ATR(14) multiples (seed 1.3).")
    trail_activation_atr: float = Field(
        0.8, ge=0, description="Favourable move, ATR multiples, that arms the trailing stop (seed 0.8)."
    )
    trail_atr: float = Field(1.3, gt=0, description="Trailing distance from the best price, ATR multiples.")
    max_loss_per_position: float = Field(
        0.0175, gt=0, description="Most equity one position may lose at its initial stop (seed 1.75 %)."
    )
    dd_soft: float = Field(0.05, ge=0, description="Drawdown (equity with open PnL) of the soft level (seed 5 %).")
    dd_soft_scale: float = Field(0.5, gt=0, le=1, description="Exposure multiplier at the soft level (seed 50 %).")
    dd_hard: float = Field(0.10, ge=0, description="Drawdown of the hard level (seed 10 %).")
    dd_hard_scale: float = Field(0.2, gt=0, le=1, description="Exposure multiplier at the hard level (seed 20 %).")
    dd_recovery: float = Field(0.02, ge=0, description="A level is left once the drawdown is this far below it.")
    drawdown_scaling: bool = Field(True, description="Apply the drawdown scaling (false: the no-scaling variant).")
    reentry_cooldown_bars: int = Field(6, ge=0, description="Hours after a stop exit before the asset is bought again.")


class AlphaExecutionParams(Params):
    """``alpha_portfolio.execution``: fills, costs and the exchange's order limits."""

    fill: Literal["next_open"] = Field(
        "next_open",
        description="Fill model of the backtest: next_open (market order at the next bar's open, taker fee + "
        "slippage); the seed's limit orders are not modelled by the engine's target-weight source.",
    )
    costs: Costs = Field(default_factory=spot_costs, description="Fees and slippage (Binance spot: 10 / 10 / 2 bps).")
    min_notional: float = Field(
        5.0, ge=0, description="Smallest order, quote currency, when the exchange's market data has none (Binance 5)."
    )
    lot_step: dict[str, float] = Field(
        default_factory=dict, description="Lot step (base units) per symbol when not read from the exchange; 0 = none."
    )


class AlphaBacktestParams(Params):
    """``alpha_portfolio.backtest``: the hourly rebalance backtest."""

    init_cash: float = Field(10_000.0, gt=0, description="Starting capital, quote currency (one shared account).")
    n_trials: int = Field(1, ge=1, description="Configurations tried before this one (the DSR's N).")


class AlphaBook(Params):
    """The portfolio part of ``alpha_portfolio`` (tiers, portfolio, risk, execution, backtest)."""

    tiers: TierParams = Field(default_factory=TierParams)
    portfolio: PortfolioParams = Field(default_factory=PortfolioParams)
    risk: AlphaRiskParams = Field(default_factory=AlphaRiskParams)
    execution: AlphaExecutionParams = Field(default_factory=AlphaExecutionParams)
    backtest: AlphaBacktestParams = Field(default_factory=AlphaBacktestParams)


# ---- the rules, one per function, (N,) arrays -------------------------------------------------------------------------


def eligible(score: np.ndarray, vol: np.ndarray) -> np.ndarray:
    """bool ``(..., N)`` (any leading shape, e.g. ``(T, N)`` hours x assets): a finite, positive ``score`` (cost-adjusted expected return) and a finite volatility > 0."""
    s, v = np.asarray(score, np.float64), np.asarray(vol, np.float64)
    return np.isfinite(s) & (s > 0) & np.isfinite(v) & (v > 0)


def rank_scores(score: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """int64 ``(..., N)``: 1 = the best ``score`` among the ``ok`` assets (along the last axis), 2 the next ...; 0 for
    the others. Ties keep the universe's order (stable sort)."""
    s = np.where(ok, np.asarray(score, np.float64), -np.inf)
    order = np.argsort(-s, axis=-1, kind="stable")
    rank = np.argsort(order, axis=-1, kind="stable") + 1  # the inverse permutation: each asset's place
    return np.where(ok, rank, 0)


def select_positions(rank: np.ndarray, held: np.ndarray, n_max: int, buffer: int) -> np.ndarray:
    """bool ``(N,)``: the positions of the book, at most ``n_max``.

    Holdings (``held``) ranked ``<= n_max + buffer`` are kept first (the best ranks if more than ``n_max``); the
    slots left go to the best-ranked others. Rank 0 (not eligible) is never selected.
    """
    ok = rank > 0
    keep = ok & held & (rank <= n_max + buffer)
    if keep.sum() > n_max:
        keep &= rank <= np.sort(rank[keep])[n_max - 1]
    slots = n_max - int(keep.sum())
    cand = ok & ~keep
    add = np.zeros_like(keep)
    if slots > 0 and cand.any():
        add = cand & (rank <= np.sort(rank[cand])[min(slots, int(cand.sum())) - 1])
    return keep | add


def tilted_inverse_vol(score: np.ndarray, vol: np.ndarray, selected: np.ndarray, tilt: float) -> np.ndarray:
    """float64 ``(N,)`` summing to 1 over ``selected`` (0 elsewhere; all 0 when none):
    ``raw_i ∝ (1/σ_i) · (s_i / mean(s_selected))^tilt`` (docs/decisions.md, issue 18 "tilt")."""
    raw = np.zeros(len(selected))
    if not selected.any():
        return raw
    s = np.asarray(score, np.float64)[selected]
    raw[selected] = (1.0 / np.asarray(vol, np.float64)[selected]) * (s / s.mean()) ** tilt
    return raw / raw.sum()


def risk_cap(atr_pct: np.ndarray, stop_atr: float, max_loss: float) -> np.ndarray:
    """float64 ``(..., N)``: the largest weight whose initial stop (``stop_atr`` x ATR below the entry) loses at most
    ``max_loss`` of equity: ``max_loss / (stop_atr · ATR/close)`` (seed 004 "max position loss 1.75 %"; a gap
    through the stop is not modelled). ``atr_pct`` = ATR(14) / close, a fraction; NaN or <= 0 → no cap (inf)."""
    a = np.asarray(atr_pct, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.isfinite(a) & (a > 0), max_loss / (stop_atr * a), np.inf)


def position_caps(tier_cap: np.ndarray, risk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(cap, by_risk)``: float64 ``(N,)`` the lesser of the tier cap and the risk cap, and bool ``(N,)`` where the
    risk cap is the binding one."""
    cap = np.minimum(tier_cap, risk)
    return cap, risk < tier_cap


def cap_and_redistribute(
    raw: np.ndarray, cap: np.ndarray, sleeve: np.ndarray, sleeve_cap: float, budget: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Spread ``budget`` over the assets in proportion to ``raw``, within per-asset ``cap`` and a ``sleeve_cap`` on
    the sum of the ``sleeve`` assets (water filling; docs/decisions.md, issue 18 "cap-and-redistribute").

    Each pass gives the free assets ``budget − Σ fixed`` in proportion to ``raw``; assets above their cap are fixed
    at it; otherwise, when the sleeve's sum exceeds its cap, every sleeve asset is scaled down to it and fixed. It
    stops when nothing is above a cap (at most N + 1 passes); weight that no free asset can take stays in cash.

    Args:
        raw: float64 ``(N,)`` >= 0 (0 = not in the book). cap: float64 ``(N,)`` > 0. sleeve: bool ``(N,)``.
        sleeve_cap, budget: fractions of equity.

    Returns:
        ``(w, capped, sleeved)``: float64 ``(N,)`` weights (``Σ w <= budget``, ``w <= cap``, ``Σ w[sleeve] <=
        sleeve_cap``), bool ``(N,)`` fixed at the own cap, bool ``(N,)`` scaled by the sleeve cap.
    """
    n = len(raw)
    active = raw > 0
    w = np.zeros(n)
    fixed = np.zeros(n, bool)
    capped = np.zeros(n, bool)
    sleeved = np.zeros(n, bool)
    for _ in range(n + 2):
        free = active & ~fixed
        room = budget - w[fixed].sum()
        if free.any():
            w[free] = max(room, 0.0) * raw[free] / raw[free].sum()
        over = free & (w > cap + _EPS)
        if over.any():
            w[over] = cap[over]
            fixed |= over
            capped |= over
            continue
        sl = sleeve & active
        tot = w[sl].sum()
        if sl.any() and tot > sleeve_cap + _EPS:
            w[sl] *= sleeve_cap / tot
            sleeved |= sl
            capped &= ~sl
            fixed |= sl
            continue
        break
    return w, capped, sleeved


def apply_bands(
    target: np.ndarray,
    current: np.ndarray,
    equity: float,
    band_weight: float,
    band_notional: float,
    min_notional: np.ndarray,
    cap: np.ndarray,
    sleeve: np.ndarray,
    sleeve_cap: float,
    budget: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hold the current weight where the change is too small to trade.

    A change ``|target − current|`` below ``band_weight``, or whose notional ``|Δ| · equity`` is below
    ``band_notional``, is ``band_hold``; else below the exchange's ``min_notional`` it is ``below_min_order``. A hold
    is released (the target trades) where keeping it would break the asset's ``cap``, the sleeve cap or the
    ``budget`` (holdings above their target are released first, which restores each limit: the targets meet them).
    ``equity`` NaN or <= 0: notional rules off.

    Returns:
        ``(w, band, below_min)``: final float64 ``(N,)`` weights and the bool ``(N,)`` masks of held changes.
    """
    d = np.abs(target - current)
    change = d > _EPS
    notional = d * equity if (equity == equity and equity > 0) else np.full(len(d), np.inf)
    band = change & ((d < band_weight) | (notional < band_notional))
    below = change & ~band & (notional < min_notional)
    hold = band | below
    w = np.where(hold, current, target)
    release = hold & (w > cap + _EPS)
    w = np.where(release, target, w)
    hold &= ~release
    above = hold & (current > target)
    if w[sleeve].sum() > sleeve_cap + _EPS:
        w = np.where(above & sleeve, target, w)
        hold &= ~(above & sleeve)
    if w.sum() > budget + _EPS:
        w = np.where(above, target, w)
        hold &= ~above
    return w, band & hold, below & hold


@dataclass(frozen=True)
class BookArrays:
    """Per-asset constants of one universe for :func:`plan_hour`: ``tier`` int64 ``(N,)``, ``tier_cap`` float64
    ``(N,)``, ``sleeve`` bool ``(N,)`` (tier 3), ``min_notional`` float64 ``(N,)`` quote currency."""

    tier: np.ndarray
    tier_cap: np.ndarray
    sleeve: np.ndarray
    min_notional: np.ndarray

    @classmethod
    def of(cls, symbols: list[str], book: AlphaBook, min_notional=None) -> BookArrays:
        tier = book.tiers.tier_of(symbols)
        mn = book.execution.min_notional if min_notional is None else min_notional
        return cls(tier, book.tiers.cap_of(tier), tier == 3, np.broadcast_to(np.asarray(mn, np.float64), tier.shape))


def plan_hour(
    score: np.ndarray,
    current: np.ndarray,
    vol: np.ndarray,
    atr_pct: np.ndarray,
    regime: str,
    book: AlphaBook,
    arrays: BookArrays,
    equity: float = math.nan,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One rebalance on ``(N,)`` arrays: ``(weights float64, reason codes int64 (REASONS), rank int64)``.

    ``score`` = ``exp_ret_net`` (fraction), ``current`` = current weights (fractions of equity, >= 0), ``vol`` = 24 h
    realised volatility (fraction per hour), ``atr_pct`` = ATR(14) / close (NaN = no risk cap), ``equity`` in quote
    currency (NaN = notional bands off). Raises ValueError for an unknown ``regime``.
    """
    n_max, buffer_cash = book.portfolio.regime_rules(regime)
    ok = eligible(score, vol)
    cap, by_risk = position_caps(
        arrays.tier_cap, risk_cap(atr_pct, book.risk.stop_atr, book.risk.max_loss_per_position)
    )
    cur = np.nan_to_num(np.asarray(current, np.float64), nan=0.0)
    return _decide(score, cur, vol, ok, rank_scores(score, ok), cap, by_risk, n_max, 1.0 - buffer_cash, equity, book,
                   arrays)  # fmt: skip


def _decide(score, cur, vol, ok, rank, cap, by_risk, n_max, budget, equity, book, arrays):
    """Rules 2, 3, 5 and 6 and the reasons, given the hour's eligibility, ranks and caps (the path-dependent part,
    which needs the weights held; :func:`plan_targets` computes the rest for all hours at once)."""
    p, t = book.portfolio, book.tiers
    sel = select_positions(rank, cur > _EPS, n_max, p.rank_buffer)
    raw = tilted_inverse_vol(score, vol, sel, p.score_tilt)
    tw, capped, sleeved = cap_and_redistribute(raw, cap, arrays.sleeve, t.sleeve_cap_tier3, budget)
    w, band, below = apply_bands(
        tw, cur, equity, p.band_weight, p.band_notional, arrays.min_notional, cap, arrays.sleeve,
        t.sleeve_cap_tier3, budget,
    )  # fmt: skip
    reason = np.where(cur > _EPS, R_KEPT, R_ADDED)
    reason = np.where(capped, np.where(by_risk, R_CAP_RISK, R_CAP_TIER), reason)
    reason = np.where(sleeved, R_CAP_SLEEVE, reason)
    reason = np.where(~sel, R_DROPPED, reason)
    reason = np.where(~ok, R_NO_SCORE, reason)
    reason = np.where(band, R_BAND, np.where(below, R_MIN_ORDER, reason))
    return w, reason.astype(np.int64), rank


def target_weights(
    scores: pd.Series,
    current: pd.Series,
    volatility: pd.Series,
    regime: str,
    params: AlphaBook,
    *,
    atr_pct: pd.Series | None = None,
    equity: float = math.nan,
    min_notional: pd.Series | float | None = None,
) -> tuple[pd.Series, pd.Series]:
    """Seed 004's target weights of one rebalance (module docstring, rules 1-6).

    Args:
        scores: float Series by symbol, ``exp_ret_net`` (cost-adjusted expected return, fraction; NaN = none).
        current: current weights by symbol (fractions of equity; missing = 0).
        volatility: 24 h realised volatility of 1 h log returns by symbol (fraction per hour).
        regime: ``trend`` | ``chop`` | ``down`` (``regimes.alpha_market``).
        params: :class:`AlphaBook` (``alpha_portfolio`` of ``trader.yaml``).
        atr_pct: ATR(14) / close by symbol (the risk cap; None = off). equity: quote currency (notional bands).
        min_notional: the exchange's minimum order (quote) by symbol or one value (None = ``execution``'s).

    Returns:
        ``(weights, reasons)``: float64 Series (fractions of equity, ``Σ <= 1 − cash buffer``) and str Series of
        :data:`REASONS`, both indexed like ``scores``.

    Raises:
        ValueError: an unknown ``regime``.
    """
    idx = scores.index
    syms = [str(s) for s in idx]
    mn = min_notional.reindex(idx).to_numpy(np.float64) if isinstance(min_notional, pd.Series) else min_notional
    arrays = BookArrays.of(syms, params, mn)
    a = atr_pct.reindex(idx).to_numpy(np.float64) if atr_pct is not None else np.full(len(idx), np.nan)
    w, code, _ = plan_hour(
        scores.to_numpy(np.float64),
        current.reindex(idx).fillna(0.0).to_numpy(np.float64),
        volatility.reindex(idx).to_numpy(np.float64),
        a,
        regime,
        params,
        arrays,
        equity,
    )
    return pd.Series(w, index=idx, name="target_weight"), pd.Series(
        np.asarray(REASONS, dtype=object)[code], index=idx, name="reason"
    )


# ---- risk and execution on the engine ---------------------------------------------------------------------------------


def engine_params(book: AlphaBook, init_cash: float | None = None) -> SimParams:
    """The engine's fill parameters of the book: ``init_cash`` (default ``backtest.init_cash``), the ATR stop at entry −
    ``stop_atr`` x ATR(14) of the decision bar, the trail ``trail_atr`` x ATR armed after a ``trail_activation_atr``
    favourable move, and the cost model's fees and slippage (target-weight orders fill at the next open as taker
    orders: taker fee + slippage; :class:`pipeline.core.costs.Costs`)."""
    r = book.risk
    return SimParams(
        init_cash=float(book.backtest.init_cash if init_cash is None else init_cash),
        sl_atr=r.stop_atr,
        trail_atr=r.trail_atr,
        trail_activation_atr=r.trail_activation_atr,
        **book.execution.costs.sim_kwargs(),
    )


def engine_limits(
    book: AlphaBook, *, drawdown_scaling: bool | None = None, min_notional: float | None = None
) -> Limits:
    """The engine's rules of the book (:class:`pipeline.core.engine.Limits`): the same bands as
    :func:`apply_bands` on the actual (drifted, scaled) weights, the exchange's minimum order (one value for the
    book: the largest of the symbols'), the drawdown scaling on equity with open PnL (soft 5 % → x 0.5, hard 10 % →
    x 0.2, recovery band; ``drawdown_scaling=False`` turns it off) and the re-entry cooldown after a stop."""
    p, r = book.portfolio, book.risk
    dd = r.drawdown_scaling if drawdown_scaling is None else drawdown_scaling
    return Limits(
        band_weight=p.band_weight,
        band_notional=p.band_notional,
        min_notional=float(book.execution.min_notional if min_notional is None else min_notional),
        dd_soft=r.dd_soft if dd else 0.0,
        dd_soft_scale=r.dd_soft_scale if dd else 1.0,
        dd_hard=r.dd_hard if dd else 0.0,
        dd_hard_scale=r.dd_hard_scale if dd else 1.0,
        dd_recovery=r.dd_recovery if dd else 0.0,
        reentry_cooldown_bars=r.reentry_cooldown_bars,
    )


@dataclass
class Plan:
    """Targets of every rebalance hour of a ``(T, N)`` panel (:func:`plan_targets`): ``weight`` float64 ``(T, N)``
    (NaN = no decision that hour), ``reason`` int64 ``(T, N)`` (:data:`REASONS`, -1 = no decision), ``rank`` int64
    ``(T, N)`` (0 = not eligible), ``current`` float64 ``(T, N)`` the weights held before the decision (the previous
    targets drifted with the closes), ``equity`` float64 ``(T,)`` the cost-free equity estimate used for the notional
    bands."""

    weight: np.ndarray
    reason: np.ndarray
    rank: np.ndarray
    current: np.ndarray
    equity: np.ndarray


def plan_targets(
    score: np.ndarray,
    vol: np.ndarray,
    atr_pct: np.ndarray,
    close: np.ndarray,
    regime: np.ndarray,
    symbols: list[str],
    book: AlphaBook,
    *,
    min_notional=None,
    init_cash: float | None = None,
) -> Plan:
    """The hourly rebalance loop, point in time: hour ``t``'s targets use rows ``<= t`` only.

    The weights held before hour ``t``'s decision are hour ``t − 1``'s targets drifted by the closes
    (``w · c_t / c_{t−1}``, renormalised with the cash), i.e. the book as planned, before costs, stops and the
    engine's drawdown scaling; the equity for the notional bands grows the same way from ``init_cash``. An hour
    whose regime is not one of :data:`REGIMES` or without any score is no decision (NaN; holdings drift).

    Args:
        score, vol, atr_pct, close: float64 ``(T, N)`` ``exp_ret_net``, 24 h volatility, ATR(14)/close and the closes
            (NaN = missing). regime: ``(T,)`` str. symbols: the N names. book: :class:`AlphaBook`.
        min_notional: the exchange's minimum order per symbol ``(N,)`` or one value (None = ``execution``'s).
    """
    T, n = score.shape
    arrays = BookArrays.of(list(symbols), book, min_notional)
    px = pd.DataFrame(close).ffill().to_numpy(np.float64)
    out_w, out_cur = np.full((T, n), np.nan), np.zeros((T, n))
    out_r, out_k = np.full((T, n), -1, np.int64), np.zeros((T, n), np.int64)
    eqs = np.zeros(T)
    cur, eq = np.zeros(n), float(book.backtest.init_cash if init_cash is None else init_cash)
    decided = np.isfinite(score).any(axis=1)
    # rules 1 and 4 do not depend on the weights held: all hours at once
    ok = eligible(score, vol)
    rank = rank_scores(score, ok)
    cap, by_risk = position_caps(
        arrays.tier_cap, risk_cap(atr_pct, book.risk.stop_atr, book.risk.max_loss_per_position)
    )
    rules = {r: book.portfolio.regime_rules(r) for r in REGIMES}
    for t in range(T):
        if t > 0 and cur.any():
            with np.errstate(invalid="ignore", divide="ignore"):
                g = px[t] / px[t - 1]
            inv = cur * np.where(np.isfinite(g), g, 1.0)
            tot = 1.0 - cur.sum() + inv.sum()
            cur, eq = inv / tot, eq * tot
        out_cur[t], eqs[t] = cur, eq
        if not decided[t] or regime[t] not in REGIMES:
            continue
        n_max, cash = rules[regime[t]]
        if not ok[t].any() and not cur.any():  # flat and nothing to buy: every name no_positive_score, stay flat
            out_w[t], out_r[t], out_k[t] = 0.0, R_NO_SCORE, 0
            continue
        w, code, k = _decide(
            score[t], cur, vol[t], ok[t], rank[t], cap[t], by_risk[t], n_max, 1.0 - cash, eq, book, arrays
        )
        out_w[t], out_r[t], out_k[t] = w, code, k
        cur = w
    return Plan(out_w, out_r, out_k, out_cur, eqs)


def run_book(
    ts: np.ndarray,
    ohlc: dict[str, np.ndarray],
    atr: np.ndarray,
    weight: np.ndarray,
    symbols: list[str],
    book: AlphaBook,
    *,
    drawdown_scaling: bool | None = None,
    lot_step=None,
    min_notional: float | None = None,
    init_cash: float | None = None,
) -> EngineResult:
    """The targets through the one engine: one shared cash account, next-open fills with the taker fee and slippage,
    ATR stop and trail per position, drawdown scaling on equity with open PnL (:func:`engine_params`,
    :func:`engine_limits`).

    Args:
        ts: int64 ``(T,)`` bar open times (epoch ms UTC). ohlc: ``open, high, low, close`` float64 ``(T, N)``.
        atr: float64 ``(T, N)`` ATR(14) in price units (the stop distance of a buy decided on that bar).
        weight: float64 ``(T, N)`` targets decided on each bar's close (NaN = no decision). lot_step: ``(N,)`` base
            units (None = ``execution.lot_step``, 0 = none).
    """
    lot = np.array([book.execution.lot_step.get(s, 0.0) for s in symbols]) if lot_step is None else np.asarray(lot_step)
    present = np.isfinite(ohlc["close"])
    return run_panel(
        np.asarray(ts, np.int64),
        ohlc["open"],
        ohlc["high"],
        ohlc["low"],
        ohlc["close"],
        engine_params(book, init_cash),
        names=list(symbols),
        atr=np.where(present, atr, np.nan),
        weight=np.where(present, weight, np.nan),
        lot_step=lot,
        limits=engine_limits(book, drawdown_scaling=drawdown_scaling, min_notional=min_notional),
        record_bars=True,
    )


# ---- the backtest ------------------------------------------------------------------------------------------------------

#: the books of the backtest: name → (scores used, drawdown scaling)
VARIANTS = {
    "alpha_book": ("scores", True),
    "alpha_book_no_dd": ("scores", False),
    "alpha_book_fallback": ("fallback", True),
}
TARGET_COLUMNS = ["ts", "symbol", "target_weight", "current_weight", "rank", "exp_ret_net", "regime", "reason"]


@dataclass
class Panel:
    """Scores and 1 h candles on one hourly grid: ``ts`` int64 ``(T,)`` bar open times (epoch ms UTC), float64
    ``(T, N)`` ``open, high, low, close`` (NaN = no bar), ``score`` (``exp_ret_net``), ``vol`` (``rvol_24h``),
    ``atr`` (``atr_14``, price units), ``regime`` ``(T,)`` object (``""`` = none), ``symbols`` (N names)."""

    ts: np.ndarray
    ohlc: dict[str, np.ndarray]
    score: np.ndarray
    vol: np.ndarray
    atr: np.ndarray
    regime: np.ndarray
    symbols: list[str]

    @property
    def atr_pct(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.atr / self.ohlc["close"]


def panel_of(scores: pd.DataFrame, candles: pd.DataFrame, symbols: list[str]) -> Panel:
    """The ``(T, N)`` panel of ``signals.alpha_scores`` rows (``symbol, ts, regime, exp_ret_net, rvol_24h, atr_14``)
    on the grid of the 1 h ``candles`` (``symbol, ts, open, high, low, close``) from the first score hour on."""
    start = int(scores["ts"].min()) if len(scores) else 0
    c = candles[candles["ts"] >= start]
    grid = np.unique(c["ts"].to_numpy(np.int64))

    def wide(df: pd.DataFrame, col: str) -> np.ndarray:
        return (
            df.pivot_table(index="ts", columns="symbol", values=col, aggfunc="last")
            .reindex(index=grid, columns=symbols)
            .to_numpy(np.float64)
        )

    reg = scores.groupby("ts")["regime"].first().reindex(grid).fillna("").to_numpy(object)
    return Panel(
        grid,
        {k: wide(c, k) for k in ("open", "high", "low", "close")},
        wide(scores, "exp_ret_net"),
        wide(scores, "rvol_24h"),
        wide(scores, "atr_14"),
        reg,
        list(symbols),
    )


def targets_frame(panel: Panel, plan: Plan) -> pd.DataFrame:
    """``signals.alpha_targets`` rows (:data:`TARGET_COLUMNS`): one per asset per decided hour."""
    t_idx, a_idx = np.nonzero(plan.reason >= 0)
    return pd.DataFrame(
        {
            "ts": panel.ts[t_idx],
            "symbol": np.asarray(panel.symbols, dtype=object)[a_idx],
            "target_weight": plan.weight[t_idx, a_idx],
            "current_weight": plan.current[t_idx, a_idx],
            "rank": plan.rank[t_idx, a_idx],
            "exp_ret_net": panel.score[t_idx, a_idx],
            "regime": panel.regime[t_idx],
            "reason": np.asarray(REASONS, dtype=object)[plan.reason[t_idx, a_idx]],
        }
    )


def exposure_by_regime(book_frame: pd.DataFrame, panel: Panel) -> pd.DataFrame:
    """Per regime: ``hours``, mean ``gross_exposure`` (Σ|position| / equity at the close), mean ``exposure_scale``
    (drawdown scaling in force) and the book's mean hourly ``return`` in that regime."""
    reg = pd.Series(panel.regime, index=panel.ts).reindex(book_frame["ts"].to_numpy()).to_numpy()
    f = book_frame.assign(regime=reg, ret=book_frame["equity"].pct_change())
    g = f[f["regime"] != ""].groupby("regime")
    return pd.DataFrame(
        {
            "hours": g.size(),
            "gross_exposure": g["gross_exposure"].mean(),
            "exposure_scale": g["exposure_scale"].mean(),
            "mean_hourly_return": g["ret"].mean(),
        }
    ).reset_index()


def plan_panel(panel: Panel, book: AlphaBook, score: np.ndarray | None = None, min_notional=None) -> Plan:
    """:func:`plan_targets` over a :class:`Panel` (``score`` default: the panel's ``exp_ret_net``)."""
    s = panel.score if score is None else score
    return plan_targets(
        s, panel.vol, panel.atr_pct, panel.ohlc["close"], panel.regime, panel.symbols, book, min_notional=min_notional
    )


def weights_of(targets: pd.DataFrame, panel: Panel) -> np.ndarray:
    """float64 ``(T, N)`` target weights of stored ``signals.alpha_targets`` rows on the panel's grid (NaN = none)."""
    return (
        targets.pivot_table(index="ts", columns="symbol", values="target_weight", aggfunc="last")
        .reindex(index=panel.ts, columns=panel.symbols)
        .to_numpy(np.float64)
    )


def run_variant(panel: Panel, book: AlphaBook, score: np.ndarray, drawdown_scaling: bool, *, lot_step=None):
    """``(plan, engine result)`` of one book: :func:`plan_targets` on ``score`` then :func:`run_book`."""
    plan = plan_panel(panel, book, score)
    res = run_book(
        panel.ts, panel.ohlc, panel.atr, plan.weight, panel.symbols, book, drawdown_scaling=drawdown_scaling,
        lot_step=lot_step,
    )  # fmt: skip
    return plan, res


def book_metrics(res: EngineResult, n_trials: int = 1) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """``(per-bar book, closed trades, metrics)`` of an engine run, with the project's one
    :func:`pipeline.core.metrics.metrics` (daily UTC closes; the equity of a bar is known at its close)."""
    b = res.book
    trades = res.trades()
    closed = trades[trades["exit_reason"] != "open"]
    m = metrics(
        b["ts"].to_numpy(),
        b["equity"].to_numpy(),
        closed,
        b["gross_exposure"].to_numpy(),
        known_after_ms=HOUR_MS,
        n_trials=n_trials,
    )
    return b, trades, m


def benchmarks(panel: Panel, init_cash: float) -> dict[str, pd.DataFrame]:
    """Buy-and-hold curves over the panel (no costs, no rebalancing; :func:`pipeline.core.backtest.buy_and_hold`):
    ``buy_and_hold_universe`` (equal weight of the N symbols) and ``buy_and_hold_btc`` (``BTC/USDT`` when listed)."""
    closes = {
        s: pd.DataFrame({"ts": panel.ts, "close": panel.ohlc["close"][:, j]}).dropna()
        for j, s in enumerate(panel.symbols)
    }
    a, z = int(panel.ts[0]), int(panel.ts[-1])
    out = {"buy_and_hold_universe": buy_and_hold(closes, a, z, init_cash)}
    if "BTC/USDT" in closes:
        out["buy_and_hold_btc"] = buy_and_hold({"BTC/USDT": closes["BTC/USDT"]}, a, z, init_cash)
    return out
