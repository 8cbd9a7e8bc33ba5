"""Daily on-chain regime features and the options desk's indicator regimes (pure, point-in-time).

Input: ``market.onchain_daily`` and ``market.sentiment_daily`` rows. The frame is first put on a full
daily calendar (missing days stay NaN, never filled); every feature of day D uses days <= D only (trailing
windows in days), so a signal computed on history truncated at D equals the full run's for D.

Each indicator has a **primary** metric (used on days the data has it) and a documented **proxy** with
full-history coverage; ``<indicator>_source`` records which one a day used, and a day where neither can be
computed is ``unavailable`` (never neutral):

* **MDIA** (mean dollar invested age). No file carries it, so every day uses the proxy: realized cap
  treated as dollars entering at age 0, ``age_t = (age_{t-1} + 1) * min(1, RC_{t-1} / RC_t)`` (the
  dollar-weighted age of the realized cap when outflows are ignored). The regime reads the 30-day age
  change net of its natural +30-day drift, as a trailing z-score: far below usual = fresh capital
  (``inflow``/``strong_inflow``), far above = capital aging without new money (``distribution``).
* **Whales**: primary = 30-day change of the number of addresses holding >= 1k and >= 10k BTC (Glassnode
  2010-2020, Coin Metrics 2023-2025); proxy = 30-day change of exchange-held supply (Coin Metrics,
  2014->; falling = coins leaving exchanges = accumulation).
* **MVRV-LS** (long-horizon minus short-horizon MVRV): primary = Glassnode LTH-MVRV - STH-MVRV (2010-2019);
  proxy = MVRV - price / 155-day mean price (the 155-day mean as the short-term holders' cost basis).
  Both are read through the same trailing z-score, so their regimes are comparable.

Thresholds are :class:`OnchainRegimeParams` (documented defaults; ``research``-style config in trader.yaml).

The feature layer (seed 000 "FEATURE LAYER", 60+ regime features; 93 here) is one pure function per indicator
family, each documenting its formulas and units, composed by :func:`onchain_features`: :func:`mdia_features`
(changes, slopes, percentiles, buckets, regime runs), :func:`mvrv_features` (composite, percentiles over 30 d to
4 y, 60-day view), :func:`mvrv_ls_features` (primary/proxy LS, z, slopes, percentiles), :func:`whale_features`
(cohort and exchange-supply changes, accumulation/distribution streaks and counts) and :func:`sentiment_features`
(Fear & Greed z-scores, changes, buckets and class counts).
"""

from __future__ import annotations

import numba
import numpy as np
import pandas as pd
from pydantic import Field

from pipeline.core.params import Params

UNAVAILABLE = "unavailable"


class OnchainRegimeParams(Params):
    mdia_strong_inflow: float = Field(
        -1.5, description="z of the drift-adjusted MDIA 30d change at or below this: strong_inflow."
    )
    mdia_inflow: float = Field(-0.5, description="... at or below this: inflow.")
    mdia_distribution: float = Field(
        1.0, description="... at or above this: distribution (capital aging, no fresh money)."
    )
    mdia_z_window: int = Field(365, description="Days of the trailing z-score window.")
    whale_count_step: float = Field(
        0.01, description="30d change of >=1k / >=10k address counts that counts as up/down."
    )
    whale_proxy_strong: float = Field(
        0.05, description="30d exchange-supply change (abs) for broad_accum / strong_distribution."
    )
    whale_proxy_step: float = Field(
        0.015, description="30d exchange-supply change (abs) for strategic_accum / distribution."
    )
    ls_z_window: int = Field(365, description="Days of the trailing z-score of MVRV-LS.")
    ls_slope_days: int = Field(14, description="Days of the MVRV-LS z slope.")
    ls_slope_min: float = Field(0.25, description="|z slope| below this is flat.")
    ls_cross_days: int = Field(14, description="A zero cross within this many days confirms a recovery / put.")
    ls_warning_z: float = Field(1.5, description="z at or above this and falling: distribution_warning.")
    ls_bear_z: float = Field(-1.0, description="z at or below this and falling: bear.")
    sth_days: int = Field(155, description="Short-term holder horizon (days) of the MVRV-LS proxy.")


@numba.njit(cache=True)
def _mdia_kernel(rc):  # pragma: no cover - compiled
    out = np.full(rc.shape[0], np.nan)
    age = np.nan
    prev = np.nan
    for i in range(rc.shape[0]):
        x = rc[i]
        if np.isnan(x) or x <= 0:
            age = np.nan  # a hole breaks the recursion: restart after it rather than invent
            prev = np.nan
            continue
        if np.isnan(age):
            age = 0.0
        else:
            age = (age + 1.0) * min(1.0, prev / x)
        out[i] = age
        prev = x
    return out


def mdia_proxy(realized_cap: np.ndarray) -> np.ndarray:
    """Dollar-weighted age (days) of the realized cap; NaN on and restarted after a missing day."""
    return _mdia_kernel(np.asarray(realized_cap, np.float64))


def _chg(s: pd.Series, days: int) -> pd.Series:
    return s / s.shift(days) - 1.0


def _pct_rank(s: pd.Series, window: int) -> pd.Series:
    return s.rolling(window, min_periods=max(30, window // 4)).rank(pct=True)


def _mvrv_ls_regime(ls: pd.Series, p: OnchainRegimeParams) -> tuple[pd.Series, pd.Series]:
    """Regime of an MVRV-LS series through its trailing z-score; returns (regime, z)."""
    roll = ls.rolling(p.ls_z_window, min_periods=p.ls_z_window // 2)
    z = (ls - roll.median()) / roll.std()
    slope = z - z.shift(p.ls_slope_days)
    above = (z > 0).astype(float).where(z.notna())
    crossed_up = (above.diff() > 0).astype(int).rolling(p.ls_cross_days, min_periods=1).max() > 0
    crossed_dn = (above.diff() < 0).astype(int).rolling(p.ls_cross_days, min_periods=1).max() > 0
    up, dn = slope > p.ls_slope_min, slope < -p.ls_slope_min
    conds = [
        (z > 0) & crossed_up & up,
        (z <= 0) & crossed_dn & dn,
        (z >= p.ls_warning_z) & (slope < 0),
        (z > 0) & up,
        (z > 0) & dn,
        (z <= 0) & up,
        (z <= p.ls_bear_z) & dn,
        (z <= 0) & dn,
    ]
    names = [
        "call_confirm_recovery",
        "put_confirm",
        "distribution_warning",
        "trend_confirm",
        "rollover",
        "improving",
        "bear",
        "weak_down",
    ]
    reg = pd.Series(np.select([c.to_numpy() for c in conds], names, "neutral"), index=ls.index, dtype=object)
    reg[z.isna() | slope.isna()] = UNAVAILABLE
    return reg, z


def _whale_count_regime(c1k: pd.Series, c10k: pd.Series, step: float) -> pd.Series:
    a, b = _chg(c1k, 30), _chg(c10k, 30)
    up1, up10, dn1, dn10 = a >= step, b >= step, a <= -step, b <= -step
    conds = [up1 & up10, dn1 & dn10, (up1 | up10) & (dn1 | dn10), up1 | up10, dn1 | dn10]
    reg = pd.Series(
        np.select(
            [c.to_numpy() for c in conds],
            ["broad_accum", "strong_distribution", "mixed", "strategic_accum", "distribution"],
            "neutral",
        ),
        index=c1k.index,
        dtype=object,
    )
    reg[a.isna() | b.isna()] = UNAVAILABLE
    return reg


def _whale_proxy_regime(exchange_supply: pd.Series, p: OnchainRegimeParams) -> pd.Series:
    c = _chg(exchange_supply, 30)
    conds = [c <= -p.whale_proxy_strong, c <= -p.whale_proxy_step, c >= p.whale_proxy_strong, c >= p.whale_proxy_step]
    reg = pd.Series(
        np.select(
            [x.to_numpy() for x in conds],
            ["broad_accum", "strategic_accum", "strong_distribution", "distribution"],
            "neutral",
        ),
        index=exchange_supply.index,
        dtype=object,
    )
    reg[c.isna()] = UNAVAILABLE
    return reg


def _prefer(primary: pd.Series, proxy: pd.Series, primary_name: str, proxy_name: str) -> tuple[pd.Series, pd.Series]:
    use_primary = primary != UNAVAILABLE
    use_proxy = ~use_primary & (proxy != UNAVAILABLE)
    value = primary.where(use_primary, proxy.where(use_proxy, UNAVAILABLE))
    source = pd.Series(
        np.select([use_primary.to_numpy(), use_proxy.to_numpy()], [primary_name, proxy_name], UNAVAILABLE),
        index=primary.index,
        dtype=object,
    )
    return value, source


def run_length(values: pd.Series, known: pd.Series) -> pd.Series:
    """Days (1.0, 2.0, ...) that ``values`` has had its current value, counting day D; NaN where not ``known``.

    ``values`` (any dtype) and ``known`` (bool) share one daily index; returns float64 on it. An unknown day ends
    a run (the next known day starts at 1): a vendor gap is never bridged. Trailing only (cumulative)."""
    k = known.to_numpy(bool)
    v = values.to_numpy(object)
    start = ~k.copy()
    start[0] = True
    start[1:] |= (v[1:] != v[:-1]) | ~k[:-1]
    run = pd.Series(1.0, index=values.index).groupby(np.cumsum(start)).cumsum()
    return run.where(known)


def streak(cond: pd.Series, known: pd.Series) -> pd.Series:
    """Consecutive days up to D on which ``cond`` (bool) held, 0.0 on a day it does not, NaN where not ``known``
    (bool); float64 on their shared daily index. An unknown day ends the streak."""
    c = cond.fillna(False).astype(bool) & known
    return run_length(c, known).where(c, 0.0).where(known)


def days_in_window(cond: pd.Series, known: pd.Series, window: int) -> pd.Series:
    """Days among the last ``window`` (D included) on which ``cond`` (bool) held; NaN unless all ``window`` days are
    ``known`` (bool). float64 on the shared daily index."""
    return cond.fillna(False).astype(float).where(known).rolling(window, min_periods=window).sum()


def _zscore(s: pd.Series, window: int, min_periods: int) -> pd.Series:
    roll = s.rolling(window, min_periods=min_periods)
    return (s - roll.mean()) / roll.std()


def daily_calendar(onchain: pd.DataFrame) -> pd.DataFrame:
    """``market.onchain_daily`` rows on a full daily calendar (index ``date``, first to last on-chain day).

    Missing days are NaN rows (never filled). Raises ``KeyError`` without a ``date`` column."""
    d = onchain.copy()
    d["date"] = pd.to_datetime(d["date"])
    d = d.set_index("date").sort_index()
    return d.reindex(pd.date_range(d.index.min(), d.index.max(), freq="D", name="date"))


def _col(d: pd.DataFrame, c: str) -> pd.Series:
    return d[c].astype("float64") if c in d else pd.Series(np.nan, index=d.index)


#: MDIA family: columns of :func:`mdia_features` (the regime strings come with it, see ``REGIME_COLUMNS``)
MDIA_COLUMNS = [
    "mdia_days",
    "mdia_chg_7d",
    "mdia_chg_14d",
    "mdia_chg_30d",
    "mdia_chg_90d",
    "mdia_chg_accel",
    "mdia_drift_adj_30d",
    "mdia_chg_30d_z",
    "mdia_pct_rank_730d",
    "mdia_bucket",
    "mdia_slope_7d",
    "mdia_slope_14d",
    "mdia_slope_30d",
    "mdia_slope_90d",
    "mdia_pct_rank_365d",
    "mdia_bucket_365d",
    "mdia_regime_days",
    "mdia_inflow_days_30",
    "mdia_distribution_days_30",
]


def mdia_features(d: pd.DataFrame, p: OnchainRegimeParams) -> pd.DataFrame:
    """MDIA family (mean dollar invested age, proxy from the realized cap; see the module docstring).

    Args:
        d: :func:`daily_calendar` frame (uses ``realized_cap_usd``).

    Returns:
        Frame on ``d``'s index with ``MDIA_COLUMNS`` (float64) plus ``mdia_regime`` and ``mdia_source`` (str).
        With ``A`` = :func:`mdia_proxy` age in days and ``n`` in days:

        * ``mdia_days`` = ``A`` (days); ``mdia_chg_{7,14,30,90}d`` = ``A_t / A_{t-n} - 1`` (fraction);
          ``mdia_chg_accel`` = ``chg_7d - chg_30d * 7/30`` (fraction).
        * ``mdia_drift_adj_30d`` = ``(A_t - A_{t-30} - 30) / A_{t-30}`` (fraction; 0 = no fresh capital);
          ``mdia_chg_30d_z`` its trailing z-score over ``mdia_z_window`` days (min. a quarter of it) - the
          regime's input.
        * ``mdia_slope_{7,14,30,90}d`` = ``(A_t - A_{t-n}) / n - 1`` (age days gained per calendar day net of
          the +1 day/day ageing; 0 = no new dollars, below 0 = fresh capital lowering the age; never above 0).
        * ``mdia_pct_rank_{730,365}d``: percentile (0-1] of ``A`` in its trailing window (min. max(30, n/4)
          days); ``mdia_bucket`` / ``mdia_bucket_365d`` = quintile 1-5 of that rank (``ceil(5 * rank)``).
        * ``mdia_regime_days``: days the current ``mdia_regime`` has lasted (1 = changed today);
          ``mdia_inflow_days_30`` / ``mdia_distribution_days_30``: days of the last 30 whose regime was
          inflow or strong_inflow / distribution (NaN unless all 30 are available).
        * ``mdia_regime``: ``strong_inflow`` / ``inflow`` / ``distribution`` / ``neutral`` from
          ``mdia_chg_30d_z`` and :class:`OnchainRegimeParams` (``unavailable`` where the z is NaN).
    """
    rc = _col(d, "realized_cap_usd")
    out = pd.DataFrame(index=d.index)
    mdia = pd.Series(mdia_proxy(rc.to_numpy()), index=d.index)
    out["mdia_days"] = mdia
    for n in (7, 14, 30, 90):
        out[f"mdia_chg_{n}d"] = _chg(mdia, n)
    out["mdia_chg_accel"] = out["mdia_chg_7d"] - out["mdia_chg_30d"] * 7 / 30
    # the age grows by 30 days in 30 days without fresh capital: measure the shortfall against that drift
    drift = (mdia - mdia.shift(30) - 30.0) / mdia.shift(30)
    out["mdia_drift_adj_30d"] = drift
    roll = drift.rolling(p.mdia_z_window, min_periods=p.mdia_z_window // 4)
    s30 = (drift - roll.mean()) / roll.std()
    out["mdia_chg_30d_z"] = s30
    out["mdia_pct_rank_730d"] = _pct_rank(mdia, 730)
    out["mdia_bucket"] = np.ceil(out["mdia_pct_rank_730d"] * 5).clip(1, 5)
    for n in (7, 14, 30, 90):
        out[f"mdia_slope_{n}d"] = (mdia - mdia.shift(n)) / n - 1.0
    out["mdia_pct_rank_365d"] = _pct_rank(mdia, 365)
    out["mdia_bucket_365d"] = np.ceil(out["mdia_pct_rank_365d"] * 5).clip(1, 5)
    reg = pd.Series(
        np.select(
            [
                (s30 <= p.mdia_strong_inflow).to_numpy(),
                (s30 <= p.mdia_inflow).to_numpy(),
                (s30 >= p.mdia_distribution).to_numpy(),
            ],
            ["strong_inflow", "inflow", "distribution"],
            "neutral",
        ),
        index=d.index,
        dtype=object,
    )
    reg[s30.isna()] = UNAVAILABLE
    known = reg != UNAVAILABLE
    out["mdia_regime_days"] = run_length(reg, known)
    out["mdia_inflow_days_30"] = days_in_window(reg.isin(["inflow", "strong_inflow"]), known, 30)
    out["mdia_distribution_days_30"] = days_in_window(reg == "distribution", known, 30)
    out["mdia_regime"] = reg
    out["mdia_source"] = np.where(reg == UNAVAILABLE, UNAVAILABLE, "proxy:realized_cap_age")
    return out


#: MVRV family: columns of :func:`mvrv_features`
MVRV_COLUMNS = [
    "mvrv",
    "mvrv_pct_rank_365d",
    "mvrv_pct_rank_1460d",
    "mvrv_z_365d",
    "mvrv_composite",
    "mvrv_chg_14d",
    "mvrv_60d_pct_rank",
    "mvrv_60d_max",
    "mvrv_60d_dist_from_max",
    "realized_price_usd",
    "price_to_realized",
    "mvrv_pct_rank_30d",
    "mvrv_pct_rank_90d",
    "mvrv_pct_rank_180d",
    "mvrv_z_1460d",
    "mvrv_composite_bucket",
    "mvrv_chg_7d",
    "mvrv_chg_30d",
    "mvrv_chg_90d",
    "mvrv_60d_z",
    "mvrv_60d_dist_from_min",
]


def mvrv_features(d: pd.DataFrame) -> pd.DataFrame:
    """MVRV family: composite valuation and the 60-day view of the short overlay.

    Args:
        d: :func:`daily_calendar` frame (uses ``mvrv``, ``price_usd``, ``realized_cap_usd``, ``supply_btc``).

    Returns:
        Frame on ``d``'s index with ``MVRV_COLUMNS`` (float64). ``M`` = MVRV (ratio, Coin Metrics market cap /
        realized cap), ``n`` in days:

        * ``mvrv`` = ``M``; ``mvrv_pct_rank_{30,90,180,365,1460}d`` and ``mvrv_60d_pct_rank``: percentile (0-1] of
          ``M`` in its trailing window (min. max(30, n/4) days).
        * ``mvrv_z_365d`` / ``mvrv_z_1460d``: ``(M - mean) / std`` over the trailing window (min. 90 / 365 days).
        * ``mvrv_composite`` = mean of the 365d and 1460d ranks (0-1; NaN if either is); ``mvrv_composite_bucket``
          = quintile 1-5 of it (``ceil(5 * composite)``).
        * ``mvrv_chg_{7,14,30,90}d`` = ``M_t / M_{t-n} - 1`` (fraction).
        * ``mvrv_60d_max`` (ratio) and ``mvrv_60d_dist_from_max`` = ``1 - M / max60`` (fraction below the 60d high);
          ``mvrv_60d_dist_from_min`` = ``M / min60 - 1`` (fraction above the 60d low); ``mvrv_60d_z`` = z of ``M``
          over 60 days; all with min. 30 days.
        * ``realized_price_usd`` = realized cap / supply (USD per BTC); ``price_to_realized`` = price / it (ratio).
    """
    price, mvrv, rc = _col(d, "price_usd"), _col(d, "mvrv"), _col(d, "realized_cap_usd")
    out = pd.DataFrame(index=d.index)
    out["mvrv"] = mvrv
    out["mvrv_pct_rank_365d"] = _pct_rank(mvrv, 365)
    out["mvrv_pct_rank_1460d"] = _pct_rank(mvrv, 1460)
    out["mvrv_z_365d"] = (mvrv - mvrv.rolling(365, min_periods=90).mean()) / mvrv.rolling(365, min_periods=90).std()
    out["mvrv_composite"] = out[["mvrv_pct_rank_365d", "mvrv_pct_rank_1460d"]].mean(axis=1, skipna=False)
    out["mvrv_chg_14d"] = _chg(mvrv, 14)
    out["mvrv_60d_pct_rank"] = _pct_rank(mvrv, 60)
    out["mvrv_60d_max"] = mvrv.rolling(60, min_periods=30).max()
    out["mvrv_60d_dist_from_max"] = 1.0 - mvrv / out["mvrv_60d_max"]
    out["realized_price_usd"] = rc / _col(d, "supply_btc")
    out["price_to_realized"] = price / out["realized_price_usd"]
    for n in (30, 90, 180):
        out[f"mvrv_pct_rank_{n}d"] = _pct_rank(mvrv, n)
    out["mvrv_z_1460d"] = _zscore(mvrv, 1460, 365)
    out["mvrv_composite_bucket"] = np.ceil(out["mvrv_composite"] * 5).clip(1, 5)
    for n in (7, 30, 90):
        out[f"mvrv_chg_{n}d"] = _chg(mvrv, n)
    out["mvrv_60d_z"] = _zscore(mvrv, 60, 30)
    out["mvrv_60d_dist_from_min"] = mvrv / mvrv.rolling(60, min_periods=30).min() - 1.0
    return out


#: MVRV long/short family: columns of :func:`mvrv_ls_features`
MVRV_LS_COLUMNS = [
    "sth_mvrv_proxy",
    "mvrv_ls_primary",
    "mvrv_ls_proxy",
    "mvrv_ls_z_primary",
    "mvrv_ls_z_proxy",
    "mvrv_ls_slope_proxy",
    "mvrv_ls_pct_rank_365d",
    "mvrv_ls_z",
    "mvrv_ls_slope_primary",
    "mvrv_ls_pct_rank_60d",
    "mvrv_ls_chg_30d_proxy",
    "mvrv_ls_above_zero_days_30",
    "mvrv_ls_regime_days",
]


def mvrv_ls_features(d: pd.DataFrame, p: OnchainRegimeParams) -> pd.DataFrame:
    """MVRV long/short family (long-horizon minus short-horizon MVRV; primary Glassnode, proxy from price).

    Args:
        d: :func:`daily_calendar` frame (uses ``mvrv``, ``price_usd``, ``lth_mvrv_glassnode``, ``sth_mvrv_glassnode``).

    Returns:
        Frame on ``d``'s index with ``MVRV_LS_COLUMNS`` (float64) and ``mvrv_ls_regime_primary``,
        ``mvrv_ls_regime_proxy``, ``mvrv_ls_regime``, ``mvrv_ls_source`` (str):

        * ``sth_mvrv_proxy`` = price / trailing ``sth_days``-day mean price (ratio); ``mvrv_ls_primary`` = LTH-MVRV -
          STH-MVRV (Glassnode); ``mvrv_ls_proxy`` = MVRV - ``sth_mvrv_proxy`` (ratio points).
        * ``mvrv_ls_z_{primary,proxy}``: ``(LS - median) / std`` over ``ls_z_window`` days (min. half);
          ``mvrv_ls_z`` = the z of the source the day's ``mvrv_ls_regime`` used (NaN if unavailable).
        * ``mvrv_ls_slope_{proxy,primary}`` = ``z_t - z_{t-ls_slope_days}`` (z units).
        * ``mvrv_ls_pct_rank_{365,60}d``: trailing percentile of ``mvrv_ls_proxy``; ``mvrv_ls_chg_30d_proxy`` =
          ``LS_t - LS_{t-30}`` of the proxy (ratio points; a difference since LS crosses zero).
        * ``mvrv_ls_above_zero_days_30``: days of the last 30 with ``mvrv_ls_z > 0`` (NaN unless all 30 known);
          ``mvrv_ls_regime_days``: days the current ``mvrv_ls_regime`` has lasted.
    """
    price, mvrv = _col(d, "price_usd"), _col(d, "mvrv")
    out = pd.DataFrame(index=d.index)
    sth_proxy = price / price.rolling(p.sth_days, min_periods=p.sth_days).mean()
    out["sth_mvrv_proxy"] = sth_proxy
    out["mvrv_ls_primary"] = _col(d, "lth_mvrv_glassnode") - _col(d, "sth_mvrv_glassnode")
    out["mvrv_ls_proxy"] = mvrv - sth_proxy
    ls_prim, z_prim = _mvrv_ls_regime(out["mvrv_ls_primary"], p)
    ls_prox, z_prox = _mvrv_ls_regime(out["mvrv_ls_proxy"], p)
    out["mvrv_ls_z_primary"], out["mvrv_ls_z_proxy"] = z_prim, z_prox
    out["mvrv_ls_slope_proxy"] = z_prox - z_prox.shift(p.ls_slope_days)
    out["mvrv_ls_pct_rank_365d"] = _pct_rank(out["mvrv_ls_proxy"], 365)
    reg, src = _prefer(ls_prim, ls_prox, "primary:glassnode_lth_sth", "proxy:mvrv_minus_sth155")
    z = z_prim.where(src == "primary:glassnode_lth_sth", z_prox.where(src == "proxy:mvrv_minus_sth155"))
    out["mvrv_ls_z"] = z
    out["mvrv_ls_slope_primary"] = z_prim - z_prim.shift(p.ls_slope_days)
    out["mvrv_ls_pct_rank_60d"] = _pct_rank(out["mvrv_ls_proxy"], 60)
    out["mvrv_ls_chg_30d_proxy"] = out["mvrv_ls_proxy"] - out["mvrv_ls_proxy"].shift(30)
    out["mvrv_ls_above_zero_days_30"] = days_in_window(z > 0, z.notna(), 30)
    out["mvrv_ls_regime_days"] = run_length(reg, reg != UNAVAILABLE)
    out["mvrv_ls_regime_primary"], out["mvrv_ls_regime_proxy"] = ls_prim, ls_prox
    out["mvrv_ls_regime"], out["mvrv_ls_source"] = reg, src
    return out


#: whale family: columns of :func:`whale_features`
WHALE_COLUMNS = [
    "whale_addr_1k",
    "whale_addr_10k",
    "whale_addr_1k_chg_30d",
    "whale_addr_10k_chg_30d",
    "whale_supply_1k_chg_30d",
    "supply_top1pct_chg_30d",
    "exchange_supply_btc",
    "exchange_supply_share",
    "exchange_netflow_7d_btc",
    "exchange_netflow_30d_btc",
    "exchange_supply_chg_30d",
    "whale_addr_1k_chg_7d",
    "whale_addr_10k_chg_7d",
    "whale_addr_1k_chg_90d",
    "exchange_supply_chg_7d",
    "exchange_supply_chg_90d",
    "exchange_outflow_days_30",
    "whale_accum_streak",
    "whale_distrib_streak",
    "whale_accum_days_30",
    "whale_distrib_days_30",
    "whale_accum_days_90",
    "whale_distrib_days_90",
]
WHALE_ACCUM = ("broad_accum", "strategic_accum")  #: the seed's "whale sponsored"
WHALE_DISTRIB = ("distribution", "strong_distribution")  #: the seed's "whale distrib"


def whale_features(d: pd.DataFrame, p: OnchainRegimeParams) -> pd.DataFrame:
    """Whale family: address-count cohorts (primary), exchange supply (proxy) and accumulation/distribution patterns.

    Args:
        d: :func:`daily_calendar` frame (uses ``whale_addr_{1k,10k}_{glassnode,cm}``, ``whale_supply_1k_cm_btc``,
            ``supply_top1pct_cm_btc``, ``exchange_supply_btc``, ``exchange_supply_btc_v2026_03``, ``supply_btc``).

    Returns:
        Frame on ``d``'s index with ``WHALE_COLUMNS`` (float64) and ``whale_regime_primary``, ``whale_regime_proxy``,
        ``whale_regime``, ``whale_source`` (str). ``n`` in days:

        * ``whale_addr_{1k,10k}``: addresses holding >= 1k / >= 10k BTC (count; Glassnode, else Coin Metrics);
          ``whale_addr_1k_chg_{7,30,90}d``, ``whale_addr_10k_chg_{7,30}d`` = ``c_t / c_{t-n} - 1`` (fraction);
          ``whale_supply_1k_chg_30d``, ``supply_top1pct_chg_30d``: same on BTC held by >= 1k addresses / top 1 %.
        * ``exchange_supply_btc`` (BTC), ``exchange_supply_share`` (fraction of supply), ``exchange_netflow_{7,30}d_btc``
          = ``E_t - E_{t-n}`` (BTC; negative = coins left exchanges), ``exchange_supply_chg_{7,30,90}d`` (fraction),
          ``exchange_outflow_days_30``: days of the last 30 on which ``E`` fell (NaN unless 31 days of ``E``).
        * Patterns on the day's ``whale_regime`` (accumulation = ``WHALE_ACCUM``, distribution = ``WHALE_DISTRIB``):
          ``whale_{accum,distrib}streak`` = consecutive days up to D in that group (0 = not today);
          ``whale_{accum,distrib}_days_{30,90}`` = days of the last 30 / 90 in that group (NaN unless all are
          available). NaN on ``unavailable`` days.
    """
    col = lambda c: _col(d, c)  # noqa: E731
    out = pd.DataFrame(index=d.index)
    c1k = col("whale_addr_1k_glassnode").fillna(col("whale_addr_1k_cm"))
    c10k = col("whale_addr_10k_glassnode").fillna(col("whale_addr_10k_cm"))
    ex = col("exchange_supply_btc").fillna(
        col("exchange_supply_btc_v2026_03").where(col("exchange_supply_btc_v2026_03") > 0)
    )
    out["whale_addr_1k"], out["whale_addr_10k"] = c1k, c10k
    out["whale_addr_1k_chg_30d"], out["whale_addr_10k_chg_30d"] = _chg(c1k, 30), _chg(c10k, 30)
    out["whale_supply_1k_chg_30d"] = _chg(col("whale_supply_1k_cm_btc"), 30)
    out["supply_top1pct_chg_30d"] = _chg(col("supply_top1pct_cm_btc"), 30)
    out["exchange_supply_btc"] = ex
    out["exchange_supply_share"] = ex / col("supply_btc")
    out["exchange_netflow_7d_btc"] = ex - ex.shift(7)
    out["exchange_netflow_30d_btc"] = ex - ex.shift(30)
    out["exchange_supply_chg_30d"] = _chg(ex, 30)
    out["whale_addr_1k_chg_7d"], out["whale_addr_10k_chg_7d"] = _chg(c1k, 7), _chg(c10k, 7)
    out["whale_addr_1k_chg_90d"] = _chg(c1k, 90)
    out["exchange_supply_chg_7d"], out["exchange_supply_chg_90d"] = _chg(ex, 7), _chg(ex, 90)
    flow = ex - ex.shift(1)
    out["exchange_outflow_days_30"] = days_in_window(flow < 0, flow.notna(), 30)
    prim = _whale_count_regime(c1k, c10k, p.whale_count_step)
    prox = _whale_proxy_regime(ex, p)
    reg, src = _prefer(prim, prox, "primary:whale_address_counts", "proxy:exchange_supply")
    known = reg != UNAVAILABLE
    accum, distrib = reg.isin(WHALE_ACCUM), reg.isin(WHALE_DISTRIB)
    out["whale_accum_streak"], out["whale_distrib_streak"] = streak(accum, known), streak(distrib, known)
    for n in (30, 90):
        out[f"whale_accum_days_{n}"] = days_in_window(accum, known, n)
        out[f"whale_distrib_days_{n}"] = days_in_window(distrib, known, n)
    out["whale_regime_primary"], out["whale_regime_proxy"] = prim, prox
    out["whale_regime"], out["whale_source"] = reg, src
    return out


#: sentiment family: columns of :func:`sentiment_features`
SENTIMENT_COLUMNS = [
    "fng_value",
    "fng_z_30d",
    "fng_z_90d",
    "fng_chg_7d",
    "fng_bucket",
    "euphoria_days_7",
    "fng_z_7d",
    "fng_z_14d",
    "fng_z_180d",
    "fng_z_365d",
    "fng_ma_7d",
    "fng_chg_30d",
    "fng_pct_rank_365d",
    "fng_class_bucket",
    "fng_class_days",
    "fng_extreme_fear_days_30",
    "fng_extreme_greed_days_30",
]
#: alternative.me's published classes: Extreme Fear <= 25 < Fear <= 46 < Neutral <= 54 < Greed <= 75 < Extreme Greed
FNG_CLASS_EDGES = [-1, 25, 46, 54, 75, 100]


def sentiment_features(sentiment: pd.DataFrame | None, index: pd.DatetimeIndex) -> pd.DataFrame:
    """Sentiment family: Crypto Fear & Greed (alternative.me, 0-100) z-scores, changes and buckets.

    Args:
        sentiment: ``market.sentiment_daily`` rows (``date``, ``fng_value``) or None (all NaN).
        index: the daily calendar the features are put on (days without a value stay NaN).

    Returns:
        Frame on ``index`` with ``SENTIMENT_COLUMNS`` (float64). ``F`` = index value (points), ``n`` in days:

        * ``fng_value`` = ``F``; ``fng_z_{7,14,30,90,180,365}d`` = ``(F - mean) / std`` over the trailing ``n`` days
          (min. n/2 values); ``fng_ma_7d`` = 7-day mean (all 7 needed); ``fng_chg_{7,30}d`` = ``F_t - F_{t-n}``
          (points); ``fng_pct_rank_365d``: trailing percentile (0-1] over 365 days (min. 91).
        * ``fng_bucket``: 1-5 on the bands 0-24 / 25-44 / 45-55 / 56-75 / 76-100 (kept as first built);
          ``fng_class_bucket``: 1-5 on the vendor's classes (``FNG_CLASS_EDGES``: Extreme Fear / Fear / Neutral /
          Greed / Extreme Greed, equal to the data's ``classification`` on every day); ``fng_class_days``: days
          the current class has lasted; ``fng_extreme_{fear,greed}_days_30``: days of the last 30 in class 1 / 5.
        * ``euphoria_days_7``: days of the last 7 with ``F >= 75``.
        Windows needing every day are NaN across the vendor's missing days (nothing is filled).
    """
    fng = pd.Series(np.nan, index=index)
    if sentiment is not None and len(sentiment):
        s = sentiment.assign(date=pd.to_datetime(sentiment["date"])).set_index("date")["fng_value"].astype("float64")
        fng = s.reindex(index)
    out = pd.DataFrame(index=index)
    out["fng_value"] = fng
    for n in (30, 90):
        out[f"fng_z_{n}d"] = (fng - fng.rolling(n, min_periods=n // 2).mean()) / fng.rolling(
            n, min_periods=n // 2
        ).std()
    out["fng_chg_7d"] = fng - fng.shift(7)
    out["fng_bucket"] = pd.cut(fng, [-1, 24, 44, 55, 75, 100], labels=False) + 1
    out["euphoria_days_7"] = (fng >= 75).astype(float).where(fng.notna()).rolling(7, min_periods=7).sum()
    for n in (7, 14, 180, 365):
        out[f"fng_z_{n}d"] = _zscore(fng, n, n // 2)
    out["fng_ma_7d"] = fng.rolling(7, min_periods=7).mean()
    out["fng_chg_30d"] = fng - fng.shift(30)
    out["fng_pct_rank_365d"] = _pct_rank(fng, 365)
    cls = pd.cut(fng, FNG_CLASS_EDGES, labels=False) + 1
    known = cls.notna()
    out["fng_class_bucket"] = cls
    out["fng_class_days"] = run_length(cls, known)
    out["fng_extreme_fear_days_30"] = days_in_window(cls == 1, known, 30)
    out["fng_extreme_greed_days_30"] = days_in_window(cls == 5, known, 30)
    return out


REGIME_COLUMNS = [
    "mdia_regime",
    "mdia_source",
    "whale_regime_primary",
    "whale_regime_proxy",
    "whale_regime",
    "whale_source",
    "mvrv_ls_regime_primary",
    "mvrv_ls_regime_proxy",
    "mvrv_ls_regime",
    "mvrv_ls_source",
]
FEATURE_COLUMNS = MDIA_COLUMNS + MVRV_COLUMNS + MVRV_LS_COLUMNS + WHALE_COLUMNS + SENTIMENT_COLUMNS


def onchain_features(
    onchain: pd.DataFrame, sentiment: pd.DataFrame | None, p: OnchainRegimeParams | None = None
) -> pd.DataFrame:
    """Daily regime features and indicator regimes: the five families composed on one daily calendar.

    Args:
        onchain: ``market.onchain_daily`` rows (``date`` plus the normalised columns; missing columns are NaN).
        sentiment: ``market.sentiment_daily`` rows (``date``, ``fng_value``) or None.

    Returns:
        One row per calendar day from the first to the last on-chain date: ``date``, ``FEATURE_COLUMNS`` (float64,
        the families :func:`mdia_features`, :func:`mvrv_features`, :func:`mvrv_ls_features`, :func:`whale_features`,
        :func:`sentiment_features`; formulas and units there), then ``REGIME_COLUMNS``: ``mdia_regime``,
        ``whale_regime``, ``mvrv_ls_regime`` (strings, ``unavailable`` where not computable), their ``*_source`` and
        the primary/proxy regimes side by side (``whale_regime_primary`` ...). Row D uses days <= D only.

    Raises:
        KeyError: ``onchain`` has no ``date`` column.
    """
    p = p or OnchainRegimeParams()
    d = daily_calendar(onchain)
    parts = [
        mdia_features(d, p),
        mvrv_features(d),
        mvrv_ls_features(d, p),
        whale_features(d, p),
        sentiment_features(sentiment, d.index),
    ]
    cols = {c: part[c] for part in parts for c in part.columns}
    return pd.DataFrame({c: cols[c] for c in FEATURE_COLUMNS + REGIME_COLUMNS}, index=d.index).reset_index()


_GROUP = {
    "strong_inflow": 1,
    "inflow": 1,
    "broad_accum": 1,
    "strategic_accum": 1,
    "call_confirm_recovery": 1,
    "trend_confirm": 1,
    "improving": 1,
    "distribution": -1,
    "strong_distribution": -1,
    "rollover": -1,
    "weak_down": -1,
    "distribution_warning": -1,
    "put_confirm": -1,
    "bear": -1,
}


def source_agreement(features: pd.DataFrame) -> pd.DataFrame:
    """Where primary and proxy regimes both exist: days, exact agreement and direction agreement (bull/flat/bear)."""
    rows = []
    for ind in ("whale_regime", "mvrv_ls_regime"):
        a, b = features[f"{ind}_primary"], features[f"{ind}_proxy"]
        both = (a != UNAVAILABLE) & (b != UNAVAILABLE)
        da, db = a[both].map(lambda x: _GROUP.get(x, 0)), b[both].map(lambda x: _GROUP.get(x, 0))
        rows.append(
            {
                "indicator": ind.removesuffix("_regime"),
                "days_both": int(both.sum()),
                "exact_agreement": float((a[both] == b[both]).mean()) if both.any() else np.nan,
                "direction_agreement": float((da == db).mean()) if both.any() else np.nan,
                "first_day": features.loc[both, "date"].min(),
                "last_day": features.loc[both, "date"].max(),
            }
        )
    return pd.DataFrame(rows)
