"""The execution simulator: golden cases on hand-built bars for every rule, and trade-for-trade parity
with vectorbt ``Portfolio.from_signals`` on real BTC/ETH candles where both engines share the rules."""

import math

import numpy as np
import pandas as pd
import pytest

from pipeline.core.simulator import SimParams, simulate
from tests.conftest import real_ohlcv

H = 3_600_000


def bars(rows, atr=None) -> pd.DataFrame:
    """rows: (open, high, low, close) tuples, one per hourly bar."""
    df = pd.DataFrame(rows, columns=["open", "high", "low", "close"], dtype=float)
    df.insert(0, "ts", np.arange(len(df), dtype=np.int64) * H)
    if atr is not None:
        df["atr"] = float(atr)
    return df


FLAT = (100, 101, 99, 100)


def sig_at(n, i, d=1):
    s = np.zeros(n, int)
    s[i] = d
    return s


def one(res):
    assert len(res.trades) == 1, res.trades
    return res.trades.iloc[0]


def test_market_entry_at_next_open_with_fees_and_slippage():
    b = bars([FLAT, (100, 101, 99, 100), (100, 101, 99, 104), (106, 107, 105, 106)])
    r = simulate(
        b,
        sig_at(4, 0),
        SimParams(init_cash=1000, fee_taker_bps=10, slippage_bps=20),
        exit_signal=np.array([0, 0, 1, 0]),
    )
    t = one(r)
    assert (t.entry_bar, t.exit_bar, t.exit_reason) == (1, 3, "signal")
    entry = 100 * 1.002
    units = 1000 / (entry * 1.001)
    exit_ = 106 * (1 - 0.002)
    assert t.entry_price == pytest.approx(entry) and t.units == pytest.approx(units)
    assert t.exit_price == pytest.approx(exit_)
    fees = units * entry * 0.001 + units * exit_ * 0.001
    assert t.fees == pytest.approx(fees)
    assert t.pnl == pytest.approx(units * (exit_ - entry) - fees)
    assert r.bars["equity"].iloc[-1] == pytest.approx(1000 + t.pnl)
    assert r.bars["position"].tolist() == pytest.approx([0, units, units, 0])
    # equity marks the open position at each close
    assert r.bars["equity"].iloc[2] == pytest.approx(1000 - units * entry * 0.001 + units * (104 - entry))


def test_latency_delays_the_fill():
    b = bars([FLAT] * 3 + [(110, 111, 109, 110), FLAT])
    t = one(simulate(b, sig_at(5, 0), SimParams(latency_bars=2)))
    assert t.entry_bar == 3 and t.entry_price == 110


@pytest.mark.parametrize(
    "d,rows,reason,price",
    [
        (1, [FLAT, FLAT, (100, 103, 98, 100)], "sl", 98.0),  # long stop 2%
        (1, [FLAT, FLAT, (100, 104.5, 99, 104)], "tp", 104.0),  # long target 4%
        (-1, [FLAT, FLAT, (100, 102.5, 99, 100)], "sl", 102.0),  # short stop above
        (-1, [FLAT, FLAT, (100, 101, 95, 96)], "tp", 96.0),  # short target below
        (1, [FLAT, FLAT, (100, 105, 97, 100)], "sl", 98.0),  # both inside the bar: stop first
        (-1, [FLAT, FLAT, (100, 103, 95, 100)], "sl", 102.0),
        (1, [FLAT, FLAT, (95, 96, 94, 95)], "sl", 95.0),  # gap through the stop: filled at the open
        (1, [FLAT, FLAT, (106, 107, 97, 100)], "tp", 106.0),  # gap through the target: filled at the open
    ],
)
def test_fixed_stop_and_target(d, rows, reason, price):
    b = bars([FLAT] + rows)
    t = one(simulate(b, sig_at(len(b), 0, d), SimParams(sl_pct=0.02, tp_pct=0.04, stops_on_entry_bar=False)))
    assert (t.exit_reason, t.exit_bar) == (reason, 3)
    assert t.exit_price == pytest.approx(price)
    assert t.direction == d and t.pnl == pytest.approx(t.units * d * (price - 100))


def test_stop_checked_on_entry_bar_by_default():
    b = bars([FLAT, (100, 100.5, 97, 99)])
    t = one(simulate(b, sig_at(2, 0), SimParams(sl_pct=0.02)))
    assert (t.exit_bar, t.exit_reason, t.exit_price) == (1, "sl", 98.0)


def test_finer_candles_resolve_the_intrabar_order():
    b = bars([FLAT, FLAT, (100, 105, 97, 100)])
    p = SimParams(sl_pct=0.02, tp_pct=0.04)
    m = 60_000
    tp_first = pd.DataFrame({"ts": 2 * H + np.array([0, 1, 2]) * m, "high": [101, 105, 100], "low": [99.5, 100, 97]})
    sl_first = pd.DataFrame({"ts": 2 * H + np.array([0, 1, 2]) * m, "high": [101, 100, 105], "low": [99.5, 97, 100]})
    same_bar = pd.DataFrame({"ts": 2 * H + np.array([0]) * m, "high": [105.0], "low": [97.0]})
    assert one(simulate(b, sig_at(3, 0), p)).exit_reason == "sl"  # no finer data: stop first
    assert one(simulate(b, sig_at(3, 0), p, fine=tp_first, step_ms=H)).exit_reason == "tp"
    assert one(simulate(b, sig_at(3, 0), p, fine=sl_first, step_ms=H)).exit_reason == "sl"
    assert one(simulate(b, sig_at(3, 0), p, fine=same_bar, step_ms=H)).exit_reason == "sl"  # still ambiguous


def test_atr_levels_use_the_signal_bars_atr():
    b = bars([FLAT, FLAT, (100, 100.5, 96.9, 97)], atr=2.0)
    b.loc[1, "atr"] = 50.0  # ATR of the entry bar must not be used
    t = one(simulate(b, sig_at(3, 0), SimParams(sl_atr=1.5, tp_atr=3)))
    assert (t.sl_initial, t.tp_initial) == (97.0, 106.0)
    assert (t.exit_reason, t.exit_price) == ("sl", 97.0)
    assert t.r_multiple == pytest.approx(-1.0)


def test_tp1_partial_then_breakeven():
    # entry 100; TP1 = 102 (50 %), TP = 106; bar 2 hits TP1, bar 3 falls back to the entry price
    b = bars([FLAT, FLAT, (100, 102.5, 99.5, 102), (101, 101.5, 99.8, 100), FLAT])
    p = SimParams(
        init_cash=1000,
        sl_pct=0.03,
        tp1_pct=0.02,
        tp1_fraction=0.5,
        tp_pct=0.06,
        breakeven_after_tp1=True,
        fee_maker_bps=2,
        fee_taker_bps=5,
    )
    t = one(simulate(b, sig_at(5, 0), p))
    assert (t.exit_reason, t.exit_bar, bool(t.tp1_hit)) == ("breakeven", 3, True)
    u = 1000 / (100 * 1.0005)
    # exit_price is the last fill (break-even at 100 on bar 3); the TP1 fill has its own price and bar
    assert (t.exit_price, t.tp1_price, t.tp1_bar, t.tp1_ts) == (100.0, 102.0, 2, 2 * H)
    assert t.avg_exit_price == pytest.approx((102 + 100) / 2)
    fees = u * 100 * 0.0005 + u / 2 * 102 * 0.0002 + u / 2 * 100 * 0.0005
    assert t.pnl == pytest.approx(u / 2 * 2 - fees)


def test_tp1_then_final_target():
    b = bars([FLAT, FLAT, (100, 102.5, 99.5, 102), (102, 106.5, 101, 106)])
    p = SimParams(sl_pct=0.03, tp1_pct=0.02, tp1_fraction=0.5, tp_pct=0.06, breakeven_after_tp1=True)
    t = one(simulate(b, sig_at(4, 0), p))
    assert (t.exit_reason, bool(t.tp1_hit), t.exit_price, t.tp1_price) == ("tp", True, 106.0, 102.0)
    assert t.avg_exit_price == pytest.approx(104.0)


def test_atr_trailing_stop_arms_after_threshold_and_follows_the_high():
    # ATR 1: trail 2 ATR behind the best high once 1 ATR in profit
    rows = [
        FLAT,
        FLAT,
        (100, 100.8, 99.5, 100.5),
        (100.5, 103, 100.4, 102.5),
        (102.5, 105, 102, 104.5),
        (104.5, 104.6, 102.9, 103),
    ]
    t = one(simulate(bars(rows, atr=1.0), sig_at(6, 0), SimParams(trail_atr=2, trail_activation_atr=1)))
    # best after bar 4 = 105 -> trail 103; bar 5 low 102.9 crosses it
    assert (t.exit_reason, t.exit_bar, t.exit_price) == ("trail", 5, 103.0)
    assert t.mfe == pytest.approx(0.05) and t.mae == pytest.approx(-0.01)  # entry bar low 99


def test_trail_not_armed_below_activation():
    rows = [FLAT, (100, 100.5, 99.5, 100), (100, 100.8, 99.5, 100.5), (100.5, 100.9, 98.5, 99)]
    t = one(simulate(bars(rows, atr=1.0), sig_at(4, 0), SimParams(trail_atr=1, trail_activation_atr=1)))
    assert t.exit_reason == "open"


def test_time_stop_exits_at_the_open():
    b = bars([FLAT, FLAT, FLAT, (103, 104, 102, 103), FLAT])
    t = one(simulate(b, sig_at(5, 0), SimParams(max_bars=2, fee_taker_bps=10)))
    assert (t.exit_reason, t.entry_bar, t.exit_bar, t.exit_price) == ("time", 1, 3, 103.0)


def test_limit_entry_fills_at_limit_or_expires():
    b = bars([FLAT, (100, 100.5, 99.2, 100), (100, 100.5, 98.5, 99), (99, 100, 98.8, 99.5)])
    lim = np.full(4, np.nan)
    lim[0] = 99.0
    r = simulate(b, sig_at(4, 0), SimParams(limit_validity_bars=2, fee_maker_bps=2, fee_taker_bps=10), limit_price=lim)
    t = one(r)
    assert (t.entry_bar, t.entry_price) == (2, 99.0)
    assert t.fees == pytest.approx(t.units * 99.0 * 0.0002)  # maker fee, no exit yet
    r = simulate(b, sig_at(4, 0), SimParams(limit_validity_bars=1), limit_price=lim)
    assert r.trades.empty and r.orders.status.tolist() == ["expired"]
    lim[0] = 101.0  # bar opens below a buy limit: filled at the better open
    t = one(simulate(b, sig_at(4, 0), SimParams(), limit_price=lim))
    assert (t.entry_bar, t.entry_price) == (1, 100.0)


def test_limit_fill_bar_does_not_count_the_high_before_the_fill():
    b = bars([FLAT, (100, 104.5, 98.5, 99)])
    lim = np.array([99.0, np.nan])
    t = one(simulate(b, sig_at(2, 0), SimParams(tp_pct=0.05), limit_price=lim))
    assert t.exit_reason == "open"  # the 104.5 high (target 103.95) came before the fill at 99


def test_leverage_liquidation_and_buffer():
    b = bars([FLAT, FLAT, (100, 100.5, 85, 90)])
    t = one(simulate(b, sig_at(3, 0), SimParams(init_cash=1000, leverage=10)))
    liq = 100 * (1 - (0.1 - 0.005))
    assert (t.exit_reason, t.exit_price) == ("liquidation", pytest.approx(liq))
    assert t.ret == pytest.approx(-(1 - liq / 100) * 10 - 0, rel=1e-9)
    # a stop beyond the liquidation price (with buffer) is rejected before entry
    r = simulate(b, sig_at(3, 0), SimParams(leverage=10, sl_pct=0.09, liq_buffer=0.01))
    assert r.trades.empty and r.orders.status.tolist() == ["rejected_liq"]
    t = one(simulate(b, sig_at(3, 0), SimParams(leverage=10, sl_pct=0.05, liq_buffer=0.01)))
    assert t.exit_reason == "sl" and t.ret == pytest.approx(-0.5)


def test_risk_sizing_loses_the_risk_fraction_at_the_stop():
    b = bars([FLAT, FLAT, (100, 100.5, 97, 97)])
    t = one(simulate(b, sig_at(3, 0), SimParams(init_cash=10_000, risk_per_trade=0.01, sl_pct=0.02)))
    assert t.units == pytest.approx(50.0) and t.pnl == pytest.approx(-100.0)


def test_opposite_signal_reverses_on_the_same_open():
    b = bars([FLAT, FLAT, (101, 102, 100, 101), (99, 100, 98, 99), FLAT])
    s = np.array([1, 0, -1, 0, 0])
    r = simulate(b, s, SimParams())
    assert r.trades.exit_reason.tolist() == ["reverse", "open"]
    assert r.trades.entry_bar.tolist() == [1, 3] and r.trades.direction.tolist() == [1, -1]
    assert r.trades.exit_price.iloc[0] == 99.0 and r.trades.entry_price.iloc[1] == 99.0


def test_per_signal_leverage_and_liquidation_price():
    """Issue 12 item 10: a 1x plan with a 15 % stop is rejected when checked at the sleeve's 10x (liquidation 9.5 %
    away), and fills when it executes at its own leverage and liquidation price."""
    b = bars([FLAT, FLAT, (100, 100.5, 84, 86)])
    sl = np.array([85.0, np.nan, np.nan])
    p = SimParams(init_cash=1000, leverage=10, risk_per_trade=0.01)
    r = simulate(b, sig_at(3, 0), p, sl_price=sl)
    assert r.trades.empty and r.orders.status.tolist() == ["rejected_liq"]
    lev, liq = np.array([1.0, np.nan, np.nan]), np.array([0.5, np.nan, np.nan])
    t = one(simulate(b, sig_at(3, 0), p, sl_price=sl, leverage=lev, liq_price=liq))
    assert (t.exit_reason, t.exit_price, t.leverage) == ("sl", 85.0, 1.0)
    assert t.units == pytest.approx(10 / 15)  # risk sizing: 1 % of 1000 over a 15-point stop
    assert t.ret == pytest.approx(t.pnl / (t.units * 100))  # margin = notional at 1x
    # the plan's liquidation price is used as given: one inside the stop rejects
    r = simulate(b, sig_at(3, 0), p, sl_price=sl, leverage=lev, liq_price=np.array([90.0, np.nan, np.nan]))
    assert r.orders.status.tolist() == ["rejected_liq"]
    r = simulate(b, sig_at(3, 0), p, sl_price=sl, leverage=np.array([0.0, np.nan, np.nan]))
    assert r.orders.status.tolist() == ["rejected_liq"]  # a plan with leverage 0 is never executed


@pytest.mark.parametrize("mode", ["trail", "breakeven"])
def test_moved_levels_obey_the_gap_rule(mode):
    """A level moved on bar i (trail, break-even) takes effect on bar i+1; if that bar opens through it the fill is
    the open minus slippage, like a fixed stop, never the level itself."""
    slip = 0.001
    if mode == "trail":  # long, ATR 1, trail 1 ATR: bar 2's high 110 sets the trail at 109; bar 3 opens 105
        rows = [FLAT, (100, 101, 99.5, 100.5), (100.5, 110, 100.4, 109.5), (105, 106, 104, 105)]
        p = SimParams(trail_atr=1.0, slippage_bps=10)
    else:  # TP1 102 on bar 2 moves the stop to entry 100; bar 3 opens at 97, below it
        rows = [FLAT, (100, 101, 99.5, 100.5), (100.5, 102.5, 100.4, 101), (97, 98, 96, 97)]
        p = SimParams(sl_pct=0.05, tp1_pct=0.02, tp1_fraction=0.5, breakeven_after_tp1=True, slippage_bps=10)
    t = one(simulate(bars(rows, atr=1.0), sig_at(4, 0), p))
    assert (t.exit_reason, t.exit_bar) == (mode, 3)
    assert t.exit_price == pytest.approx(rows[3][0] * (1 - slip))
    assert rows[3][2] * (1 - slip) <= t.exit_price <= rows[3][1]


def test_ignored_and_waiting_signals_have_order_rows_when_asked():
    """``record_skipped``: every signal gets one row; skipped ones name the bar that blocked them."""
    b = bars([FLAT] * 6)
    s = np.array([1, 0, 1, -1, 0, 1])
    ex = np.array([0, 0, 0, 0, 1, 0], bool)  # closes the long at bar 5's open: bar 5's signal waits for bar 6
    r = simulate(b, s, SimParams(allow_reverse=False), exit_signal=ex, record_skipped=True)
    assert len(r.trades) == 1 and (r.trades.entry_bar.iloc[0], r.trades.exit_bar.iloc[0]) == (1, 5)
    assert r.orders.status.tolist() == ["skipped_position", "skipped_position", "pending"]
    assert r.orders.signal_bar.tolist() == [2, 3, 5] and r.orders.since_ts.tolist() == [H, H, -1]
    lim = np.array([90.0, np.nan, np.nan, np.nan, np.nan, np.nan])  # a resting limit blocks the next signals
    r = simulate(
        b, np.array([1, 1, 0, 0, 0, 0]), SimParams(limit_validity_bars=10), limit_price=lim, record_skipped=True
    )
    assert r.orders.status.tolist() == ["skipped_order", "pending"] and r.orders.since_ts.tolist() == [0, -1]
    assert simulate(b, s, SimParams(allow_reverse=False)).orders.empty  # off by default


def _fills_outside(res, b, slip, tol=1e-9):
    """Fills of ``res.trades`` outside their bar's [low, high] widened by slippage: entry, TP1 partial, last exit."""
    lo, hi = b["low"].to_numpy(), b["high"].to_numpy()
    t = res.trades
    bad = []
    for col, bar_col in (("entry_price", "entry_bar"), ("tp1_price", "tp1_bar"), ("exit_price", "exit_bar")):
        x = t[t[bar_col] >= 0]
        px, i = x[col].to_numpy(), x[bar_col].to_numpy()
        out = (px < lo[i] * (1 - slip) * (1 - tol)) | (px > hi[i] * (1 + slip) * (1 + tol))
        bad += [(col, int(k)) for k in i[out]]
    return bad


try:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover
    given = None


if given is not None:

    @st.composite
    def _case(draw):
        n = draw(st.integers(5, 40))
        seed = draw(st.integers(0, 2**32 - 1))
        rng = np.random.default_rng(seed)
        close = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
        open_ = np.r_[100.0, close[:-1]] * np.exp(rng.normal(0, 0.01, n))  # gaps between bars
        high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, 0.01, n)))
        low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, 0.01, n)))
        b = pd.DataFrame({"ts": np.arange(n, dtype=np.int64) * H, "open": open_, "high": high, "low": low})
        b["close"], b["atr"] = close, rng.uniform(0.5, 3.0, n)
        sig = rng.choice([-1, 0, 0, 0, 1], n)
        fr = lambda lo_, hi_: draw(st.one_of(st.just(math.nan), st.floats(lo_, hi_)))  # noqa: E731
        p = SimParams(
            leverage=draw(st.sampled_from([1.0, 3.0, 20.0])),
            sl_pct=fr(0.002, 0.08),
            tp_pct=fr(0.002, 0.15),
            tp1_pct=fr(0.002, 0.08),
            tp1_fraction=draw(st.sampled_from([0.0, 0.5, 1.0])),
            breakeven_after_tp1=draw(st.booleans()),
            trail_atr=fr(0.2, 3.0),
            trail_activation_atr=draw(st.floats(0, 2)),
            trail_after_tp1=draw(st.booleans()),
            max_bars=draw(st.integers(0, 10)),
            limit_validity_bars=draw(st.integers(1, 5)),
            slippage_bps=draw(st.sampled_from([0.0, 2.0, 25.0])),
            latency_bars=draw(st.integers(0, 2)),
            stops_on_entry_bar=draw(st.booleans()),
            allow_reverse=draw(st.booleans()),
        )
        use_limit = draw(st.booleans())
        lim = np.where(sig != 0, close * (1 - sig * rng.uniform(-0.01, 0.03, n)), np.nan) if use_limit else None
        ex = rng.random(n) < 0.1
        return b, sig, p, lim, ex

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(_case())
    def test_every_fill_lies_within_its_bar(case):
        """Issue 12 item 11 (property): on random bars and random brackets, every fill the simulator reports (entry,
        TP1 partial, last exit) was traded in its bar, allowing slippage."""
        b, sig, p, lim, ex = case
        res = simulate(b, sig, p, limit_price=lim, exit_signal=ex, record_skipped=True)
        assert _fills_outside(res, b, p.slippage_bps * 1e-4) == []
        t = res.trades  # and the size-weighted exit reconciles the PnL
        gross = t.direction * t.units * (t.avg_exit_price - t.entry_price)
        np.testing.assert_allclose(t.pnl, gross - t.fees, rtol=1e-9, atol=1e-9)


# AVAX/USDT 1h short of 2021-12-03 (signals.setup_candidates AVAX/USDT|1h|1638532800000|-1 of the full run):
# limit 112.00, SL 114.723378, TP1 100.97584, TP2 96.03496, ATR 2.076676, leverage 1, liquidation 223.44
AVAX_SIGNAL_TS = 1638532800000


def test_avax_trailing_stop_fills_at_the_gap_open():
    """Golden (real AVAX 1h candles): entry at 13:00 at 112.00, TP1 at 100.98 on the 20:00 bar (low 100.00), which
    also moves the trail to 100.00 + 1 ATR = 102.08; the 21:00 bar opens at 106.64, through the trail, so the runner
    fills at that open plus slippage. The trade used to report the size-weighted mean of both fills (103.82), a
    price that bar never traded (106.01-108.74)."""
    df = real_ohlcv("AVAX/USDT", "1h")
    b = df[(df.ts >= AVAX_SIGNAL_TS - 24 * H) & (df.ts <= AVAX_SIGNAL_TS + 120 * H)].reset_index(drop=True)
    b = b[["ts", "open", "high", "low", "close"]].assign(atr=2.076676)
    i = int(np.flatnonzero(b.ts.to_numpy() == AVAX_SIGNAL_TS)[0])
    arr = lambda v: np.where(np.arange(len(b)) == i, v, np.nan)  # noqa: E731
    p = SimParams(
        init_cash=10_000,
        risk_per_trade=0.01,
        leverage=10,
        maintenance_margin=0.005,
        tp1_fraction=0.5,
        breakeven_after_tp1=True,
        trail_atr=1.0,
        trail_after_tp1=True,
        max_bars=96,
        limit_validity_bars=6,
        allow_reverse=False,
        fee_taker_bps=6,
        fee_maker_bps=2,
        slippage_bps=2,
    )
    res = simulate(
        b,
        np.where(np.arange(len(b)) == i, -1, 0),
        p,
        limit_price=arr(112.0),
        sl_price=arr(114.723378),
        tp1_price=arr(100.97584),
        tp_price=arr(96.03496),
        leverage=arr(1.0),
        liq_price=arr(223.44),
    )
    t = one(res)
    ts = lambda s: int(pd.Timestamp(s).value // 10**6)  # noqa: E731
    assert (t.entry_ts, t.entry_price, t.tp1_ts, t.tp1_price) == (
        ts("2021-12-03 13:00"),
        112.0,
        ts("2021-12-03 20:00"),
        100.97584,
    )
    assert (t.exit_reason, t.exit_ts) == ("trail", ts("2021-12-03 21:00"))
    assert t.exit_price == pytest.approx(106.64 * 1.0002)
    assert t.avg_exit_price == pytest.approx((100.97584 + 106.64 * 1.0002) / 2)
    assert _fills_outside(res, b, 2e-4) == []


def test_bad_input_is_refused():
    b = bars([FLAT, FLAT])
    with pytest.raises(ValueError, match="sorted"):
        simulate(b.iloc[::-1], np.zeros(2), SimParams())
    bad = b.copy()
    bad.loc[1, "close"] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        simulate(bad, np.zeros(2), SimParams())
    with pytest.raises(ValueError, match="shape"):
        simulate(b, np.zeros(3), SimParams())


# --- parity with vectorbt on real candles -------------------------------------------------------------


@pytest.mark.parametrize(
    "symbol,fees,sl,tp,exits",
    [
        ("BTC/USDT", 0.001, 0.03, 0.06, False),
        ("ETH/USDT", 0.0005, 0.02, 0.05, False),
        ("BTC/USDT", 0.001, None, None, True),
        ("ETH/USDT", 0.00075, None, None, True),
    ],
)
def test_trades_match_vectorbt_from_signals(symbol, fees, sl, tp, exits):
    """Same trades as vectorbt where the rules coincide: next-open entries, fixed SL/TP from the fill price,
    stop-first, gap fills, fees. Signal exits are compared without stops: when a signal exit (at the open)
    and a stop fall on one bar, vectorbt lets the stop win although the open comes first."""
    vbt = pytest.importorskip("vectorbt")
    df = real_ohlcv(symbol, "1h").iloc[-6000:].reset_index(drop=True)
    sma = df["close"].rolling(24).mean()
    up = (df["close"] > sma) & (df["close"].shift(1) <= sma.shift(1))
    down = (df["close"] < sma) & (df["close"].shift(1) >= sma.shift(1)) if exits else pd.Series(False, df.index)
    p = SimParams(
        init_cash=10_000,
        sl_pct=sl or math.nan,
        tp_pct=tp or math.nan,
        fee_taker_bps=fees * 1e4,
        fee_maker_bps=fees * 1e4,
        stops_on_entry_bar=False,
    )
    res = simulate(df, up.astype(int).to_numpy(), p, exit_signal=down.to_numpy())
    ours = res.trades
    idx = pd.to_datetime(df["ts"], unit="ms")
    s = lambda x: pd.Series(x.to_numpy(), index=idx)  # noqa: E731
    pf = vbt.Portfolio.from_signals(
        s(df["close"]),
        s(up.shift(1, fill_value=False)),
        s(down.shift(1, fill_value=False)),
        price=s(df["open"]),
        open=s(df["open"]),
        high=s(df["high"]),
        low=s(df["low"]),
        sl_stop=sl or np.nan,
        tp_stop=tp or np.nan,
        fees=fees,
        init_cash=10_000,
        size=np.inf,
        stop_entry_price="fillprice",
        freq="1h",
    )  # vbt default: from close
    theirs = pf.trades.records
    closed = ours[ours.exit_reason != "open"]
    theirs = theirs[theirs["status"] == 1]
    assert len(closed) > 50 and len(closed) == len(theirs)
    np.testing.assert_array_equal(closed.entry_bar.to_numpy(), theirs["entry_idx"].to_numpy())
    np.testing.assert_array_equal(closed.exit_bar.to_numpy(), theirs["exit_idx"].to_numpy())
    np.testing.assert_allclose(closed.entry_price, theirs["entry_price"], rtol=1e-12)
    np.testing.assert_allclose(closed.exit_price, theirs["exit_price"], rtol=1e-12)
    np.testing.assert_allclose(closed.units, theirs["size"], rtol=1e-9)
    np.testing.assert_allclose(closed.pnl, theirs["pnl"], rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(closed.fees, theirs["entry_fees"] + theirs["exit_fees"], rtol=1e-9)
    assert set(closed.exit_reason) >= ({"signal"} if exits else {"sl", "tp"})
    np.testing.assert_allclose(res.bars["equity"].to_numpy(), pf.value().to_numpy(), rtol=1e-9)
