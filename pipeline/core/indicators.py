"""Technical indicator features (pure), defined exactly as TA-Lib defines them.

``technical_features(ohlcv)`` takes one symbol × timeframe series sorted by ``ts`` and returns one
row per candle with these float64 columns (NaN during warm-up, stored as NULL, never zero):

| column | definition (TA-Lib function) | warm-up rows |
|---|---|---|
| ``atr_14`` | ``ATR(high, low, close, 14)``, Wilder smoothing, quote currency | 14 |
| ``rsi_14`` | ``RSI(close, 14)``, Wilder, 0–100 | 14 |
| ``macd``, ``macd_signal``, ``macd_hist`` | ``MACD(close, 12, 26, 9)`` | 33 |
| ``bb_upper``, ``bb_mid``, ``bb_lower`` | ``BBANDS(close, 20, 2, 2, SMA)`` (population std) | 19 |
| ``ema_20``, ``ema_50``, ``ema_200`` | ``EMA(close, n)`` (SMA-seeded) | n-1 |
| ``adx_14`` | ``ADX(high, low, close, 14)`` | 27 |
| ``realized_vol_24`` | sample std (ddof=1) of log returns ``ln(c_t/c_{t-1})`` over 24 bars, as a fraction per bar | 24 |
| ``volume_zscore_20`` | ``(volume - SMA(volume,20)) / STDDEV(volume,20)`` (population std); NULL when std = 0 | 19 |

Bars are taken as they come: a gap in the series is not filled, so an indicator spans it (the gap
list is reported by the market layer's gap check). Every value at ``t`` uses candles ``<= t`` only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import talib

FEATURE_COLUMNS = [
    "atr_14",
    "rsi_14",
    "macd",
    "macd_signal",
    "macd_hist",
    "bb_upper",
    "bb_mid",
    "bb_lower",
    "ema_20",
    "ema_50",
    "ema_200",
    "adx_14",
    "realized_vol_24",
    "volume_zscore_20",
]
#: index of the first non-NULL row of each column on a gap-free, NaN-free series
WARMUP_BARS = {
    "atr_14": 14,
    "rsi_14": 14,
    "macd": 33,
    "macd_signal": 33,
    "macd_hist": 33,
    "bb_upper": 19,
    "bb_mid": 19,
    "bb_lower": 19,
    "ema_20": 19,
    "ema_50": 49,
    "ema_200": 199,
    "adx_14": 27,
    "realized_vol_24": 24,
    "volume_zscore_20": 19,
}
MAX_WARMUP = max(WARMUP_BARS.values())


def technical_features(ohlcv: pd.DataFrame) -> pd.DataFrame:
    """Compute ``FEATURE_COLUMNS`` for one sorted candle series.

    Args:
        ohlcv: columns ``ts`` (int64 epoch ms, ascending, unique), ``high, low, close, volume`` (float64).

    Returns:
        Frame with ``ts`` and ``FEATURE_COLUMNS`` (float64), same length and order as the input.
    """
    h = ohlcv["high"].to_numpy(np.float64)
    l = ohlcv["low"].to_numpy(np.float64)
    c = ohlcv["close"].to_numpy(np.float64)
    v = ohlcv["volume"].to_numpy(np.float64)
    out = {"ts": ohlcv["ts"].to_numpy(np.int64)}
    n = len(c)
    if n == 0:
        return pd.DataFrame({"ts": out["ts"], **{k: np.zeros(0) for k in FEATURE_COLUMNS}})
    out["atr_14"] = talib.ATR(h, l, c, timeperiod=14)
    out["rsi_14"] = talib.RSI(c, timeperiod=14)
    out["macd"], out["macd_signal"], out["macd_hist"] = talib.MACD(c, fastperiod=12, slowperiod=26, signalperiod=9)
    out["bb_upper"], out["bb_mid"], out["bb_lower"] = talib.BBANDS(c, timeperiod=20, nbdevup=2, nbdevdn=2, matype=0)
    out["ema_20"] = talib.EMA(c, timeperiod=20)
    out["ema_50"] = talib.EMA(c, timeperiod=50)
    out["ema_200"] = talib.EMA(c, timeperiod=200)
    out["adx_14"] = talib.ADX(h, l, c, timeperiod=14)
    logret = np.full(n, np.nan)
    logret[1:] = np.log(c[1:] / c[:-1])
    # TA-Lib STDDEV is the population std; rescale to the sample std (ddof=1) over 24 returns
    out["realized_vol_24"] = talib.STDDEV(logret, timeperiod=24, nbdev=1) * np.sqrt(24 / 23)
    sd = talib.STDDEV(v, timeperiod=20, nbdev=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (v - talib.SMA(v, timeperiod=20)) / sd
    z[~(sd > 1e-12 * np.maximum(np.abs(v), 1.0))] = np.nan
    out["volume_zscore_20"] = z
    return pd.DataFrame(out)
