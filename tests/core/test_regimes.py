"""Regime rules on crafted series, incremental continuation and look-ahead on real data."""

import numpy as np
import pandas as pd
import pytest

from pipeline.core.candles import validate_ohlcv
from pipeline.core.indicators import technical_features
from pipeline.core.regimes import RegimeParams, classify_regimes
from tests.conftest import real_ohlcv

P = RegimeParams(vol_window=50, stability_window=10)


def _series(close: np.ndarray, spread: float = 0.002) -> pd.DataFrame:
    ts = np.arange(len(close), dtype=np.int64) * 3_600_000
    df = pd.DataFrame(
        {
            "ts": ts,
            "open": close,
            "high": close * (1 + spread),
            "low": close * (1 - spread),
            "close": close,
            "volume": 1.0 + (np.arange(len(close)) % 7),
        }
    )
    f = technical_features(df)
    f["close"] = close
    return f


def test_steady_uptrend_is_strong_bull():
    r = classify_regimes(_series(100 * 1.003 ** np.arange(600)), P).iloc[-1]
    assert r.trend_regime == "bull" and r.trend_strength in ("strong", "very_strong")
    assert r.regime_confidence == 1.0 and r.regime_stability == 1.0 and r.regime_age_bars > 100


def test_steady_downtrend_is_bear():
    r = classify_regimes(_series(100 * 0.997 ** np.arange(600)), P).iloc[-1]
    assert r.trend_regime == "bear" and r.regime_confidence == 1.0


def test_flat_oscillation_is_sideways_and_weak():
    close = 100 + np.random.default_rng(7).normal(0, 0.3, 600)  # mean-reverting noise around a level
    r = classify_regimes(_series(close), P)
    assert (r.trend_regime.iloc[300:] == "sideways").mean() > 0.9
    assert r.trend_strength.iloc[-1] == "weak" and r.regime_stability.iloc[-1] > 0.5


def test_volatility_level_follows_natr_percentile():
    close = 100 * 1.001 ** np.arange(600)
    spread = np.where(np.arange(600) < 560, 0.002, 0.02)  # range expands at the end
    ts = np.arange(600, dtype=np.int64) * 3_600_000
    df = pd.DataFrame(
        {
            "ts": ts,
            "open": close,
            "high": close * (1 + spread),
            "low": close * (1 - spread),
            "close": close,
            "volume": 1.0,
        }
    )
    f = technical_features(df)
    f["close"] = close
    r = classify_regimes(f, P)
    assert r.volatility_level.iloc[-1] == "high" and r.volatility_level.iloc[500] in ("low", "normal")


def test_warmup_is_null():
    r = classify_regimes(_series(100 * 1.001 ** np.arange(300)), P)
    assert r.trend_regime.iloc[:199].isna().all() and r.trend_regime.iloc[199:].notna().all()
    assert r.regime_age_bars.iloc[:199].isna().all()


@pytest.fixture(scope="module")
def eth_features():
    c = validate_ohlcv(real_ohlcv("ETH/USDT", "1h").iloc[:6000], "eth")
    f = technical_features(c)
    f["close"] = c["close"]
    return f


def test_incremental_continuation_equals_full_run(eth_features):
    full = classify_regimes(eth_features, P)
    k, w = 4000, P.vol_window + P.stability_window + 1
    prev = (full.trend_regime.iloc[k - w - 1], int(full.regime_age_bars.iloc[k - w - 1]))
    part = classify_regimes(eth_features.iloc[k - w :].reset_index(drop=True), P, prev_state=prev)
    pd.testing.assert_frame_equal(part.iloc[w:].reset_index(drop=True), full.iloc[k:].reset_index(drop=True))


def test_no_lookahead(eth_features):
    full = classify_regimes(eth_features, P)
    for t in (400, 2500, 5999):
        pd.testing.assert_frame_equal(classify_regimes(eth_features.iloc[: t + 1], P), full.iloc[: t + 1])
