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


def onchain_features(
    onchain: pd.DataFrame, sentiment: pd.DataFrame | None, p: OnchainRegimeParams | None = None
) -> pd.DataFrame:
    """Daily regime features and indicator regimes.

    Args:
        onchain: ``market.onchain_daily`` rows (``date`` plus the normalised columns; missing columns are NaN).
        sentiment: ``market.sentiment_daily`` rows (``date``, ``fng_value``) or None.

    Returns:
        One row per calendar day from the first to the last on-chain date: ``date``, ``FEATURE_COLUMNS``,
        ``mdia_regime``, ``whale_regime``, ``mvrv_ls_regime`` (strings, ``unavailable`` where not computable),
        their ``*_source`` and the primary/proxy regimes side by side (``whale_regime_primary`` ...).
    """
    p = p or OnchainRegimeParams()
    d = onchain.copy()
    d["date"] = pd.to_datetime(d["date"])
    d = d.set_index("date").sort_index()
    d = d.reindex(pd.date_range(d.index.min(), d.index.max(), freq="D", name="date"))
    col = lambda c: d[c].astype("float64") if c in d else pd.Series(np.nan, index=d.index)  # noqa: E731
    price, mvrv, rc = col("price_usd"), col("mvrv"), col("realized_cap_usd")
    out = pd.DataFrame(index=d.index)
    # MDIA (proxy from realized cap)
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
    mdia_reg = pd.Series(
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
    mdia_reg[s30.isna()] = UNAVAILABLE
    # MVRV composite and the 60-day view used by the short overlay
    out["mvrv"] = mvrv
    out["mvrv_pct_rank_365d"] = _pct_rank(mvrv, 365)
    out["mvrv_pct_rank_1460d"] = _pct_rank(mvrv, 1460)
    out["mvrv_z_365d"] = (mvrv - mvrv.rolling(365, min_periods=90).mean()) / mvrv.rolling(365, min_periods=90).std()
    out["mvrv_composite"] = out[["mvrv_pct_rank_365d", "mvrv_pct_rank_1460d"]].mean(axis=1, skipna=False)
    out["mvrv_chg_14d"] = _chg(mvrv, 14)
    out["mvrv_60d_pct_rank"] = _pct_rank(mvrv, 60)
    out["mvrv_60d_max"] = mvrv.rolling(60, min_periods=30).max()
    out["mvrv_60d_dist_from_max"] = 1.0 - mvrv / out["mvrv_60d_max"]
    out["realized_price_usd"] = rc / col("supply_btc")
    out["price_to_realized"] = price / out["realized_price_usd"]
    # MVRV-LS: primary (Glassnode LTH - STH) and proxy (MVRV - price / 155d mean price)
    sth_proxy = price / price.rolling(p.sth_days, min_periods=p.sth_days).mean()
    out["sth_mvrv_proxy"] = sth_proxy
    out["mvrv_ls_primary"] = col("lth_mvrv_glassnode") - col("sth_mvrv_glassnode")
    out["mvrv_ls_proxy"] = mvrv - sth_proxy
    ls_prim, z_prim = _mvrv_ls_regime(out["mvrv_ls_primary"], p)
    ls_prox, z_prox = _mvrv_ls_regime(out["mvrv_ls_proxy"], p)
    out["mvrv_ls_z_primary"], out["mvrv_ls_z_proxy"] = z_prim, z_prox
    out["mvrv_ls_slope_proxy"] = z_prox - z_prox.shift(p.ls_slope_days)
    out["mvrv_ls_pct_rank_365d"] = _pct_rank(out["mvrv_ls_proxy"], 365)
    # whales: primary (>=1k / >=10k address counts, Glassnode then Coin Metrics) and proxy (exchange supply)
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
    whale_prim = _whale_count_regime(c1k, c10k, p.whale_count_step)
    whale_prox = _whale_proxy_regime(ex, p)
    # sentiment
    fng = pd.Series(np.nan, index=d.index)
    if sentiment is not None and len(sentiment):
        s = sentiment.assign(date=pd.to_datetime(sentiment["date"])).set_index("date")["fng_value"].astype("float64")
        fng = s.reindex(d.index)
    out["fng_value"] = fng
    for n in (30, 90):
        out[f"fng_z_{n}d"] = (fng - fng.rolling(n, min_periods=n // 2).mean()) / fng.rolling(
            n, min_periods=n // 2
        ).std()
    out["fng_chg_7d"] = fng - fng.shift(7)
    out["fng_bucket"] = pd.cut(fng, [-1, 24, 44, 55, 75, 100], labels=False) + 1
    out["euphoria_days_7"] = (fng >= 75).astype(float).where(fng.notna()).rolling(7, min_periods=7).sum()
    # regimes and their sources
    out["mdia_regime"], out["mdia_source"] = (
        mdia_reg,
        np.where(mdia_reg == UNAVAILABLE, UNAVAILABLE, "proxy:realized_cap_age"),
    )
    out["whale_regime_primary"], out["whale_regime_proxy"] = whale_prim, whale_prox
    out["whale_regime"], out["whale_source"] = _prefer(
        whale_prim, whale_prox, "primary:whale_address_counts", "proxy:exchange_supply"
    )
    out["mvrv_ls_regime_primary"], out["mvrv_ls_regime_proxy"] = ls_prim, ls_prox
    out["mvrv_ls_regime"], out["mvrv_ls_source"] = _prefer(
        ls_prim, ls_prox, "primary:glassnode_lth_sth", "proxy:mvrv_minus_sth155"
    )
    return out.reset_index()


FEATURE_COLUMNS = [
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
    "sth_mvrv_proxy",
    "mvrv_ls_primary",
    "mvrv_ls_proxy",
    "mvrv_ls_z_primary",
    "mvrv_ls_z_proxy",
    "mvrv_ls_slope_proxy",
    "mvrv_ls_pct_rank_365d",
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
    "fng_value",
    "fng_z_30d",
    "fng_z_90d",
    "fng_chg_7d",
    "fng_bucket",
    "euphoria_days_7",
]

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
