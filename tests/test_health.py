"""Schedules and health (issue 16): the options_daily / health / db_maintenance schedules and the run-failure and
sensor-lag sensors exist with their descriptions and default status; a failed run gives exactly one run_failure
message; a stale input gives one data_stale message per episode; the closed-candle sensor's stored cursor drives the
lag alert; the maintenance job keeps every business row; the daily options decision is enqueued once per day."""

from __future__ import annotations

import datetime as dt
import json
import time

import dagster as dg
import duckdb
import pandas as pd

from pipeline.alerts import cursor_lag_alerts, run_failure_alert
from pipeline.config import settings
from pipeline.core.health import episodes, judge, lagging
from pipeline.maintenance import db_maintenance_job, delete_old_runs
from pipeline.notify import notify_alert_job
from pipeline.schedules import live_schedules
from pipeline.sensors import sensors
from resources.exchange import ExchangeSource
from resources.notifier import MemoryNotifier
from resources.warehouse import WarehouseResource
from warehouse import io

H = 3_600_000
M15 = 15 * 60_000


def _wh(tmp_path) -> WarehouseResource:
    return WarehouseResource(
        path=str(tmp_path / "wh.duckdb"), serving_path=str(tmp_path / "serving.duckdb"), exports_dir=str(tmp_path / "x")
    )


def _rows(wh: WarehouseResource, sql: str) -> list:
    with duckdb.connect(wh.path, read_only=True) as con:
        return con.execute(sql).fetchall()


def test_schedules_and_sensors_defaults():
    off = settings().model_copy(deep=True)
    off.live.enabled = False
    on = off.model_copy(deep=True)
    on.live.enabled = True
    sched = {s.name: s for s in live_schedules(off)}
    assert {n: (s.job_name, s.cron_schedule) for n, s in sched.items()} == {
        "options_daily": ("options_daily_job", "0 2 * * *"),
        "health": ("health_job", "*/15 * * * *"),
        "db_maintenance": ("db_maintenance_job", "30 0 * * *"),
        "alpha_train_weekly": ("alpha_train_job", "0 4 * * 0"),  # issue 18: the alpha models' weekly retrain
    }
    assert all(s.default_status == dg.DefaultScheduleStatus.STOPPED for s in sched.values())
    assert all(s.default_status == dg.DefaultScheduleStatus.RUNNING for s in live_schedules(on))
    assert "every day at 02:00 UTC" in sched["options_daily"].description
    assert "onchain.publication_lag_hours" in sched["options_daily"].description
    assert "every 15 minutes (UTC)" in sched["health"].description
    assert "CHECKPOINT" in sched["db_maintenance"].description and "OFF unless" in sched["db_maintenance"].description
    sens = {s.name: s for s in sensors(off)}
    assert {"run_failure_alert", "closed_candle_lag"} <= set(sens)
    assert all(s.default_status == dg.DefaultSensorStatus.STOPPED for s in sens.values())
    assert {s.name: s.default_status for s in sensors(on)}["run_failure_alert"] == dg.DefaultSensorStatus.RUNNING
    assert "2 x its timeframe" in sens["closed_candle_lag"].description


@dg.op
def boom():
    raise ValueError("kaboom: the exchange said no\nsecond line of the traceback")


@dg.job
def tiny_job():
    boom()


def test_run_failure_sensor_enqueues_exactly_one_message(tmp_path):
    instance = dg.DagsterInstance.ephemeral()
    failed = tiny_job.execute_in_process(instance=instance, raise_on_error=False)
    assert not failed.success
    cfg = settings().model_copy(deep=True)
    cfg.health.ui_url = "http://127.0.0.1:3000/"
    sensor = run_failure_alert(cfg)
    wh, notifier = _wh(tmp_path), MemoryNotifier(chat_id="42")
    keys = set()
    for _ in range(2):  # a second evaluation of the same failure (a restarted daemon) changes nothing
        ctx = dg.build_run_status_sensor_context(
            sensor_name="run_failure_alert",
            dagster_instance=instance,
            dagster_run=failed.dagster_run,
            dagster_event=failed.get_run_failure_event(),
        ).for_run_failure()
        req = sensor(ctx)
        assert isinstance(req, dg.RunRequest)
        keys.add(req.run_key)
        r = notify_alert_job.execute_in_process(
            run_config=req.run_config, resources={"warehouse": wh, "notifier": notifier}, instance=instance
        )
        assert r.success
    run_id = failed.dagster_run.run_id
    assert keys == {f"run_failure:{run_id}"}
    rows = _rows(wh, "SELECT kind, status, plain_text FROM ops.notifications")
    assert [(k, s) for k, s, _ in rows] == [("run_failure", "sent")]
    assert _rows(wh, "SELECT count(*) FROM ops.notification_attempts") == [(1,)]  # one request made
    text = rows[0][2]
    for part in ("Run failed: tiny_job", run_id, "step boom: ValueError: kaboom: the exchange said no"):
        assert part in text
    assert "second line" not in text and f"http://127.0.0.1:3000/runs/{run_id}" in text
    # a notification job's own failure is not alerted (it could not deliver it)
    assert isinstance(
        sensor(
            dg.build_run_status_sensor_context(
                sensor_name="run_failure_alert",
                dagster_instance=instance,
                dagster_run=failed.dagster_run._replace(job_name="notify_alert_job"),
                dagster_event=failed.get_run_failure_event(),
            ).for_run_failure()
        ),
        dg.SkipReason,
    )


def test_judge_by_hand():
    now = 1_776_681_000_000  # 2026-04-20 10:30 UTC
    fresh = {
        "candles": {
            "series": [
                {"exchange": "binance", "symbol": "BTC/USDT", "timeframe": "15m", "last_ts": now - 4 * M15},
                {"exchange": "binance", "symbol": "ETH/USDT", "timeframe": "15m", "last_ts": now - 5 * M15},
                {"exchange": "binance", "symbol": "ADA/USDT", "timeframe": "15m", "last_ts": now - 6 * M15},
                {"exchange": "binance", "symbol": "BTC/USDT", "timeframe": "1d", "last_ts": now - 90 * 24 * H},
            ]
        },
        "onchain": {"last_date": dt.date(2026, 4, 18)},  # ends 04-19 00:00: 34.5 h
        "sentiment": {"last_date": dt.date(2026, 4, 19)},  # ends 04-20 00:00: 10.5 h
        "signals": {"last_date": None},
    }
    got = judge(
        fresh,
        now,
        candle_timeframes=["15m"],
        max_candle_lag_bars=3,
        max_onchain_age_hours=30,
        max_sentiment_age_hours=48,
        max_signal_age_hours=48,
        scan_ran_ms=now - 3 * H,
        max_scan_age_hours=2,
    )
    # BTC's newest 15m candle closed 3 bars ago (= the bound, fresh), ETH's 4 bars ago; 1d is not judged
    assert [(r.source, r.age_hours, r.stale) for r in got] == [
        ("candles BTC/USDT 15m", 0.75, False),
        ("candles ETH/USDT 15m", 1.0, True),
        ("candles ADA/USDT 15m", 1.25, True),
        ("onchain", 34.5, True),
        ("sentiment", 10.5, False),
        ("options signals", None, True),
        ("setup scan", 3.0, True),
    ]
    # the alerts: one per candle timeframe (the stalest series: ADA), then the other stale inputs
    assert [(r.source, r.age_hours) for r in episodes(got)] == [
        ("candles 15m", 1.25),
        ("onchain", 34.5),
        ("options signals", None),
        ("setup scan", 3.0),
    ]


def _small_warehouse(wh: WarehouseResource, now_ms: int) -> None:
    """Candles (a stale 15m, a fresh 1h series), on-chain day, sentiment, one options signal day, a setup scan."""
    day = pd.Timestamp(now_ms, unit="ms").normalize()
    with io.connect(wh.path) as con:
        for tf, ts in (("15m", (now_ms // M15) * M15 - 9 * M15), ("1h", (now_ms // H) * H - H)):
            con.execute(
                "INSERT INTO market.ohlcv (exchange, symbol, timeframe, ts, open, high, low, close, volume) "
                "VALUES ('binance', 'BTC/USDT', ?, ?, 1, 1, 1, 1, 1)",
                [tf, ts],
            )
        con.execute(
            "INSERT INTO market.sentiment_daily (date, available_at, fng_value) VALUES (?, ?, 50)",
            [day - pd.Timedelta(days=10), day],
        )
        io.replace_table(
            con, "market.onchain_daily", pd.DataFrame({"date": [day - pd.Timedelta(days=1)], "price_usd": [1.0]})
        )
        io.replace_table(
            con, "signals.options_daily", pd.DataFrame({"date": [day - pd.Timedelta(days=1)], "state": ["NEUTRAL"]})
        )
        io.record_inputs(con, "signals.setups", "fp")


def test_stale_input_enqueues_data_stale_once_per_episode(tmp_path):
    from assets.health import health_report

    wh, notifier = _wh(tmp_path), MemoryNotifier(chat_id="42")
    _small_warehouse(wh, int(time.time() * 1000))
    instance = dg.DagsterInstance.ephemeral()
    for _ in range(2):
        r = dg.materialize(
            [health_report],
            resources={"warehouse": wh, "notifier": notifier, "exchange": settings_exchange()},
            instance=instance,
        )
        assert r.success
    checks = {c.check_name: c.passed for c in r.get_asset_check_evaluations()}
    assert checks == {
        "candles_fresh": False,  # the 15m series is 8 bars behind (the bound: 3); the 1h one is fresh
        "onchain_fresh": True,
        "sentiment_fresh": False,  # 9 days old
        "options_signals_fresh": True,
        "setup_scan_fresh": True,
    }
    rows = _rows(wh, "SELECT kind, payload->>'$.source' FROM ops.notifications ORDER BY 2")
    assert rows == [("data_stale", "candles 15m"), ("data_stale", "sentiment")]  # the 2nd run added none
    assert _rows(wh, "SELECT count(*) FROM ops.notification_attempts") == [(2,)]


def settings_exchange():
    from pipeline.definitions import build_resources

    return build_resources(settings())["exchange"]


def test_sensor_lag_from_the_stored_cursor():
    now = 1_776_681_000_000  # 10:30
    # BTC's newest requested 15m candle opened 09:45 (closed 10:00: 30 min = 2 bars, not more); ETH's 09:30 (45 min)
    cursor = {"BTC/USDT": now - 3 * M15, "ETH/USDT": now - 4 * M15}
    assert lagging(cursor, "15m", now, 2.0) == [("ETH/USDT", now - 3 * M15, 0.75)]
    with dg.instance_for_test() as instance:  # sensor state needs schedule storage (not in the ephemeral instance)
        _lag_alerts(instance, cursor, now)
        _one_alert_per_lag_episode(instance, cursor, now)


class _ClockOnly(ExchangeSource):
    now: int = 0

    def now_ms(self) -> int:
        return self.now


def _one_alert_per_lag_episode(instance, cursor, now):
    """A cursor that advances but stays behind (a fast replay) is alerted once, not once per tick: every alert is a
    notify_alert_job run, and at --speed 600 a flood of them queued ahead of the live runs (issue 16, speed)."""
    sensor = next(s for s in sensors(settings()) if s.name == "closed_candle_lag")
    ctx = dg.build_sensor_context(instance=instance, cursor=None, resources={"exchange": _ClockOnly(now=now)})
    first = list(sensor(ctx))
    assert [r.tags["trader/lag_key"] for r in first] == ["sensor closed_candles_15m ETH/USDT"]
    _set_cursor(instance, {**cursor, "ETH/USDT": now})  # 4 bars later ETH has advanced but lags again
    ctx = dg.build_sensor_context(
        instance=instance, cursor=ctx.cursor, resources={"exchange": _ClockOnly(now=now + 4 * M15)}
    )
    again = list(sensor(ctx))  # both lag now: BTC is a new episode, ETH is not
    assert [r.tags["trader/lag_key"] for r in again] == ["sensor closed_candles_15m BTC/USDT"]
    assert json.loads(ctx.cursor) == ["sensor closed_candles_15m BTC/USDT", "sensor closed_candles_15m ETH/USDT"]
    _set_cursor(instance, {**cursor, "ETH/USDT": now + 3 * M15})  # ETH caught up: its episode ends
    ctx = dg.build_sensor_context(
        instance=instance, cursor=ctx.cursor, resources={"exchange": _ClockOnly(now=now + 4 * M15)}
    )
    left = sensor(ctx)
    assert isinstance(left, dg.SkipReason) and "already alerted" in left.skip_message
    assert json.loads(ctx.cursor) == ["sensor closed_candles_15m BTC/USDT"]


def _set_cursor(instance, cursor: dict) -> None:
    from dagster._core.scheduler.instigation import InstigatorType, SensorInstigatorData

    for st in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
        if st.instigator_name == "closed_candles_15m":
            instance.update_instigator_state(st.with_data(SensorInstigatorData(cursor=json.dumps(cursor))))


def _lag_alerts(instance, cursor, now):
    from dagster._core.remote_origin import RemoteInstigatorOrigin
    from dagster._core.scheduler.instigation import (
        InstigatorState,
        InstigatorStatus,
        InstigatorType,
        SensorInstigatorData,
    )

    from pipeline.launch import workspace_origins

    assert cursor_lag_alerts(instance, ["15m"], now, 2.0) == []  # no state stored yet
    remote, _ = workspace_origins("live_candle_job")
    for name, status in (
        ("closed_candles_15m", InstigatorStatus.RUNNING),
        ("closed_candles_1h", InstigatorStatus.STOPPED),
    ):
        instance.add_instigator_state(
            InstigatorState(
                RemoteInstigatorOrigin(remote.repository_origin, name),
                InstigatorType.SENSOR,
                status,
                SensorInstigatorData(cursor=json.dumps(cursor)),
            )
        )
    reqs = cursor_lag_alerts(instance, ["15m", "1h"], now, 2.0)  # the stopped 1h sensor is not judged
    assert reqs[0].tags == {"trader/lag_key": "sensor closed_candles_15m ETH/USDT"}
    assert [r.run_key for r in reqs] == ["data_stale:sensor closed_candles_15m ETH/USDT:2026-04-20 09:45 UTC"]
    cfg = reqs[0].run_config["ops"]["enqueue_alert"]["config"]
    assert cfg["kind"] == "data_stale" and "0.8 h (limit 0.5 h)" in cfg["plain"]


def test_maintenance_keeps_every_business_row(tmp_path):
    wh = _wh(tmp_path)
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    old, recent = now - dt.timedelta(days=40), now - dt.timedelta(days=1)
    _small_warehouse(wh, int(time.time() * 1000))
    with io.connect(wh.path) as con:
        for key, status in (("a", "sent"), ("b", "pending"), ("c", "off")):
            con.execute(
                "INSERT INTO ops.notifications (dedup_key, kind, mode, status, created_at) VALUES (?, 'test', 'on', ?, ?)",
                [key, status, old],
            )
        for i, (key, at) in enumerate((("a", old), ("a", recent), ("b", old), ("c", old))):
            con.execute(
                "INSERT INTO ops.notification_attempts (attempt_id, dedup_key, started_at) VALUES (?, ?, ?)",
                [str(i), key, at],
            )
        for at in (old - dt.timedelta(days=1), old):  # both older than 30 days: the newest is kept
            con.execute("INSERT INTO ops.publish_log VALUES (?, 'fp', 1, 'v')", [at])
        before = {t: n for t, n in _counts(con).items()}
    instance = dg.DagsterInstance.ephemeral()
    r = db_maintenance_job.execute_in_process(resources={"warehouse": wh}, instance=instance)
    assert r.success
    out = r.output_for_node("maintain_warehouse")
    with io.connect(wh.path, read_only=True) as con:
        after = _counts(con)
        attempts = sorted(x for (x,) in con.execute("SELECT attempt_id FROM ops.notification_attempts").fetchall())
    pruned = {"ops.notification_attempts", "ops.publish_log"}
    assert {t: n for t, n in after.items() if t not in pruned} == {t: n for t, n in before.items() if t not in pruned}
    assert before["market.ohlcv"] == 2 and before["ops.notifications"] == 3  # business rows and the outbox stay
    assert attempts == ["1", "2"]  # old attempts of finished messages (a, c) pruned; recent and pending kept
    assert after["ops.publish_log"] == 1
    assert out["deleted ops.notification_attempts"] == 2 and out["deleted ops.publish_log"] == 1
    # Dagster runs: the ops-only jobs' finished runs go, any other job's stay
    tiny_job.execute_in_process(instance=instance, raise_on_error=False)
    assert delete_old_runs(instance, dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)) == 1
    assert [x.job_name for x in instance.get_runs()] == ["tiny_job"]


def _counts(con) -> dict[str, int]:
    from warehouse.maintenance import row_counts

    return row_counts(con)


def test_options_notice_once_per_day(resources, onchain_inputs):
    """The daily decision on the real on-chain data: one options_decision message per decided day, in the layout of
    `trader options score-latest`, however often the job runs."""
    from assets.keys import OPTIONS_DAILY, OPTIONS_NOTICE, OPTIONS_TRADES
    from pipeline.core.onchain_signals import onchain_features
    from pipeline.definitions import ALL_ASSETS

    daily, fng = onchain_inputs
    f = onchain_features(daily, fng)
    f["available_at"] = f["date"] + pd.Timedelta(days=1)
    wh = resources["warehouse"]
    with io.connect(wh.path) as con:
        io.replace_table(con, "market.onchain_daily", daily, date_columns=("date",))
        io.replace_table(con, "features.onchain", f, date_columns=("date",))
    sel = dg.AssetSelection.keys(OPTIONS_DAILY, OPTIONS_TRADES, OPTIONS_NOTICE)
    instance = dg.DagsterInstance.ephemeral()
    for _ in range(2):
        r = dg.materialize(
            ALL_ASSETS,
            selection=sel,
            resources={**resources, "notifier": MemoryNotifier(chat_id="42")},
            instance=instance,
        )
        assert r.success
    last = str(f["date"].max().date())
    rows = _rows(wh, "SELECT dedup_key, kind, status, plain_text FROM ops.notifications")
    assert [(k, kind, s) for k, kind, s, _ in rows] == [(f"options_decision:{last}", "options_decision", "sent")]
    text = rows[0][3]
    assert f"SIGNAL ANALYSIS: {last}" in text and "--- FUSION STATE ---" in text and "TRADE DECISIONS" in text
    assert _rows(wh, "SELECT count(*) FROM ops.notification_attempts") == [(1,)]
