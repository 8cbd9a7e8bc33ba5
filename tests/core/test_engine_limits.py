"""Portfolio limits of the engine (issue 15): exposure caps, per-symbol positions, daily-loss and max-drawdown halts,
drawdown-scaled exposure, volatility targeting, ATR stops and re-entry cooldown in target-weight mode. Hand-computed
cases on synthetic bars, then invariants and resume-equals-one-run on real hourly candles with every limit on."""

import json

import numpy as np
import pandas as pd
import pytest

from pipeline.core.engine import AssetInput, EngineState, Limits, run, split_rows
from pipeline.core.simulator import SimParams
from tests.conftest import real_ohlcv

H = 3_600_000
T0 = 1_704_139_200_000  # 2024-01-01 20:00 UTC


def _bars(prices, t0=T0, low=None):
    """Flat bars (open = high = low = close = price) every hour from ``t0``; ``low`` overrides some lows."""
    px = np.asarray(prices, dtype=float)
    df = pd.DataFrame({"ts": t0 + np.arange(len(px), dtype=np.int64) * H, "open": px, "high": px, "low": px})
    df["close"] = px
    if low is not None:
        for i, v in low.items():
            df.loc[i, "low"] = v
    return df


def _sig(n, at, d=1):
    s = np.zeros(n, np.int8)
    s[list(at)] = d
    return s


def _w(n, at, w):
    x = np.full(n, np.nan)
    x[list(at)] = w
    return x


def test_gross_and_group_caps_cut_target_weights_by_hand():
    """Three assets at 100, equity 10 000, each asks for 50 %; A and B are one group (cap 40 %), gross cap 60 %.
    A is cut to the group cap (40 units), B finds its group full, C gets what the gross cap leaves (20 units)."""
    df = _bars([100.0] * 3)
    book = {
        k: AssetInput(df, np.zeros(3, np.int8), weight=_w(3, [0], 0.5), group=np.full(3, g))
        for k, g in (("A", 0), ("B", 0), ("C", 1))
    }
    res = run(book, SimParams(init_cash=10_000), limits=Limits(max_gross=0.6, max_group_weight=0.4))
    log = res.order_log().set_index("asset")
    assert log["status"].to_dict() == {"A": "capped", "B": "denied_group_cap", "C": "capped"}
    assert log.loc["A", "units"] == pytest.approx(40.0, rel=1e-9) and log.loc["C", "units"] == pytest.approx(20.0)
    assert res.book["gross_exposure_open"].iloc[1] == pytest.approx(0.6, rel=1e-9)
    assert res.book["gross_exposure_open"].max() <= 0.6
    assert set(res.trades()["group"]) == {0, 1}


def test_gross_cap_cuts_signal_entries_and_denies_when_full():
    """size_fraction 0.5 each: A 50 units, B cut from 50 to the 10 the 60 % gross cap leaves, C denied."""
    df = _bars([100.0] * 3)
    book = {k: AssetInput(df, _sig(3, [0])) for k in "ABC"}
    res = run(book, SimParams(init_cash=10_000, size_fraction=0.5), limits=Limits(max_gross=0.6))
    t = res.trades()
    assert t["asset"].tolist() == ["A", "B"]
    assert t["units"].tolist() == pytest.approx([50.0, 10.0], rel=1e-9)
    assert res.orders()[["asset", "status"]].values.tolist() == [["C", "denied_gross_cap"]]


def test_max_per_symbol_denies_a_second_position_on_one_symbol():
    df = _bars([100.0] * 3)
    book = {
        "BTC 1h": AssetInput(df, _sig(3, [0]), symbol="BTC/USDT"),
        "BTC 4h": AssetInput(df, _sig(3, [0]), symbol="BTC/USDT"),
        "ETH 1h": AssetInput(df, _sig(3, [0]), symbol="ETH/USDT"),
    }
    res = run(book, SimParams(init_cash=10_000, size_fraction=0.2), limits=Limits(max_per_symbol=1))
    assert res.trades()["asset"].tolist() == ["BTC 1h", "ETH 1h"]
    assert res.orders()[["asset", "status"]].values.tolist() == [["BTC 4h", "denied_symbol_positions"]]


def test_daily_loss_halts_on_the_utc_day_and_the_rolling_24_hours():
    """A holds 50 units from 100; it opens at 90 at 23:00 UTC: equity 9 500, a 5 % loss (limit 3 %). Midnight resets
    the UTC day but the rolling 24 h still sees 10 000 until the hour of the loss has left the window (23:00 the
    next day): B's entries at 00:00 and 22:00 are denied, at 23:00 filled."""
    n = 30
    a = _bars([100.0] * 3 + [90.0] * (n - 3))  # bar 3 = 2024-01-01 23:00 UTC
    b = _bars([50.0] * n)
    book = {"A": AssetInput(a, _sig(n, [0])), "B": AssetInput(b, _sig(n, [3, 25, 26]))}
    p = SimParams(init_cash=10_000, size_fraction=0.5, max_bars=100)
    res = run(book, p, limits=Limits(daily_loss=0.03))
    o = res.orders()
    assert o["status"].tolist() == ["denied_daily_loss", "denied_daily_loss"]
    assert (o["ts"] - T0).tolist() == [4 * H, 26 * H]  # 2024-01-02 00:00 and 22:00
    t = res.trades()
    assert t.loc[t["asset"] == "B", "entry_ts"].tolist() == [T0 + 27 * H]  # 23:00: the window has rolled past
    states = res.book["engine_state"].tolist()
    assert states[:3] == ["ACTIVE"] * 3 and set(states[3:27]) == {"HALTED"} and states[27] == "ACTIVE"


def test_max_drawdown_halt_is_latched_until_reset():
    """A 10 % drawdown (limit 8 %) halts; the price recovers, B is still denied; after reset_halt B fills."""
    n = 12
    a = _bars([100.0] * 3 + [80.0] * 2 + [100.0] * (n - 5))
    b = _bars([50.0] * n)
    book = {"A": AssetInput(a, _sig(n, [0])), "B": AssetInput(b, _sig(n, [6, 8]))}
    p = SimParams(init_cash=10_000, size_fraction=0.5, max_bars=100)
    lim = Limits(max_drawdown=0.08)
    res = run(book, p, limits=lim)
    assert res.orders()["status"].tolist() == ["denied_halted", "denied_halted"]
    assert res.state.engine_state == ["HALTED"]  # the equity is back at 10 000, the latch holds

    def cut(x, lo, hi):
        return AssetInput(x.bars.iloc[lo:hi].reset_index(drop=True), x.signal[lo:hi])

    first = run({k: cut(x, 0, 8) for k, x in book.items()}, p, limits=lim)
    state = EngineState.from_dict(json.loads(json.dumps(first.state.to_dict())))
    assert state.engine_state == ["HALTED"]
    state.reset_halt()
    second = run({k: cut(x, 8, n) for k, x in book.items()}, p, limits=lim, state=state)
    t = second.trades()
    assert t.loc[t["asset"] == "B", "entry_ts"].tolist() == [T0 + 9 * H]
    assert second.state.engine_state == ["ACTIVE"]


def test_drawdown_scaling_follows_the_seed_levels_with_a_recovery_band():
    """Seed 004: soft 5 % → 50 % exposure, hard 10 % → 20 %; recovery band 1 %. Target weight 1 every bar.

    bar 3 opens at 94: equity 9 400 (dd 6 %), scale 0.5 → 0.5 x 9 400 / 94 = 50 units; bar 5 at 80: equity 8 700
    (dd 13 %), scale 0.2 → 21.75 units; bar 7 at 100: equity 9 135 (dd 8.65 % < 10 % − 1 %: back to the soft level,
    not below 5 % − 1 %), scale 0.5 → 45.675 units."""
    px = [100.0, 100.0, 100.0, 94.0, 94.0, 80.0, 80.0, 100.0, 100.0]
    n = len(px)
    book = {"A": AssetInput(_bars(px), np.zeros(n, np.int8), weight=np.ones(n))}
    lim = Limits(dd_soft=0.05, dd_soft_scale=0.5, dd_hard=0.10, dd_hard_scale=0.2, dd_recovery=0.01)
    res = run(book, SimParams(init_cash=10_000), limits=lim)
    assert res.book["exposure_scale"].tolist() == [1, 1, 1, 0.5, 0.5, 0.2, 0.2, 0.5, 0.5]
    assert res.book["engine_state"].tolist() == ["ACTIVE"] * 3 + ["REDUCING"] * 6
    np.testing.assert_allclose(res.asset_bars["position"], [0, 100, 100, 50, 50, 21.75, 21.75, 45.675, 45.675])


def test_volatility_target_scales_by_target_over_the_daily_volatility():
    """Half-life ~0 (the EWMA is the last squared return): a +1 % hourly equity return is a daily volatility of
    1 % x √24 = 4.899 %; a 2 % target scales exposure by 0.02 / 0.04899 = 0.40825."""
    px = [100.0, 100.0, 101.0, 101.0]
    book = {"A": AssetInput(_bars(px), np.zeros(4, np.int8), weight=np.ones(4))}
    lim = Limits(vol_target_daily=0.02, vol_halflife_days=1e-9, vol_min_days=0.0)
    res = run(book, SimParams(init_cash=10_000), limits=lim)
    scale = 0.02 / (0.01 * np.sqrt(24))
    assert res.book["exposure_scale"].iloc[2] == pytest.approx(scale, rel=1e-12)
    assert res.asset_bars["position"][2] == pytest.approx(scale * 10_100 / 101, rel=1e-12)


def test_target_weight_positions_take_an_atr_stop_and_wait_out_the_cooldown():
    """ATR 2, sl_atr 2: the 50 % position bought at 100 stops at 96 when bar 2 trades down to 95; the target stays
    0.5 but the asset is re-bought only 3 bars after the stop (bar 5)."""
    n = 8
    df = _bars([100.0] * n, low={2: 95.0}).assign(atr=2.0)
    book = {"A": AssetInput(df, np.zeros(n, np.int8), weight=np.full(n, 0.5))}
    res = run(book, SimParams(init_cash=10_000, sl_atr=2.0), limits=Limits(reentry_cooldown_bars=3))
    t = res.trades()
    assert t["exit_reason"].tolist() == ["sl", "open"] and t["exit_price"].iloc[0] == 96.0
    assert t["sl_initial"].iloc[0] == 96.0 and t["entry_bar"].tolist() == [1, 5]
    log = res.order_log().set_index("bar")["status"]
    assert log.loc[[1, 2, 3, 4, 5]].tolist() == ["filled", "unchanged", "cooldown", "cooldown", "filled"]


PAIRS = ["BTC", "ETH", "BNB", "SOL", "XRP", "ADA"]
LIMITS = Limits(
    max_positions=5,
    max_asset_weight=0.3,
    max_group_weight=0.4,
    max_gross=0.6,
    daily_loss=0.02,
    dd_soft=0.04,
    dd_soft_scale=0.5,
    dd_hard=0.08,
    dd_hard_scale=0.2,
    dd_recovery=0.01,
    vol_target_daily=0.01,
    band_weight=0.01,
    min_notional=10.0,
)
RISKY = SimParams(
    init_cash=100_000,
    size_fraction=0.4,
    sl_atr=2.0,
    tp_atr=4.0,
    trail_atr=2.0,
    trail_activation_atr=1.0,
    max_bars=72,
    fee_taker_bps=5,
    slippage_bps=3,
)


def _atr(df, n=14):
    pc = df["close"].shift()
    tr = np.maximum(df["high"] - df["low"], np.maximum((df["high"] - pc).abs(), (df["low"] - pc).abs()))
    return tr.rolling(n, min_periods=1).mean().to_numpy()


@pytest.fixture(scope="module")
def limited_book():
    """Six real hourly series from 2022-05-01 (the LUNA and FTX months): two trade signals with brackets (long and
    short), four target weights with ATR stops; group ids (clusters) change every 200 bars."""
    rng = np.random.default_rng(5)
    out = {}
    for j, s in enumerate(PAIRS):
        df = real_ohlcv(f"{s}/USDT", "1h")
        df = df[df["ts"] >= 1_651_363_200_000].iloc[:1400][["ts", "open", "high", "low", "close"]]
        df = df.reset_index(drop=True).assign(atr=lambda d: _atr(d))
        n = len(df)
        grp = ((np.arange(n) // 200 + j) % 3).astype(np.int64)
        if j < 2:
            sig = rng.choice([-1, 0, 1], size=n, p=[0.02, 0.96, 0.02]).astype(np.int8)
            out[s] = AssetInput(df, sig, group=grp)
        else:
            w = np.where(rng.random(n) < 0.3, rng.choice([0.0, 0.1, 0.2, 0.35], size=n), np.nan)
            out[s] = AssetInput(df, np.zeros(n, np.int8), weight=w, group=grp, lot_step=0.001)
    return out


def _entries(res):
    """(ts, asset) of every entry or increase: signal fills and target-weight buys."""
    t = res.trades()
    log = res.order_log()
    buys = log[log["units"] > 0]
    return pd.concat([t[["entry_ts", "asset"]].set_axis(["ts", "asset"], axis=1), buys[["ts", "asset"]]])


def test_limits_hold_on_real_candles(limited_book):
    res = run(limited_book, RISKY, limits=LIMITS)
    book = res.book.set_index("ts")
    ent = _entries(res)
    assert len(ent) > 200
    # the case exercises every rule
    statuses = set(res.orders()["status"]) | set(res.order_log()["status"])
    assert {"denied_daily_loss", "capped"} <= statuses and statuses & {"denied_gross_cap", "denied_group_cap"}
    assert {"ACTIVE", "REDUCING", "HALTED"} <= set(book["engine_state"])
    # no entry while HALTED; exposure never above its cap right after an entry. A cap holds exactly on the equity
    # after the entry's own fill; the fees and slippage of later fills at the same open lower the equity a little
    # more (at most their cost: 2 x 8 bps here), hence the tolerance
    tol = 1 + 2 * (5 + 3) * 1e-4
    at = book.loc[ent["ts"].unique()]
    assert (at["engine_state"] != "HALTED").all()
    assert at["gross_exposure_open"].max() <= 0.6 * tol
    # group exposure after an entry (positions at the close can only be smaller than right after the open)
    names = list(limited_book)
    rows = pd.DataFrame({k: v for k, v in res.asset_bars.items()}).assign(
        asset=lambda d: d["asset"].map(names.__getitem__)
    )
    opens = pd.concat(
        [x.bars[["ts", "open"]].assign(asset=k, group=x.group) for k, x in limited_book.items()], ignore_index=True
    )
    rows = rows.merge(opens, on=["ts", "asset"])
    rows["notional"] = rows["position"].abs() * rows["open"]
    grp = (
        rows.groupby(["ts", "group"])["notional"].sum()
        / book["equity_open"].reindex(rows.groupby(["ts", "group"]).size().index.get_level_values(0)).to_numpy()
    )
    ent_g = ent.merge(opens, on=["ts", "asset"])
    assert grp.loc[list(zip(ent_g["ts"], ent_g["group"]))].max() <= 0.4 * tol
    asset_w = rows["notional"] / book["equity_open"].reindex(rows["ts"]).to_numpy()
    assert asset_w[rows.set_index(["ts", "asset"]).index.isin(list(zip(ent["ts"], ent["asset"])))].max() <= 0.3 * tol
    # accounting: final equity = initial cash + Σ trade PnL (net of fees)
    assert book["equity"].iloc[-1] == pytest.approx(100_000 + res.trades()["pnl"].sum(), rel=1e-12)
    # long-only target weights at leverage 1: spot cash never negative
    longs = {k: x for k, x in limited_book.items() if x.weight is not None}
    lb = run(longs, RISKY, limits=LIMITS).book
    assert (lb["cash"] >= -1e-9).all()


def test_resume_with_limits_equals_one_run(limited_book):
    full = run(limited_book, RISKY, limits=LIMITS, record_skipped=True)
    hist_full, _ = split_rows(full.rows)
    ts_all = np.unique(np.concatenate([x.bars["ts"].to_numpy() for x in limited_book.values()]))
    rng = np.random.default_rng(2)
    for t in rng.choice(ts_all[1:-1], size=4, replace=False):

        def part(before):
            out = {}
            for k, x in limited_book.items():
                keep = (x.bars["ts"] < t).to_numpy() if before else (x.bars["ts"] >= t).to_numpy()
                out[k] = AssetInput(
                    x.bars[keep].reset_index(drop=True),
                    x.signal[keep],
                    weight=None if x.weight is None else x.weight[keep],
                    group=x.group[keep],
                    lot_step=x.lot_step,
                )
            return out

        a = run(part(True), RISKY, limits=LIMITS, record_skipped=True)
        state = EngineState.from_dict(json.loads(json.dumps(a.state.to_dict())))
        b = run(part(False), RISKY, limits=LIMITS, record_skipped=True, state=state)
        hist = np.concatenate([split_rows(a.rows)[0], split_rows(b.rows)[0]])
        np.testing.assert_array_equal(np.nan_to_num(hist, nan=-7.0), np.nan_to_num(hist_full, nan=-7.0))
        eq = np.concatenate([a.book["equity"].to_numpy(), b.book["equity"].to_numpy()])
        np.testing.assert_allclose(eq, full.book["equity"].to_numpy(), rtol=0, atol=1e-12)
        st = np.concatenate([a.book["engine_state"], b.book["engine_state"]])
        assert (st == full.book["engine_state"].to_numpy()).all()
        np.testing.assert_array_equal(b.state.book, full.state.book)
        np.testing.assert_array_equal(np.concatenate([a.olog, b.olog]), full.olog)


def test_equity_is_cash_plus_marked_positions_from_the_order_log(limited_book):
    """Target weights only (no stops): the book's spot cash is the initial cash minus every fill's units x price +
    fee up to that bar (from the order log), and its position value is Σ units x close (from the per-asset rows)."""
    longs = {k: x for k, x in limited_book.items() if x.weight is not None}
    p = SimParams(init_cash=100_000, fee_taker_bps=5, slippage_bps=3)
    res = run(longs, p, limits=LIMITS)
    book, log = res.book, res.order_log()
    assert len(log[log["units"] != 0]) > 300
    flow = (log["units"] * log["price"].fillna(0) + log["fee"]).groupby(log["ts"]).sum()
    cash = 100_000 - flow.reindex(book["ts"], fill_value=0.0).cumsum().to_numpy()
    np.testing.assert_allclose(book["cash"].to_numpy(), cash, rtol=1e-10)
    pv = pd.Series(res.asset_bars["position"] * res.asset_bars["close"]).groupby(res.asset_bars["ts"]).sum()
    np.testing.assert_allclose(book["position_value"].to_numpy(), pv.to_numpy(), rtol=1e-10, atol=1e-6)
    assert (book["cash"] >= -1e-9).all()
