"""Schedules: when the named jobs of :mod:`pipeline.jobs` run (cron in ``app.timezone``, UTC by default).

Each schedule's description (the Automation page of the Dagster UI) says which job it runs, what that job does, when
(the cron in words and as written, with its time zone), whether it starts on and how to turn it on.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg
from dagster._utils.schedules import cron_string_iterator

from pipeline.config import TraderConfig
from pipeline.jobs import (
    alpha_train_job,
    db_maintenance_job,
    health_job,
    options_daily_job,
    setup_calibrate_job,
    setup_train_job,
    setup_tune_job,
)

#: what each scheduled job does, in the words of the Automation page
_WHAT = {
    setup_train_job.name: "retrains the setup meta-model (walk-forward, isotonic calibration, new MLflow version)",
    setup_calibrate_job.name: "applies the promotion gate to the latest meta-model version and promotes it if it "
    "passes",
    setup_tune_job.name: "re-tunes the gating thresholds, re-gates and re-simulates the setup signals and refreshes "
    "the backtest",
    options_daily_job.name: "ingests on-chain (files or sheet) and Fear & Greed, rebuilds the on-chain features and the "
    "options desk's daily decision and trades (no training), republishes the serving snapshot and sends the "
    "options_decision notification",
    health_job.name: "checks the age of candles, on-chain, sentiment and the signal tables against the clock now "
    "(ops/health and its checks) and sends a data_stale notification per stale input",
    alpha_train_job.name: "retrains the alpha portfolio's 6h / 24h LightGBM models (purged walk-forward, new MLflow "
    "versions), gates them on out-of-sample rank IC, promotes the passing ones to @champion and rescores",
    db_maintenance_job.name: "prunes the ops logs older than maintenance.retention_days (never a business table) and "
    "CHECKPOINTs the warehouse (seed db_checkpoint)",
}


def cron_in_words(cron: str, timezone: str) -> str:
    """``"0 1 * * 1"`` → ``"every Monday at 01:00 UTC"``; daily and hourly cadences likewise, any other cron as
    ``"on cron '<cron>' (<timezone>)"``; ``"*/15 * * * *"`` → ``"every 15 minutes (UTC)"``. The cadence is read off two consecutive ticks of Dagster's own cron
    iterator, so it means what the scheduler does."""
    start = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc).timestamp()
    ticks = cron_string_iterator(start, cron, timezone)
    a, b, c = next(ticks), next(ticks), next(ticks)
    step = b - a
    if step != c - b:
        return f"on cron '{cron}' ({timezone})"
    at = a.strftime("%H:%M")
    if step == dt.timedelta(days=7):
        return f"every {a.strftime('%A')} at {at} {timezone}"
    if step == dt.timedelta(days=1):
        return f"every day at {at} {timezone}"
    if step == dt.timedelta(hours=1):
        return f"every hour at minute {a.minute:02d} ({timezone})"
    if step < dt.timedelta(hours=1) and dt.timedelta(hours=1) % step == dt.timedelta(0):
        return f"every {step.seconds // 60} minutes ({timezone})"
    return f"on cron '{cron}' ({timezone})"


def setup_schedules(cfg: TraderConfig) -> list[dg.ScheduleDefinition]:
    """Weekly train -> calibrate -> tune schedules of ``setup_scanner.auto`` (cron read in ``app.timezone``, the
    schedules' ``execution_timezone``); RUNNING only when enabled."""
    a, tz = cfg.setup_scanner.auto, cfg.app.timezone
    status = dg.DefaultScheduleStatus.RUNNING if a.enabled else dg.DefaultScheduleStatus.STOPPED
    state = (
        "ON by default (setup_scanner.auto.enabled: true in trader.yaml)."
        if a.enabled
        else "OFF by default: set setup_scanner.auto.enabled: true in trader.yaml, or switch it on here, and keep "
        "`trader ui` (its dagster-daemon) running."
    )
    return [
        dg.ScheduleDefinition(
            name=f"{job.name.replace('_job', '')}_weekly",
            job=job,
            cron_schedule=cron,
            execution_timezone=tz,
            default_status=status,
            description=f"Runs {job.name} {cron_in_words(cron, tz)} (cron '{cron}', setup_scanner.auto.{field}): "
            f"{_WHAT[job.name]}, then republishes the serving snapshot. {state}",
        )
        for job, cron, field in (
            (setup_train_job, a.train_cron, "train_cron"),
            (setup_calibrate_job, a.calibrate_cron, "calibrate_cron"),
            (setup_tune_job, a.tune_cron, "tune_cron"),
        )
    ]


#: run configuration per schedule name: the weekly alpha retrain forces both trainings (the retrain policy only spares
#: `trader run` a retrain on every new candle)
_FORCED = {"config": {"force": True}}
_RUN_CONFIG = {"alpha_train_weekly": {"ops": {"ml__alpha_6h": _FORCED, "ml__alpha_24h": _FORCED}}}


def live_schedules(cfg: TraderConfig) -> list[dg.ScheduleDefinition]:
    """The daily options decision, the health checks and the warehouse maintenance (issue 16): RUNNING when
    ``live.enabled`` (``trader live``), like the sensors; cron in ``app.timezone``."""
    tz = cfg.app.timezone
    on = cfg.live.enabled
    state = (
        "ON (live.enabled / trader live)."
        if on
        else "OFF unless started by `trader live` (or live.enabled: true, or switched on here with the daemon running)."
    )
    lag = cfg.onchain.publication_lag_hours
    return [
        dg.ScheduleDefinition(
            name=name,
            job=job,
            cron_schedule=cron,
            execution_timezone=tz,
            default_status=dg.DefaultScheduleStatus.RUNNING if on else dg.DefaultScheduleStatus.STOPPED,
            description=f"Runs {job.name} {cron_in_words(cron, tz)} (cron '{cron}', {field}): {_WHAT[job.name]}."
            f"{extra} {state}",
            run_config=_RUN_CONFIG.get(name),
        )
        for name, job, cron, field, extra in (
            (
                "options_daily",
                options_daily_job,
                cfg.options_desk.daily_cron,
                "options_desk.daily_cron",
                f" Day D is complete at D+1 00:00 UTC + {lag:g} h (onchain.publication_lag_hours).",
            ),
            ("health", health_job, cfg.health.cron, "health.cron", ""),
            ("db_maintenance", db_maintenance_job, cfg.maintenance.cron, "maintenance.cron", ""),
            (
                "alpha_train_weekly",
                alpha_train_job,
                cfg.alpha_portfolio.train_cron,
                "alpha_portfolio.train_cron",
                " It retrains whatever the retrain policy says (run config force: true).",
            ),
        )
    ]


def schedules(cfg: TraderConfig) -> list[dg.ScheduleDefinition]:
    """Every schedule of the code location."""
    return setup_schedules(cfg) + live_schedules(cfg)
