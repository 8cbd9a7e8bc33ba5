"""Schedules: when the named jobs of :mod:`pipeline.jobs` run (cron in ``app.timezone``, UTC by default)."""

from __future__ import annotations

import dagster as dg

from pipeline.config import TraderConfig
from pipeline.jobs import setup_calibrate_job, setup_train_job, setup_tune_job


def setup_schedules(cfg: TraderConfig) -> list[dg.ScheduleDefinition]:
    """Weekly train -> calibrate -> tune schedules of ``setup_scanner.auto`` (cron read in ``app.timezone``, the
    schedules' ``execution_timezone``); RUNNING only when enabled."""
    a = cfg.setup_scanner.auto
    status = dg.DefaultScheduleStatus.RUNNING if a.enabled else dg.DefaultScheduleStatus.STOPPED
    return [
        dg.ScheduleDefinition(
            name=f"{job.name.replace('_job', '')}_weekly",
            job=job,
            cron_schedule=cron,
            execution_timezone=cfg.app.timezone,
            default_status=status,
        )
        for job, cron in (
            (setup_train_job, a.train_cron),
            (setup_calibrate_job, a.calibrate_cron),
            (setup_tune_job, a.tune_cron),
        )
    ]


def schedules(cfg: TraderConfig) -> list[dg.ScheduleDefinition]:
    """Every schedule of the code location."""
    return setup_schedules(cfg)
