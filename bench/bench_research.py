"""Research-core benchmark (run by hand): prints a table comparing the project's code with named
baselines on the same real data in the same run.

    python bench/bench_research.py [--no-walk-forward]

* execution simulator vs vectorbt ``Portfolio.from_signals`` (baseline) on the same signals over the
  real 15m candles of all 10 pairs (one column per pair), fixed SL/TP; then the simulator with
  TP1 partial + break-even + ATR trailing enabled, against the same vectorbt figure (the target);
* LightGBM and XGBoost training time on the real baseline feature matrix (BTC+ETH 1h, pooled);
* with a built warehouse: the whole baseline walk-forward (train all folds, score 10 pairs, backtest).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from pipeline.core.simulator import SimParams, simulate  # noqa: E402

DATA = Path(os.environ.get("TRADER_DATA_DIR", REPO.parent / "shared" / "data"))
PAIRS = ["BTC", "ETH", "SOL", "BNB", "XRP", "ADA", "DOGE", "AVAX", "LINK", "DOT"]


def best(fn, repeat=3):
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return min(ts)


def load_15m() -> dict[str, pd.DataFrame]:
    import talib

    out = {}
    for p in PAIRS:
        df = pd.read_csv(DATA / "ohlcv" / "binance" / f"{p}_USDT-15m.csv.gz").rename(columns={"timestamp": "ts"})
        df["atr"] = talib.ATR(df["high"].to_numpy(), df["low"].to_numpy(), df["close"].to_numpy(), 14)
        out[p] = df.reset_index(drop=True)
    return out


def signals(df: pd.DataFrame) -> np.ndarray:
    """A deterministic entry rule (close crosses above its 96-bar mean) — the same for both engines."""
    sma = df["close"].rolling(96).mean()
    return ((df["close"] > sma) & (df["close"].shift(1) <= sma.shift(1))).to_numpy()


def bench_simulator(rows: list) -> None:
    import vectorbt as vbt

    warnings.filterwarnings("ignore")
    data = load_15m()
    n_bars = sum(len(d) for d in data.values())
    sig = {p: signals(d) for p, d in data.items()}
    fixed = SimParams(sl_pct=0.02, tp_pct=0.04, fee_taker_bps=10, fee_maker_bps=10, stops_on_entry_bar=False)
    rich = SimParams(
        sl_atr=2,
        tp_atr=6,
        tp1_atr=2,
        tp1_fraction=0.5,
        breakeven_after_tp1=True,
        trail_atr=2.5,
        trail_activation_atr=1.5,
        max_bars=96 * 3,
        fee_taker_bps=10,
        fee_maker_bps=2,
        slippage_bps=2,
    )

    def ours(params, record=True):
        return sum(len(simulate(d, sig[p].astype(np.int8), params, record_bars=record).trades) for p, d in data.items())

    # vectorbt: one column per pair on a common index (NaN-padded before a pair lists), signals shifted to the next open
    idx = pd.Index(np.unique(np.concatenate([d["ts"].to_numpy() for d in data.values()])))
    wide = {
        k: pd.DataFrame({p: d.set_index("ts")[k].reindex(idx) for p, d in data.items()})
        for k in ("open", "high", "low", "close")
    }
    ent = pd.DataFrame({p: pd.Series(sig[p], index=d["ts"]).reindex(idx, fill_value=False) for p, d in data.items()})
    ent = ent.shift(1, fill_value=False).astype(bool)

    def theirs():
        pf = vbt.Portfolio.from_signals(
            wide["close"],
            ent,
            False,
            price=wide["open"],
            open=wide["open"],
            high=wide["high"],
            low=wide["low"],
            sl_stop=0.02,
            tp_stop=0.04,
            fees=0.001,
            size=np.inf,
            stop_entry_price="fillprice",
            freq="15min",
        )
        return int(pf.trades.count().sum())

    ours(fixed), ours(rich), theirs()  # compile / warm up
    t_vbt = best(theirs)
    n_vbt = theirs()
    t_fixed, t_rich, t_rich_nr = best(lambda: ours(fixed)), best(lambda: ours(rich)), best(lambda: ours(rich, False))
    n_fixed, n_rich = ours(fixed), ours(rich)
    vbt_rate = idx.size * len(PAIRS) / t_vbt  # vectorbt walks the padded grid
    rows += [
        (
            "simulator, fixed SL/TP (10 × 15m)",
            "vectorbt from_signals",
            f"{n_bars / t_fixed / 1e6:.1f}M bars/s, {n_fixed / t_fixed / 1e3:.0f}k trades/s",
            f"{vbt_rate / 1e6:.1f}M bars/s, {n_vbt / t_vbt / 1e3:.0f}k trades/s",
            f"{(n_bars / t_fixed) / vbt_rate:.1f}×",
            "—",
        ),
        (
            "simulator, TP1 + break-even + ATR trail + time stop",
            "vectorbt from_signals (fixed SL/TP)",
            f"{n_bars / t_rich / 1e6:.1f}M bars/s, {n_rich / t_rich / 1e3:.0f}k trades/s",
            f"{vbt_rate / 1e6:.1f}M bars/s",
            f"{(n_bars / t_rich) / vbt_rate:.1f}×",
            "≥ 20×",
        ),
        (
            "same, trades only (record_bars=False)",
            "vectorbt from_signals (fixed SL/TP)",
            f"{n_bars / t_rich_nr / 1e6:.1f}M bars/s",
            f"{vbt_rate / 1e6:.1f}M bars/s",
            f"{(n_bars / t_rich_nr) / vbt_rate:.1f}×",
            "≥ 20×",
        ),
    ]
    print(
        f"bars: {n_bars:,} real 15m candles (vectorbt grid {idx.size:,} × {len(PAIRS)}); trades: ours fixed {n_fixed}, "
        f"vectorbt {n_vbt}, ours rich {n_rich}"
    )


def bench_training(rows: list, walk_forward: bool) -> None:
    import duckdb

    from models.baseline import labelled_frame, predictions_for, train_baseline
    from models.datasets import MODEL_FEATURES
    from models.trainers import ModelSpec, make_estimator
    from pipeline.config import settings
    from pipeline.core.backtest import long_flat_backtest
    from pipeline.core.timeframes import timeframe_ms
    from warehouse import readers

    cfg = settings()
    path = cfg.warehouse.path if Path(cfg.warehouse.path).exists() else cfg.warehouse.serving_path
    if not Path(path).exists():
        print("no warehouse: run `trader run` first for the training benchmarks")
        return
    b = cfg.research.baseline
    with duckdb.connect(path, read_only=True) as con:
        series = {
            s: readers.series(con, cfg.exchange.id, s, b.timeframe)
            for s in dict.fromkeys([*b.train_symbols, *cfg.universe.symbols])
        }
        frames = [labelled_frame(series[s], b) for s in b.train_symbols]
    d = pd.concat(frames, ignore_index=True)
    d = d[d["win"].notna()]
    X, y = d[MODEL_FEATURES], d["win"].to_numpy()
    for kind in ("lightgbm", "xgboost", "logreg"):
        t = best(lambda: make_estimator(ModelSpec(kind=kind)).fit(X, y), repeat=2)
        rows.append(
            (f"fit {kind} (defaults)", f"{len(X):,} × {X.shape[1]} real feature matrix", f"{t:.2f} s", "", "", "")
        )
    if walk_forward:
        with duckdb.connect(path, read_only=True) as con:
            t0 = time.perf_counter()
            run = train_baseline(series, b, b.walk_forward.to_ms(timeframe_ms(b.timeframe)))
            t1 = time.perf_counter()
            preds = predictions_for(series, cfg.universe.symbols, b, run)
            t2 = time.perf_counter()
            from pipeline.core.backtest import long_flat_params

            bt, syms = cfg.research.backtest, cfg.universe.symbols
            bars = {
                s: readers.bars(con, cfg.exchange.id, s, b.timeframe, int(preds["ts"].min()), int(preds["ts"].max()))
                for s in syms
            }
            long_flat_backtest(
                bars,
                preds,
                bt.enter_threshold,
                long_flat_params(bt, b.label, bt.init_cash / len(syms)),
                bt.init_cash,
                timeframe_ms(b.timeframe),
            )
            t3 = time.perf_counter()
        rows.append(
            (
                "baseline walk-forward, 10 pairs",
                f"{len(run.folds)} folds, {len(run.data):,} training rows",
                f"{t3 - t0:.1f} s (train {t1 - t0:.1f}, score {t2 - t1:.1f}, backtest {t3 - t2:.1f})",
                "",
                "",
                "well under 60 s",
            )
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--no-walk-forward", action="store_true")
    args = ap.parse_args()
    rows: list = []
    bench_simulator(rows)
    bench_training(rows, not args.no_walk_forward)
    from tabulate import tabulate

    print(
        tabulate(
            rows, headers=["benchmark", "baseline / data", "project", "baseline", "ratio", "target"], tablefmt="github"
        )
    )


if __name__ == "__main__":
    main()
