"""Bit-identity check of every engine output between two commits (issue 15 "Speed": no result may change).

    python bench/engine_identity.py --ref <commit>      # run the cases on <commit> and on this tree, compare
    python bench/engine_identity.py save DIR            # write this tree's outputs to DIR (.npy per array)
    python bench/engine_identity.py check DIR           # compare this tree's outputs with DIR

The cases (20 configurations on the real candles of ``shared/data``): the two bench cases (brackets on BTC 1h; 20
assets x target weights every bar, with frames and with ``run_panel``), with and without per-bar records; long/short
brackets with limit entries, exit signals, latency, leverage, risk sizing, reverse off and skipped-signal rows; finer
candles; no signal at all; 20 assets with every limit on (caps, groups, lots, halts, drawdown scaling, volatility
target, cooldown, ATR stops) shared and as sleeves; a mixed signal + weight book with uneven bars, with and without
limits, sleeves, max positions; a resume cut (both halves); a panel with missing bars; a ``step``; ``simulate``.
Every output array (kernel rows, order log, per asset-bar and per-timestamp book, the state's assets / book / cash)
is compared byte for byte (NaN payloads included). ``--ref`` exports ``<commit>`` with ``git archive`` to a
temporary directory and runs ``save`` there in a subprocess (its own numba cache), then ``check`` here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
ROOT = Path(os.environ.get("ENGINE_IDENTITY_ROOT", REPO))
sys.path.insert(0, str(ROOT))
DATA = Path(os.environ.get("TRADER_DATA_DIR", "/work/shared/data")) / "ohlcv" / "binance"
PAIRS = ["BTC", "ETH", "SOL", "BNB", "XRP", "ADA", "DOGE", "AVAX", "LINK", "DOT"]


def atr(df, n=14):
    pc = df["close"].shift()
    tr = np.maximum(df["high"] - df["low"], np.maximum((df["high"] - pc).abs(), (df["low"] - pc).abs()))
    return tr.rolling(n, min_periods=1).mean().to_numpy()


def load(s, tf="1h"):
    df = pd.read_csv(DATA / f"{s}_USDT-{tf}.csv.gz").rename(columns={"timestamp": "ts"})
    return df[["ts", "open", "high", "low", "close"]]


def cases() -> dict[str, np.ndarray]:
    from pipeline.core.engine import AssetInput, Limits, run, run_panel, step
    from pipeline.core.simulator import SimParams, simulate

    out = {}

    def add(name, res):
        d = {"rows": res.rows, "olog": res.olog, "st_assets": res.state.assets, "st_book": res.state.book}
        d["st_cash"] = res.state.cash
        d.update({"ab_" + k: np.asarray(v) for k, v in res.asset_bars.items()})
        d.update({"bk_" + k: np.asarray(v) for k, v in res.book_arrays.items()})
        out.update({f"{name}.{k}": v for k, v in d.items()})

    # bench case 1 and its variants
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
    add("b1", run({"BTC": AssetInput(b, sig)}, p))
    add("b1_nr", run({"BTC": AssetInput(b, sig)}, p, record_bars=False))
    add("b1_nosig", run({"BTC": AssetInput(b, np.zeros(n, np.int8))}, p))
    sig2 = rng.choice([-1, 0, 1], size=n, p=[0.02, 0.96, 0.02]).astype(np.int8)
    lim = np.where(rng.random(n) < 0.3, b["close"] * (1 - 0.002 * sig2), np.nan)
    ex = rng.random(n) < 0.01
    for k, pp in enumerate(
        [
            SimParams(
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
            ),
            SimParams(
                leverage=5,
                sl_pct=0.03,
                tp_pct=0.05,
                risk_per_trade=0.01,
                allow_reverse=False,
                trail_atr=1.5,
                trail_after_tp1=True,
                tp1_pct=0.02,
                tp1_fraction=0.3,
                stops_on_entry_bar=False,
                liq_buffer=0.01,
            ),
            SimParams(leverage=20, sl_pct=0.2, fee_taker_bps=4),
        ]
    ):
        add(f"ls{k}", run({"BTC": AssetInput(b, sig2, exit_signal=ex, limit_price=lim)}, pp, record_skipped=True))
    m15 = load("BTC", "15m")
    bb = b.iloc[-5000:].reset_index(drop=True)
    fine = m15[(m15.ts >= bb.ts.iloc[0])][["ts", "high", "low"]].reset_index(drop=True)
    add(
        "fine",
        run(
            {"BTC": AssetInput(bb, sig2[-5000:], fine=fine, step_ms=3_600_000)},
            SimParams(sl_atr=1.0, tp_atr=1.5, fee_taker_bps=5),
        ),
    )
    # bench case 2
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
    add("w20", run(xs, pw))
    mats = {k: np.column_stack([fr[s][k].to_numpy() for s in names]) for k in ("open", "high", "low", "close")}
    tsv = common.to_numpy()
    O, H, L, C = (mats[k] for k in ("open", "high", "low", "close"))
    add("w20p", run_panel(tsv, O, H, L, C, pw, names=names, weight=w))
    add("w20p_nr", run_panel(tsv, O, H, L, C, pw, names=names, weight=w, record_bars=False))
    # every limit on, lots, groups, ATR stops; shared and sleeves
    grp = ((np.arange(T)[:, None] // 300 + np.arange(20)[None, :]) % 4).astype(np.int64)
    atrm = np.column_stack([atr(fr[s]) for s in names])
    wl = np.where(rng.random((T, 20)) < 0.3, w * 2, np.nan)
    LIM = Limits(
        max_positions=12,
        max_asset_weight=0.1,
        max_group_weight=0.3,
        max_gross=0.8,
        daily_loss=0.02,
        dd_soft=0.04,
        dd_soft_scale=0.5,
        dd_hard=0.08,
        dd_hard_scale=0.2,
        dd_recovery=0.01,
        vol_target_daily=0.01,
        band_weight=0.005,
        band_notional=100,
        min_notional=10.0,
        reentry_cooldown_bars=5,
        max_per_symbol=1,
    )
    pst = SimParams(init_cash=1e6, fee_taker_bps=10, slippage_bps=5, sl_atr=3.0, trail_atr=3.0, tp_atr=8.0)
    syms = [s.split("/")[0] for s in names]
    S = slice(0, 12000)
    add(
        "w20lim",
        run_panel(
            tsv[S], O[S], H[S], L[S], C[S], pst, names=names, weight=wl[S], group=grp[S], atr=atrm[S],
            lot_step=0.001, symbols=syms, limits=LIM,
        ),
    )  # fmt: skip
    add(
        "w20sl",
        run_panel(
            tsv[S], O[S], H[S], L[S], C[S], pst, names=names, weight=wl[S], atr=atrm[S], account="sleeves",
            limits=LIM,
        ),
    )  # fmt: skip
    # a panel with missing bars (NaN close) and sparse signals / weights: long flat spans
    S2 = slice(0, 8000)
    Cg = C[S2].copy()
    Cg[rng.random(Cg.shape) < 0.05] = np.nan
    Cg[:500, 3] = np.nan
    sgp = np.zeros(Cg.shape, np.int8)
    sgp[:, :10] = rng.choice([-1, 0, 1], size=(8000, 10), p=[0.003, 0.994, 0.003])
    wp = np.full(Cg.shape, np.nan)
    wp[:, 10:] = np.where(rng.random((8000, 10)) < 0.004, 0.05, np.nan)
    wp[::997, 10:] = 0.0
    add(
        "gaps",
        run_panel(
            tsv[S2], O[S2], H[S2], L[S2], Cg, p, names=names, signal=sgp, weight=wp, atr=atrm[S2],
            init_cash=1e5, record_skipped=True,
        ),
    )  # fmt: skip
    add(
        "gaps_sl",
        run_panel(
            tsv[S2], O[S2], H[S2], L[S2], Cg, p, names=names, signal=sgp, weight=wp, atr=atrm[S2],
            account="sleeves",
        ),
    )  # fmt: skip
    # mixed signals + weights, uneven bars, with frames
    mix = {}
    for j, s in enumerate(PAIRS[:6]):
        df = load(s)
        df = df[df.ts >= 1_651_363_200_000].iloc[: 3000 - 300 * (j % 3)].reset_index(drop=True)
        df = df.iloc[100 * (j % 2) :].reset_index(drop=True)
        df = df.assign(atr=atr(df))
        m = len(df)
        g = ((np.arange(m) // 200 + j) % 3).astype(np.int64)
        if j < 3:
            sg = rng.choice([-1, 0, 1], size=m, p=[0.02, 0.96, 0.02]).astype(np.int8)
            mix[s] = AssetInput(
                df,
                sg,
                group=g,
                exit_signal=rng.random(m) < 0.01,
                limit_price=np.where(rng.random(m) < 0.3, df["close"] * (1 - 0.002 * sg), np.nan),
            )
        else:
            ww = np.where(rng.random(m) < 0.3, rng.choice([0.0, 0.1, 0.2, 0.35], size=m), np.nan)
            mix[s] = AssetInput(df, np.zeros(m, np.int8), weight=ww, group=g, lot_step=0.001)
    risky = SimParams(
        init_cash=100_000,
        size_fraction=0.4,
        sl_atr=2.0,
        tp_atr=4.0,
        trail_atr=2.0,
        trail_activation_atr=1.0,
        max_bars=72,
        fee_taker_bps=5,
        slippage_bps=3,
        tp1_atr=1.5,
        tp1_fraction=0.5,
        breakeven_after_tp1=True,
        limit_validity_bars=3,
        latency_bars=1,
    )
    add("mix", run(mix, risky, limits=LIM, record_skipped=True))
    add("mix_sl", run(mix, risky, limits=LIM, account="sleeves", record_skipped=True))
    add("mix_nolim", run(mix, risky, record_skipped=True))
    add("mix_maxpos", run(mix, risky, limits=Limits(max_positions=2), record_skipped=True))
    # a resume cut: both halves
    cut = int(np.median([x.bars.ts.iloc[len(x.bars) // 2] for x in mix.values()]))

    def part(x, keep):
        def k(v):
            return None if v is None else v[keep]

        return AssetInput(
            x.bars[keep].reset_index(drop=True),
            x.signal[keep],
            exit_signal=k(x.exit_signal),
            limit_price=k(x.limit_price),
            weight=k(x.weight),
            group=k(x.group),
            lot_step=x.lot_step,
        )

    h1 = run({k: part(x, (x.bars.ts < cut).to_numpy()) for k, x in mix.items()}, risky, limits=LIM, record_skipped=True)
    add("mix_h1", h1)
    add(
        "mix_h2",
        run(
            {k: part(x, (x.bars.ts >= cut).to_numpy()) for k, x in mix.items()},
            risky,
            limits=LIM,
            record_skipped=True,
            state=h1.state,
        ),
    )
    st = run_panel(tsv[:-1], O[:-1], H[:-1], L[:-1], C[:-1], pw, names=names, weight=w[:-1]).state
    add("step", step(st, int(tsv[-1]), O[-1], H[-1], L[-1], C[-1], pw, weight=w[-1]))
    r = simulate(b, sig2, SimParams(sl_atr=2.0, tp_atr=3.0, fee_taker_bps=5), exit_signal=ex, record_skipped=True)
    out["sim.trades"] = r.trades.drop(columns=["exit_reason"]).to_numpy(np.float64)
    out["sim.bars"] = r.bars.to_numpy(np.float64)
    return out


def save(d: Path) -> None:
    d.mkdir(parents=True, exist_ok=True)
    arr = cases()
    for k, v in arr.items():
        np.save(d / f"{k}.npy", np.ascontiguousarray(v))
    print(f"saved {len(arr)} arrays of {len({k.split('.')[0] for k in arr})} cases from {ROOT} to {d}")


def check(d: Path) -> int:
    arr = cases()
    bad = 0
    for k, v in arr.items():
        g = np.load(d / f"{k}.npy")
        v = np.ascontiguousarray(v)
        if not (g.shape == v.shape and g.dtype == v.dtype and g.tobytes() == v.tobytes()):
            bad += 1
            eq = g.shape == v.shape and np.array_equal(g, v, equal_nan=True)
            print("DIFF", k, g.shape, v.shape, g.dtype, v.dtype, "equal with equal_nan:", eq)
    saved = {p.stem for p in d.glob("*.npy")}
    missing = saved - set(arr)
    for k in sorted(missing):
        print("MISSING", k)
    cs = len({k.split(".")[0] for k in arr})
    print(f"{len(arr)} arrays of {cs} cases: " + ("all bit-identical" if not (bad or missing) else f"{bad} differ"))
    return int(bool(bad or missing))


def main() -> int:
    a = sys.argv[1:]
    if len(a) == 2 and a[0] in ("save", "check"):
        if a[0] == "save":
            save(Path(a[1]))
            return 0
        return check(Path(a[1]))
    if len(a) == 2 and a[0] == "--ref":
        with tempfile.TemporaryDirectory() as tmp:
            src, out = Path(tmp) / "src", Path(tmp) / "out"
            src.mkdir()
            tar = subprocess.run(["git", "-C", str(REPO), "archive", a[1]], check=True, capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", str(src)], input=tar, check=True)
            env = {**os.environ, "ENGINE_IDENTITY_ROOT": str(src), "PYTHONPATH": str(src)}
            subprocess.run([sys.executable, __file__, "save", str(out)], env=env, check=True)
            return check(out)
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main())
