"""What every ``trader`` command shares: the console, the Dagster instance, running a named job, printing checks,
metadata and tables, and reading the warehouse read-only.

Command modules (``main``, ``research``, ``options``, ``setups``, ``api``) import this module and never each other.
State changes go through :func:`run_job` / :func:`execute` (a job named in :mod:`pipeline.jobs`, visible in the
Dagster UI); reads go through :func:`open_readonly` / :func:`read`.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import uuid
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator

import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from pipeline.config import REPO_ROOT, settings

#: width of the output when stdout is not a terminal (a pipe, a file, a CI log) and ``COLUMNS`` is not set: rich
#: would otherwise cut every table at 80 columns
PIPE_WIDTH = 250


def _console() -> Console:
    piped = not sys.stdout.isatty() and not os.environ.get("COLUMNS", "").isdigit()
    return Console(width=PIPE_WIDTH if piped else None)


console = _console()
_fell_back: set[str] = set()  # writer paths whose fallback to the snapshot was already announced in this process


def instance():
    """The project's Dagster instance (``DAGSTER_HOME``, default ``<repo>/.dagster_home``)."""
    os.environ.setdefault("DAGSTER_HOME", str(REPO_ROOT / ".dagster_home"))
    Path(os.environ["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)
    import dagster as dg

    return dg.DagsterInstance.get()


def _execute_in_process(job, run_config: dict | None, tags: dict | None, inst=None, progress: bool = False):
    """One in-process run of ``job`` on the project's instance, with the resources of the configuration in force
    (identical to ``defs``' in production; lets tests point a command at a temporary warehouse).

    Before launching, runs whose process is gone are marked failed and their pool slots freed, and a slot held by a
    live run is waited for (:mod:`pipeline.recovery`); the run is tagged with this process. SIGTERM and Ctrl-C stop
    the wait and a run blocked on a slot (``KeyboardInterrupt``; the run, if started, ends FAILURE).

    The run belongs to the job of the code location of ``workspace.yaml`` (:mod:`pipeline.launch`), so it shows in
    the Dagster UI's job page, Overview timeline and asset views like a run launched there. Every event is appended
    to :func:`run_log_path` as it happens; with ``progress`` a :class:`RunProgress` display follows the steps.
    """
    from pipeline import launch, recovery
    from pipeline.definitions import build_resources

    inst = inst or instance()
    run_id = str(uuid.uuid4())  # Dagster's own run ids are uuid4 strings
    with recovery.sigterm_as_interrupt():
        recovery.wait_for_pools(inst, log=lambda m: console.print(f"[yellow]{m}[/]", highlight=False))
        with (
            recovery.interruptible(inst, run_id) as state,
            launch.runs_created_with_origin(inst, job.name),
            RunProgress(inst, run_id, job, show=progress),
        ):
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


def _log_lines(rec) -> list[str]:
    """One event of the event log as lines of the run's log file: time, level, step, event, message, and the full
    traceback of a failure."""
    ev = rec.dagster_event
    when = pd.Timestamp(rec.timestamp, unit="s").strftime("%Y-%m-%d %H:%M:%S")
    kind = ev.event_type_value if ev else "LOG"
    lines = [f"{when} {logging.getLevelName(rec.level):<7} {rec.step_key or '-'} {kind} {rec.user_message or ''}"]
    err = getattr(ev.event_specific_data, "error", None) if ev is not None and ev.event_specific_data else None
    if err is not None:
        lines.append(err.to_string())
    return lines


class RunProgress:
    """While a run executes in this process: append each of its events to :func:`run_log_path` (so the log exists
    even if the process is killed) and, with ``show``, display one line per running step (the asset being
    materialised, partitions done, elapsed time) under a bar of steps done, and print one line per finished step.
    Listens through ``DagsterInstance.add_event_listener`` (called synchronously for every stored event)."""

    def __init__(self, inst, run_id: str, job, show: bool = True):
        self.path = run_log_path(run_id)
        self.total = len(job.graph.nodes)
        self.job_name, self.show, self.tasks, self.assets = job.name, show, {}, {}
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            redirect_stderr=False,  # stderr goes to the log file during the run (_redirect_library_output)
        )
        self.inst, self.run_id = inst, run_id

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.log = self.path.open("w", encoding="utf-8")
        self.inst.add_event_listener(self.run_id, self._on_event)
        self.swapped = []
        if self.show:
            self._redirect_library_output()
            self.progress.start()
            self.overall = self.progress.add_task(f"{self.job_name} steps", total=self.total)
        return self

    def __exit__(self, *exc) -> None:
        if self.show:
            self.progress.stop()
            sys.stderr = self.stderr
            for handler, stream in self.swapped:
                handler.setStream(stream)
            for h in self._stream_handlers():  # created during the run on the redirected sys.stderr
                if h.stream is self.log:
                    h.setStream(self.stderr)
        self.log.close()

    @staticmethod
    def _stream_handlers() -> list[logging.StreamHandler]:
        loggers = [
            logging.getLogger(),
            *(v for v in logging.Logger.manager.loggerDict.values() if hasattr(v, "handlers")),
        ]
        return [h for lg in loggers for h in lg.handlers if type(h) is logging.StreamHandler]

    def _redirect_library_output(self) -> None:
        """Send what libraries print during the run (MLflow's registry notices and logging warnings, anything on
        ``sys.stderr`` or a logging handler writing to the terminal) to the log file instead of the display."""
        self.stderr = sys.stderr
        terminal = {id(sys.stderr), id(sys.stdout), id(sys.__stderr__), id(sys.__stdout__)}
        for h in self._stream_handlers():
            if id(h.stream) in terminal:
                self.swapped.append((h, h.setStream(self.log)))
        sys.stderr = self.log

    def _on_event(self, rec) -> None:
        if self.log.closed:
            return
        self.log.write("\n".join(_log_lines(rec)) + "\n")
        self.log.flush()
        ev, step = rec.dagster_event, rec.step_key
        if not self.show or ev is None or step is None:
            return
        kind = ev.event_type_value
        if kind == "STEP_START":
            self.assets[step] = {}
            self.tasks[step] = (self.progress.add_task(f"[cyan]{step}[/]", total=None), time.time())
        elif kind == "ASSET_MATERIALIZATION" and step in self.tasks:
            key = "/".join(ev.asset_key.path)
            self.assets[step][key] = self.assets[step].get(key, 0) + 1
            self.progress.update(self.tasks[step][0], description=f"[cyan]{step}[/] → {self._done(step)}")
        elif kind in ("STEP_SUCCESS", "STEP_FAILURE", "STEP_SKIPPED"):
            task, t0 = self.tasks.pop(step, (None, time.time()))
            if task is not None:
                self.progress.remove_task(task)
            self.progress.advance(self.overall)
            mark = {"STEP_SUCCESS": "[green]✓[/]", "STEP_FAILURE": "[red]✗[/]", "STEP_SKIPPED": "[yellow]-[/]"}[kind]
            took = f"{time.time() - t0:6.1f}s" if kind != "STEP_SKIPPED" else "skipped"
            self.progress.console.print(f"{mark} {step:<34} {took}  {self._done(step)}", highlight=False)

    def _done(self, step: str) -> str:
        """``market/ohlcv (60 partitions), …``: what ``step`` materialised so far."""
        return ", ".join(f"{k} ({n} partitions)" if n > 1 else k for k, n in self.assets.get(step, {}).items())


#: the model-training steps (assets.common.TrainConfig): ``trader run --retrain`` forces each one in the job
TRAINING_OPS = frozenset(
    {"ml__baseline_direction", "ml__options_direction", "ml__setup_meta", "ml__alpha_6h", "ml__alpha_24h"}
)


def execute(
    job_name: str,
    symbols: list[str] | None = None,
    timeframes: list[str] | None = None,
    full_refresh: bool = False,
    inst=None,
    verbose: bool = False,
    retrain: bool = False,
) -> list:
    """Run the partitioned job ``job_name`` over ``symbols × timeframes`` (default: the configured universe).

    One run per requested symbol when a subset is given (a multi-partition range is a rectangle in
    definition order); otherwise one run for the whole universe. Returns the ``ExecuteInProcessResult`` s.
    A progress display follows the steps (:class:`RunProgress`); with ``verbose`` Dagster's own event stream is
    printed instead (console logger at ``DEBUG``). Either way the full log goes to :func:`run_log_path`.
    ``retrain``: every training step of the job (:data:`TRAINING_OPS`) retrains (``force``) whatever
    :func:`models.retrain.should_retrain` would decide.
    """
    from pipeline.definitions import defs
    from pipeline.partitions import full_range_tags

    job = defs.resolve_job_def(job_name)
    run_config = {}
    if full_refresh:
        ops = {"raw__ingested_ohlcv", "market__ohlcv", "features__technical", "regimes__market"}
        run_config = {
            "ops": {k: {"config": {"full_refresh": True}} for k in ops if k in {n.name for n in job.graph.node_defs}}
        }
    if retrain:
        ops = run_config.setdefault("ops", {})
        for k in TRAINING_OPS & {n.name for n in job.graph.node_defs}:
            ops[k] = {"config": {"force": True}}
    inst = inst or instance()
    groups = [[s] for s in symbols] if symbols else [None]
    run_config = quiet_run_config(run_config, "DEBUG" if verbose else None)
    return [
        _execute_in_process(job, run_config, full_range_tags(syms, timeframes), inst, progress=not verbose)
        for syms in groups
    ]


def run_summary(result) -> dict:
    """Counts of one run: ``steps`` succeeded / ``failed`` / ``skipped``, ``assets`` materialised (distinct keys),
    ``materializations`` (events, one per partition), ``checks`` evaluated, and the run's ``log`` file."""
    kinds = [e.event_type_value for e in result.all_events]
    mats = result.get_asset_materialization_events()
    return {
        "steps": kinds.count("STEP_SUCCESS"),
        "failed": kinds.count("STEP_FAILURE"),
        "skipped": len({e.step_key for e in result.all_events if e.event_type_value == "STEP_SKIPPED"}),
        "assets": len({e.asset_key for e in mats}),
        "materializations": len(mats),
        "checks": len(result.get_asset_check_evaluations()),
        "log": run_log_path(result.run_id),
    }


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


#: ``TRADER_DAGSTER_LOG_LEVEL`` (e.g. ``DEBUG``, ``INFO``) shows Dagster's own event stream on the terminal again
LOG_LEVEL_ENV = "TRADER_DAGSTER_LOG_LEVEL"


def quiet_run_config(run_config: dict | None, level: str | None = None) -> dict:
    """``run_config`` with Dagster's console logger at ``level`` (default ``$TRADER_DAGSTER_LOG_LEVEL``, else
    ``CRITICAL``), so a failing step's traceback is not printed (twice) to the terminal: the CLI prints a short
    summary and writes the full log to :func:`run_log_path` instead. A ``loggers`` entry already in ``run_config`` is
    kept."""
    level = (level or os.environ.get(LOG_LEVEL_ENV, "CRITICAL")).upper()
    return {"loggers": {"console": {"config": {"log_level": level}}}, **(run_config or {})}


def run_log_path(run_id: str) -> Path:
    """``<warehouse folder>/logs/<run id>.log`` (default ``warehouse/data/logs/``): the full event log of one CLI run."""
    return Path(settings().warehouse.path).parent / "logs" / f"{run_id}.log"


def _error_chain(err) -> list:
    """``err`` and its causes/contexts (Dagster's ``SerializableErrorInfo``), outermost first."""
    out = []
    while err is not None and len(out) < 20:
        out.append(err)
        err = err.cause or err.context
    return out


def root_error(err):
    """The user's exception inside Dagster's wrapper (e.g. ``CandleValidationError``): the first error of the chain
    that is not a Dagster class; ``err`` itself when there is none."""
    return next((e for e in _error_chain(err) if not (e.cls_name or "").startswith("Dagster")), err)


#: what the user does next, by the class of the root error (anything else: read the log)
_HINTS = {
    "CandleValidationError": "fix or restore the file named above, then run again (a changed file is re-read; "
    "nothing of it was stored)",
    "OnchainValueError": "fix the cell named above (or, if the vendor means 'no value', add its spelling to the "
    "vendor's missing_markers), then run again; nothing of the file was stored",
    "OnchainSpliceError": "the vendor files disagree (a different vintage?): restore the previous file or keep one "
    "vintage, then run again",
    "NotUtf8Error": "re-save the file as UTF-8 (or fix the row named above), then run again",
    "ConfigError": "fix the configuration file named above, then run again",
}


def failure_summary(result) -> list[dict]:
    """One dict per failed step of ``result``: ``step``, ``error`` (root exception class), ``message`` (its first
    line: file, row, rule), ``hint`` (what to do)."""
    out = []
    for ev in result.get_step_failure_events():
        err = ev.event_specific_data.error if ev.event_specific_data else None
        if err is None:
            out.append({"step": ev.step_key, "error": "", "message": "unknown error", "hint": "see the log"})
            continue
        root = root_error(err)
        msg = (root.message or "").strip().splitlines()
        head, _, rest = msg[0].partition(": ") if msg else ("", "", "")
        if rest and head.split(".")[-1] == root.cls_name:  # "pipeline.core.candles.CandleValidationError: ..."
            msg[0] = rest
        hint = _HINTS.get(root.cls_name)
        if hint is None and any(e.cls_name == "NotUtf8Error" for e in _error_chain(err)):
            hint = _HINTS["NotUtf8Error"]
        out.append(
            {
                "step": ev.step_key,
                "error": root.cls_name or "",
                "message": msg[0] if msg else root.cls_name,
                "hint": hint or "read the traceback in the log below, fix the cause, then run again",
            }
        )
    return out


def write_run_log(result, inst=None) -> Path:
    """Write every event of ``result``'s run (time, level, step, event, message) and the full traceback of every
    failure to :func:`run_log_path`; returns the path."""
    inst = inst or instance()
    path = run_log_path(result.run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [line for rec in inst.all_logs(result.run_id) for line in _log_lines(rec)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def print_run_warnings(result, inst=None, limit: int = 10) -> None:
    """The run's own warnings (``context.log.warning``: withdrawn on-chain values, skipped symbols), one line each,
    since Dagster's console logging is quiet (:func:`quiet_run_config`)."""
    inst = inst or instance()
    recs = [r for r in inst.all_logs(result.run_id) if r.dagster_event is None and r.level >= logging.WARNING]
    for r in recs[:limit]:
        console.print(f"[yellow]{r.step_key or result.job_name}: {r.user_message}[/]", highlight=False)
    if len(recs) > limit:
        console.print(f"[yellow]… {len(recs) - limit} more warning(s) in the log[/]")


def print_failures(result, inst=None) -> Path | None:
    """The failed steps of a run in a few lines: step, the error's own message (file, row, rule), what to do, and
    the path of the log file holding the full traceback (:func:`write_run_log`). Returns that path (None if no step
    failed)."""
    failures = failure_summary(result)
    if not failures and result.success:
        return None
    path = write_run_log(result, inst)
    for f in failures:
        console.print(
            f"[red]✗ step {f['step']} failed[/] ({f['error']}): {f['message']}", highlight=False, soft_wrap=True
        )
        console.print(f"  what to do: {f['hint']}", highlight=False, soft_wrap=True)
    skipped = len({e.step_key for e in result.all_events if e.event_type_value == "STEP_SKIPPED"})
    if skipped:
        console.print(f"  {skipped} later step(s) did not run because of this", highlight=False)
    console.print(f"  full log and traceback: {path}", highlight=False, soft_wrap=True)
    return path


def rejected_inputs() -> pd.DataFrame:
    """The inputs rejected by the latest ingest of their partition (``ops.input_errors``: ``input, partition_key,
    locator, rule, message``); empty when the table is missing (a warehouse from before issue 13)."""
    import duckdb

    try:
        return read("SELECT input, partition_key, locator, rule, message FROM ops.input_errors ORDER BY ALL")
    except (duckdb.Error, FileNotFoundError):
        return pd.DataFrame(columns=["input", "partition_key", "locator", "rule", "message"])


def print_rejected_inputs(results, inst=None) -> tuple[pd.DataFrame, Path | None]:
    """After a run whose only failure is rejected input (a bad file fails its partition alone, issue 13 item 9):
    each rejected input with its file, row and rule, what to do, and the run log. Returns ``(rejected, log path)``."""
    bad = rejected_inputs()
    if bad.empty:
        return bad, None
    for r in bad.itertuples():
        console.print(
            f"[red]✗ input {r.input} {r.partition_key} rejected[/]: {r.message}", highlight=False, soft_wrap=True
        )
    console.print(
        "  what to do: fix that file and run again; the other partitions were processed and nothing of the "
        "rejected one was stored",
        highlight=False,
    )
    path = write_run_log(results[-1], inst) if results else None
    if path:
        console.print(f"  full log: {path}", highlight=False, soft_wrap=True)
    return bad, path


def print_config_error(e: Exception) -> None:
    """A configuration error (:class:`pipeline.config.ConfigError`) in a few lines, without a traceback."""
    console.print(f"[red]configuration error:[/] {e}", highlight=False, soft_wrap=True)
    console.print(f"  what to do: {_HINTS['ConfigError']}", highlight=False, soft_wrap=True)


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


@contextmanager
def open_sql(writer: bool = False) -> Iterator:
    """A read-only connection for ``trader sql``: the serving snapshot (the published version current now,
    :func:`warehouse.publish.resolve_snapshot`), or with ``writer`` the warehouse (:func:`open_readonly`).

    Raises:
        typer.Exit: (code 1) no snapshot has been published yet.
    """
    import typer

    from warehouse.io import connect
    from warehouse.publish import resolve_snapshot

    if writer:
        with open_readonly() as con:
            yield con
        return
    path = resolve_snapshot(settings().warehouse.serving_path)
    if not path.exists():
        console.print(f"[red]no serving snapshot at {settings().warehouse.serving_path}[/]: run trader run first")
        raise typer.Exit(1)
    with connect(str(path), read_only=True) as con:
        yield con


def run_sql(con, query: str, csv: bool = False) -> int:
    """Run ``query`` on ``con`` and print its result (a table, or CSV on stdout with ``csv``); a DuckDB error is
    printed in one line. Returns the exit code (0, or 1 on error)."""
    import duckdb
    from rich.text import Text

    try:
        cur = con.execute(query)
        df = cur.df() if cur.description else None
    except duckdb.Error as e:
        console.print(f"[red]{type(e).__name__}:[/] {e}", highlight=False, soft_wrap=True)
        return 1
    if df is None:
        console.print("[green]OK[/]")
    elif csv:
        sys.stdout.write(df.to_csv(index=False))
        sys.stdout.flush()
    else:
        t = Table(caption=f"{len(df):,} row{'s' if len(df) != 1 else ''}")
        for c in df.columns:
            t.add_column(str(c), justify="right" if pd.api.types.is_numeric_dtype(df[c]) else "left")
        for row in df.itertuples(index=False):
            t.add_row(*[Text(fmt(v)) for v in row])
        console.print(t)
    return 0


def sql_prompt(con, csv: bool = False) -> None:
    """An interactive SQL prompt on ``con`` (line editing and history through ``readline``): a statement runs when
    a line ends with ``;`` (as in the duckdb shell); ``.tables`` lists the tables, ``.quit`` / ``.exit`` / Ctrl-D
    leave."""
    try:
        import readline  # noqa: F401  (line editing and history for input())
    except ImportError:
        pass
    console.print("DuckDB SQL, read-only. End a statement with ';'. .tables lists the tables, .quit leaves.")
    buf: list[str] = []
    while True:
        try:
            line = input("sql> " if not buf else "...> ")
        except (EOFError, KeyboardInterrupt):
            console.print()
            return
        cmd = line.strip()
        if not buf and cmd in (".quit", ".exit"):
            return
        if not buf and cmd == ".tables":
            run_sql(
                con,
                "SELECT table_schema || '.' || table_name AS \"table\" FROM information_schema.tables ORDER BY 1",
                csv,
            )
            continue
        if cmd:
            buf.append(line)
        if buf and cmd.endswith(";"):
            run_sql(con, "\n".join(buf), csv)
            buf = []


def process_group_alive(pgid: int) -> bool:
    """Whether any process of process group ``pgid`` is still running (zombies waiting to be reaped do not count;
    read from ``/proc``, else ``killpg(pgid, 0)``)."""
    if not os.path.isdir("/proc"):
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat", "rb") as f:
                fields = f.read().decode(errors="replace").rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False
