"""Issue 16 end to end: a real ``trader live --replay`` (dagster dev: webserver, daemon, code server) against the
replay exchange serving the real candle files, on a 2-symbol 1h configuration: the closed-candle sensor ticks, runs
of live_candle_job ingest the replayed candles through ccxt and scan them, and SIGTERM stops every process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import duckdb

from tests.conftest import SHARED
from tests.processes import descendants, running

REPO = Path(__file__).resolve().parents[2]
START_MS = 1776679200000  # 2026-04-20 10:00 UTC


def test_trader_live_replay_runs_the_sensor_and_the_live_job(tmp_path):
    cfg = tmp_path / "trader.yaml"
    cfg.write_text(f"""
universe:
  symbols: [BTC/USDT, ETH/USDT]
  timeframes: [1h, 4h, 1d]
data_dir: {SHARED}
warehouse:
  path: {tmp_path}/wh/warehouse.duckdb
mlflow:
  tracking_uri: sqlite:///{tmp_path}/mlflow/mlflow.db
  artifact_location: {tmp_path}/mlflow/artifacts
features:
  warmup_bars: 2800
setup_scanner:
  timeframes: [1h]
live:
  sensor_interval_s: 2
  close_lag_s: 1
""")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADER_", "DAGSTER_"))}
    env |= {"TRADER_CONFIG": str(cfg), "PYTHONPATH": str(REPO)}
    log = (tmp_path / "live.log").open("w")
    p = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "live", "--replay", "2026-04-20T10:00", "--speed", "3600"]
        + ["--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    home = tmp_path / "wh" / "replay" / ".dagster_home"
    started: set[int] = set()
    ok: list = []
    try:
        t0 = time.time()
        while not ok:
            assert p.poll() is None and time.time() - t0 < 300, (tmp_path / "live.log").read_text()[-3000:]
            time.sleep(3)
            started |= descendants(p.pid)
            if (home / "storage").exists():
                with dg.DagsterInstance.from_config(str(home)) as inst:
                    ok = inst.get_runs(
                        filters=dg.RunsFilter(job_name="live_candle_job", statuses=[dg.DagsterRunStatus.SUCCESS])
                    )
                    failed = inst.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE]))
                    assert not failed, (tmp_path / "live.log").read_text()[-3000:]
        tags = ok[0].tags
        assert tags["trader/timeframe"] == "1h" and tags["trader/symbols"] == "BTC/USDT,ETH/USDT"
        candle = int(tags["trader/candle_ts"])
        assert candle >= START_MS - 3_600_000 and tags["dagster/sensor_name"] == "closed_candles_1h"
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=120) == 0
        left = [q for q in started if running(q)]
        assert not left, f"still running after SIGTERM: {left}"
        out = (tmp_path / "live.log").read_text()
        assert "replay exchange http://127.0.0.1:" in out and f"Dagster UI http://127.0.0.1:{port}" in out
        with duckdb.connect(str(tmp_path / "wh" / "replay" / "warehouse.duckdb"), read_only=True) as con:
            rows = con.execute(
                "SELECT symbol, count(*), max(ts), min(locator) FROM raw.ohlcv WHERE timeframe = '1h' GROUP BY 1 ORDER BY 1"
            ).fetchall()
            assert [r[0] for r in rows] == ["BTC/USDT", "ETH/USDT"]
            assert all(r[1] >= 2800 and r[2] >= candle and r[3] == "ccxt" for r in rows)  # warm-up + replayed
            assert con.execute("SELECT count(*) FROM signals.setup_candidates").fetchone()[0] > 0
        assert not (tmp_path / "wh" / "warehouse.duckdb").exists()  # the files-built warehouse is not touched
    finally:
        for q in [q for q in started | descendants(p.pid) | {p.pid} if running(q)]:
            os.kill(q, signal.SIGKILL)
        p.wait()
        log.close()
