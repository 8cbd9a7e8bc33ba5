"""Portfolio accounting, performance metrics and buy-and-hold: hand-computed cases and real candles."""

import numpy as np
import pandas as pd
import pytest

from pipeline.core.backtest import YEAR_MS, buy_and_hold, combine_sleeves, drawdown, equity_plot, performance
from pipeline.core.simulator import SimParams, simulate
from tests.conftest import real_ohlcv

D = 86_400_000


def test_drawdown_and_its_duration_hand_computed():
    ts = np.arange(6, dtype=np.int64) * D
    eq = np.array([100, 120, 90, 100, 130, 117.0])
    np.testing.assert_allclose(drawdown(eq), [0, 0, -0.25, -1 / 6, 0, -0.1])
    m = performance(ts, eq)
    assert m["max_drawdown"] == pytest.approx(-0.25)
    assert m["max_drawdown_days"] == 2.0  # peak on day 1, regained on day 4 (the open drawdown since day 4 is 1 day)
    assert m["total_return"] == pytest.approx(0.17)
    years = 5 * D / YEAR_MS
    assert m["annual_return"] == pytest.approx(1.17 ** (1 / years) - 1)
    assert m["calmar"] == pytest.approx(m["annual_return"] / 0.25)


def test_sharpe_sortino_hand_computed():
    ts = np.arange(5, dtype=np.int64) * D
    eq = np.array([100, 110, 99, 108.9, 119.79])  # returns +10 %, -10 %, +10 %, +10 %
    r = np.array([0.1, -0.1, 0.1, 0.1])
    m = performance(ts, eq)
    bpy = 4 / (4 * D / YEAR_MS)  # 365 bars a year
    assert m["sharpe"] == pytest.approx(r.mean() / r.std(ddof=1) * np.sqrt(bpy))
    assert m["sortino"] == pytest.approx(r.mean() / np.sqrt(np.mean(np.minimum(r, 0) ** 2)) * np.sqrt(bpy))
    assert m["volatility"] == pytest.approx(r.std(ddof=1) * np.sqrt(bpy))


def test_trade_statistics_hand_computed():
    trades = pd.DataFrame(
        {
            "pnl": [30.0, -10.0, -20.0, 50.0],
            "ret": [0.03, -0.01, -0.02, 0.05],
            "r_multiple": [1.5, -0.5, -1.0, 2.5],
            "notional": [1000.0] * 4,
            "units": [10.0] * 4,
            "exit_price": [103.0, 99.0, 98.0, 105.0],
        }
    )
    m = performance(np.array([0, YEAR_MS]), np.array([1000.0, 1050.0]), trades)
    assert m["n_trades"] == 4 and m["win_rate"] == 0.5
    assert m["profit_factor"] == pytest.approx(80 / 30) and m["expectancy"] == pytest.approx(12.5)
    assert m["avg_r"] == pytest.approx(0.625) and m["expectancy_ret"] == pytest.approx(0.0125)
    assert m["turnover"] == pytest.approx((4000 + 4050) / 1 / 1025)


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
