"""Seed 004's risk and execution on the one engine (pipeline.core.alpha_portfolio.run_book): ATR stop and trail,
drawdown scaling with its recovery band, by hand; the hourly rebalance backtest on real 1h candles."""

import numpy as np
import pytest

from pipeline.core.alpha_portfolio import AlphaBook, engine_limits, engine_params, run_book

H = 3_600_000
FREE = {"costs": {"maker_fee_bps": 0, "taker_fee_bps": 0, "slippage_bps": 0}, "min_notional": 0}
NO_COST_BOOK = AlphaBook(execution=FREE, portfolio={"band_notional": 0, "band_weight": 0})


def _bars(o, h, l, c):  # noqa: E741
    return {k: np.array(v, float)[:, None] for k, v in zip(("open", "high", "low", "close"), (o, h, l, c))}


def test_seed_risk_numbers_reach_the_engine():
    p, lim = engine_params(AlphaBook()), engine_limits(AlphaBook())
    assert (p.sl_atr, p.trail_atr, p.trail_activation_atr) == (1.3, 1.3, 0.8)
    assert (p.fee_taker_bps, p.slippage_bps, p.init_cash) == (10.0, 2.0, 10_000.0)
    assert (lim.dd_soft, lim.dd_soft_scale, lim.dd_hard, lim.dd_hard_scale, lim.dd_recovery) == (
        0.05,
        0.5,
        0.10,
        0.2,
        0.02,
    )
    assert (lim.band_weight, lim.band_notional, lim.min_notional) == (0.01, 25.0, 5.0)
    off = engine_limits(AlphaBook(), drawdown_scaling=False)
    assert off.dd_soft == 0 and off.dd_hard == 0 and off.dd_soft_scale == 1


def test_atr_stop_at_entry_and_the_trail_after_a_favourable_move_by_hand():
    """Bought at 100 (bar 1 open), ATR 2: stop 100 − 1.3 x 2 = 97.4. Bar 2's high 101.7 is 1.7 > 0.8 x 2 = 1.6 above
    the entry: the trail is armed at 101.7 − 2.6 = 99.1; bar 3 trades down to 99.0 → out at 99.1 (trail). The target
    stays 0.5 but the cooldown (6 bars) keeps the asset out."""
    b = _bars(
        [100, 100, 100, 101, 100, 100],
        [100, 100, 101.7, 101.5, 100, 100],
        [100, 100, 100, 99.0, 100, 100],
        [100, 100, 101, 100, 100, 100],
    )
    r = run_book(np.arange(6) * H, b, np.full((6, 1), 2.0), np.full((6, 1), 0.5), ["BTC/USDT"], NO_COST_BOOK)
    t = r.trades()
    assert t["exit_reason"].tolist() == ["trail"] and t["exit_price"].iloc[0] == pytest.approx(99.1)
    assert t["sl_initial"].iloc[0] == pytest.approx(97.4) and t["units"].iloc[0] == 50.0
    assert r.order_log()["status"].tolist()[-2:] == ["cooldown", "cooldown"]
    # without the favourable move the initial stop takes it: low 97 → 97.4
    b["high"][2, 0], b["low"][2, 0] = 100.5, 97.0
    t = run_book(np.arange(6) * H, b, np.full((6, 1), 2.0), np.full((6, 1), 0.5), ["BTC/USDT"], NO_COST_BOOK).trades()
    assert t["exit_reason"].tolist() == ["sl"] and t["exit_price"].iloc[0] == pytest.approx(97.4)


def test_drawdown_scaling_with_the_recovery_band_by_hand():
    """Target weight 1, equity marked at each open (open PnL included). 94: dd 6 % → x 0.5 (50 units); 80: equity
    9 400 − 50 x 14 = 8 700, dd 13 % → x 0.2 (21.75 units); 100: equity 9 135, dd 8.65 % — not 2 points below the
    10 % level, still x 0.2 (18.27 units); 105: 9 226.35, dd 7.74 % < 8 % → back to x 0.5 (43.935 units), not below
    3 %. Without the scaling the exposure stays 1."""
    px = np.array([100.0, 100.0, 100.0, 94.0, 94.0, 80.0, 80.0, 100.0, 105.0, 105.0])[:, None]
    b, n = {k: px for k in ("open", "high", "low", "close")}, len(px)
    r = run_book(np.arange(n) * H, b, np.full((n, 1), np.nan), np.ones((n, 1)), ["BTC/USDT"], NO_COST_BOOK)
    assert r.book["exposure_scale"].tolist() == [1, 1, 1, 0.5, 0.5, 0.2, 0.2, 0.2, 0.5, 0.5]
    np.testing.assert_allclose(r.asset_bars["position"], [0, 100, 100, 50, 50, 21.75, 21.75, 18.27, 43.935, 43.935])
    np.testing.assert_allclose(r.book["equity"].iloc[[5, 7, 8]], [8_700, 9_135, 9_226.35])
    assert r.state.book[0, 0] == 10_000  # the peak (equity with open PnL) persists in the engine state
    off = run_book(
        np.arange(n) * H,
        b,
        np.full((n, 1), np.nan),
        np.ones((n, 1)),
        ["BTC/USDT"],
        NO_COST_BOOK,
        drawdown_scaling=False,
    )
    assert (off.book["exposure_scale"] == 1).all()
