"""``resample.base_timeframe`` (seed ``data.base_timeframe``): every other timeframe of ``universe.timeframes`` (the
seed's ``data.derived_timeframes``) is resampled from the base even where the source has native candles."""

import pandas as pd
import pytest

from assets.ingest import write_with_checkpoint
from assets.market import build_market_slice
from pipeline.config import TraderConfig
from pipeline.core.candles import resample_ohlcv
from pipeline.core.timeframes import resample_source
from tests.conftest import real_ohlcv
from warehouse import io

START = int(pd.Timestamp("2024-03-01", tz="UTC").value // 10**6)
COLS = ["ts", "open", "high", "low", "close", "volume"]


def test_resample_source_with_a_base():
    have = {"15m", "1h"}
    assert resample_source("1h", have) == "1h"  # default: native wins
    assert resample_source("1h", have, base="15m") == "15m"  # base: derived from it even though 1h is native
    assert resample_source("15m", have, base="15m") == "15m"  # the base itself
    assert resample_source("4h", {"1h"}, base="15m") is None  # no base candles: nothing to derive from


def test_base_timeframe_must_be_ingested_and_divide_every_timeframe():
    TraderConfig.model_validate({"resample": {"base_timeframe": "1m"}})
    with pytest.raises(ValueError, match="must be one of universe.timeframes"):
        TraderConfig.model_validate({"universe": {"timeframes": ["1h"]}, "resample": {"base_timeframe": "15m"}})
    with pytest.raises(ValueError, match="not multiples"):
        TraderConfig.model_validate({"resample": {"base_timeframe": "5m"}})  # 1m is not a multiple of 5m


@pytest.mark.parametrize("base", [None, "15m"])
def test_market_slice_origin_follows_base_timeframe(tmp_path, base):
    with io.connect(str(tmp_path / "w.duckdb")) as con:
        raw = {}
        for tf in ("15m", "1h"):
            r = real_ohlcv("BTC/USDT", tf)
            r = r[(r.ts >= START) & (r.ts < START + 2 * 86_400_000)][COLS].reset_index(drop=True)
            write_with_checkpoint(con, r, "files", "binance", "BTC/USDT", tf, "f", None, int(r.ts.iloc[-1]), len(r))
            raw[tf] = r
        marks = io.watermarks(con, "raw.ohlcv", "binance")
        rep = build_market_slice(con, "binance", "BTC/USDT", "1h", False, False, marks, {}, base)
        got = con.execute("SELECT * FROM market.ohlcv ORDER BY ts").df()
    assert rep["origin"] == ("native" if base is None else "resampled:15m") and len(got) == 48
    exp = raw["1h"] if base is None else resample_ohlcv(raw["15m"], "15m", "1h")
    pd.testing.assert_frame_equal(got[COLS], exp[COLS].reset_index(drop=True), check_dtype=False)
    assert set(got["origin"]) == {rep["origin"]}
