"""Indicators against hand-computed Wilder/EMA definitions on real BTC candles, warm-up and look-ahead."""

import numpy as np
import pandas as pd
import pytest

from pipeline.core.candles import validate_ohlcv
from pipeline.core.indicators import FEATURE_COLUMNS, WARMUP_BARS, technical_features
from tests.conftest import real_ohlcv


@pytest.fixture(scope="module")
def btc():
    return validate_ohlcv(real_ohlcv("BTC/USDT", "1h").iloc[:3000], "btc 1h")


def _wilder(x: np.ndarray, n: int, seed_from: int) -> np.ndarray:
    """Wilder smoothing seeded with the SMA of x[seed_from : seed_from+n] (TA-Lib's definition)."""
    out = np.full(len(x), np.nan)
    out[seed_from + n - 1] = x[seed_from : seed_from + n].mean()
    for i in range(seed_from + n, len(x)):
        out[i] = (out[i - 1] * (n - 1) + x[i]) / n
    return out


def test_atr_is_wilder_true_range(btc):
    h, l, c = btc["high"].to_numpy(), btc["low"].to_numpy(), btc["close"].to_numpy()
    tr = np.maximum.reduce([h[1:] - l[1:], np.abs(h[1:] - c[:-1]), np.abs(l[1:] - c[:-1])])
    tr = np.concatenate([[np.nan], tr])
    np.testing.assert_allclose(technical_features(btc)["atr_14"], _wilder(tr, 14, 1), rtol=1e-9, equal_nan=True)


def test_rsi_is_wilder(btc):
    c = btc["close"].to_numpy()
    d = np.diff(c)
    up, dn = np.concatenate([[np.nan], np.clip(d, 0, None)]), np.concatenate([[np.nan], np.clip(-d, 0, None)])
    au, ad = _wilder(up, 14, 1), _wilder(dn, 14, 1)
    np.testing.assert_allclose(technical_features(btc)["rsi_14"], 100 - 100 / (1 + au / ad), rtol=1e-9, equal_nan=True)


def test_ema_is_sma_seeded(btc):
    c = btc["close"].to_numpy()
    ema = np.full(len(c), np.nan)
    ema[199] = c[:200].mean()
    k = 2 / 201
    for i in range(200, len(c)):
        ema[i] = c[i] * k + ema[i - 1] * (1 - k)
    np.testing.assert_allclose(technical_features(btc)["ema_200"], ema, rtol=1e-10, equal_nan=True)


def test_rolling_stats_match_pandas(btc):
    f = technical_features(btc)
    lr = np.log(btc["close"]).diff()
    np.testing.assert_allclose(f["realized_vol_24"], lr.rolling(24).std(), rtol=1e-8, equal_nan=True)
    v = btc["volume"]
    z = (v - v.rolling(20).mean()) / v.rolling(20).std(ddof=0)
    np.testing.assert_allclose(f["volume_zscore_20"], z, rtol=1e-6, atol=1e-7, equal_nan=True)
    bb = btc["close"].rolling(20)
    np.testing.assert_allclose(f["bb_upper"], bb.mean() + 2 * bb.std(ddof=0), rtol=1e-9, equal_nan=True)
    np.testing.assert_allclose(f["macd_hist"], f["macd"] - f["macd_signal"], rtol=1e-9, atol=1e-9, equal_nan=True)


def test_warmup_rows_are_null_not_zero(btc):
    f = technical_features(btc)
    for col, w in WARMUP_BARS.items():
        assert f[col].iloc[:w].isna().all(), col
        assert f[col].iloc[w:].notna().all(), col
    assert list(f.columns) == ["ts"] + FEATURE_COLUMNS


def test_no_lookahead_truncated_history_equals_full(btc):
    full = technical_features(btc)
    for t in (250, 777, 1500, 2999):
        trunc = technical_features(btc.iloc[: t + 1])
        pd.testing.assert_frame_equal(trunc, full.iloc[: t + 1], check_exact=False, rtol=1e-12)


def test_changing_the_future_does_not_change_the_past(btc):
    shocked = btc.copy()
    shocked.loc[2000:, ["open", "high", "low", "close"]] *= 1.5
    a, b = technical_features(btc), technical_features(shocked)
    pd.testing.assert_frame_equal(a.iloc[:2000], b.iloc[:2000])
    assert not np.allclose(a["ema_20"].iloc[2001:], b["ema_20"].iloc[2001:])
