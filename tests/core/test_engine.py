"""The multi-asset engine: resume equals one run at any cut, sleeves equal ``simulate`` per symbol, the shared book's
accounting invariants and portfolio limits, on real candles with random signals and a hand-computed case."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from pipeline.core.engine import AssetInput, EngineState, Limits, run, run_panel, split_rows, step
from pipeline.core.simulator import SimParams, simulate
from tests.conftest import real_ohlcv

H = 3_600_000

BRACKETS = SimParams(
    init_cash=10_000,
    size_fraction=0.5,
    sl_atr=2.0,
    tp_atr=6.0,
    tp1_atr=2.0,
    tp1_fraction=0.5,
    breakeven_after_tp1=True,
    trail_atr=2.5,
    trail_activation_atr=1.0,
    max_bars=48,
    limit_validity_bars=3,
    fee_taker_bps=5,
    fee_maker_bps=2,
    slippage_bps=3,
    latency_bars=1,
)


def _atr(df: pd.DataFrame, n: int = 14) -> np.ndarray:
    pc = df["close"].shift()
    tr = np.maximum(df["high"] - df["low"], np.maximum((df["high"] - pc).abs(), (df["low"] - pc).abs()))
    return tr.rolling(n, min_periods=1).mean().to_numpy()


@pytest.fixture(scope="module")
def real_book():
    """Three real hourly series of different lengths (ETH starts later, SOL later still) with random signals."""
    out = {}
    rng = np.random.default_rng(7)
    for sym, n in (("BTC/USDT", 1500), ("ETH/USDT", 1200), ("SOL/USDT", 900)):
        df = real_ohlcv(sym, "1h")
        df = df[df["ts"] >= 1_640_995_200_000].iloc[1500 - n : 1500].reset_index(drop=True)  # from 2022-01-01
        df = df[["ts", "open", "high", "low", "close"]].assign(atr=_atr(df))
        sig = rng.choice([-1, 0, 1], size=n, p=[0.03, 0.94, 0.03]).astype(np.int8)
        lim = np.where(rng.random(n) < 0.3, df["close"] * (1 - 0.002 * sig), np.nan)  # some limit entries
        ex = rng.random(n) < 0.01
        out[sym] = AssetInput(df, sig, exit_signal=ex, limit_price=lim)
    df = out["ETH/USDT"].bars.assign(open=lambda d: d["open"] / 3, high=lambda d: d["high"] / 3)  # a 4th series
    df = df.assign(low=df["low"] / 3, close=df["close"] / 3)
    w = np.where(rng.random(len(df)) < 0.2, rng.choice([0.0, 0.1, 0.25], size=len(df)), np.nan)  # order source 2
    out["ETH3"] = AssetInput(df, np.zeros(len(df), np.int8), weight=w, lot_step=0.01)
    return out


def _cut(book: dict, t_ms: int, before: bool) -> dict:
    out = {}
    for k, x in book.items():
        keep = (x.bars["ts"] < t_ms).to_numpy() if before else (x.bars["ts"] >= t_ms).to_numpy()
        out[k] = AssetInput(
            x.bars[keep].reset_index(drop=True),
            x.signal[keep],
            exit_signal=None if x.exit_signal is None else x.exit_signal[keep],
            limit_price=None if x.limit_price is None else x.limit_price[keep],
            weight=None if x.weight is None else x.weight[keep],
            lot_step=x.lot_step,
        )
    return out


@pytest.mark.parametrize("account", [None, "sleeves"])
def test_resume_equals_one_run_at_random_cuts(real_book, account):
    kw = dict(account=account, limits=Limits(max_positions=2), record_skipped=True)
    full = run(real_book, BRACKETS, **kw)
    hist_full, snap_full = split_rows(full.rows)
    assert len(hist_full) > 50 and (full.rows[:, 1] >= 0).sum() > 30  # the case exercises many trades
    ts_all = np.unique(np.concatenate([x.bars["ts"].to_numpy() for x in real_book.values()]))
    rng = np.random.default_rng(11)
    for t in rng.choice(ts_all[1:-1], size=6, replace=False):
        a = run(_cut(real_book, int(t), True), BRACKETS, **kw)
        state = EngineState.from_dict(json.loads(json.dumps(a.state.to_dict())))  # the record survives JSON
        b = run(_cut(real_book, int(t), False), BRACKETS, state=state, **kw)
        hist = np.concatenate([split_rows(a.rows)[0], split_rows(b.rows)[0]])
        np.testing.assert_array_equal(np.nan_to_num(hist, nan=-7.0), np.nan_to_num(hist_full, nan=-7.0))
        np.testing.assert_array_equal(np.nan_to_num(split_rows(b.rows)[1], nan=-7), np.nan_to_num(snap_full, nan=-7))
        eq = np.concatenate([a.book["equity"].to_numpy(), b.book["equity"].to_numpy()])
        np.testing.assert_allclose(eq, full.book["equity"].to_numpy(), rtol=0, atol=1e-12)
        np.testing.assert_array_equal(b.state.assets, full.state.assets)
        np.testing.assert_array_equal(np.concatenate([a.olog, b.olog]), full.olog)  # order source 2's log


def test_resume_rejects_bars_before_the_state(real_book):
    a = run(_cut(real_book, int(real_book["BTC/USDT"].bars["ts"].iloc[500]), True), BRACKETS)
    with pytest.raises(ValueError, match="before the state"):
        run(real_book, BRACKETS, state=a.state)


def test_equal_sleeves_reproduce_simulate_per_symbol(real_book):
    res = run(real_book, BRACKETS, account="sleeves", record_skipped=True)
    trades, orders = res.trades(), res.orders()
    for sym, x in real_book.items():
        if x.weight is not None:
            continue
        one = simulate(
            x.bars, x.signal, BRACKETS, exit_signal=x.exit_signal, limit_price=x.limit_price, record_skipped=True
        )
        mine = trades[trades["asset"] == sym].drop(columns="asset").reset_index(drop=True)
        pd.testing.assert_frame_equal(mine, one.trades.reset_index(drop=True))
        mo = orders[orders["asset"] == sym].drop(columns="asset").reset_index(drop=True)
        pd.testing.assert_frame_equal(mo, one.orders.reset_index(drop=True))
        k = res.asset_bars["asset"] == list(real_book).index(sym)
        np.testing.assert_array_equal(res.asset_bars["equity"][k], one.bars["equity"].to_numpy())


def test_shared_book_invariants(real_book):
    res = run(real_book, BRACKETS, limits=Limits(max_positions=2))
    book, trades = res.book, res.trades()
    # equity = cash + marked positions every bar (cash here is spot-equivalent: equity − position value)
    np.testing.assert_allclose(book["cash"] + book["position_value"], book["equity"], rtol=1e-12)
    # final equity = initial cash + Σ trade PnL (net of fees; open trades marked at their last close)
    assert book["equity"].iloc[-1] == pytest.approx(10_000 + trades["pnl"].sum(), rel=1e-12)
    assert book["n_positions"].max() <= 2
    assert (res.orders()["status"] == "denied_max_positions").any()
    # long only at leverage 1: spot cash never negative, gross exposure never above 1
    longs = {
        k: AssetInput(x.bars, np.maximum(x.signal, 0), x.exit_signal, x.limit_price, weight=x.weight)
        for k, x in real_book.items()
    }
    lb = run(longs, BRACKETS, limits=Limits(max_positions=2)).book
    assert (lb["cash"] >= -1e-9).all() and (lb["gross_exposure"] <= 1.0 + 1e-12).all()


def test_shared_cash_sizes_on_equity_and_caps_by_max_positions():
    """Hand case: two assets, one account of 1000, size_fraction 0.5, max 1 position."""
    rows = [(100, 101, 99, 100)] * 4
    df = pd.DataFrame(rows, columns=["open", "high", "low", "close"], dtype=float)
    df.insert(0, "ts", np.arange(4, dtype=np.int64) * H)
    a = AssetInput(df, np.array([1, 0, 0, 0], np.int8))
    b = AssetInput(df.assign(open=50.0, high=51.0, low=49.0, close=50.0), np.array([1, 0, 0, 0], np.int8))
    p = SimParams(init_cash=1000, size_fraction=0.5)
    res = run({"A": a, "B": b}, p, limits=Limits(max_positions=1))
    t, o = res.trades(), res.orders()
    assert t["asset"].tolist() == ["A"] and t["units"].iloc[0] == pytest.approx(5.0)  # 0.5 x 1000 / 100
    assert o[["asset", "status"]].values.tolist() == [["B", "denied_max_positions"]]
    res2 = run({"A": a, "B": b}, p)
    t2 = res2.trades()
    assert t2["units"].tolist() == pytest.approx([5.0, 10.0])  # both sized on equity 1000 at the same open
    assert res2.book["gross_exposure"].iloc[-1] == pytest.approx(1.0)
    assert not math.isnan(res2.book["equity"].iloc[-1])


PAIRS = ["BTC", "ETH", "BNB", "SOL", "XRP", "ADA", "DOGE", "AVAX", "DOT", "LINK"]


@pytest.fixture(scope="module")
def ten_pairs():
    """The 10 pairs' real hourly bars on their common hours, 1000 bars from 2023-01-01."""
    frames = {}
    for s in PAIRS:
        df = real_ohlcv(f"{s}/USDT", "1h")
        frames[s] = df[df["ts"] >= 1_672_531_200_000].iloc[:1100][["ts", "open", "high", "low", "close"]]
    common = frames["BTC"]["ts"]
    for df in frames.values():
        common = common[common.isin(df["ts"])]
    common = common.iloc[:1000]
    return {s: df[df["ts"].isin(common)].reset_index(drop=True) for s, df in frames.items()}


def test_target_weights_match_vectorbt_from_orders_targetpercent(ten_pairs):
    vbt = pytest.importorskip("vectorbt")
    n = len(ten_pairs["BTC"])
    rng = np.random.default_rng(3)
    w = rng.dirichlet(np.ones(len(PAIRS) + 1), size=n)[:, : len(PAIRS)] * 0.95  # a change every bar, sum < 0.95
    w[rng.random(w.shape) < 0.15] = 0.0  # some full exits
    p = SimParams(init_cash=100_000, fee_taker_bps=10, slippage_bps=5)
    book = {s: AssetInput(ten_pairs[s], np.zeros(n, np.int8), weight=w[:, j]) for j, s in enumerate(PAIRS)}
    res = run(book, p)
    close = pd.DataFrame({s: ten_pairs[s]["close"].to_numpy() for s in PAIRS})
    opens = pd.DataFrame({s: ten_pairs[s]["open"].to_numpy() for s in PAIRS})
    size = pd.DataFrame(np.vstack([np.full(len(PAIRS), np.nan), w[:-1]]), columns=PAIRS)  # decided on the close
    pf = vbt.Portfolio.from_orders(
        close,
        size,
        size_type="targetpercent",
        price=opens,
        fees=0.001,
        slippage=0.0005,
        init_cash=100_000,
        group_by=True,
        cash_sharing=True,
        call_seq="auto",
        freq="1h",
    )
    np.testing.assert_allclose(res.book["equity"].to_numpy(), pf.value().to_numpy(), rtol=1e-9)
    rec = pd.DataFrame(pf.orders.values).sort_values(["idx", "col"]).reset_index(drop=True)
    log = res.order_log()
    mine = log[log["status"] == "filled"].assign(col=lambda d: d["asset"].map(PAIRS.index))
    mine = mine.sort_values(["bar", "col"]).reset_index(drop=True)
    assert len(mine) == len(rec) > 5000
    np.testing.assert_array_equal(mine["bar"], rec["idx"])
    np.testing.assert_array_equal(mine["col"], rec["col"])
    np.testing.assert_allclose(mine["units"].abs(), rec["size"], rtol=1e-9)
    np.testing.assert_allclose(mine["price"], rec["price"], rtol=1e-12)
    np.testing.assert_allclose(mine["fee"], rec["fees"], rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(mine["units"] < 0, rec["side"] == 1)


def test_target_weights_band_min_notional_lot_step_and_scaling(ten_pairs):
    """Hand case on two real series: one account of 10 000, fees 10 bps."""
    a, b = ten_pairs["BTC"].iloc[:4], ten_pairs["ETH"].iloc[:4]
    nanw = np.full(4, np.nan)
    wa, wb = nanw.copy(), nanw.copy()
    wa[0], wb[0] = 0.7, 0.7  # asks for 140 % of equity: the buys are scaled to the cash
    wa[1] = 0.495  # each holds ~0.4995 after the scaling: inside a 1 % band, held
    wb[2] = 0.0  # full exit
    p = SimParams(init_cash=10_000, fee_taker_bps=10)
    book = {
        "A": AssetInput(a, np.zeros(4, np.int8), weight=wa, lot_step=0.001),
        "B": AssetInput(b, np.zeros(4, np.int8), weight=wb),
    }
    res = run(book, p, limits=Limits(band_weight=0.01))
    log = res.order_log()
    assert log["status"].tolist() == ["scaled", "scaled", "band", "filled"]
    first = log.iloc[:2]
    cost = (first["units"] * first["price"] + first["fee"]).sum()
    assert cost <= 10_000 and cost == pytest.approx(10_000, rel=1e-4)  # cash never negative after fees
    ua = first["units"].iloc[0]
    assert ua == pytest.approx(round(ua / 0.001) * 0.001, abs=1e-12)  # lot step
    assert (res.book["cash"] >= -1e-9).all()
    t = res.trades()
    assert t["exit_reason"].tolist() == ["rebalance", "open"]
    assert res.book["equity"].iloc[-1] == pytest.approx(10_000 + t["pnl"].sum(), rel=1e-12)


def test_baseline_equal_sleeves_reproduce_the_per_symbol_simulation(real_book):
    """The baseline's ``sleeves`` book on the engine equals the code before it: one ``simulate`` per symbol, the
    sleeves combined on the union of their bar times; the shared book respects max_positions."""
    from pipeline.core.backtest import combine_sleeves, long_flat_backtest

    rng = np.random.default_rng(5)
    bars = {s: x.bars for s, x in real_book.items() if x.weight is None}
    preds = pd.concat(
        [pd.DataFrame({"symbol": s, "ts": b["ts"], "p_cal": rng.random(len(b))}) for s, b in bars.items()]
    )
    p = SimParams(init_cash=100_000 / 3, sl_atr=1.5, tp_atr=2.0, max_bars=24, fee_taker_bps=10, fee_maker_bps=10)
    out = long_flat_backtest(bars, preds, 0.97, p, 100_000, H, book="sleeves")
    olds = {}
    for s, b in bars.items():
        sig = np.where(preds[preds["symbol"] == s]["p_cal"].to_numpy() >= 0.97, 1, 0)
        olds[s] = simulate(b, sig, p)
        mine = out.trades[out.trades["symbol"] == s].drop(columns="symbol").reset_index(drop=True)
        pd.testing.assert_frame_equal(mine, olds[s].trades.reset_index(drop=True))
    port = combine_sleeves(olds, p.init_cash)
    np.testing.assert_array_equal(out.equity["ts"], port["ts"])
    np.testing.assert_allclose(out.equity["equity"], port["equity"], rtol=1e-12)
    np.testing.assert_allclose(out.equity["gross_exposure"], port["gross_exposure"], rtol=1e-9)
    shared = long_flat_backtest(bars, preds, 0.97, p, 100_000, H, book="shared", max_positions=2)
    assert shared.equity["n_positions"].max() <= 2 and (shared.orders["status"] == "denied_max_positions").any()
    assert shared.equity["equity"].iloc[-1] == pytest.approx(100_000 + shared.trades["pnl"].sum(), rel=1e-12)


def test_setup_scanner_sleeves_equal_simulate_and_the_shared_book_balances(real_book):
    """The scanner's execution on the engine (one sleeve per series) equals ``simulate`` per series; its backtest's
    shared book (one account, risk-sized on its equity) balances and respects max_positions."""
    from pipeline.core.setup_signals import execution_params, simulate_book, simulate_signals
    from pipeline.core.setups import RiskParams, SetupExecutionConfig, SetupParams, signal_arrays

    rng = np.random.default_rng(9)
    series = {("BTC/USDT", "1h"): real_book["BTC/USDT"].bars, ("ETH/USDT", "1h"): real_book["ETH/USDT"].bars}
    plans = []
    for (sym, tf), b in series.items():
        bar = np.sort(rng.choice(len(b) - 1, size=60, replace=False))
        side = rng.choice([-1, 1], size=60)
        c = b["close"].to_numpy()[bar]
        plans.append(
            pd.DataFrame(
                {
                    "symbol": sym,
                    "timeframe": tf,
                    "ts": b["ts"].to_numpy()[bar],
                    "side": side,
                    "entry": c * (1 - 0.001 * side),
                    "sl": c * (1 - 0.015 * side),
                    "tp1": c * (1 + 0.01 * side),
                    "tp2": c * (1 + 0.03 * side),
                    "leverage": 3.0,
                    "liq_price": np.nan,
                    "ev_pct": rng.random(60),
                }
            )
        )
    plans = pd.concat(plans, ignore_index=True)
    plans["candidate_id"] = [f"c{i}" for i in range(len(plans))]
    params = execution_params(
        SetupParams(validity_candles=3), RiskParams(), SetupExecutionConfig(), spot_like_costs(), 10_000.0
    )
    _, sleeves, _ = simulate_signals(series, plans, "ev_pct", params)
    for (sym, tf), b in series.items():
        g = plans[(plans["symbol"] == sym)].assign(bar=lambda d: np.searchsorted(b["ts"], d["ts"]))
        arr = signal_arrays(len(b), g)
        one = simulate(b, arr.pop("signal"), params, record_skipped=True, **arr)
        got = sleeves[f"{sym}|{tf}"]
        pd.testing.assert_frame_equal(got.trades.drop(columns=["symbol", "timeframe"]), one.trades)
        pd.testing.assert_frame_equal(got.orders, one.orders)
    book, trades, orders = simulate_book(series, plans, "ev_pct", params, 20_000.0, max_positions=1)
    assert book["n_positions"].max() <= 1 and (orders["status"] == "denied_max_positions").any()
    assert book["equity"].iloc[-1] == pytest.approx(20_000 + trades["pnl"].sum(), rel=1e-12)


def spot_like_costs():
    from pipeline.core.costs import spot_costs

    return spot_costs()


def _panel(book: dict):
    """The assets of ``book`` as a (T, N) panel on the union of their times (NaN where an asset has no bar)."""
    names = list(book)
    ts = np.unique(np.concatenate([x.bars["ts"].to_numpy() for x in book.values()]))
    out = {k: np.full((len(ts), len(names)), np.nan) for k in ("open", "high", "low", "close", "atr", "limit", "w")}
    sig = np.zeros((len(ts), len(names)), np.int8)
    ex = np.zeros((len(ts), len(names)), bool)
    for j, k in enumerate(names):
        x = book[k]
        i = np.searchsorted(ts, x.bars["ts"].to_numpy())
        for c in ("open", "high", "low", "close", "atr"):
            out[c][i, j] = x.bars[c].to_numpy()
        sig[i, j] = x.signal
        if x.exit_signal is not None:
            ex[i, j] = x.exit_signal
        if x.limit_price is not None:
            out["limit"][i, j] = x.limit_price
        if x.weight is not None:
            out["w"][i, j] = x.weight
    return names, ts, out, sig, ex


def test_run_panel_and_step_equal_run(real_book):
    """The (T, N) fast path on the union of times (NaN = no bar) gives run()'s rows, book and order log; stepping
    the last bars one at a time from the state equals the one run."""
    names, ts, m, sig, ex = _panel(real_book)
    lots = [x.lot_step for x in real_book.values()]
    kw = dict(limits=Limits(max_positions=2), record_skipped=True)
    ref = run(real_book, BRACKETS, **kw)
    pan = run_panel(
        ts,
        m["open"],
        m["high"],
        m["low"],
        m["close"],
        BRACKETS,
        names=names,
        atr=m["atr"],
        signal=sig,
        exit_signal=ex,
        weight=m["w"],
        per_signal={"limit_price": m["limit"]},
        lot_step=lots,
        **kw,
    )
    np.testing.assert_array_equal(np.nan_to_num(pan.rows, nan=-7.0), np.nan_to_num(ref.rows, nan=-7.0))
    np.testing.assert_array_equal(pan.olog, ref.olog)
    pd.testing.assert_frame_equal(pan.book, ref.book)
    k = len(ts) - 5
    head = run_panel(
        ts[:k],
        *(m[c][:k] for c in ("open", "high", "low", "close")),
        BRACKETS,
        names=names,
        atr=m["atr"][:k],
        signal=sig[:k],
        exit_signal=ex[:k],
        weight=m["w"][:k],
        per_signal={"limit_price": m["limit"][:k]},
        lot_step=lots,
        **kw,
    )
    state, hist, eq = head.state, [split_rows(head.rows)[0]], [head.book["equity"].to_numpy()]
    for i in range(k, len(ts)):
        r = step(
            state,
            int(ts[i]),
            *(m[c][i] for c in ("open", "high", "low", "close")),
            BRACKETS,
            atr=m["atr"][i],
            signal=sig[i],
            exit_signal=ex[i],
            weight=m["w"][i],
            per_signal={"limit_price": m["limit"][i]},
            lot_step=lots,
            **kw,
        )
        state = r.state
        hist.append(split_rows(r.rows)[0])
        eq.append(r.book["equity"].to_numpy())
    np.testing.assert_array_equal(
        np.nan_to_num(np.concatenate(hist), nan=-7.0), np.nan_to_num(split_rows(ref.rows)[0], nan=-7.0)
    )
    np.testing.assert_allclose(np.concatenate(eq), ref.book["equity"].to_numpy(), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(state.assets, ref.state.assets)
    with pytest.raises(ValueError, match="before the state"):
        step(state, int(ts[-1]), *(m[c][-1] for c in ("open", "high", "low", "close")), BRACKETS)


def test_a_resume_without_new_weights_still_executes_the_pending_ones(ten_pairs):
    """A target weight decided on the last bar before a cut fills at the next open even when the resume brings no
    ``weight`` input (paper trading resumes on new bars that may carry no decision): same book as one run. On the old
    code the pending rebalance was dropped (the kernel's rebalance pass only ran when the call had weights)."""
    a, b = ten_pairs["BTC"].iloc[:60], ten_pairs["ETH"].iloc[:60]
    ts = a["ts"].to_numpy()
    assert (b["ts"].to_numpy() == ts).all()
    m = {c: np.column_stack([a[c].to_numpy(), b[c].to_numpy()]) for c in ("open", "high", "low", "close")}
    w = np.full((60, 2), np.nan)
    w[5] = (0.4, 0.3)
    w[39] = (0.1, 0.6)  # decided on the close of bar 39: due at bar 40's open, the first bar after the cut
    p = SimParams(init_cash=10_000, fee_taker_bps=10, slippage_bps=5)
    cols = ("open", "high", "low", "close")
    one = run_panel(ts, *(m[c] for c in cols), p, names=["A", "B"], weight=w)
    head = run_panel(ts[:40], *(m[c][:40] for c in cols), p, names=["A", "B"], weight=w[:40])
    tail = run_panel(ts[40:], *(m[c][40:] for c in cols), p, names=["A", "B"], state=head.state)
    book = pd.concat([head.book, tail.book], ignore_index=True)
    pd.testing.assert_frame_equal(book, one.book)
    assert (one.olog[:, 1] == 40).sum() == 2  # both assets traded at bar 40 in the one run
    stepped = head.state
    for i in range(40, 60):
        stepped = step(stepped, int(ts[i]), m["open"][i], m["high"][i], m["low"][i], m["close"][i], p).state
    np.testing.assert_array_equal(stepped.cash, one.state.cash)
