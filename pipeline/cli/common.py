"""What every ``trader`` command shares: the console, the Dagster instance, running a named job, printing checks,
metadata and tables, and reading the warehouse read-only.

Command modules (``main``, ``research``, ``options``, ``setups``, ``api``) import this module and never each other.
State changes go through :func:`run_job` / :func:`execute` (a job named in :mod:`pipeline.jobs`, visible in the
Dagster UI); reads go through :func:`open_readonly` / :func:`read`.
"""

from __future__ import annotations

import os
import uuid
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator

import pandas as pd
from rich.console import Console
from rich.table import Table

from pipeline.config import REPO_ROOT, settings

console = Console()
_fell_back: set[str] = set()  # writer paths whose fallback to the snapshot was already announced in this process


def instance():
    """The project's Dagster instance (``DAGSTER_HOME``, default ``<repo>/.dagster_home``)."""
    os.environ.setdefault("DAGSTER_HOME", str(REPO_ROOT / ".dagster_home"))
    Path(os.environ["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)
    import dagster as dg

    return dg.DagsterInstance.get()


def _execute_in_process(job, run_config: dict | None, tags: dict | None, inst=None):
    """One in-process run of ``job`` on the project's instance, with the resources of the configuration in force
    (identical to ``defs``' in production; lets tests point a command at a temporary warehouse).

    Before launching, runs whose process is gone are marked failed and their pool slots freed, and a slot held by a
    live run is waited for (:mod:`pipeline.recovery`); the run is tagged with this process. SIGTERM and Ctrl-C stop
    the wait and a run blocked on a slot (``KeyboardInterrupt``; the run, if started, ends FAILURE).
    """
    from pipeline import recovery
    from pipeline.definitions import build_resources

    inst = inst or instance()
    run_id = str(uuid.uuid4())  # Dagster's own run ids are uuid4 strings
    with recovery.sigterm_as_interrupt():
        recovery.wait_for_pools(inst, log=lambda m: console.print(f"[yellow]{m}[/]", highlight=False))
        with recovery.interruptible(inst, run_id) as state:
            result = job.execute_in_process(
                instance=inst,
                run_config=run_config or {},
                tags={**(tags or {}), **recovery.launch_tags()},
                resources=build_resources(settings()),
                raise_on_error=False,
                run_id=run_id,
            )
    if state["interrupted"]:
        console.print(f"[red]{job.name} interrupted while waiting for a pool slot (run {run_id[:8]} FAILED)[/]")
        raise KeyboardInterrupt
    return result


def run_job(name: str, run_config: dict | None = None, tags: dict | None = None):
    """Run the job ``name`` of :mod:`pipeline.jobs` in-process; returns its ``ExecuteInProcessResult``."""
    from pipeline.definitions import defs

    return _execute_in_process(defs.resolve_job_def(name), run_config, tags)


def execute(
    job_name: str,
    symbols: list[str] | None = None,
    timeframes: list[str] | None = None,
    full_refresh: bool = False,
    inst=None,
) -> list:
    """Run the partitioned job ``job_name`` over ``symbols × timeframes`` (default: the configured universe).

    One run per requested symbol when a subset is given (a multi-partition range is a rectangle in
    definition order); otherwise one run for the whole universe. Returns the ``ExecuteInProcessResult`` s.
    """
    from pipeline.definitions import defs
    from pipeline.partitions import full_range_tags

    job = defs.resolve_job_def(job_name)
    run_config = {}
    if full_refresh:
        ops = {"raw__ohlcv", "market__ohlcv", "features__technical", "regimes__market"}
        run_config = {
            "ops": {k: {"config": {"full_refresh": True}} for k in ops if k in {n.name for n in job.graph.node_defs}}
        }
    inst = inst or instance()
    groups = [[s] for s in symbols] if symbols else [None]
    return [_execute_in_process(job, run_config, full_range_tags(syms, timeframes), inst) for syms in groups]


def print_checks(results) -> bool:
    """Table of the asset-check evaluations of ``results``; False if an ERROR-severity check failed."""
    t = Table(title="Asset checks", show_lines=False)
    for c in ("asset", "check", "severity", "result"):
        t.add_column(c)
    ok = True
    for r in results:
        for ev in r.get_asset_check_evaluations():
            sev = ev.severity.value if hasattr(ev.severity, "value") else str(ev.severity)
            passed = ev.passed
            ok &= passed or sev != "ERROR"
            t.add_row(
                "/".join(ev.asset_key.path),
                ev.check_name,
                sev,
                "[green]passed[/]" if passed else ("[red]FAILED[/]" if sev == "ERROR" else "[yellow]warn[/]"),
            )
    console.print(t)
    return ok


def failed_checks() -> list[tuple[str, str, str, str]]:
    """``(asset, check, severity, run id[:8])`` of every asset check whose latest evaluation did not pass."""
    from pipeline.definitions import defs

    inst = instance()
    out = []
    for key in defs.resolve_asset_graph().asset_check_keys:
        rec = inst.event_log_storage.get_latest_asset_check_execution_by_key([key]).get(key)
        if rec is None:
            continue
        ev = rec.event.asset_check_evaluation if rec.event and rec.event.dagster_event else None
        if ev is not None and not ev.passed:
            out.append(("/".join(key.asset_key.path), key.name, f"{ev.severity.value}", rec.run_id[:8]))
    return out


def print_failures(result) -> None:
    """The error of every failed step of a run (the cause, not just "FAILED")."""
    for ev in result.get_step_failure_events():
        err = ev.event_specific_data.error if ev.event_specific_data else None
        msg = err.message.strip() if err is not None else "unknown error"
        console.print(f"[red]{ev.step_key} failed:[/] {msg}", highlight=False)


def asset_metadata(result, key_path: list[str]) -> dict:
    """Metadata values of the materialization of asset ``key_path`` in ``result`` ({} if it did not materialise)."""
    import dagster as dg

    for ev in result.get_asset_materialization_events():
        mat = ev.step_materialization_data.materialization
        if mat.asset_key == dg.AssetKey(key_path):
            return {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
    return {}


def print_md(title: str, text: str | None) -> None:
    """A rule titled ``title`` and the markdown ``text`` (nothing when ``text`` is empty)."""
    if text:
        from rich.markdown import Markdown

        console.rule(title)
        console.print(Markdown(text))


def fmt(v) -> str:
    """A table cell: dates without midnight, small floats with 4 decimals, large ones with thousands separators."""
    if v is None or (not isinstance(v, str) and pd.isna(v)):
        return ""
    if isinstance(v, pd.Timestamp):
        return str(v.date()) if v == v.normalize() else str(v)
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 1 else f"{v:,.2f}"
    return str(v)


def pct(v, signed: bool = False) -> str:
    """A fraction as a percentage: ``0.41`` → ``41.0 %``, ``64.68`` with ``signed`` → ``+6,468.0 %``; "" for NaN/None."""
    if v is None or pd.isna(v):
        return ""
    return f"{100 * float(v):{'+' if signed else ''},.1f} %"


def local_times(df: pd.DataFrame, tz: str) -> pd.DataFrame:
    """``df`` with its times shown in ``tz`` (``app.timezone``): every datetime column holding a time of day
    (naive = UTC, as the warehouse stores them) is converted to ``tz`` and renamed ``<name> (<tz>)``; columns of
    calendar days (every value at midnight: the daily desks' UTC days) are left as they are. ``tz == "UTC"`` returns
    ``df`` unchanged."""
    if tz == "UTC":
        return df
    out = {}
    for c in df.columns:
        s = df[c]
        if pd.api.types.is_datetime64_any_dtype(s):
            u = s.dt.tz_localize("UTC") if s.dt.tz is None else s.dt.tz_convert("UTC")
            if not (u.dropna() == u.dropna().dt.normalize()).all():
                out[f"{c} ({tz})"] = u.dt.tz_convert(tz).dt.tz_localize(None)
                continue
        out[c] = s
    return pd.DataFrame(out, index=df.index)


def table(df: pd.DataFrame, title: str) -> None:
    """Print ``df`` as a rich table (numeric and percentage columns right-aligned; times in ``app.timezone``,
    :func:`local_times`)."""
    df = local_times(df, settings().app.timezone)
    t = Table(title=title)
    for c in df.columns:
        is_pct = df[c].map(lambda v: isinstance(v, str) and (v == "" or v.endswith("%"))).all() and len(df)
        t.add_column(str(c), justify="right" if pd.api.types.is_numeric_dtype(df[c]) or is_pct else "left")
    for row in df.itertuples(index=False):
        t.add_row(*[fmt(v) for v in row])
    console.print(t)


@contextmanager
def open_readonly(path: str | None = None) -> Iterator:
    """The writer's DuckDB (``path``, default the configured warehouse) opened read-only, or the serving snapshot
    when a run holds the writer's lock (announced once per process). The snapshot's pointer is resolved once
    (:func:`warehouse.publish.resolve_snapshot`), so the connection reads one published version throughout."""
    import duckdb

    from warehouse.io import connect

    cfg = settings()
    target = path or cfg.warehouse.path
    with ExitStack() as stack:
        try:
            con = stack.enter_context(connect(target, read_only=True))
        except duckdb.IOException:
            if target not in _fell_back:
                _fell_back.add(target)
                why = "is locked by a running pipeline" if Path(target).exists() else "does not exist"
                console.print(f"[yellow]{target} {why}; reading the serving snapshot[/]")
            from warehouse.publish import resolve_snapshot

            con = stack.enter_context(connect(str(resolve_snapshot(cfg.warehouse.serving_path)), read_only=True))
        yield con


def read(sql: str, params: list | None = None) -> pd.DataFrame:
    """Query the warehouse read-only (see :func:`open_readonly`)."""
    from warehouse.io import read_df

    with open_readonly() as con:
        return read_df(con, sql, params or [])
