"""Candle validation, gaps and resampling on real Binance data and hand-built cases."""

import numpy as np
import pandas as pd
import pytest

from pipeline.core.candles import (
    CandleValidationError,
    drop_forming,
    find_gaps,
    resample_ohlcv,
    summarize_gaps,
    validate_ohlcv,
)
from pipeline.core.timeframes import resample_source
from tests.conftest import real_ohlcv


def _complete_equal(res: pd.DataFrame, ref: pd.DataFrame) -> pd.DataFrame:
    m = res[res["bar_count"] == res["expected_bars"]].merge(ref, on="ts", suffixes=("", "_ref"))
    for c in ("open", "high", "low", "close"):
        assert (m[c] == m[f"{c}_ref"]).all(), f"{c} differs on {(m[c] != m[f'{c}_ref']).sum()} periods"
    np.testing.assert_allclose(m["volume"], m["volume_ref"], rtol=1e-12)
    return m


@pytest.mark.parametrize(
    "symbol,folder,n_hours", [("BTC/USDT", "binance", 2178), ("XRP/USDT", "binance_1m_2026-03", 719)]
)
def test_1m_to_1h_reproduces_binance_exactly(symbol, folder, n_hours):
    m1 = validate_ohlcv(real_ohlcv(symbol, "1m", folder), "1m")
    h1 = validate_ohlcv(real_ohlcv(symbol, "1h"), "1h")
    res = resample_ohlcv(m1, "1m", "1h")
    m = _complete_equal(res, h1)
    assert len(m) == n_hours  # every complete hour of the window (README §1.2)
    # partial first/last hours of the window are never emitted as complete candles
    assert res["ts"].iloc[-1] + 3_600_000 <= m1["ts"].iloc[-1] + 60_000


def test_15m_to_1h_and_1h_to_1d_reproduce_binance():
    m15 = validate_ohlcv(real_ohlcv("ETH/USDT", "15m"), "15m")
    h1 = validate_ohlcv(real_ohlcv("ETH/USDT", "1h"), "1h")
    d1 = validate_ohlcv(real_ohlcv("ETH/USDT", "1d"), "1d")
    assert len(_complete_equal(resample_ohlcv(m15, "15m", "1h"), h1)) > 29_000
    assert len(_complete_equal(resample_ohlcv(h1, "1h", "1d"), d1)) > 3_000


def test_1m_to_every_target_closed_only():
    m1 = validate_ohlcv(real_ohlcv("BTC/USDT", "1m").iloc[:3000], "1m")  # 2025-05-20 00:00 .. 02:49 next day
    for tf, n in [("5m", 600), ("15m", 200), ("1h", 50), ("4h", 12), ("1d", 2)]:
        r = resample_ohlcv(m1, "1m", tf)
        assert len(r) == n, tf
        assert (r["bar_count"] == r["expected_bars"]).all()


def test_incomplete_period_is_flagged_or_dropped_never_filled():
    ts = np.array([0, 60_000, 120_000, 240_000, 300_000], dtype=np.int64)  # 3:00 missing in the 0-5 min period
    df = pd.DataFrame(
        {
            "ts": ts,
            "open": [1, 2, 3, 5, 6.0],
            "high": [1.5, 2.5, 3.5, 5.5, 6.5],
            "low": [0.5, 1.5, 2.5, 4.5, 5.5],
            "close": [1.2, 2.2, 3.2, 5.2, 6.2],
            "volume": [1, 1, 1, 1, 1.0],
        }
    )
    r = resample_ohlcv(df, "1m", "5m", source_end_ms=300_000)
    assert r.to_dict("records")[0] == {
        "ts": 0,
        "open": 1.0,
        "high": 5.5,
        "low": 0.5,
        "close": 5.2,
        "volume": 4.0,
        "bar_count": 4,
        "expected_bars": 5,
    }
    assert len(r) == 1  # the 5-10 min period has only its first bar: still open, not emitted
    assert resample_ohlcv(df, "1m", "5m", drop_incomplete=True).empty


def test_resample_rejects_non_multiple():
    with pytest.raises(ValueError, match="larger multiple"):
        resample_ohlcv(pd.DataFrame(columns=["ts", "open", "high", "low", "close", "volume"]), "1h", "15m")


def test_resample_source_policy():
    assert resample_source("1h", {"1m", "15m", "1h"}) == "1h"
    assert resample_source("4h", {"1m", "15m", "1h"}) == "1h"
    assert resample_source("5m", {"1m", "15m", "1h"}) == "1m"
    assert resample_source("5m", {"15m", "1h"}) is None


def test_gaps_match_readme_for_btc_1h():
    ts = validate_ohlcv(real_ohlcv("BTC/USDT", "1h"), "1h")["ts"].to_numpy()
    gaps = find_gaps(ts, "1h")
    assert len(gaps) == 27 and gaps["missing_bars"].sum() == 122  # shared/data README §1.1
    first = gaps.iloc[0]
    assert pd.Timestamp(first.before_ts, unit="ms") == pd.Timestamp("2018-01-04 03:00") and first.missing_bars == 1
    s = summarize_gaps(gaps, int(ts[0]), int(ts[-1]), "1h")
    assert s.max_gap_bars == 33 and s.expected_bars == len(ts) + 122


def test_drop_forming():
    df = pd.DataFrame({"ts": [0, 3_600_000, 7_200_000]})
    assert drop_forming(df, "1h", now_ms=7_200_000 + 1).ts.tolist() == [0, 3_600_000]
    assert drop_forming(df, "1h", now_ms=10_800_000).ts.tolist() == [0, 3_600_000, 7_200_000]


def _bad(mutate) -> pd.DataFrame:
    df = real_ohlcv("BTC/USDT", "1h").iloc[:50].reset_index(drop=True).astype({"open": object})
    mutate(df)
    return df


@pytest.mark.parametrize(
    "mutate,rule,row",
    [
        (lambda d: d.drop(columns=["close"], inplace=True), "required_columns", None),
        (lambda d: d.__setitem__("open", d["open"].where(d.index != 7, "abc")), "numeric", 8),
        (lambda d: d.loc.__setitem__((4, "high"), np.nan), "no_nan", 5),
        (lambda d: d.__setitem__("ts", d["ts"] // 1000), "timestamp_unit", 1),
        (lambda d: d.loc.__setitem__((9, "low"), -1.0), "positive_price", 10),
        (lambda d: d.loc.__setitem__((3, "low"), d.loc[3, "high"] + 1), "ohlc_bounds", 4),
        (lambda d: d.loc.__setitem__((12, "ts"), d.loc[11, "ts"]), "duplicate_ts", 13),
        (lambda d: d.loc.__setitem__((20, "ts"), d.loc[18, "ts"] - 3_600_000), "ordering", 21),
        (lambda d: d.loc.__setitem__((30, "ts"), d.loc[30, "ts"] + 1), "timeframe_grid", 31),
    ],
)
def test_validation_names_file_row_and_rule(mutate, rule, row):
    with pytest.raises(CandleValidationError) as e:
        validate_ohlcv(_bad(mutate), "ohlcv/binance/BTC_USDT-1h.csv.gz", "1h")
    assert e.value.rule == rule and e.value.row == row
    assert "BTC_USDT-1h.csv.gz" in str(e.value) and rule in str(e.value)


def test_valid_real_file_passes_with_types():
    v = validate_ohlcv(real_ohlcv("ETH/USDT", "1d"), "x", "1d")
    assert v["ts"].dtype == np.int64 and v["close"].dtype == np.float64 and len(v) == 3178
