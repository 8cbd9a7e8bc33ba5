"""Portfolio accounting and buy-and-hold on real candles (the metrics are tested in tests/core/test_metrics.py)."""

import numpy as np
import pytest

from pipeline.core.backtest import buy_and_hold, combine_sleeves, equity_plot
from pipeline.core.simulator import SimParams, simulate
from tests.conftest import real_ohlcv


def test_combine_sleeves_and_buy_and_hold_on_real_candles():
    a = real_ohlcv("BTC/USDT", "1d").iloc[-400:].reset_index(drop=True)
    b = real_ohlcv("ETH/USDT", "1d").iloc[-300:].reset_index(drop=True)  # lists later: holds cash before
    sig = lambda df: (
        (df["close"] > df["close"].rolling(20).mean()).astype(int).diff().clip(lower=0).fillna(0).to_numpy()
    )  # noqa: E731
    p = SimParams(init_cash=5000, sl_pct=0.1, tp_pct=0.2, fee_taker_bps=10, fee_maker_bps=10)
    ra, rb = simulate(a, sig(a), p), simulate(b, sig(b), p)
    port = combine_sleeves({"BTC": ra, "ETH": rb}, 5000)
    assert len(port) == 400 and (np.diff(port["ts"]) > 0).all()
    assert port["equity"].iloc[0] == pytest.approx(ra.bars["equity"].iloc[0] + 5000)
    assert port["equity"].iloc[-1] == pytest.approx(10_000 + ra.trades["pnl"].sum() + rb.trades["pnl"].sum())
    pv = (ra.bars["position"] * ra.bars["close"]).to_numpy()[-300:] + (
        rb.bars["position"] * rb.bars["close"]
    ).to_numpy()
    np.testing.assert_allclose(port["position_value"].to_numpy()[-300:], pv)
    np.testing.assert_allclose(port["cash"] + port["position_value"], port["equity"])
    assert ((port["gross_exposure"] >= 0) & (port["gross_exposure"] <= 1.01)).all()
    bh = buy_and_hold(
        {"BTC": a[["ts", "close"]], "ETH": b[["ts", "close"]]}, int(a.ts.iloc[0]), int(a.ts.iloc[-1]), 10_000
    )
    expected = 5000 * a.close.iloc[-1] / a.close.iloc[0] + 5000 * b.close.iloc[-1] / b.close.iloc[0]
    assert bh["equity"].iloc[-1] == pytest.approx(expected)
    assert bh["equity"].iloc[0] == pytest.approx(10_000)
    assert equity_plot(port["ts"].to_numpy(), port["equity"].to_numpy(), None).startswith(b"\x89PNG")
