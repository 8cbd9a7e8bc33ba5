"""Model inputs from the warehouse's feature and regime rows (pure, point-in-time).

:func:`model_features` turns ``features.technical`` (+ ``regimes.market``) rows of **one symbol and
timeframe** into scale-free inputs (ratios to price, oscillators, lagged returns, regime codes) so one
model can serve every symbol. Each output row uses only its own row and earlier rows of the same series.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

MODEL_FEATURES = [
    "rsi",
    "macd_n",
    "macd_signal_n",
    "macd_hist_n",
    "bb_pos",
    "bb_width",
    "dist_ema20",
    "dist_ema50",
    "dist_ema200",
    "ema20_ema50",
    "ema50_ema200",
    "adx",
    "natr",
    "realized_vol_24",
    "volume_zscore_20",
    "ret_1",
    "ret_4",
    "ret_24",
    "trend_code",
    "vol_code",
    "natr_pct_rank",
    "regime_confidence",
]
_TREND = {"bear": -1.0, "sideways": 0.0, "bull": 1.0}
_VOL = {"low": 0.0, "normal": 1.0, "high": 2.0}


#: the regime columns :func:`model_features` reads beside the technical features (``warehouse.readers.series`` has them)
REGIME_INPUTS = ["ts", "trend_regime", "volatility_level", "natr_pct_rank", "regime_confidence"]


def model_features(feats: pd.DataFrame, regimes: pd.DataFrame | None = None) -> pd.DataFrame:
    """Scale-free model inputs.

    Args:
        feats: one series' ``features.technical`` rows sorted by ``ts`` (``close`` and the TA-Lib columns).
        regimes: the same series' ``regimes.market`` rows (``ts``, ``trend_regime``, ``volatility_level``,
            ``natr_pct_rank``, ``regime_confidence``); optional (codes NaN when absent).

    Returns:
        Frame with ``ts`` and ``MODEL_FEATURES`` (float64); warm-up rows carry NaN.
    """
    f = feats
    c = f["close"]
    out = pd.DataFrame({"ts": f["ts"].to_numpy(np.int64)})
    with np.errstate(invalid="ignore", divide="ignore"):
        out["rsi"] = f["rsi_14"].to_numpy() / 100.0
        for k in ("macd", "macd_signal", "macd_hist"):
            out[f"{k}_n"] = (f[k] / c).to_numpy()
        width = f["bb_upper"] - f["bb_lower"]
        out["bb_pos"] = ((c - f["bb_mid"]) / width).to_numpy()
        out["bb_width"] = (width / c).to_numpy()
        for n in (20, 50, 200):
            out[f"dist_ema{n}"] = (c / f[f"ema_{n}"] - 1.0).to_numpy()
        out["ema20_ema50"] = (f["ema_20"] / f["ema_50"] - 1.0).to_numpy()
        out["ema50_ema200"] = (f["ema_50"] / f["ema_200"] - 1.0).to_numpy()
        out["adx"] = f["adx_14"].to_numpy() / 100.0
        out["natr"] = (f["atr_14"] / c).to_numpy()
        out["realized_vol_24"] = f["realized_vol_24"].to_numpy()
        out["volume_zscore_20"] = f["volume_zscore_20"].to_numpy()
        for n in (1, 4, 24):
            out[f"ret_{n}"] = (c / c.shift(n) - 1.0).to_numpy()
    if regimes is not None and len(regimes):
        r = out[["ts"]].merge(regimes, on="ts", how="left")
        out["trend_code"] = r["trend_regime"].map(_TREND).astype("float64").to_numpy()
        out["vol_code"] = r["volatility_level"].map(_VOL).astype("float64").to_numpy()
        out["natr_pct_rank"] = r["natr_pct_rank"].astype("float64").to_numpy()
        out["regime_confidence"] = r["regime_confidence"].astype("float64").to_numpy()
    else:
        for k in ("trend_code", "vol_code", "natr_pct_rank", "regime_confidence"):
            out[k] = np.nan
    return out.replace([np.inf, -np.inf], np.nan)
