"""The pipeline's own status for the serving snapshot (issue 17, the dashboard's health): the last run of each job and
the latest result of every asset check, read from the Dagster instance by the ``ops/serving_snapshot`` asset.

The dashboard and the API read only the published snapshot (never the Dagster instance, whose storage is another
process's), so the status they show is the one at the last publish; a run that changes no served table publishes
nothing and is not shown until the next publish.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pandas as pd

#: ``ops.run_status`` columns: one row per job, its newest run
RUN_COLUMNS = ["job_name", "run_id", "status", "start_time", "end_time"]
#: ``ops.check_status`` columns: one row per asset check, its newest completed evaluation
CHECK_COLUMNS = ["asset_key", "check_name", "passed", "severity", "run_id", "evaluated_at", "description"]


def _utc(ts: float | None) -> dt.datetime | None:
    return None if ts is None else dt.datetime.fromtimestamp(ts, dt.UTC).replace(tzinfo=None)


def last_runs(instance: dg.DagsterInstance, scan: int = 1000) -> pd.DataFrame:
    """The newest run of each job among the instance's newest ``scan`` runs: :data:`RUN_COLUMNS` by job name,
    ``status`` the Dagster run status name (``SUCCESS``, ``FAILURE``, ``STARTED``, ...), times naive UTC."""
    rows, seen = [], set()
    for r in instance.get_run_records(limit=scan):  # newest first
        name = r.dagster_run.job_name
        if name in seen:
            continue
        seen.add(name)
        rows.append(
            {
                "job_name": name,
                "run_id": r.dagster_run.run_id,
                "status": r.dagster_run.status.value,
                "start_time": _utc(r.start_time),
                "end_time": _utc(r.end_time),
            }
        )
    return pd.DataFrame(rows, columns=RUN_COLUMNS).sort_values("job_name", ignore_index=True)


def check_keys(context: dg.AssetExecutionContext) -> list[dg.AssetCheckKey]:
    """Every asset check of the code location the step runs in (of its job's asset graph when run outside one, as
    ``dg.materialize`` does)."""
    try:
        graph = context.repository_def.asset_graph
    except Exception:  # dagster's CheckError: no repository definition on the step context
        graph = context.job_def.asset_layer.asset_graph
    return list(graph.asset_check_keys)


def check_results(instance: dg.DagsterInstance, check_keys: list[dg.AssetCheckKey]) -> pd.DataFrame:
    """The newest completed evaluation of each of ``check_keys`` (checks never evaluated are left out):
    :data:`CHECK_COLUMNS`, ``severity`` ``ERROR`` / ``WARN``, ``evaluated_at`` naive UTC."""
    keys = sorted(check_keys, key=lambda k: (k.asset_key.to_user_string(), k.name))
    summaries = instance.event_log_storage.get_asset_check_summary_records(keys) if keys else {}
    rows = []
    for k in keys:
        rec = summaries[k].last_completed_check_execution_record if k in summaries else None
        ev = rec.event.asset_check_evaluation if rec is not None and rec.event is not None else None
        if ev is None:
            continue
        rows.append(
            {
                "asset_key": k.asset_key.to_user_string(),
                "check_name": k.name,
                "passed": bool(ev.passed),
                "severity": ev.severity.value,
                "run_id": rec.run_id,
                "evaluated_at": _utc(rec.create_timestamp),
                "description": ev.description,
            }
        )
    return pd.DataFrame(rows, columns=CHECK_COLUMNS)
