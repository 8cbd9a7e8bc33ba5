"""Interleaved A/B timing of two engine.py files in one process (issue 15 "Speed"): each module loaded by path, calls
alternating, min of many warm calls of the thread's CPU time, total and kernel. Run by hand:

    git show a794cf9:pipeline/core/engine.py > /tmp/engine_old.py && cp pipeline/core/engine.py /tmp/engine_new.py
    python bench/engine_ab.py /tmp/engine_old.py /tmp/engine_new.py 60 "1a,1a nr,1a nosig,20 panel,20 panel nr"

Cases: 1a (bench case 1), 1a nr (trades only), 1a nosig, 20 panel (bench case 2, run_panel), 20 panel nr, 20 panel
lean (record_orders=False too), 20 run (frames); a case a module does not support prints nan.
"""

import importlib.util
import sys
import time

import numpy as np
import pandas as pd

mods = []
paths = [a for a in sys.argv[1:] if a.endswith(".py")]
rest = [a for a in sys.argv[1:] if not a.endswith(".py")]
for path in paths:
    spec = importlib.util.spec_from_file_location("eng_" + path.split("/")[-1][:-3], path)
    E = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = E
    spec.loader.exec_module(E)
    E.KT = []
    orig = E._engine_kernel

    def timed(*a, _o=orig, _E=E):
        t = time.thread_time()
        r = _o(*a)
        _E.KT.append(time.thread_time() - t)
        return r

    E._engine_kernel = timed
    mods.append(E)
reps = int(rest[0]) if rest else 30
DATA = "/work/shared/data/ohlcv/binance"


def load(s):
    return pd.read_csv(f"{DATA}/{s}_USDT-1h.csv.gz").rename(columns={"timestamp": "ts"})[
        ["ts", "open", "high", "low", "close"]
    ]


def atr(df, n=14):
    pc = df["close"].shift()
    tr = np.maximum(df["high"] - df["low"], np.maximum((df["high"] - pc).abs(), (df["low"] - pc).abs()))
    return tr.rolling(n, min_periods=1).mean().to_numpy()


b = load("BTC")
b = b.assign(atr=atr(b))
n = len(b)
rng = np.random.default_rng(1)
sig = (rng.random(n) < 0.02).astype(np.int8)
PAIRS = ["BTC", "ETH", "SOL", "BNB", "XRP", "ADA", "DOGE", "AVAX", "LINK", "DOT"]
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
mats = {k: np.column_stack([fr[s][k].to_numpy() for s in names]) for k in ("open", "high", "low", "close")}
tsv = common.to_numpy()


def make(E):
    p = E.SimParams(
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
    x = {"BTC": E.AssetInput(b, sig)}
    x0 = {"BTC": E.AssetInput(b, np.zeros(n, np.int8))}
    pw = E.SimParams(init_cash=1e6, fee_taker_bps=10, slippage_bps=5)
    xs = {s: E.AssetInput(fr[s], np.zeros(T, np.int8), weight=w[:, j]) for j, s in enumerate(names)}
    return {
        "1a": (lambda: E.run(x, p), 1),
        "1a nr": (lambda: E.run(x, p, record_bars=False), 1),
        "1a nosig": (lambda: E.run(x0, p), 1),
        "20 panel": (
            lambda: E.run_panel(tsv, mats["open"], mats["high"], mats["low"], mats["close"], pw, names=names, weight=w),
            6,
        ),
        "20 panel nr": (
            lambda: E.run_panel(
                tsv,
                mats["open"],
                mats["high"],
                mats["low"],
                mats["close"],
                pw,
                names=names,
                weight=w,
                record_bars=False,
            ),
            6,
        ),
        "20 panel lean": (
            lambda: E.run_panel(
                tsv,
                mats["open"],
                mats["high"],
                mats["low"],
                mats["close"],
                pw,
                names=names,
                weight=w,
                record_bars=False,
                record_orders=False,
            ),
            6,
        ),
        "20 run": (lambda: E.run(xs, pw), 6),
    }


fs = [make(E) for E in mods]
sel = rest[1].split(",") if len(rest) > 1 else list(fs[0])
res = {}
ok = {}
for name in sel:
    for j, F in enumerate(fs):
        try:
            F[name][0]()
            ok[(name, j)] = True
        except TypeError:
            ok[(name, j)] = False
            res[(name, j)] = [float("nan")] * 2
    div = fs[0][name][1]
    for _ in range(max(3, reps // div)):
        for j, (E, F) in enumerate(zip(mods, fs)):
            if not ok[(name, j)]:
                continue
            E.KT.clear()
            t = time.thread_time()
            F[name][0]()
            dt = time.thread_time() - t
            r = res.setdefault((name, j), [1e9, 1e9])
            r[0] = min(r[0], dt)
            r[1] = min(r[1], E.KT[-1])
for name in sel:
    print(
        f"{name:12s} "
        + " | ".join(
            f"{paths[j].split('/')[-1][:-3]} total {res[(name, j)][0] * 1e3:8.2f} kernel {res[(name, j)][1] * 1e3:8.2f}"
            for j in range(len(mods))
        )
    )
