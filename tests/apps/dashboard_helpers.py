"""Shared by the dashboard tests: snapshots to point the app at, and the app served by ``streamlit run`` for a browser.

:func:`publish_copy` lays a copy of a snapshot out as a published version (``exports/<version>/serving.duckdb`` with
the ``current`` link), as :func:`warehouse.publish.publish_snapshot` does. :func:`add_desk_tables` adds what the
session's data-chain snapshot (``tests/conftest.py``: candles, features, regimes, on-chain, options signals, setup
candidates from the real slices) lacks: gated setup signals taken from its real candidates, backtest runs whose
stored metrics come from the one :func:`pipeline.core.metrics.metrics` on real BTC closes, model trainings and folds,
meta-model scores and a paper book, with known answers.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from pipeline.cli.main import dashboard_command
from pipeline.core.metrics import metrics
from warehouse.schema import DDL

VERSION = "v20261201T120000000000Z-1"
#: the paper book of the fixture: equity after each of its three steps
PAPER_EQUITY = [100_000.0, 100_500.0, 101_000.0]


def current(root: Path) -> Path:
    """``root/exports/current/serving.duckdb``: what ``TRADER_SERVING`` names for a copy made by :func:`publish_copy`."""
    return root / "exports" / "current" / "serving.duckdb"


def publish_copy(src: Path, root: Path, prepare=None) -> Path:
    """``src`` copied to ``root/exports/<VERSION>/serving.duckdb``, then ``prepare(that file)`` when given, and only
    then ``root/exports/current`` pointed at it (a reader never sees it half-made); returns :func:`current`."""
    folder = root / "exports" / VERSION
    folder.mkdir(parents=True)
    shutil.copyfile(src, folder / "serving.duckdb")
    got = None if prepare is None else prepare(folder / "serving.duckdb")
    os.symlink(VERSION, root / "exports" / "current")
    return got if prepare is not None else current(root)


def _curve(con, symbol: str, timeframe: str) -> pd.DataFrame:
    return con.execute(
        "SELECT ts, close FROM market.ohlcv WHERE symbol = ? AND timeframe = ? ORDER BY ts", [symbol, timeframe]
    ).df()


def _run(run_id, desk, strategy, c: pd.DataFrame, equity: np.ndarray, bench: np.ndarray, timeframe: str) -> tuple:
    ts = c["ts"].to_numpy(np.int64)
    row = {
        "run_id": run_id,
        "desk": desk,
        "strategy": strategy,
        "sample": "out_of_sample",
        "period_start": pd.to_datetime(ts[0], unit="ms"),
        "period_end": pd.to_datetime(ts[-1], unit="ms"),
        "timeframe": timeframe,
        "universe": json.dumps(["BTC/USDT"]),
        "params": json.dumps({"init_cash": 100000.0}),
        "costs": json.dumps({"fee_taker_bps": 6.0}),
        "metrics": json.dumps(metrics(ts, equity)),
        "benchmark": json.dumps(metrics(ts, bench)),
        "per_symbol": None,
        "created_at": pd.Timestamp("2026-12-01 12:00"),
    }
    eq = pd.DataFrame(
        {
            "run_id": run_id,
            "ts": ts,
            "equity": equity,
            "benchmark_equity": bench,
            "drawdown": equity / np.maximum.accumulate(equity) - 1,
        }
    )
    return row, eq


def add_desk_tables(serving: Path) -> dict:
    """Write the desk tables into the snapshot at ``serving`` (see the module docstring); returns the known answers:
    ``runs`` (stored metrics by strategy), ``setups`` (the gated signals), ``scores`` (the meta-model's scored
    candidates)."""
    with duckdb.connect(str(serving)) as con:
        for stmt in DDL:
            con.execute(stmt)
        c15, c1h = _curve(con, "BTC/USDT", "15m"), _curve(con, "BTC/USDT", "1h")
        rows, curves = [], []
        for run_id, desk, strategy, c, tf, k in (
            ("gated-1", "setup_scanner", "setup_gated", c15, "15m", 0.3),
            ("ungated-1", "setup_scanner", "setup_ungated", c15, "15m", -0.5),
            ("baseline-1", "research", "baseline_long_flat", c1h, "1h", 0.2),
        ):
            bench = 100_000.0 * c["close"].to_numpy() / c["close"].iloc[0]
            equity = 100_000.0 + k * (bench - 100_000.0)
            r, e = _run(run_id, desk, strategy, c, equity, bench, tf)
            rows.append(r)
            curves.append(e)
        con.register("r", pd.DataFrame(rows))
        con.execute("INSERT INTO backtest.runs BY NAME SELECT * FROM r")
        con.register("e", pd.concat(curves, ignore_index=True))
        con.execute("INSERT INTO backtest.equity BY NAME SELECT * FROM e")
        # gated signals: the three newest valid BTC 15m candidates, as the gate would have passed them
        con.execute(
            """CREATE OR REPLACE TABLE signals.setups AS
               SELECT * EXCLUDE (status, win, net_pct, exit_ts, tp1_hit), 0.4 AS p_win, 0.05 AS ev_pct, 0.0 AS threshold,
                      'global' AS threshold_source, true AS passed, 'EV % 0.05 >= 0.0 (global)' AS why,
                      ['TP', 'SL', 'OPEN'][row_number() OVER (ORDER BY ts DESC)] AS status, NULL::VARCHAR AS status_reason,
                      1.5 AS net_pct
               FROM signals.setup_candidates WHERE symbol = 'BTC/USDT' AND timeframe = '15m' AND reject_reason IS NULL
               ORDER BY ts DESC LIMIT 3"""
        )
        scores = con.execute(
            """SELECT candidate_id, symbol, timeframe, ts, exit_ts, win, net_pct FROM signals.setup_candidates
               WHERE win IS NOT NULL ORDER BY ts, candidate_id"""
        ).df()
        rng = np.random.default_rng(17)
        scores = scores.assign(
            model_name="setup_meta",
            model_version="1",
            mlflow_run_id="meta-1",
            fold=1,
            p_cal=np.clip(0.15 + 0.25 * scores["win"] + rng.normal(0, 0.1, len(scores)), 0.01, 0.99),
        ).assign(p_raw=lambda d: d["p_cal"])
        con.register("s", scores)
        con.execute("INSERT INTO ml.setup_meta_scores BY NAME SELECT * FROM s")
        oos = {"n": 1000.0, "base_rate": 0.4, "brier": 0.23, "brier_base": 0.24, "auc": 0.55, "ece": 0.02}
        runs = pd.DataFrame(
            [
                (rid, name, v, pd.Timestamp(t), promoted)
                for rid, name, v, t, promoted in (
                    ("base-v1", "baseline_direction", "1", "2026-11-01", True),
                    ("base-v2", "baseline_direction", "2", "2026-11-20", False),
                    ("meta-1", "setup_meta", "1", "2026-11-02", True),
                )
            ],
            columns=["mlflow_run_id", "model_name", "model_version", "trained_at", "promoted"],
        ).assign(
            metrics=json.dumps({"raw": oos, "cal": oos}),
            promotion_passed=lambda d: d["promoted"],
            promotion_reasons=json.dumps(["PASS auc 0.55 >= 0.51"]),
            n_rows=5000,
            n_folds=3,
        )
        con.register("m", runs)
        con.execute("INSERT INTO ml.model_runs BY NAME SELECT * FROM m")
        folds = pd.DataFrame(
            {"model_name": "baseline_direction", "mlflow_run_id": "base-v1", "fold": [0, 1, 2]}
        ).assign(auc_cal=[0.51, 0.53, 0.55], brier_cal=0.23, ece_cal=0.01, base_rate_cal=0.4, n_test=1000)
        con.register("f", folds)
        con.execute("INSERT INTO ml.folds BY NAME SELECT * FROM f")
        last = int(c15["ts"].iloc[-1])
        con.execute(
            "INSERT INTO paper.state (desk, version, start_ts, last_ts, bars, created_at) "
            "VALUES ('setup_scanner', 1, ?, ?, 3, TIMESTAMP '2026-12-01 12:00')",
            [last - 2 * 900_000, last],
        )
        for i, eq in enumerate(PAPER_EQUITY):
            con.execute(
                "INSERT INTO paper.equity (desk, version, ts, equity, cash, position_value, gross_exposure, "
                "n_positions, engine_state) VALUES ('setup_scanner', 1, ?, ?, ?, 0, 0.1, 1, 'running')",
                [last - (2 - i) * 900_000, eq, eq],
            )
        con.execute(
            "INSERT INTO paper.positions (desk, version, signal_id, asset, symbol, timeframe, entry_ts, direction, "
            "entry_price, units) VALUES ('setup_scanner', 1, 's1', 'BTC/USDT|15m', 'BTC/USDT', '15m', ?, 1, 28000, 0.1)",
            [last],
        )
        setups = con.execute("SELECT * FROM signals.setups ORDER BY ts DESC").df()
        stored = {r["strategy"]: json.loads(r["metrics"]) | {"_benchmark": json.loads(r["benchmark"])} for r in rows}
    return {"runs": stored, "setups": setups, "scores": scores}


# --------------------------------------------------------------------------- the app in a real server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(serving: Path, port: int, timeout: float = 60.0) -> subprocess.Popen:
    """``trader dashboard``'s command line (:func:`pipeline.cli.main.dashboard_command`) on ``serving`` in its own
    process group; returns once ``/_stcore/health`` answers ``ok`` (raises ``TimeoutError`` otherwise)."""
    env = {**os.environ, "TRADER_SERVING": str(serving), "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen(
        dashboard_command(port, "127.0.0.1"),
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited {proc.returncode}: {proc.stderr.read().decode()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                if r.read().decode().strip() == "ok":
                    return proc
        except OSError:
            pass
        time.sleep(0.2)
    stop_app(proc)
    raise TimeoutError(f"the dashboard did not answer /_stcore/health within {timeout:g} s")


def stop_app(proc: subprocess.Popen) -> None:
    """SIGTERM to the app's process group, SIGKILL after 5 s."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(5)
            break
        except subprocess.TimeoutExpired:
            continue
