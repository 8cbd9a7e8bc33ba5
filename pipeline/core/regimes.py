"""Market regime labels per symbol × timeframe × candle (pure, point-in-time).

Rules (thresholds from ``RegimeParams`` = ``trader.yaml: regimes``):

* **trend_regime** — ``bull`` when ``close > ema_200`` and ``ema_50 > ema_200`` and
  ``adx_14 >= adx_sideways``; ``bear`` when ``close < ema_200`` and ``ema_50 < ema_200`` and
  ``adx_14 >= adx_sideways``; otherwise ``sideways``.
* **trend_strength** — from ADX (Wilder's reading of trend strength): ``weak`` < ``adx_moderate`` <=
  ``moderate`` < ``adx_strong`` <= ``strong`` < ``adx_very_strong`` <= ``very_strong``.
* **volatility_level** — percentile rank of NATR = ``atr_14 / close`` within the trailing
  ``vol_window`` bars (current bar included, pandas ``rolling().rank(pct=True)``): ``low`` below
  ``vol_low_pct``, ``high`` above ``vol_high_pct``, else ``normal``.
* **regime_confidence** (0–1) — share of four trend votes that agree with the label: ``close`` vs
  ``ema_20``, ``ema_20`` vs ``ema_50``, ``ema_50`` vs ``ema_200``, sign of ``macd`` (EMA12 - EMA26;
  the histogram is not used because it decays to ~0 inside a steady trend). For
  ``sideways`` it is ``1 - |mean vote|`` (votes that cancel out confirm a range).
* **regime_stability** (0–1) — share of the last ``stability_window`` bars with the same trend regime;
  **regime_age_bars** — consecutive bars the current trend regime has lasted (carried over between
  incremental runs through ``prev_state``).

Every output at ``t`` uses features at ``<= t`` only. Rows whose inputs are still in warm-up are NULL.
"""

from __future__ import annotations

import numba
import numpy as np
import pandas as pd
from pydantic import ConfigDict, Field

from pipeline.core.params import Params

TREND_LABELS = np.array(["bear", "sideways", "bull"], dtype=object)  # codes -1, 0, +1
STRENGTH_LABELS = ["weak", "moderate", "strong", "very_strong"]
VOL_LABELS = ["low", "normal", "high"]
REGIME_COLUMNS = [
    "trend_regime",
    "trend_strength",
    "volatility_level",
    "natr_pct_rank",
    "regime_confidence",
    "regime_stability",
    "regime_age_bars",
    "regime",
]


class RegimeParams(Params):
    """``regimes`` in ``trader.yaml``: thresholds of the regime rules (immutable: one instance is a default argument)."""

    model_config = ConfigDict(frozen=True)
    adx_sideways: float = Field(20.0, description="ADX below this => trend regime 'sideways'.")
    adx_moderate: float = Field(20.0, description="ADX >= this => strength 'moderate' (below: 'weak').")
    adx_strong: float = Field(25.0, description="ADX >= this => strength 'strong'.")
    adx_very_strong: float = Field(50.0, description="ADX >= this => strength 'very_strong'.")
    vol_window: int = Field(500, ge=20, description="Bars in the rolling percentile window of NATR (ATR/close).")
    vol_low_pct: float = Field(0.33, description="NATR percentile below this => volatility 'low'.")
    vol_high_pct: float = Field(0.67, description="NATR percentile above this => volatility 'high'.")
    stability_window: int = Field(20, ge=2, description="Bars over which regime stability is measured.")


@numba.njit(cache=True)
def _run_lengths(code, valid, prev_code, prev_age):  # pragma: no cover - compiled
    n = code.shape[0]
    age = np.zeros(n, np.int64)
    last, run = prev_code, prev_age
    for i in range(n):
        if not valid[i]:
            last, run = -99, 0
            continue
        run = run + 1 if code[i] == last else 1
        last = code[i]
        age[i] = run
    return age


def classify_regimes(
    features: pd.DataFrame, params: RegimeParams = RegimeParams(), prev_state: tuple[str, int] | None = None
) -> pd.DataFrame:
    """Label each candle of one sorted symbol × timeframe series.

    Args:
        features: ``ts`` plus ``close, ema_20, ema_50, ema_200, adx_14, macd, atr_14`` (float64).
        params: rule thresholds.
        prev_state: ``(trend_regime, regime_age_bars)`` of the candle just before ``features`` when
            continuing an earlier run incrementally; ``None`` for a full run.

    Returns:
        ``ts`` plus ``REGIME_COLUMNS``; labels are strings (None in warm-up), ``natr_pct_rank``,
        ``regime_confidence``, ``regime_stability`` float64, ``regime_age_bars`` Int64.
    """
    f = features
    close, e20, e50, e200 = (f[k].to_numpy(np.float64) for k in ["close", "ema_20", "ema_50", "ema_200"])
    adx, mh, atr = (f[k].to_numpy(np.float64) for k in ["adx_14", "macd", "atr_14"])
    valid = ~(np.isnan(e200) | np.isnan(adx) | np.isnan(mh) | np.isnan(e20) | np.isnan(e50))
    trending = adx >= params.adx_sideways
    code = np.where(
        trending & (close > e200) & (e50 > e200), 1, np.where(trending & (close < e200) & (e50 < e200), -1, 0)
    )
    votes = (np.sign(close - e20) + np.sign(e20 - e50) + np.sign(e50 - e200) + np.sign(mh)) / 4.0
    conf = np.where(code == 1, (votes + 1) / 2, np.where(code == -1, (1 - votes) / 2, 1 - np.abs(votes)))
    # 4 votes in {-1,0,1}: for bull, agreeing share = (#pos)/4 ~ (votes+1)/2 when no zeros
    strength_idx = np.searchsorted([params.adx_moderate, params.adx_strong, params.adx_very_strong], adx, side="right")
    natr = pd.Series(atr / close)
    rank = natr.rolling(params.vol_window, min_periods=params.vol_window).rank(pct=True).to_numpy()
    vol_idx = np.where(rank < params.vol_low_pct, 0, np.where(rank > params.vol_high_pct, 2, 1))
    vol_valid = ~np.isnan(rank)
    code_s = pd.Series(np.where(valid, code, np.nan))
    w = params.stability_window
    stability = np.full(len(f), np.nan)
    for c in (-1, 0, 1):
        share = (code_s == c).astype(float).rolling(w, min_periods=w).mean().to_numpy()
        stability = np.where(code == c, share, stability)
    stability[~valid | np.isnan(code_s.rolling(w, min_periods=w).sum().to_numpy())] = np.nan
    pc, pa = -99, 0
    if prev_state is not None and prev_state[0] is not None:
        pc, pa = {"bear": -1, "sideways": 0, "bull": 1}[prev_state[0]], int(prev_state[1])
    age = _run_lengths(code.astype(np.int64), valid, pc, pa)
    trend = np.where(valid, TREND_LABELS[code + 1], None)
    strength = np.where(valid, np.array(STRENGTH_LABELS, dtype=object)[np.clip(strength_idx, 0, 3)], None)
    vol = np.where(vol_valid, np.array(VOL_LABELS, dtype=object)[vol_idx], None)
    regime = np.where(valid & vol_valid, pd.Series(trend).astype(str) + "|" + pd.Series(vol).astype(str), None)
    return pd.DataFrame(
        {
            "ts": f["ts"].to_numpy(np.int64),
            "trend_regime": trend,
            "trend_strength": strength,
            "volatility_level": vol,
            "natr_pct_rank": rank,
            "regime_confidence": np.where(valid, conf, np.nan),
            "regime_stability": stability,
            "regime_age_bars": pd.Series(age, dtype="Int64").mask(~valid).array,
            "regime": regime,
        }
    )
