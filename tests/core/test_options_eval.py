"""Model-based option evaluation: Black-Scholes values by hand, spreads, and trade outcomes on a crafted path."""

import numpy as np
import pandas as pd
import pytest

from pipeline.core.options_eval import always_on, bs_price, equity_curve, evaluate_trades, realized_vol, summary


def test_black_scholes_reference_values_and_parity():
    # S = K = 100, T = 1 y, sigma = 20 %, r = 0: call = put = 7.9656 (textbook value)
    assert bs_price(100, 100, 1.0, 0.2, True) == pytest.approx(7.965567, abs=1e-5)
    assert bs_price(100, 100, 1.0, 0.2, False) == pytest.approx(7.965567, abs=1e-5)
    c, p = bs_price(100, 90, 0.25, 0.5, True), bs_price(100, 90, 0.25, 0.5, False)
    assert c - p == pytest.approx(100 - 90)  # put-call parity with r = 0
    assert bs_price(100, 90, 0.25, 0.0, True) == 10.0 and bs_price(100, 110, 0.25, 0.0, False) == 10.0  # no volatility


def test_trade_outcomes_on_a_crafted_path():
    dates = pd.date_range("2024-01-01", periods=80, freq="D")
    rng = np.random.default_rng(0)
    price = pd.Series(100 * np.exp(np.cumsum(rng.normal(0, 0.02, 80))), index=dates)
    price.iloc[70] = price.iloc[40] * 1.2  # the expiry price of the trades below
    trades = pd.DataFrame(
        {
            "date": [dates[40]] * 2,
            "expiry": [dates[70]] * 2,
            "structure": ["LONG_CALL", "PUT_SPREAD"],
            "strike_long": [price.iloc[40].round(), price.iloc[40].round()],
            "strike_short": [np.nan, (price.iloc[40] * 0.9).round()],
            "direction": [1, -1],
            "size": [1.0, 0.5],
        }
    )
    ev = evaluate_trades(trades, price, iv_premium=0.1)
    iv = realized_vol(price).iloc[40] * 1.1
    s0, k = price.iloc[40], price.iloc[40].round()
    assert ev["iv"].iloc[0] == pytest.approx(iv)
    assert ev["premium"].iloc[0] == pytest.approx(bs_price(s0, k, 30 / 365, iv, True))
    assert ev["payoff"].iloc[0] == pytest.approx(price.iloc[70] - k)
    assert ev["payoff"].iloc[1] == 0.0 and ev["option_ret"].iloc[1] == -1.0  # the put spread expires worthless
    assert ev["underlying_ret"].iloc[0] == pytest.approx(0.2) and ev["underlying_ret"].iloc[1] == pytest.approx(-0.2)
    assert list(ev["hit"]) == [True, False] and list(ev["direction_hit"]) == [True, False]
    eq = equity_curve(ev, premium_budget=0.02)
    assert eq["equity"].iloc[-1] == pytest.approx((1 + 0.02 * ev["option_ret"].iloc[0]) * (1 - 0.02 * 0.5) * 1.0)
    s = summary(ev, "structure").set_index("structure")
    assert s.loc["LONG_CALL", "option_hit_rate"] == 1.0 and s.loc["PUT_SPREAD", "trades"] == 1


def test_unknown_outcomes_stay_unknown_and_always_on_benchmark():
    dates = pd.date_range("2024-01-01", periods=60, freq="D")
    price = pd.Series(np.linspace(100, 160, 60), index=dates)
    t = always_on(price, "LONG_CALL", 7, 45, 0.05, 1.0, dates[31], dates[-1])
    assert len(t) == 5 and (t["strike_long"] == (t["date"].map(price) * 1.05).round()).all()
    ev = evaluate_trades(t, price)
    assert ev["option_ret"].isna().all()  # every expiry lies beyond the data: no invented outcome
    assert equity_curve(ev).empty
