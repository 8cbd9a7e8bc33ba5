"""Health alerts (issue 16): ``run_failure_alert`` (a run-failure sensor: one ``run_failure`` message per failed run)
and ``closed_candle_lag`` (a closed-candle sensor's cursor more than ``health.sensor_lag_factor`` x timeframe behind
the exchange clock: one ``data_stale`` message per symbol and lag episode), listed by :func:`pipeline.sensors.sensors`.

A lag episode lasts from the first tick that finds a symbol lagging to the first tick that finds it caught up: the
sensor's cursor holds the lagging keys already alerted, so a cursor that keeps advancing while staying behind (a
replay faster than the live job, a slow machine) raises one message, not one per tick and symbol (each message is a
``notify_alert_job`` run: a flood of them used to queue ahead of the live runs and starve them).

Both build the message (pure, :mod:`pipeline.core.messages`) and request one run of ``notify_alert_job`` with it (run
key = the message's dedup key), which enqueues and delivers it in the warehouse pool: a sensor runs in the daemon and
never opens the warehouse (DuckDB admits one writing process, and a sensor evaluation must not wait for a run's lock).
"""

from __future__ import annotations

import json

import ccxt
import dagster as dg
from dagster._core.scheduler.instigation import InstigatorType

from pipeline.config import TraderConfig
from pipeline.core.health import lagging
from pipeline.core.messages import data_stale, run_failure, utc
from pipeline.core.timeframes import timeframe_ms
from pipeline.notify import NOTIFY_JOBS, alert_run_config, notify_alert_job
from resources.exchange import ExchangeSource


def _state(cfg: TraderConfig) -> str:
    return (
        "ON (live.enabled / trader live)."
        if cfg.live.enabled
        else "OFF unless started by `trader live` (or live.enabled: true, or switched on here with the daemon running)."
    )


def failure_alert(context: dg.RunFailureSensorContext, ui_url: str | None) -> dg.RunRequest | dg.SkipReason:
    """The ``run_failure`` message of the failed run in ``context`` (job, failed step, first line of its error, run id,
    time, the run's page in the Dagster UI when ``ui_url`` is set) as a run request of ``notify_alert_job``. Failures
    of the notification jobs are skipped (they could not deliver their own alert)."""
    run = context.dagster_run
    if run.job_name in {j.name for j in NOTIFY_JOBS}:
        return dg.SkipReason(f"{run.job_name} failed: a notification job does not alert about itself")
    steps = context.get_step_failure_events()
    err = steps[0].event_specific_data.error if steps and steps[0].event_specific_data else None
    if err is None and context.failure_event.event_specific_data is not None:
        err = context.failure_event.event_specific_data.error
    while err is not None and err.cause is not None:  # Dagster's step-error wrapper -> the exception raised
        err = err.cause
    head = (err.message if err else context.failure_event.message or "run failed").strip().splitlines()[0][:300]
    where = f"step {steps[0].step_key}: " if steps else ""
    rec = context.instance.get_run_record_by_id(run.run_id)
    end = rec.end_time if rec is not None and rec.end_time else None
    msg = run_failure(
        run.job_name,
        run.run_id,
        where + head,
        when="" if end is None else utc(end * 1000),
        url=f"{ui_url.rstrip('/')}/runs/{run.run_id}" if ui_url else "",
    )
    return dg.RunRequest(run_key=msg.dedup_key, run_config=alert_run_config(msg), tags={"trader/alert": "run_failure"})


def run_failure_alert(cfg: TraderConfig) -> dg.SensorDefinition:
    """The sensor ``run_failure_alert``: every failed run of the code location → one ``run_failure`` message."""

    @dg.run_failure_sensor(
        name="run_failure_alert",
        request_job=notify_alert_job,
        default_status=dg.DefaultSensorStatus.RUNNING if cfg.live.enabled else dg.DefaultSensorStatus.STOPPED,
        description="When a run of this code location fails: a run_failure notification (job, failed step, first line "
        "of the error, run id, time, a link to the run when health.ui_url is set) through notify_alert_job (run key "
        f"run_failure:<run id>: once per run). {_state(cfg)}",
    )
    def _sensor(context: dg.RunFailureSensorContext):
        return failure_alert(context, cfg.health.ui_url)

    return _sensor


def cursor_lag_alerts(
    instance: dg.DagsterInstance, timeframes: list[str], now_ms: int, factor: float
) -> list[dg.RunRequest]:
    """One ``notify_alert_job`` run request per symbol whose ``closed_candles_<tf>`` sensor (running, with a cursor)
    lags: :func:`pipeline.core.health.lagging` on the cursor stored in the instance's sensor state."""
    names = {f"closed_candles_{tf}": tf for tf in timeframes}
    out = []
    for st in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
        tf = names.get(st.instigator_name)
        data = st.instigator_data
        if tf is None or not st.is_running or data is None or not getattr(data, "cursor", None):
            continue
        step_h = timeframe_ms(tf) / 3.6e6
        for sym, close, lag_h in lagging(json.loads(data.cursor), tf, now_ms, factor):
            src = f"sensor {st.instigator_name} {sym}"
            msg = data_stale(src, utc(close), lag_h, factor * step_h)
            out.append(dg.RunRequest(run_key=msg.dedup_key, run_config=alert_run_config(msg), tags={LAG_KEY: src}))
    return out


#: run-request tag naming the lagging sensor and symbol (the lag-episode key of :func:`new_lag_episodes`)
LAG_KEY = "trader/lag_key"


def new_lag_episodes(reqs: list[dg.RunRequest], alerted: set[str]) -> tuple[list[dg.RunRequest], list[str]]:
    """``(requests of keys not alerted yet, every key lagging now)`` for :func:`cursor_lag_alerts`' requests: a key
    stays in the sensor's cursor while it lags, so it is alerted once per episode; a key that caught up leaves it."""
    now = sorted({r.tags[LAG_KEY] for r in reqs})
    return [r for r in reqs if r.tags[LAG_KEY] not in alerted], now


def closed_candle_lag_sensor(cfg: TraderConfig) -> dg.SensorDefinition:
    """The sensor ``closed_candle_lag`` (the sensor-lag alert of issue 16)."""
    tfs = list(cfg.live.timeframes or cfg.setup_scanner.timeframes)
    h = cfg.health

    @dg.sensor(
        name="closed_candle_lag",
        job=notify_alert_job,
        minimum_interval_seconds=h.sensor_lag_interval_s,
        default_status=dg.DefaultSensorStatus.RUNNING if cfg.live.enabled else dg.DefaultSensorStatus.STOPPED,
        description=f"Every {h.sensor_lag_interval_s} s (health.sensor_lag_interval_s): reads the cursors of the "
        f"closed_candles_{{{','.join(tfs)}}} sensors and sends a data_stale notification for each symbol whose newest "
        f"requested candle closed more than {h.sensor_lag_factor:g} x its timeframe before the exchange clock "
        f"(health.sensor_lag_factor; once per symbol and lag episode: not again until it has caught up). {_state(cfg)}",
    )
    def _sensor(context: dg.SensorEvaluationContext, exchange: ExchangeSource):
        try:
            now = exchange.now_ms()
        except ccxt.BaseError as e:
            return dg.SkipReason(f"exchange clock unavailable: {type(e).__name__}: {str(e)[:200]}")
        alerted = set(json.loads(context.cursor)) if context.cursor else set()
        reqs, lagging_now = new_lag_episodes(
            cursor_lag_alerts(context.instance, tfs, now, h.sensor_lag_factor), alerted
        )
        context.update_cursor(json.dumps(lagging_now))
        if reqs:
            return reqs
        if lagging_now:
            return dg.SkipReason(f"{len(lagging_now)} lagging symbol(s) already alerted in this episode")
        return dg.SkipReason(f"no closed-candle sensor lags (exchange clock {now})")

    return _sensor


def alert_sensors(cfg: TraderConfig) -> list[dg.SensorDefinition]:
    """The run-failure alert and the sensor-lag alert."""
    return [run_failure_alert(cfg), closed_candle_lag_sensor(cfg)]
