"""Engine benchmark (run by hand, issue 15 "Speed"): the engine against vectorbt on the same real data, one run.

    python bench/bench_engine.py

* one asset (BTC/USDT 1h, all history), random signals: the engine with TP1 50 % + break-even + ATR trail + time
  stop against vectorbt ``Portfolio.from_signals`` with its nearest rules (``sl_stop`` + ``sl_trail`` + ``tp_stop``;
  vectorbt has no partial TP1 nor time stop);
* 20 assets (the 10 pairs' hourly bars and the same bars at half price, common hours), a target-weight change every
  bar: the engine's order source 2 against ``Portfolio.from_orders(size_type="targetpercent", group_by=True,
  cash_sharing=True, call_seq="auto")``;
* resuming one new bar for the 20 assets from the engine's state (the paper-trading step);
* the memory floor of each case: a numba loop that only reads the same inputs and writes the same full outputs
  (freshly allocated, as the engine does), the least time any engine returning those outputs needs here.

Times are the best of several warm runs (compilation excluded).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numba
import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from pipeline.core.engine import AssetInput, run, run_panel, step  # noqa: E402
from pipeline.core.simulator import SimParams  # noqa: E402

DATA = Path(os.environ.get("TRADER_DATA_DIR", REPO.parent / "shared" / "data"))
PAIRS = ["BTC", "ETH", "SOL", "BNB", "XRP", "ADA", "DOGE", "AVAX", "LINK", "DOT"]


def best(fn, repeat=5):
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return min(ts)


def load(sym: str) -> pd.DataFrame:
    df = pd.read_csv(DATA / "ohlcv" / "binance" / f"{sym}_USDT-1h.csv.gz").rename(columns={"timestamp": "ts"})
    return df[["ts", "open", "high", "low", "close"]]


def atr(df: pd.DataFrame, n: int = 14) -> np.ndarray:
    pc = df["close"].shift()
    tr = np.maximum(df["high"] - df["low"], np.maximum((df["high"] - pc).abs(), (df["low"] - pc).abs()))
    return tr.rolling(n, min_periods=1).mean().to_numpy()


@numba.njit(cache=True)
def _floor_kernel(ts, asset, o, h, l, c, x, sig, olog, pos, eq, g):  # pragma: no cover - compiled
    """The memory floor of one engine run: read every input row once, write every output the engine writes (per
    row position and equity, the 9 per-timestamp book arrays, an order-log row per row when ``olog`` has rows),
    with one add per row as the only arithmetic."""
    R = ts.shape[0]
    s = 0.0
    ng = 0
    r0 = 0
    while r0 < R:
        r1 = r0 + 1
        while r1 < R and ts[r1] == ts[r0]:
            r1 += 1
        for r in range(r0, r1):
            v = o[r] + h[r] + l[r] + c[r] + x[r] + sig[r] + asset[r]
            if olog.shape[0] > 0:
                olog[r, 0] = asset[r]
                olog[r, 1] = r
                olog[r, 2] = ts[r]
                olog[r, 3] = 0.0
                olog[r, 4] = x[r]
                olog[r, 5] = v
                olog[r, 6] = o[r]
                olog[r, 7] = s
            pos[r] = v
            eq[r] = s
            s += v
        for j in range(9):
            g[j, ng] = s
        ng += 1
        r0 = r1
    return s


def floor(ts, asset, o, h, l, c, x, sig, n_ts, olog_rows):
    """One call of :func:`_floor_kernel` with freshly allocated outputs, as :func:`pipeline.core.engine.run`."""
    R = len(ts)
    out = np.empty((olog_rows, 8)), np.empty(R), np.empty(R), np.empty((9, n_ts))
    return _floor_kernel(ts, asset, o, h, l, c, x, sig, *out)


def main() -> None:
    import vectorbt as vbt

    rows = []
    # 1. one asset, brackets
    b = load("BTC")
    b = b.assign(atr=atr(b))
    n = len(b)
    rng = np.random.default_rng(1)
    sig = (rng.random(n) < 0.02).astype(np.int8)
    p = SimParams(
        sl_atr=2.0,
        tp_atr=6.0,
        tp1_atr=2.0,
        tp1_fraction=0.5,
        breakeven_after_tp1=True,
        trail_atr=2.5,
        trail_activation_atr=1.0,
        max_bars=48,
        fee_taker_bps=10,
        fee_maker_bps=10,
        slippage_bps=2,
    )
    x = {"BTC": AssetInput(b, sig)}
    res = run(x, p)
    t_eng = best(lambda: run(x, p))
    t_eng_nr = best(lambda: run(x, p, record_bars=False))
    f1 = [b[k].to_numpy() for k in ("ts", "open", "high", "low", "close", "atr")]
    fl1 = (f1[0], np.zeros(n, np.int64), *f1[1:], sig, n, 0)
    floor(*fl1)
    t_floor1 = best(lambda: floor(*fl1), repeat=20)
    close = b["close"]
    stop = pd.Series(2.0 * b["atr"].to_numpy() / close.to_numpy())

    def vb1():
        return vbt.Portfolio.from_signals(
            close,
            entries=pd.Series(sig.astype(bool)),
            exits=pd.Series(np.zeros(n, bool)),
            open=b["open"],
            high=b["high"],
            low=b["low"],
            sl_stop=stop,
            sl_trail=True,
            tp_stop=stop * 3,
            fees=0.001,
            slippage=0.0002,
            freq="1h",
        ).value()

    vb1()
    t_vb1 = best(vb1, repeat=3)
    n_tr = int((res.rows[:, 1] >= 0).sum())
    rows.append(
        (
            f"1 asset, {n:,} bars, TP1 + BE + trail + time stop ({n_tr:,} trades)",
            t_eng,
            t_vb1,
            n,
            f"(trades only: {n / t_eng_nr / 1e6:.1f}M bars/s)",
        )
    )
    # 2. 20 assets, target weights every bar
    fr = {s: load(s) for s in PAIRS}
    common = fr["BTC"]["ts"]
    for df in fr.values():
        common = common[common.isin(df["ts"])]
    fr = {s: df[df["ts"].isin(common)].reset_index(drop=True) for s, df in fr.items()}
    for s in PAIRS:
        fr[s + "/2"] = fr[s].assign(**{k: fr[s][k] / 2 for k in ("open", "high", "low", "close")})
    names = list(fr)
    T = len(common)
    w = rng.dirichlet(np.ones(len(names) + 1), size=T)[:, : len(names)] * 0.95
    pw = SimParams(init_cash=1e6, fee_taker_bps=10, slippage_bps=5)
    xs = {s: AssetInput(fr[s], np.zeros(T, np.int8), weight=w[:, j]) for j, s in enumerate(names)}
    run(xs, pw)
    t_w = best(lambda: run(xs, pw), repeat=3)
    close = pd.DataFrame({s: fr[s]["close"].to_numpy() for s in names})
    opens = pd.DataFrame({s: fr[s]["open"].to_numpy() for s in names})
    size = pd.DataFrame(np.vstack([np.full(len(names), np.nan), w[:-1]]), columns=names)

    def vb2():
        return vbt.Portfolio.from_orders(
            close,
            size,
            size_type="targetpercent",
            price=opens,
            fees=0.001,
            slippage=0.0005,
            init_cash=1e6,
            group_by=True,
            cash_sharing=True,
            call_seq="auto",
            freq="1h",
        ).value()

    vb2()
    t_vb2 = best(vb2, repeat=3)
    rows.append((f"20 assets x {T:,} bars, target weights every bar, shared cash", t_w, t_vb2, T * 20, ""))
    mats = {k: np.column_stack([fr[s][k].to_numpy() for s in names]) for k in ("open", "high", "low", "close")}
    tsv = common.to_numpy()

    def panel():
        return run_panel(tsv, mats["open"], mats["high"], mats["low"], mats["close"], pw, names=names, weight=w)

    panel()
    t_p = best(panel, repeat=3)
    rows.append(("same, (T, N) panel input (`run_panel`)", t_p, t_vb2, T * 20, ""))

    def lean():
        return run_panel(
            tsv, *(mats[k] for k in ("open", "high", "low", "close")), pw, names=names, weight=w,
            record_bars=False, record_orders=False,
        )  # fmt: skip

    lean()
    t_lean = best(lean, repeat=3)
    rows.append(
        (
            "same, `run_panel`, trades and state only (`record_bars=False, record_orders=False`)",
            t_lean,
            t_vb2,
            T * 20,
            "",
        )
    )
    R2 = T * len(names)
    fl2 = (
        np.repeat(tsv, len(names)), np.tile(np.arange(len(names), dtype=np.int64), T),
        *(mats[k].ravel() for k in ("open", "high", "low", "close")), w.ravel(), np.zeros(R2, np.int8), T, R2,
    )  # fmt: skip
    floor(*fl2)
    t_floor2 = best(lambda: floor(*fl2), repeat=5)
    # 3. resume one new bar for 20 assets
    head = {s: AssetInput(v.bars.iloc[:-1], v.signal[:-1], weight=v.weight[:-1]) for s, v in xs.items()}
    tail = {s: AssetInput(v.bars.iloc[-1:], v.signal[-1:], weight=v.weight[-1:]) for s, v in xs.items()}
    st = run(head, pw).state
    t_res = best(lambda: run(tail, pw, state=st), repeat=50)
    last = {k: v[-1] for k, v in mats.items()}
    t_step = best(
        lambda: step(st, int(tsv[-1]), last["open"], last["high"], last["low"], last["close"], pw, weight=w[-1]),
        repeat=200,
    )
    print("| benchmark | engine | vectorbt | ratio | engine asset-bars/s |")
    print("|---|---|---|---|---|")
    for name, te, tv, ab, extra in rows:
        print(f"| {name} | {te * 1e3:.1f} ms | {tv * 1e3:.1f} ms | {tv / te:.1f}x | {ab / te / 1e6:.1f}M {extra} |")
    print(f"| resume one new bar, 20 assets (state → run) | {t_res * 1e3:.2f} ms | | | |")
    for what, tf, tv in (
        ("1 asset (read the inputs, write the full outputs; ratio = the most any engine could reach)", t_floor1, t_vb1),
        ("20 assets (same, with the order log)", t_floor2, t_vb2),
    ):
        print(f"| memory floor, {what} | {tf * 1e3:.2f} ms | {tv * 1e3:.1f} ms | {tv / tf:.1f}x | |")
    print(f"| resume one new bar, 20 assets (`step`) | {t_step * 1e3:.3f} ms | | | |")


if __name__ == "__main__":
    main()
