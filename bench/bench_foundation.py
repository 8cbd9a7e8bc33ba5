"""Foundation benchmark (run by hand): prints a table comparing the project's code with named
baselines on the same real data in the same run.

    python bench/bench_foundation.py [--rows 10000000] [--with-run]

* resampling 1m -> 5m/15m/1h/4h/1d together: project numba kernel vs DuckDB SQL ``time_bucket``
  (baseline), on real BTC/ETH 1m candles tiled to ``--rows`` rows;
* indicator set: ``technical_features`` vs the bare TA-Lib calls for the same indicators (baseline);
* warehouse upsert (``warehouse.io.upsert``) into a fresh DuckDB file, cold and re-upsert;
* with ``--with-run``: cold and no-op ``trader run`` wall time on a temporary warehouse.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import talib

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from pipeline.core.candles import resample_ohlcv, validate_ohlcv  # noqa: E402
from pipeline.core.indicators import technical_features  # noqa: E402
from warehouse import io  # noqa: E402

DATA = Path(os.environ.get("TRADER_DATA_DIR", REPO.parent / "shared" / "data"))
TARGETS = ["5m", "15m", "1h", "4h", "1d"]


def best(fn, repeat=3):
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return min(ts)


def tiled_1m(rows: int) -> pd.DataFrame:
    parts = [
        validate_ohlcv(pd.read_csv(DATA / f"ohlcv/binance/{s}_USDT-1m.csv.gz").rename(columns={"timestamp": "ts"}), s)
        for s in ("BTC", "ETH")
    ]
    base = pd.concat(parts, ignore_index=True)
    base["ts"] = np.arange(len(base), dtype=np.int64) * 60_000
    reps = -(-rows // len(base))
    out = pd.concat([base] * reps, ignore_index=True).iloc[:rows]
    out["ts"] = np.arange(rows, dtype=np.int64) * 60_000 + 1_500_000_000_000 // 86_400_000 * 86_400_000
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--with-run", action="store_true")
    a = ap.parse_args()
    results = []

    m1 = tiled_1m(a.rows)
    resample_ohlcv(m1.iloc[:10_000], "1m", "5m")  # JIT warm-up
    t_proj = best(lambda: [resample_ohlcv(m1, "1m", tf) for tf in TARGETS])
    con = duckdb.connect()
    con.register("m1", m1)
    con.execute("CREATE TABLE t AS SELECT make_timestamp(ts * 1000) AS ot, * FROM m1")
    sql = " UNION ALL ".join(
        f"SELECT '{tf}' AS tf, time_bucket(INTERVAL '{iv}', ot) AS b, first(open ORDER BY ot) o, max(high) h, min(low) l, "
        f"last(close ORDER BY ot) c, sum(volume) v, count(*) n FROM t GROUP BY b"
        for tf, iv in zip(TARGETS, ["5 minutes", "15 minutes", "1 hour", "4 hours", "1 day"])
    )
    t_duck = best(lambda: con.execute(f"SELECT count(*) FROM ({sql})").fetchall())
    results += [
        ("resample 1m -> 5 targets", "project numba kernel", a.rows / t_proj, a.rows / t_duck, "DuckDB time_bucket")
    ]

    h1 = validate_ohlcv(
        pd.read_csv(DATA / "ohlcv/binance/BTC_USDT-1h.csv.gz").rename(columns={"timestamp": "ts"}), "btc"
    )
    big = pd.concat([h1] * 10, ignore_index=True)
    big["ts"] = np.arange(len(big), dtype=np.int64) * 3_600_000
    h, l, c, v = (big[k].to_numpy() for k in ("high", "low", "close", "volume"))

    def bare_talib():
        talib.ATR(h, l, c, 14)
        talib.RSI(c, 14)
        talib.MACD(c, 12, 26, 9)
        talib.BBANDS(c, 20, 2, 2, 0)
        talib.EMA(c, 20)
        talib.EMA(c, 50)
        talib.EMA(c, 200)
        talib.ADX(h, l, c, 14)
        lr = np.empty_like(c)
        lr[0] = np.nan
        lr[1:] = np.log(c[1:] / c[:-1])
        talib.STDDEV(lr, 24, 1)
        talib.STDDEV(v, 20, 1)
        talib.SMA(v, 20)

    t_feat, t_ta = best(lambda: technical_features(big)), best(bare_talib)
    results += [
        ("indicator set (14 columns)", "technical_features", len(big) / t_feat, len(big) / t_ta, "bare TA-Lib calls")
    ]

    with tempfile.TemporaryDirectory() as d:
        n = 2_000_000
        df = m1.iloc[:n].assign(exchange="binance", symbol="BTC/USDT", timeframe="1m")
        with io.connect(f"{d}/w.duckdb") as wc:
            t0 = time.perf_counter()
            io.upsert(wc, "raw.ohlcv", df, ["exchange", "symbol", "timeframe", "ts"])
            t_cold = time.perf_counter() - t0
            t0 = time.perf_counter()
            io.upsert(wc, "raw.ohlcv", df, ["exchange", "symbol", "timeframe", "ts"])
            t_re = time.perf_counter() - t0
        results += [
            ("warehouse upsert (2M rows)", "cold insert", n / t_cold, 500_000, "target 500k rows/s"),
            ("warehouse upsert (2M rows)", "re-upsert same keys", n / t_re, 500_000, "target 500k rows/s"),
        ]
        if a.with_run:
            env = {**os.environ, "TRADER_WAREHOUSE": f"{d}/run.duckdb", "DAGSTER_HOME": d, "TRADER_DATA_DIR": str(DATA)}
            Path(d, "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
            for label in ("trader run (cold)", "trader run (no-op)"):
                t0 = time.perf_counter()
                subprocess.run(
                    [sys.executable, "-m", "pipeline.cli", "run"], cwd=REPO, env=env, check=True, capture_output=True
                )
                results.append((label, "wall seconds", time.perf_counter() - t0, float("nan"), ""))

    print(f"\n{'benchmark':30} {'project':24} {'project rows/s':>16} {'baseline rows/s':>16} {'ratio':>7}  baseline")
    for name, what, p, b, bname in results:
        if "trader run" in name:
            print(f"{name:30} {what:24} {p:16.1f}")
            continue
        print(f"{name:30} {what:24} {p:16,.0f} {b:16,.0f} {p / b:7.2f}  {bname}")


if __name__ == "__main__":
    main()
