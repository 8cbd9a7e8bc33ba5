"""The engine's speed options change nothing else (issue 15 "Speed"): ``record_orders=False`` leaves out only the order
log, and the event-skipping path (every account flat with nothing pending) writes the same book as a bar-by-bar pass,
on real candles and on a hand-computed flat span."""

import numpy as np

from pipeline.core.engine import AssetInput, Limits, run, run_panel, step
from pipeline.core.simulator import SimParams
from tests.conftest import real_ohlcv

PAIRS = ("BTC/USDT", "ETH/USDT", "SOL/USDT")


def _panel(n=600):
    fr = [real_ohlcv(s, "1h").iloc[-n:].reset_index(drop=True) for s in PAIRS]
    ts = fr[0]["ts"].to_numpy(np.int64)
    assert all(np.array_equal(f["ts"].to_numpy(np.int64), ts) for f in fr)
    mats = {k: np.column_stack([f[k].to_numpy(np.float64) for f in fr]) for k in ("open", "high", "low", "close")}
    return ts, mats


def test_record_orders_off_leaves_out_only_the_order_log():
    ts, m = _panel()
    rng = np.random.default_rng(3)
    w = np.where(rng.random((len(ts), 3)) < 0.2, rng.dirichlet(np.ones(4), size=len(ts))[:, :3], np.nan)
    p = SimParams(init_cash=1e5, fee_taker_bps=10, slippage_bps=5)
    args = (ts, m["open"], m["high"], m["low"], m["close"], p)
    full = run_panel(*args, names=list(PAIRS), weight=w, limits=Limits(band_weight=0.01))
    lean = run_panel(*args, names=list(PAIRS), weight=w, limits=Limits(band_weight=0.01), record_orders=False)
    assert len(full.olog) > 100 and lean.olog.shape == (0, full.olog.shape[1]) and len(lean.order_log()) == 0
    assert full.rows.tobytes() == lean.rows.tobytes()
    assert full.state.assets.tobytes() == lean.state.assets.tobytes() and full.state.cash[0] == lean.state.cash[0]
    for k in full.asset_bars:
        assert np.asarray(full.asset_bars[k]).tobytes() == np.asarray(lean.asset_bars[k]).tobytes()
    last = [m[k][-1] for k in ("open", "high", "low", "close")]
    one = step(full.state, int(ts[-1]) + 3_600_000, *last, p, weight=np.full(3, 0.2), record_orders=False)
    two = step(one.state, int(ts[-1]) + 7_200_000, *last, p, weight=np.full(3, np.nan), record_orders=False)
    assert one.olog.shape[0] == 0 and two.olog.shape[0] == 0 and two.state.cash[0] != one.state.cash[0]


def test_flat_spans_book_equals_the_bar_by_bar_pass():
    """A signal book that is flat most of the time (event skipping on) against the same book with a risk limit that
    never binds (skipping off: every bar through the full pass): the same bits everywhere but the risk state."""
    b = real_ohlcv("BTC/USDT", "1h").iloc[:3000].reset_index(drop=True)
    sig = np.zeros(len(b), np.int8)
    sig[[100, 900, 901, 2500]] = [1, -1, 1, 1]
    p = SimParams(sl_pct=0.02, tp_pct=0.03, max_bars=24, fee_taker_bps=5)
    fast = run({"BTC": AssetInput(b, sig)}, p)
    slow = run({"BTC": AssetInput(b, sig)}, p, limits=Limits(max_drawdown=0.99))
    assert (fast.rows[:, 1] >= 0).sum() >= 3
    assert fast.rows.tobytes() == slow.rows.tobytes()
    assert fast.state.assets.tobytes() == slow.state.assets.tobytes()
    for k in fast.asset_bars:
        assert np.asarray(fast.asset_bars[k]).tobytes() == np.asarray(slow.asset_bars[k]).tobytes()
    for k in ("ts", "equity", "pv", "gross", "npos", "gopen", "eopen", "state", "scale"):
        assert fast.book_arrays[k].tobytes() == slow.book_arrays[k].tobytes(), k
    # hand check of a flat span: before the first fill (bar 101) equity is the initial cash, exposure 0
    bk = fast.book
    assert (bk["equity"].iloc[:101] == 10_000.0).all() and (bk["gross_exposure_open"].iloc[:101] == 0.0).all()
    assert (fast.asset_bars["position"][:101] == 0.0).all() and fast.asset_bars["position"][101] > 0
