"""Model-based option evaluation: Black-Scholes values by hand, spreads, and trade outcomes on a crafted path."""

import numpy as np
import pandas as pd
import pytest

from pipeline.core.options_eval import always_on, bs_price, daily_book, evaluate_trades, realized_vol, summary


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
    curve, book = daily_book(ev, price, premium_budget=0.02)
    # both bought on day 40 with 2 % x size of equity 1, settled on day 70 at payoff / premium of that spend
    assert curve["equity"].iloc[-1] == pytest.approx(
        1 + 0.02 * ev["option_ret"].iloc[0] + 0.01 * ev["option_ret"].iloc[1]
    )
    assert list(book["notional"]) == pytest.approx([0.02, 0.01]) and book["pnl"].sum() == pytest.approx(
        curve["equity"].iloc[-1] - 1
    )
    # day 55: the call is marked by hand with that day's price, 15 days left and that day's IV proxy
    mark = bs_price(price.iloc[55], k, 15 / 365, realized_vol(price).iloc[55] * 1.1, True)
    row = curve[curve["ts"] == (dates[55] + pd.Timedelta(days=1)).value // 1_000_000].iloc[0]
    spread = ev.iloc[1]
    put_mark = bs_price(price.iloc[55], spread["strike_long"], 15 / 365, realized_vol(price).iloc[55] * 1.1, False)
    put_mark -= bs_price(price.iloc[55], spread["strike_short"], 15 / 365, realized_vol(price).iloc[55] * 1.1, False)
    want = 0.02 * mark / ev["premium"].iloc[0] + 0.01 * put_mark / spread["premium"]
    assert row["position_value"] == pytest.approx(want) and row["equity"] == pytest.approx(0.97 + want)
    # no look-ahead: prices after day 55 do not change the marks up to day 55
    later = price.copy()
    later.iloc[56:] *= 1.5
    c2, _ = daily_book(evaluate_trades(trades, later, iv_premium=0.1), later, premium_budget=0.02)
    np.testing.assert_allclose(c2["equity"].iloc[:16], curve["equity"].iloc[:16], rtol=1e-12)
    assert c2["equity"].iloc[-1] != pytest.approx(curve["equity"].iloc[-1])
    s = summary(ev, "structure").set_index("structure")
    assert s.loc["LONG_CALL", "option_hit_rate"] == 1.0 and s.loc["PUT_SPREAD", "trades"] == 1


def test_unknown_outcomes_stay_unknown_and_always_on_benchmark():
    dates = pd.date_range("2024-01-01", periods=60, freq="D")
    price = pd.Series(np.linspace(100, 160, 60), index=dates)
    from pipeline.core.options_fusion import option_structure

    sp = _structure_params()
    t = always_on(price, "LONG", 7, sp, dates[31], dates[-1])
    want = [option_structure("LONG", price[d], d, 1.0, sp) for d in t["date"]]
    assert len(t) == 5 and list(t["strike_long"]) == [w["strike_long"] for w in want]  # the desk's own strikes
    assert list(t["expiry"].dt.date) == [w["expiry"] for w in want] and t["structure"].eq("LONG_CALL").all()
    ev = evaluate_trades(t, price)
    assert ev["option_ret"].isna().all()  # every expiry lies beyond the data: no invented outcome
    curve, book = daily_book(ev, price)
    assert book.empty and (curve["n_positions"] > 0).any()  # open structures are marked, none is settled


def _structure_params():
    from pipeline.core.options_fusion import StructureParams

    return StructureParams()


def test_trade_rows_carry_premium_payoff_and_underlying_prices_by_hand():
    """Issue 12 item 8: the options desk's ``backtest.trades`` rows mean what every desk's rows mean."""
    dates = pd.date_range("2024-01-01", periods=80, freq="D")
    rng = np.random.default_rng(1)
    price = pd.Series(44_000 * np.exp(np.cumsum(rng.normal(0, 0.02, 80))), index=dates)
    price.iloc[70] = 50_000.0
    trades = pd.DataFrame(
        {
            "date": [dates[40]] * 3,
            "expiry": [dates[70]] * 3,
            "structure": ["LONG_CALL", "CALL_SPREAD", "CALL_SPREAD"],
            "strike_long": [46_000.0, 46_000.0, 46_000.0],
            "strike_short": [np.nan, 50_000.0, 46_000.0],  # the last: both legs on one strike, premium 0
            "direction": [1, 1, 1],
            "size": [1.0, 0.5, 0.5],
            "trade_type": ["LONG", "BULL_PROBE", "BULL_PROBE"],
        }
    )
    from pipeline.core.options_eval import trade_rows

    ev = evaluate_trades(trades, price)
    rows = trade_rows(ev)
    assert rows["symbol"].eq("BTC/USD").all() and list(rows["instrument"]) == list(trades["structure"])
    assert rows["entry_price"].iloc[0] == pytest.approx(ev["premium"].iloc[0]) and rows["entry_price"].iloc[0] > 0
    assert rows["exit_price"].iloc[0] == pytest.approx(50_000 - 46_000)  # intrinsic value at expiry, USD per BTC
    assert rows["exit_price"].iloc[1] == pytest.approx(50_000 - 46_000)  # the spread is capped at its width
    assert rows["underlying_entry_price"].eq(price.iloc[40]).all() and rows["underlying_exit_price"].eq(50_000).all()
    # the prices are the day's close, known at 00:00 UTC the next day
    assert rows["entry_time"].eq(dates[41]).all() and rows["exit_time"].eq(dates[71]).all()
    assert (rows["entry_ts"] == rows["signal_ts"]).all() and rows["bars_held"].eq(30).all()
    assert rows["notional"].iloc[1] == pytest.approx(ev["premium"].iloc[1] * 0.5)
    assert rows["pnl"].iloc[1] == pytest.approx((4_000 - ev["premium"].iloc[1]) * 0.5)
    # a structure priced at 0 cannot be bought: no outcome, no invented P&L
    assert ev["premium"].iloc[2] == 0 and np.isnan(rows["ret"].iloc[2]) and np.isnan(rows["pnl"].iloc[2])
    assert list(rows["exit_reason"]) == ["expiry", "expiry", "unpriced"]


def test_tactical_hedges_are_their_own_group_in_the_state_table():
    """Issue 12 item 7: a TACTICAL_PUT bought inside a bull state is not counted under that state."""
    from pipeline.core.options_eval import TACTICAL_GROUP, state_group

    ev = pd.DataFrame(
        {
            "state": ["strong_bullish", "strong_bullish", "bear_probe"],
            "trade_type": ["LONG", "TACTICAL_PUT", "BEAR_PROBE"],
        }
    )
    assert list(state_group(ev)) == ["strong_bullish", TACTICAL_GROUP, "bear_probe"]


@pytest.fixture(scope="module")
def real_evaluation(onchain_inputs):
    from pipeline.core.onchain_signals import onchain_features
    from pipeline.core.options_eval import desk_evaluation, trade_rows
    from pipeline.core.options_fusion import OptionsDeskParams, decide_days

    daily, fng = onchain_inputs
    price = daily.assign(date=pd.to_datetime(daily["date"])).set_index("date")["price_usd"]
    f = onchain_features(daily, fng)
    p = OptionsDeskParams()
    days, trades = decide_days(f, f["date"].map(price), p)
    taken = trades[trades["cooldown_status"] == "taken"].merge(
        days[["date", "state"]].assign(date=pd.to_datetime(days["date"])).rename(columns={"date": "d"}),
        left_on=pd.to_datetime(trades.loc[trades["cooldown_status"] == "taken", "date"]),
        right_on="d",
    )
    e = desk_evaluation(taken.sort_values("date").reset_index(drop=True), price, p.structures)
    return e, trade_rows(e["ev"])


def test_real_option_rows_have_prices_and_the_underlying_traded_that_day(real_evaluation, shared_data):
    """On the real data: every option trade with an outcome has a positive premium, a value at expiry and BTC's
    prices; those lie within BTC's daily low-high range (Binance BTC/USDT 1d) of the entry and expiry days, up to the
    USDT/USD basis (the underlying is Coin Metrics' USD reference rate; USDT traded up to ~5 % off USD in 2017-2019)."""
    e, rows = real_evaluation
    done = rows[rows["ret"].notna()]
    assert len(done) > 100
    assert (done["entry_price"] > 0).all() and (done["exit_price"] >= 0).all() and done["exit_price"].notna().all()
    assert (done[["underlying_entry_price", "underlying_exit_price"]] > 0).all().all()
    assert done["pnl"].sum() == pytest.approx((done["ret"] * done["notional"]).sum())
    d1 = pd.read_csv(shared_data / "ohlcv" / "binance" / "BTC_USDT-1d.csv.gz")
    d1 = d1.assign(day=pd.to_datetime(d1["timestamp"], unit="ms")).set_index("day")[["low", "high"]]
    checked = 0
    for px, t in (("underlying_entry_price", "entry_time"), ("underlying_exit_price", "exit_time")):
        day = done[t] - pd.Timedelta(days=1)  # the price is that day's close
        x = done.assign(low=day.map(d1["low"]), high=day.map(d1["high"])).dropna(subset=["low"])
        tol = np.where(day[x.index] >= "2020-01-01", 0.001, 0.05)
        assert ((x[px] >= x["low"] * (1 - tol)) & (x[px] <= x["high"] * (1 + tol))).all(), x[
            ~((x[px] >= x["low"] * (1 - tol)) & (x[px] <= x["high"] * (1 + tol)))
        ][[t, px, "low", "high"]]
        checked += len(x)
    assert checked > 100


def test_real_evaluation_has_a_daily_marked_curve_that_reconciles(real_evaluation):
    """Issue 15: the desk's account is marked every day (one row per UTC day, known at the next 00:00) and its final
    equity is the start plus the P&L of its settled trades; the metrics are of that daily curve, 365 days a year."""
    e, _ = real_evaluation
    c, m = e["equity"], e["metrics"]
    assert (np.diff(c["ts"]) == 86_400_000).all() and (c["ts"] % 86_400_000 == 0).all()
    assert m["n_days"] == len(c) > 1000 and m["years"] == pytest.approx((len(c) - 1) / 365)
    assert ((c["gross_exposure"] >= 0) & (c["gross_exposure"] < 1)).all() and m["exposure"] > 0
    assert {"psr", "dsr", "turnover", "sortino", "calmar"} <= set(m) and m["n_trials"] == 1
    assert m["total_return"] == pytest.approx(c["equity"].iloc[-1] / c["equity"].iloc[0] - 1)
    assert e["benchmark"]["buy_and_hold"]["n_days"] == m["n_days"]  # buy-and-hold over the same days
