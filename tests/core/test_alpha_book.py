"""Seed 004's risk and execution on the one engine (pipeline.core.alpha_portfolio.run_book): ATR stop and trail,
drawdown scaling with its recovery band, by hand; the hourly rebalance backtest on real 1h candles."""

import numpy as np
import pandas as pd
import pytest

from pipeline.core.alpha_portfolio import (
    REASONS,
    AlphaBook,
    engine_limits,
    engine_params,
    panel_of,
    plan_panel,
    plan_targets,
    risk_cap,
    run_book,
    targets_frame,
)
from tests.conftest import real_ohlcv

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


# ---- the hourly rebalance on real 1h candles, with a STAND-IN score (not the models) ---------------------------------

SYMS = [f"{b}/USDT" for b in ["BTC", "ETH", "SOL", "BNB", "XRP", "ADA", "DOGE", "AVAX", "LINK", "DOT"]]
A, Z = 1_704_067_200_000, 1_711_929_600_000  # 2024-01-01 .. 2024-04-01 UTC (2 184 hours)


def standin_scores(c: pd.DataFrame) -> pd.DataFrame:
    """A stand-in for signals.alpha_scores (the models are the other helper's): 24 h momentum x 0.25 minus the
    round-trip taker cost as ``exp_ret_net``, 24 h volatility of 1 h log returns, Wilder ATR(14), and a regime from
    BTC against its 168 h EMA and the breadth of positive scores. Causal: row t uses bars <= t only."""
    rows = []
    for s, d in c.groupby("symbol"):
        d = d.sort_values("ts")
        lr = np.log(d["close"]).diff()
        prev = d["close"].shift()
        tr = pd.concat([d["high"] - d["low"], (d["high"] - prev).abs(), (d["low"] - prev).abs()], axis=1).max(axis=1)
        exp = 0.25 * (d["close"] / d["close"].shift(24) - 1) - 2 * (10 + 2) / 1e4
        rows.append(
            pd.DataFrame(
                {
                    "symbol": s,
                    "ts": d["ts"],
                    "exp_ret_net": exp,
                    "rvol_24h": lr.rolling(24).std(),
                    "atr_14": tr.ewm(alpha=1 / 14, adjust=False).mean(),
                    "close": d["close"],
                }
            )
        )
    sc = pd.concat(rows, ignore_index=True).dropna()
    btc = c[c["symbol"] == "BTC/USDT"].set_index("ts")["close"]
    up = (btc > btc.ewm(span=168, adjust=False).mean()).astype(float)
    breadth = (sc.pivot_table(index="ts", columns="symbol", values="exp_ret_net") > 0).mean(axis=1)
    u = up.reindex(breadth.index).fillna(0.5).to_numpy()
    reg = np.where((u == 1) & (breadth >= 0.5), "trend", np.where((u == 0) & (breadth < 0.5), "down", "chop"))
    return sc.assign(regime=sc["ts"].map(pd.Series(reg, index=breadth.index)))


@pytest.fixture(scope="module")
def real_book():
    c = pd.concat(
        [real_ohlcv(s, "1h").assign(symbol=s)[["symbol", "ts", "open", "high", "low", "close"]] for s in SYMS]
    )
    c = c[(c["ts"] >= A - 200 * H) & (c["ts"] < Z)]
    sc = standin_scores(c)
    sc = sc[sc["ts"] >= A]
    panel = panel_of(sc, c, SYMS)
    return panel, plan_panel(panel, AlphaBook())


def test_real_hourly_targets_never_break_a_cap_and_cash_never_goes_negative(real_book):
    panel, plan = real_book
    book = AlphaBook()
    decided = (plan.reason >= 0).all(axis=1)
    assert decided.mean() > 0.99 and (plan.reason[~decided] == -1).all()
    w = plan.weight[decided]
    a = panel.atr_pct[decided]
    cap = np.minimum(book.tiers.cap_of(book.tiers.tier_of(SYMS)), risk_cap(a.ravel(), 1.3, 0.0175).reshape(a.shape))
    budget = 1 - np.array([book.portfolio.cash_buffer[r] for r in panel.regime[decided]])
    assert (w >= 0).all() and (w <= cap + 1e-9).all() and (w.sum(axis=1) <= budget + 1e-9).all()
    assert (w[:, SYMS.index("DOGE/USDT")] <= 0.05 + 1e-12).all()
    reasons = targets_frame(panel, plan)["reason"]
    assert set(reasons) <= set(REASONS) and {"added", "kept", "band_hold", "dropped_rank"} <= set(reasons)
    res = run_book(panel.ts, panel.ohlc, panel.atr, plan.weight, SYMS, book)
    b = res.book
    assert (b["cash"] >= -1e-9).all() and (b["gross_exposure"] <= 1.0).all()
    assert res.trades()["exit_reason"].isin(["sl", "trail", "rebalance", "open"]).all()
    final, trades = float(b["equity"].iloc[-1]), res.trades()
    assert abs(final - 10_000 - trades["pnl"].sum()) < 1e-6 * 10_000  # the books reconcile


def test_the_hourly_rebalance_loop_is_point_in_time(real_book):
    """Planning on the history truncated at hour k gives the same targets, reasons and ranks up to k."""
    panel, plan = real_book
    book = AlphaBook()
    for k in (300, 1_111):
        cut = plan_targets(
            panel.score[:k], panel.vol[:k], panel.atr_pct[:k], panel.ohlc["close"][:k], panel.regime[:k], SYMS, book
        )
        np.testing.assert_array_equal(cut.weight, plan.weight[:k])
        np.testing.assert_array_equal(cut.reason, plan.reason[:k])
        np.testing.assert_array_equal(cut.rank, plan.rank[:k])
