"""The closed-candle sensors (issue 16): which candles are due (hand-computed), and a real sensor tick through ccxt
against the replay exchange on 127.0.0.1 serving the real candle files: one run request per newly closed candle,
idempotent run keys, the settle lag, the cursor, and an exchange error on one symbol that does not stop the others."""

from __future__ import annotations

import json

import dagster as dg
import pytest

from pipeline.config import TraderConfig, settings
from pipeline.core.live import due_candles
from pipeline.definitions import ALL_ASSETS, build_resources
from pipeline.jobs import live_candle_job
from pipeline.sensors import closed_candle_sensor
from resources.exchange import ExchangeSource
from resources.replay_exchange import ReplayData, start_replay
from tests.conftest import SHARED

M15 = 15 * 60_000
T1030 = 1776681000000  # 2026-04-20 10:30 UTC


def test_due_candles_by_hand():
    t = [T1030 - 2 * M15, T1030 - M15, T1030]  # 10:00, 10:15 and the forming 10:30
    assert due_candles(t, None, M15, T1030, 5_000) == [T1030 - 2 * M15]  # 10:15 closed 0 s ago < 5 s lag
    assert due_candles(t, None, M15, T1030 + 5_000, 5_000) == [T1030 - M15]  # no cursor: the newest due only
    assert due_candles(t, T1030 - 3 * M15, M15, T1030 + 5_000, 5_000) == [T1030 - 2 * M15, T1030 - M15]
    assert due_candles(t[::-1] + t, T1030 - M15, M15, T1030 + 5_000, 5_000) == []  # nothing new; order, duplicates
    assert due_candles([], None, M15, T1030, 0) == []


class Wall:
    def __init__(self):
        self.t = 1_000.0

    def __call__(self):
        return self.t


@pytest.fixture(scope="module")
def replay():
    wall = Wall()
    h = start_replay(ReplayData(SHARED), "2026-04-20T10:30", 600.0, wall=wall)  # 1 wall second = 10 minutes
    h.wall = wall
    yield h
    h.stop()


def test_sensor_requests_one_run_per_closed_candle_through_ccxt(replay):
    cfg = TraderConfig.model_validate(
        {"live": {"symbols": ["BTC/USDT", "ETH/USDT", "FOO/USDT"], "close_lag_s": 5, "sensor_interval_s": 10}}
    )
    sensor = closed_candle_sensor("15m", cfg)
    src = ExchangeSource(api_base_url=replay.base_url, rate_limit_ms=1, retry_wait_s=0.01, max_retries=0)
    repo = dg.Definitions(
        assets=ALL_ASSETS, jobs=[live_candle_job], sensors=[sensor], resources=build_resources(settings())
    ).get_repository_def()
    instance = dg.DagsterInstance.ephemeral()

    def tick(cursor):
        with dg.build_sensor_context(
            cursor=cursor, resources={"exchange": src}, repository_def=repo, instance=instance
        ) as ctx:
            return sensor.evaluate_tick(ctx)

    both = "BTC/USDT,ETH/USDT"  # FOO/USDT is not a market: logged, skipped, never in the cursor
    r1 = tick(None)  # 10:30:00: the 10:15 candle closed 0 s ago (lag 5 s) -> the 10:00 candle
    assert [r.run_key for r in r1.run_requests] == [f"15m:{T1030 - 2 * M15}:{both}"]
    tags = r1.run_requests[0].tags
    assert tags["dagster/asset_partition_range_start"] == "BTC-USDT|15m"
    assert tags["dagster/asset_partition_range_end"] == "ETH-USDT|15m"
    assert tags["trader/timeframe"] == "15m" and tags["trader/symbols"] == both
    assert tags["dagster/priority"] == "10"  # launched before waiting alert / maintenance runs
    # a partition-range run gets only the job's config defaults: the live run config goes with the request
    ops = r1.run_requests[0].run_config["ops"]
    assert ops["signals__setup_candidates"]["config"]["incremental"] and ops["signals__setups"]["config"]["incremental"]
    assert json.loads(r1.cursor) == {"BTC/USDT": T1030 - 2 * M15, "ETH/USDT": T1030 - 2 * M15}
    assert tick(r1.cursor).skip_message  # the clock has not moved: nothing new
    replay.wall.t += 0.01  # +6 simulated seconds: 10:15 is settled
    r2 = tick(r1.cursor)
    assert [r.run_key for r in r2.run_requests] == [f"15m:{T1030 - M15}:{both}"]
    assert tick(r2.cursor).run_requests == []  # a repeated tick asks for nothing twice
    # while a live 15m run is in progress nothing is requested and the cursor stays: the candles coalesce
    instance.add_run(
        dg.DagsterRun(job_name="live_candle_job", run_id="a" * 36, status=dg.DagsterRunStatus.STARTED, tags=tags)
    )
    replay.wall.t += 3.0  # +30 simulated minutes: 10:30 and 10:45 closed
    busy = tick(r2.cursor)
    assert busy.run_requests == [] and "still in progress" in busy.skip_message
    instance.report_run_failed(instance.get_run_by_id("a" * 36))
    r3 = tick(r2.cursor)  # one run for the newest candle covers both
    assert [r.run_key for r in r3.run_requests] == [f"15m:{T1030 + M15}:{both}"]
    assert json.loads(r3.cursor) == {"BTC/USDT": T1030 + M15, "ETH/USDT": T1030 + M15}
