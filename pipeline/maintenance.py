"""The daily maintenance job (seed 002 ``db_checkpoint``; issue 16): ``db_maintenance_job`` prunes the operational
logs of the warehouse older than ``maintenance.retention_days`` (:mod:`warehouse.maintenance`: never a business
table), deletes the finished Dagster runs of the ops-only jobs older than that, then ``CHECKPOINT`` s the warehouse.
Its metadata lists what it did and every table's row count before and after.

Runs of jobs that materialise assets are never deleted: their events are the assets' materialisation history (the
UI's "last materialized", partition status). No ``from __future__ import annotations``: Dagster reads the op's
annotations at definition.
"""

import datetime as dt
import time

import dagster as dg
import pandas as pd

from assets.common import POOL, md_table
from pipeline.config import settings
from resources.warehouse import WarehouseResource
from warehouse.maintenance import checkpoint, prune, row_counts

#: jobs whose runs write no asset (only ops logs / notifications): their old runs may be deleted
OPS_ONLY_JOBS = ("notify_deliver_job", "notify_test_job", "notify_alert_job", "db_maintenance_job", "health_job")


def delete_old_runs(instance: dg.DagsterInstance, cutoff: dt.datetime, jobs=OPS_ONLY_JOBS) -> int:
    """Delete the finished runs (success / failure / canceled) of ``jobs`` created before ``cutoff`` (aware UTC);
    returns how many."""
    done = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]
    runs = instance.get_runs(filters=dg.RunsFilter(job_name=None, statuses=done, created_before=cutoff))
    n = 0
    for r in runs:
        if r.job_name in jobs:
            instance.delete_run(r.run_id)
            n += 1
    return n


@dg.op(
    pool=POOL,
    description="Prune the ops logs beyond maintenance.retention_days, delete old runs of the ops-only jobs, "
    "CHECKPOINT the warehouse; row counts before and after.",
)
def maintain_warehouse(context: dg.OpExecutionContext, warehouse: WarehouseResource) -> dict:
    days = settings().maintenance.retention_days
    now = dt.datetime.now(dt.timezone.utc)
    cutoff = now - dt.timedelta(days=days)
    t0 = time.perf_counter()
    with warehouse.connect() as con:
        before = row_counts(con)
        deleted = prune(con, cutoff.replace(tzinfo=None))
        checkpoint(con)
        after = row_counts(con)
    runs = delete_old_runs(context.instance, cutoff)
    counts = pd.DataFrame(
        [
            {"table": t, "before": before.get(t, 0), "after": n, "deleted": before.get(t, 0) - n}
            for t, n in after.items()
        ]
    )
    summary = {
        "retention_days": days,
        "cutoff_utc": cutoff.isoformat(timespec="seconds"),
        **{f"deleted {t}": n for t, n in deleted.items()},
        "deleted_dagster_runs": runs,
        "checkpoint": "done",
        "seconds": round(time.perf_counter() - t0, 3),
    }
    context.add_output_metadata({**summary, "row_counts": md_table(counts, 200)})
    return {**summary, "before": before, "after": after}


@dg.job(description="Daily warehouse maintenance (seed db_checkpoint): ops-log retention, CHECKPOINT.")
def db_maintenance_job():
    maintain_warehouse()
