"""Setup scanner core: pivots and their confirmation delay, Fibonacci/AVWAP/plan maths by hand, the minimum-net-TP
rule, risk sizing, independent outcomes, EV, every gating override level, the tuner on a crafted case, and
candidates on truncated real history equal to the full run's."""

import numpy as np
import pandas as pd
import pytest

from pipeline.core.costs import Costs, futures_costs
from pipeline.core.setup_gating import (
    GatingParams,
    expected_value_pct,
    gate,
    regime_key,
    resolve_threshold,
    tune_threshold,
)
from pipeline.core.setups import RiskParams, SetupParams, avwap, candidates, plan_outcomes, position_size, swing_pivots

FUTURES = futures_costs()  # setup_scanner.costs: maker 2 / taker 6 / slippage 2 bps
NO_COSTS = Costs(maker_fee_bps=0, taker_fee_bps=0, slippage_bps=0)


def _bars(high, low, close=None, volume=None, atr=1.0):
    n = len(high)
    close = close if close is not None else (np.asarray(high) + np.asarray(low)) / 2
    return pd.DataFrame(
        {
            "ts": np.arange(n, dtype=np.int64) * 3_600_000,
            "open": close,
            "high": high,
            "low": low,
            "close": close,
            "volume": volume if volume is not None else np.ones(n),
            "atr": atr,
        }
    )


def test_pivots_are_strict_and_need_k_bars_after():
    h = np.array([1, 2, 5, 2, 1, 1, 3, 3, 1, 0.5], float)
    l = h - 0.5
    ph, pl = swing_pivots(h, l, 2)
    assert np.flatnonzero(ph).tolist() == [2]  # bar 6/7 tie at 3 -> neither is a pivot
    assert not ph[-2:].any()  # the last k bars are never confirmed
    ph_cut, _ = swing_pivots(h[:4], l[:4], 2)  # at bar 3 the pivot at bar 2 is not known yet
    assert not ph_cut.any()


def test_avwap_by_hand():
    h, l, c, v = np.array([3.0, 6, 9]), np.array([1.0, 2, 3]), np.array([2.0, 4, 6]), np.array([1.0, 2, 3])
    # typical = 2, 4, 6; anchored at bar 1: (4*2 + 6*3) / 5 = 5.2 at bar 2
    out = avwap(h, l, c, v, np.array([-1, 1, 1]))
    assert np.isnan(out[0]) and out[1] == pytest.approx(4.0) and out[2] == pytest.approx(5.2)


def _leg_then_pullback():
    """Up-leg 100 -> 120 (pivot low at bar 3, high at bar 9), then a pullback touching the 0.5 level (110)."""
    up = [104, 103, 102, 100, 104, 108, 112, 116, 118, 120, 119, 118, 117, 116]
    low = np.array(up, float) - 0.5
    high = np.array(up, float) + 0.5
    low[3], high[9] = 100.0, 120.0
    pull = [115, 113, 111.2, 111.5, 112]
    lows = np.r_[low, np.array(pull) - 1.2]
    highs = np.r_[high, np.array(pull) + 0.5]
    close = np.r_[np.array(up, float), np.array(pull, float)]
    return _bars(highs, lows, close, atr=1.0)


def test_plan_levels_by_hand():
    b = _leg_then_pullback()
    p = SetupParams(
        pivot_window=2,
        retracements=[0.5, 0.618],
        use_avwap=False,
        min_leg_atr=3,
        atr_mult_sl=0.5,
        touch_atr=0.0,
        min_tp_net_pct=0.0,
    )
    c = candidates(
        b,
        p,
        RiskParams(equity=10_000, risk_pct=1, max_leverage=10, maintenance_margin_pct=0.5, liq_buffer=1.5),
        None,
        FUTURES,
    )
    longs = c[c["side"] == 1]
    assert len(longs) >= 1
    r = longs.iloc[0]
    # first bar whose low (111.2 - 1.2 = 110.0) touches 110 and closes above it: bar 16
    assert r["bar"] == 16 and r["level"] == 0.5 and r["entry"] == pytest.approx(110.0)
    # SL: next deeper level 120 - 0.618*20 = 107.64, minus 0.5 ATR -> 107.14; TP1 = 100 + 1.272*20; TP2 = 100 + 1.618*20
    assert r["sl"] == pytest.approx(107.14) and r["tp1"] == pytest.approx(125.44) and r["tp2"] == pytest.approx(132.36)
    # risk 1 % of 10k over 2.86 -> 34.965 units, 3,846 notional, leverage 0.38 -> at least 1
    assert r["qty"] == pytest.approx(100 / 2.86) and r["leverage"] == pytest.approx(1.0)
    assert r["tp1_net_pct"] == pytest.approx((125.44 / 110 - 1) * 100 - 2 * (0.06 + 0.02))
    assert pd.isna(r["reject_reason"])


def test_minimum_net_tp_rejects_with_a_reason():
    b = _leg_then_pullback()
    p = SetupParams(pivot_window=2, retracements=[0.5], use_avwap=False, touch_atr=0.0, min_tp_net_pct=20.0)
    c = candidates(b, p, RiskParams(), None, FUTURES)
    assert len(c) and (c.loc[c.side == 1, "reject_reason"] == "tp1_net_below_min").all()


def test_position_size_lowers_leverage_until_liquidation_is_beyond_the_stop():
    r = RiskParams(equity=1000, risk_pct=10, max_leverage=20, maintenance_margin_pct=0.5, liq_buffer=2.0)
    s = position_size(np.array([100.0, 100.0]), np.array([99.0, 80.0]), 1, r)
    # 1 % stop: qty 100, notional 10,000 -> wants 10x; liquidation distance 1/10 - 0.005 = 9.5 % >= 2 %: keeps 10x
    assert s["leverage"][0] == pytest.approx(10.0) and s["liq_price"][0] == pytest.approx(100 * (1 - 0.1 + 0.005))
    # 20 % stop with a 2x buffer needs a 40 % liquidation distance -> at most 1/(0.4 + 0.005) = 2.46x; wants 0.5x -> 1x
    assert s["leverage"][1] == pytest.approx(1.0)
    deep = position_size(np.array([100.0]), np.array([40.0]), 1, r)  # 60 % stop: even 1x liquidates first
    assert deep["leverage"][0] == 0


def test_outcomes_fill_tp1_then_breakeven_and_expiry():
    p = SetupParams(validity_candles=2, max_hold_candles=10)
    bars = _bars(
        high=[10, 10, 10.5, 12, 10.2, 10], low=[9.8, 9.9, 9.5, 10.0, 9.9, 9.9], close=[10, 10, 10, 11.5, 10, 10]
    )
    plans = pd.DataFrame(
        {
            "bar": [0, 0, 4],
            "side": [1, 1, 1],
            "entry": [9.6, 9.0, 5.0],
            "sl": [9.0, 8.0, 4.0],
            "tp1": [11.0, 11.0, 6.0],
            "tp2": [13.0, 13.0, 7.0],
            "atr": [0.5, 0.5, 0.5],
        }
    )
    o = plan_outcomes(bars, plans, p, costs=NO_COSTS, tp1_fraction=0.5, breakeven_after_tp1=True, trail_atr=0.0)
    assert np.isnan(o.loc[0, "win"])  # TP1 was hit, but the plan is unresolved: no label yet
    # plan 0: filled at bar 2 (low 9.5), TP1 at bar 3 (stop to 9.6), lows stay 9.9 and the data ends before the
    # 10-bar time stop: unresolved (OPEN), never guessed
    assert o.loc[0, "status"] == "OPEN" and o.loc[0, "fill_ts"] == bars.ts[2]
    # plan 1: entry 9.0 never reached within 2 bars -> EXPIRED; plan 2: validity runs past the data -> OPEN
    assert o.loc[1, "status"] == "EXPIRED" and np.isnan(o.loc[1, "win"]) and o.loc[2, "status"] == "OPEN"
    short = plan_outcomes(
        bars,
        pd.DataFrame(
            {"bar": [0], "side": [-1], "entry": [10.0], "sl": [10.4], "tp1": [9.0], "tp2": [8.0], "atr": [0.5]}
        ),
        p,
        costs=NO_COSTS,
    )
    assert short.loc[0, "status"] == "SL" and short.loc[0, "net_pct"] == pytest.approx(-4.0)
    assert short.loc[0, "win"] == 0.0 and short.loc[0, "tp1_hit"] == 0.0


def test_expected_value_and_cost_modes():
    g = GatingParams(tp1_fraction=0.5, costs_mode="auto", ev_runner_fraction=1.0)
    assert FUTURES.round_trip_pct(g.costs_mode) == pytest.approx(0.02 + 0.06 + 0.02)
    ev = expected_value_pct(0.4, 1, 100.0, 98.0, 103.0, 105.0, g, FUTURES)
    # win = 0.5*3 + 0.5*5 = 4 %, loss 2 %: 0.4*4 - 0.6*2 - 0.10 = 0.30
    assert ev == pytest.approx(0.30)
    assert expected_value_pct(0.4, -1, 100.0, 102.0, 97.0, 95.0, g, FUTURES) == pytest.approx(0.30)
    # runner half-way to TP2 (default): win = 0.5*3 + 0.5*2.5 = 2.75 %: 0.4*2.75 - 1.2 - 0.1 = -0.20
    assert expected_value_pct(
        0.4, 1, 100.0, 98.0, 103.0, 105.0, g.model_copy(update={"ev_runner_fraction": 0.5}), FUTURES
    ) == pytest.approx(-0.20)
    assert FUTURES.round_trip_pct(GatingParams(costs_mode="taker").costs_mode) == pytest.approx(0.16)
    assert expected_value_pct(0.4, 1, 100.0, 98.0, 103.0, 105.0, g, NO_COSTS) == pytest.approx(0.40)


def test_costs_reproduce_the_former_percent_formulas_float_for_float():
    """The one cost model gives exactly (==, not approx) the floats of the settings it replaced, on the defaults:
    gating's CostModel (maker 0.02 / taker 0.06 / slippage 0.02 %) round trips, SetupParams' ``2 * (fee_pct +
    slippage_pct)`` with fee 0.06 / slippage 0.02 %, the simulator bps ``100 * pct`` of the setup scanner, and the
    research backtest's CostsConfig as stored in backtest.runs.costs."""
    import json

    from pipeline.config import TraderConfig

    cfg = TraderConfig()
    c = cfg.setup_scanner.costs
    assert c == FUTURES
    maker_fee_pct, taker_fee_pct, slippage_pct = 0.02, 0.06, 0.02  # former CostModel defaults
    taker = taker_fee_pct + slippage_pct  # former round_trip_cost_pct
    assert c.round_trip_pct("maker") == 2 * maker_fee_pct
    assert c.round_trip_pct("taker") == 2 * taker
    assert c.round_trip_pct("auto") == maker_fee_pct + taker
    fee_pct, slip_pct = 0.06, 0.02  # former SetupParams defaults
    assert c.round_trip_pct(cfg.setup_scanner.signals.min_tp_cost_mode) == 2 * (fee_pct + slip_pct)
    assert c.round_trip_pct(cfg.setup_scanner.gating.costs_mode) == maker_fee_pct + taker
    assert c.sim_kwargs() == {
        "fee_maker_bps": 100 * maker_fee_pct,
        "fee_taker_bps": 100 * (taker_fee_pct),
        "slippage_bps": 100 * slippage_pct,
    }  # former assets/setup_scanner sim_params
    assert json.dumps(c.percent()) == json.dumps({"maker_fee_pct": 0.02, "taker_fee_pct": 0.06, "slippage_pct": 0.02})
    bt = cfg.research.backtest  # former CostsConfig 10 / 10 / 2 bps, latency 0
    assert (
        bt.costs.sim_kwargs() == {"fee_taker_bps": 10.0, "fee_maker_bps": 10.0, "slippage_bps": 2.0}
        and bt.latency_bars == 0
    )
    assert json.dumps({**bt.costs.sim_kwargs(), "latency_bars": bt.latency_bars}) == json.dumps(
        {"fee_taker_bps": 10.0, "fee_maker_bps": 10.0, "slippage_bps": 2.0, "latency_bars": 0}
    )


def test_costs_modes_and_strictness():
    c = Costs(maker_fee_bps=1.0, taker_fee_bps=5.0, slippage_bps=3.0)
    assert c.side_pct("maker") == 0.01 and c.side_pct("taker") == pytest.approx(0.08)
    assert c.round_trip_pct("maker") == pytest.approx(0.02) and c.round_trip_pct("taker") == pytest.approx(0.16)
    assert c.round_trip_pct("auto") == pytest.approx(0.09)
    with pytest.raises(ValueError):
        c.round_trip_pct("market")
    with pytest.raises(ValueError):
        c.side_pct("limit")
    with pytest.raises(Exception):
        Costs(maker_fee_bps=1.0, taker_fee_bps=5.0)  # every cost is stated
    with pytest.raises(Exception):
        Costs(maker_fee_bps=1.0, taker_fee_bps=5.0, slippage_bps=3.0, fee_pct=0.1)  # unknown field
    with pytest.raises(Exception):
        SetupParams(fee_pct=0.06)  # moved to setup_scanner.costs
    with pytest.raises(Exception):
        GatingParams(costs={"maker_fee_pct": 0.02})  # moved to setup_scanner.costs


def test_min_tp_cost_mode_is_the_named_difference():
    """The minimum-net-TP rule and the outcome net deduct ``min_tp_cost_mode``'s round trip (taker by default), the
    EV gate ``gating.costs_mode``'s (auto): both from the one Costs."""
    b = _leg_then_pullback()
    kw = dict(pivot_window=2, retracements=[0.5, 0.618], use_avwap=False, touch_atr=0.0, min_tp_net_pct=0.0)
    taker = candidates(b, SetupParams(**kw), RiskParams(), None, FUTURES)
    auto = candidates(b, SetupParams(**kw, min_tp_cost_mode="auto"), RiskParams(), None, FUTURES)
    assert (auto["tp1_net_pct"] - taker["tp1_net_pct"]).to_numpy() == pytest.approx(0.16 - 0.10)


def test_every_override_level_in_order():
    g = GatingParams(
        use_ev=True,
        min_ev_pct=0.1,
        per_pair_tf={"ETH/USDT|1h": 0.2, "BTC/USDT|1h": 0.3},
        per_regime={"range|high": 0.9},
    )
    tuned = pd.DataFrame({"symbol": ["BTC/USDT"], "timeframe": ["1h"], "threshold": [0.25]})
    reg = regime_key(["bull", "sideways", "bull", "sideways"], ["low", "normal", "normal", "high"])
    v, src = resolve_threshold(["SOL/USDT", "ETH/USDT", "BTC/USDT", "BTC/USDT"], ["1h"] * 4, reg, g, tuned)
    assert src.tolist() == ["global", "config:ETH/USDT|1h", "tuned:BTC/USDT|1h", "regime:range|high"]
    assert v.tolist() == [0.1, 0.2, 0.25, 0.9]
    assert gate([0.9, 0.9], [0.05, np.nan], [0.0, 0.0], g).tolist() == [True, False]
    assert gate([0.55, 0.45], [9, 9], [0.5, 0.5], GatingParams(use_ev=False)).tolist() == [True, False]


def test_a_candle_without_a_regime_has_a_key_an_override_can_name():
    """Issue 12 item 13: a NULL trend or volatility label used to become ``range|None``, which no override could target."""
    from pipeline.core.setup_gating import UNKNOWN_REGIME
    from pipeline.core.setup_signals import gate_scored

    reg = regime_key(["bull", None, "sideways", np.nan], ["low", "high", None, "low"])
    assert reg.tolist() == ["trend|low", UNKNOWN_REGIME, UNKNOWN_REGIME, UNKNOWN_REGIME]
    g = GatingParams(min_ev_pct=0.0, per_regime={UNKNOWN_REGIME: 5.0, "range|high": 9.0})
    v, src = resolve_threshold(["BTC/USDT"] * 4, ["1h"] * 4, reg, g)
    assert src.tolist() == ["global", "regime:unknown", "regime:unknown", "regime:unknown"] and v.tolist() == [
        0,
        5,
        5,
        5,
    ]
    c = pd.DataFrame(
        {
            "symbol": ["BTC/USDT", "BTC/USDT"],
            "timeframe": ["1h", "1h"],
            "ts": [0, 3_600_000],
            "trend_regime": ["bull", None],
            "volatility_level": ["low", None],
            "p_win": [0.5, 0.5],
            "ev_pct": [0.2, 0.2],
        }
    )
    out, mode = gate_scored(c, None, GatingParams(), has_champion=True)
    assert mode == "ev" and out["passed"].tolist() == [True, True]
    assert not out["why"].iloc[0].endswith("]") and out["why"].iloc[1].endswith("[no regime on the signal bar]")


def test_tuner_finds_max_coverage_at_target_winrate():
    score = np.arange(100, dtype=float)  # 0..99
    win = (score >= 60).astype(float)  # only the top 40 win
    win[[10, 20, 30]] = 1  # a few low-score wins
    r = tune_threshold(score, win, target_winrate=0.8, min_samples=20, grid=np.array([0, 40, 50, 55, 60, 90]))
    # >= 50: 50 pass, 40 win -> 0.80 (meets, more coverage than >= 55 / 60); >= 40: 60 pass, 40 win -> 0.667
    assert r["threshold"] == 50 and r["n_pass"] == 50 and r["winrate"] == pytest.approx(0.8) and r["coverage"] == 0.5
    none = tune_threshold(score, win, target_winrate=0.99, min_samples=45, grid=np.array([0, 60, 90]))
    assert np.isnan(none["threshold"]) and len(none["table"]) == 3
    # min_samples wins over coverage: with 50 required, >= 60 (40 rows) cannot be chosen
    assert tune_threshold(score, win, target_winrate=1.0, min_samples=50, grid=np.array([60, 90]))["n_pass"] == 0


def test_tuner_reports_the_best_winrate_reachable_and_its_coverage():
    """Issue 12 item 16: when the target is out of reach, the tuner says how far: the best win rate among thresholds
    keeping at least ``min_samples`` closed signals, and the coverage it costs."""
    score = np.arange(100, dtype=float)
    win = (score >= 60).astype(float)
    win[[10, 20, 30]] = 1
    grid = np.array([0, 40, 50, 55, 60, 90])
    # >= 0: 43/100; >= 40: 40/60; >= 50: 40/50; >= 55: 40/45 = 0.889; >= 60: 40/40 = 1 but only 40 < 41 samples
    r = tune_threshold(score, win, target_winrate=0.95, min_samples=41, grid=grid)
    assert np.isnan(r["threshold"]) and r["base_winrate"] == pytest.approx(0.43)
    assert r["best_threshold"] == 55 and r["best_winrate"] == pytest.approx(40 / 45)
    assert r["best_coverage"] == pytest.approx(0.45) and r["best_n_pass"] == 45
    # a reachable target: the tuned threshold is the widest qualifying one; the best is still the purest one
    ok = tune_threshold(score, win, target_winrate=0.8, min_samples=20, grid=grid)
    assert ok["threshold"] == 50 and ok["best_threshold"] == 60 and ok["best_winrate"] == 1.0
    # fewer closed signals than min_samples at any threshold: nothing is reachable
    few = tune_threshold(score[:10], win[:10], target_winrate=0.5, min_samples=50)
    assert np.isnan(few["best_winrate"]) and few["best_n_pass"] == 0


def test_target_reach_per_pair_from_the_latest_version():
    from pipeline.core.setup_gating import GatingParams, target_reach, tune_schedule

    day = 86_400_000
    g = GatingParams(use_ev=False, target_winrate_pct=90, window_days=365, min_closed_samples=4)
    a = pd.DataFrame(  # BTC: 8 closed; >= 0.5 keeps 4 with 3 wins (75 %), the best reachable with >= 4 samples
        {
            "score": [0.9, 0.8, 0.7, 0.5, 0.4, 0.3, 0.2, 0.1],
            "win": [1, 1, 0, 1, 0, 0, 1, 0],
        }
    ).assign(symbol="BTC/USDT")
    b = pd.DataFrame({"score": [0.9, 0.8, 0.7, 0.6], "win": [1, 1, 1, 1]}).assign(symbol="ETH/USDT")  # 100 %
    closed = pd.concat([a, b], ignore_index=True).assign(timeframe="1h")
    closed["ts"] = np.arange(len(closed)) * day
    closed["exit_ts"] = closed["ts"] + day
    rows = tune_schedule(closed, np.array([5 * day, 30 * day]), g)
    grid = lambda s: np.unique(np.quantile(s, np.linspace(0, 0.95, 39), method="lower"))
    assert set(grid(a["score"])) >= {0.5}  # the default grid holds every observed score here
    reach = target_reach(rows).set_index("symbol")
    assert (reach["valid_from"] == 30 * day).all()  # the latest version
    btc, eth = reach.loc["BTC/USDT"], reach.loc["ETH/USDT"]
    assert np.isnan(btc["threshold"]) and btc["n"] == 8 and btc["base_winrate"] == pytest.approx(0.5)
    assert btc["best_winrate"] == pytest.approx(0.75) and btc["best_coverage"] == pytest.approx(0.5)
    assert btc["best_n_pass"] == 4 and btc["gap_pp"] == pytest.approx(15.0)
    assert eth["threshold"] == pytest.approx(0.6) and eth["best_winrate"] == 1.0 and eth["gap_pp"] == pytest.approx(-10)


def test_candidates_on_truncated_real_history_equal_the_full_run(shared_data):
    import talib

    raw = pd.read_csv(shared_data / "ohlcv" / "binance" / "BTC_USDT-1h.csv.gz").tail(6000)
    b = raw.rename(columns={"timestamp": "ts"})[["ts", "open", "high", "low", "close", "volume"]].reset_index(drop=True)
    b["atr"] = talib.ATR(b.high.to_numpy(), b.low.to_numpy(), b.close.to_numpy(), 14)
    p, r = SetupParams(), RiskParams()
    full = candidates(b, p, r, None, FUTURES)
    assert len(full) > 50 and full["reject_reason"].isna().mean() > 0.5
    for cut in (3000, 4500, 5999):
        part = candidates(b.iloc[: cut + 1], p, r, None, FUTURES)
        exp = full[full["bar"] <= cut].reset_index(drop=True)
        pd.testing.assert_frame_equal(part.reset_index(drop=True), exp, check_dtype=False)


# ---- issue 12 item 14: the seed's signals / risk settings, each read by the plan builder -----------------------


def _real_bars(shared_data, name="BTC_USDT-1h", n=6000):
    import talib

    raw = pd.read_csv(shared_data / "ohlcv" / "binance" / f"{name}.csv.gz").tail(n)
    b = raw.rename(columns={"timestamp": "ts"})[["ts", "open", "high", "low", "close", "volume"]].reset_index(drop=True)
    b["atr"] = talib.ATR(b.high.to_numpy(), b.low.to_numpy(), b.close.to_numpy(), 14)
    return b


def _two_anchor_series():
    """:func:`_leg_then_pullback`, whose pullback low (bar 16) is then a confirmed pivot low after the leg's high, and a
    bar 21 that touches the leg's 0.618 level (107.64) and closes above it."""
    b = _leg_then_pullback()
    more = pd.DataFrame(
        {
            "ts": (19 + np.arange(3)) * 3_600_000,
            "open": [111.0, 111.0, 108.0],
            "high": [112.6, 112.7, 112.8],
            "low": [110.5, 110.6, 107.6],
            "close": [111.0, 111.0, 108.0],
            "volume": 1.0,
            "atr": 1.0,
        }
    )
    return pd.concat([b, more], ignore_index=True)


P_HAND = dict(pivot_window=2, retracements=[0.5, 0.618], use_avwap=False, min_leg_atr=3, touch_atr=0.0)


def test_fibo_anchors_considers_older_legs_by_hand():
    b = _two_anchor_series()
    one = candidates(b, SetupParams(**P_HAND), RiskParams(), None, NO_COSTS)
    two = candidates(b, SetupParams(**P_HAND, fibo_anchors=2), RiskParams(), None, NO_COSTS)
    l1, l2 = one[one.side == 1], two[two.side == 1]
    # one anchor: at bar 21 the latest pivot low (bar 16, confirmed at 18) follows the latest high (bar 9): no up-leg
    assert l1["bar"].tolist() == [16]
    # two anchors: the second latest low (bar 3, 100) with the high at bar 9 (120): the 0.618 level 107.64 is touched
    r = l2.set_index("bar").loc[21]
    assert r["level"] == 0.618 and r["entry"] == pytest.approx(107.64) and r["leg_low"] == 100 and r["leg_high"] == 120
    assert r["sl"] == pytest.approx(100 - 0.5)  # the deepest configured level: SL below the leg's start
    # the latest anchor's candidates are unchanged
    pd.testing.assert_frame_equal(l2[l2.bar == 16].reset_index(drop=True), l1.reset_index(drop=True))


def test_lookback_candles_hides_legs_older_than_the_window_by_hand():
    b = _leg_then_pullback()  # leg from the pivot low at bar 3; the touch at bar 16
    bars = lambda w: (
        candidates(b, SetupParams(**P_HAND, lookback_candles=w), RiskParams(), None, NO_COSTS)
        .query("side == 1")["bar"]
        .tolist()
    )
    assert bars(None) == [16] and bars(14) == [16]  # bar 3 is within the 14 bars 3..16
    assert bars(13) == []  # window 4..16: the leg's start is not visible


def test_fibo_anchors_and_lookback_on_real_data(shared_data):
    b = _real_bars(shared_data)
    base = candidates(b, SetupParams(), RiskParams(), None, FUTURES)
    assert len(base) == 737  # the defaults keep the former behaviour (737 candidates before these settings existed)
    more = candidates(b, SetupParams(fibo_anchors=3), RiskParams(), None, FUTURES)
    key = ["bar", "side"]
    m = base.merge(more, on=key, suffixes=("", "_3"))
    assert len(m) == len(base)  # every latest-leg candidate survives, with the same plan
    np.testing.assert_allclose(m["entry"], m["entry_3"])
    assert len(more) > len(base) * 1.1
    short = candidates(b, SetupParams(lookback_candles=30), RiskParams(), None, FUTURES)
    assert 0 < len(short) < len(base) and short.merge(base, on=key).shape[0] == len(short)


def test_atr_period_changes_the_plans(shared_data):
    import talib

    b = _real_bars(shared_data)
    p14 = candidates(b, SetupParams(), RiskParams(), None, FUTURES)
    p7 = candidates(b, SetupParams(atr_period=7), RiskParams(), None, FUTURES)
    atr7 = talib.ATR(b.high.to_numpy(), b.low.to_numpy(), b.close.to_numpy(), 7)
    np.testing.assert_allclose(p7["atr"], atr7[p7["bar"].to_numpy()])  # the plans' ATR is ATR(7) of the bars
    m = p14.merge(p7, on=["bar", "side"], suffixes=("", "_7"))
    assert len(p7) != len(p14) or not np.allclose(m["sl"], m["sl_7"])
    assert (np.abs(m["sl"] - m["sl_7"]) > 1e-9).mean() > 0.5  # SL = level - 0.5 ATR: different ATR, different SL
    # 14 = the stored features.technical.atr_14 column, untouched
    pd.testing.assert_frame_equal(candidates(b, SetupParams(atr_period=14), RiskParams(), None, FUTURES), p14)


def test_use_avwap_false_removes_the_confluence_condition(shared_data):
    b = _real_bars(shared_data)
    on = candidates(b, SetupParams(), RiskParams(), None, FUTURES)
    off = candidates(b, SetupParams(use_avwap=False), RiskParams(), None, FUTURES)
    assert on["avwap"].notna().all() and off["avwap"].isna().all() and off["avwap_dist_atr"].isna().all()
    assert len(off) > 1.5 * len(on)  # touches away from the AVWAP now count (737 -> 1,306 on this slice)
    assert set(zip(on.bar, on.side)) <= set(zip(off.bar, off.side))


def test_risk_modes_select_risk_leverage_and_buffer():
    normal, aggressive = RiskParams(), RiskParams(mode="aggressive")
    assert (normal.risk_pct, normal.max_leverage, normal.liq_buffer) == (1.0, 10.0, 1.5)  # the former defaults
    assert (aggressive.risk_pct, aggressive.max_leverage, aggressive.liq_buffer) == (2.0, 20.0, 1.2)
    s = RiskParams(mode="conservative")
    assert (s.risk_pct, s.max_leverage, s.liq_buffer) == (0.5, 5.0, 2.0)
    # a field given directly overrides that value of the selected mode only
    o = RiskParams(mode="aggressive", max_leverage=15)
    assert (o.risk_pct, o.max_leverage, o.liq_buffer) == (2.0, 15.0, 1.2)
    with pytest.raises(ValueError, match="not one of risk.modes"):
        RiskParams(mode="yolo")
    # 0.5 % stop on 10k equity: risk 1 % -> notional 20,000 (2x); risk 2 % -> 40,000 (4x)
    e, sl = np.array([100.0]), np.array([99.5])
    assert position_size(e, sl, 1, normal)["leverage"][0] == pytest.approx(2.0)
    assert position_size(e, sl, 1, aggressive)["leverage"][0] == pytest.approx(4.0)
    # 0.5 % stop, risk 2 % wants 4x; the conservative cap of 5x at 0.5 % risk: 1x
    assert position_size(e, sl, 1, s)["leverage"][0] == pytest.approx(1.0)
    # a 2 % stop wanting 25x: capped at each mode's max_leverage (liquidation 1/lev - mmr beyond buffer x stop)
    big = RiskParams(mode="aggressive", risk_pct=50.0)
    assert position_size(np.array([100.0]), np.array([98.0]), 1, big)["leverage"][0] == pytest.approx(20.0)


def _executed(bars: pd.DataFrame, plans: pd.DataFrame, risk: RiskParams):
    """Scanner execution of ``plans`` on one series (the live / backtest path), no costs."""
    from pipeline.core.setup_signals import execution_params, simulate_signals
    from pipeline.core.setups import SetupExecutionConfig

    plans = plans.assign(symbol="X/USDT", timeframe="1h", candidate_id=[f"c{i}" for i in range(len(plans))], ev_pct=0.1)
    plans = plans.assign(ts=bars["ts"].to_numpy()[plans["bar"].to_numpy()]).drop(columns="bar")
    params = execution_params(SetupParams(validity_candles=2), risk, SetupExecutionConfig(), NO_COSTS, 10_000.0)
    st, sleeves, _ = simulate_signals({("X/USDT", "1h"): bars}, plans, "ev_pct", params)
    return st, sleeves["X/USDT|1h"]


def test_wide_stop_low_leverage_plan_executes_at_its_own_leverage():
    """Issue 12 item 10: a plan the scanner accepted (15 % stop -> 1x, liquidation near 0) used to be REJECTED because
    the simulator checked liquidation at max_leverage 10 (9.5 % away, inside the stop). It now fills at 1x and is
    stopped at its SL."""
    risk = RiskParams()
    entry, sl = 100.0, 85.0
    plan = position_size(np.array([entry]), np.array([sl]), 1, risk)
    assert plan["leverage"][0] == 1.0 and plan["liq_price"][0] == pytest.approx(0.5)
    #           signal   fill     hold     hold     stop
    h = np.array([101.0, 100.5, 100.5, 100.5, 100.5, 100.0, 100.0])
    lo = np.array([100.5, 99.5, 99.8, 99.8, 84.0, 99.0, 99.0])
    b = _bars(h, lo, close=np.array([101.0, 100.0, 100.0, 100.0, 86.0, 99.5, 99.5]))
    plans = pd.DataFrame(
        {
            "bar": [0],
            "side": [1],
            "entry": [entry],
            "sl": [sl],
            "tp1": [130.0],
            "tp2": [150.0],
            "leverage": plan["leverage"],
            "liq_price": plan["liq_price"],
        }
    )
    st, res = _executed(b, plans, risk)
    assert st["status"].tolist() == ["SL"] and res.orders.empty
    t = res.trades.iloc[0]
    assert (t.entry_price, t.exit_price, t.leverage) == (100.0, 85.0, 1.0)
    assert t.pnl == pytest.approx(-100.0)  # 1 % of 10,000 lost at the stop


def test_signal_ignored_near_the_end_is_skipped_not_new():
    """Issue 12 item 12: a signal fired while a position is open, on the last bars of the data, has no order of its
    own; it used to read NEW (still within its validity) and is SKIPPED with the reason. A signal whose order is
    still waiting at the end stays NEW."""
    n = 8
    b = _bars(np.full(n, 101.0), np.r_[100.5, np.full(n - 1, 99.5)], close=np.full(n, 100.0))
    plans = pd.DataFrame(
        {
            "bar": [0, n - 2],
            "side": [1, 1],
            "entry": [100.0, 99.0],
            "sl": [95.0, 95.0],
            "tp1": [110.0, 110.0],
            "tp2": [120.0, 120.0],
            "leverage": [2.0, 2.0],
            "liq_price": [50.0, 50.0],
        }
    )
    st, _ = _executed(b, plans, RiskParams())
    assert st["status"].tolist() == ["OPEN", "SKIPPED"]
    assert (
        st["status_reason"].iloc[1] == "position open since 1970-01-01 01:00 UTC (one position per symbol x timeframe)"
    )
    st, _ = _executed(b, plans.iloc[[1]], RiskParams())  # alone: its limit rests at the data's end
    assert st["status"].tolist() == ["NEW"] and st["status_reason"].iloc[0] == "entry order waiting at the data's end"


def test_outcome_alone_obeys_the_gap_rule_on_the_avax_trade():
    """Issue 12 item 11 for the meta-model's per-plan outcome (real AVAX 1h candles, the plan of
    ``AVAX/USDT|1h|1638532800000|-1``): TP1 100.97584 on the 20:00 bar moves the trail to 100.00 + 1 ATR = 102.08;
    the 21:00 bar opens at 106.64, through it, so the runner exits at 106.64, not at the trail level (102.08, which
    that bar, 106.01-108.74, never traded)."""
    from tests.conftest import real_ohlcv

    ts0 = 1638532800000
    df = real_ohlcv("AVAX/USDT", "1h")
    b = df[(df.ts >= ts0 - 24 * 3_600_000) & (df.ts <= ts0 + 120 * 3_600_000)].reset_index(drop=True)
    i = int(np.flatnonzero(b.ts.to_numpy() == ts0)[0])
    plan = pd.DataFrame(
        {
            "bar": [i],
            "side": [-1],
            "entry": [112.0],
            "sl": [114.723378],
            "tp1": [100.97584],
            "tp2": [96.03496],
            "atr": [2.076676],
        }
    )
    o = plan_outcomes(b, plan, SetupParams(), costs=NO_COSTS).iloc[0]
    assert (o.status, o.exit_ts, o.exit_price) == ("TP1_TRAIL", ts0 + 9 * 3_600_000, 106.64)
    assert o.net_pct == pytest.approx(100 * (0.5 * (1 - 100.97584 / 112) + 0.5 * (1 - 106.64 / 112)))
