"""Dead runs never block the next one, and a run waiting for a pool slot stops on SIGTERM / Ctrl-C (issue 13, item 1).

Every run the project launches carries the launching process in its tags (:func:`launch_tags`: PID, host and the
PID's start time, so a recycled PID is not mistaken for the run). Before launching, every entry point calls
:func:`recover_dead_runs`: a run still QUEUED / NOT_STARTED / STARTING / STARTED / CANCELING whose process is gone
(``kill -9``, OOM kill, power loss) is marked FAILURE with an engine event saying why, and its concurrency slots
(the ``duckdb_warehouse`` pool, limit 1) are freed, as are slots still held by finished or deleted runs.

Dagster's own remedies do not cover these runs: run monitoring lives in ``dagster-daemon`` and detects dead
workers only for run launchers that implement ``check_run_worker_health`` (not the default launcher, and not
``execute_in_process``), and ``run_monitoring.free_slots_after_run_end_seconds`` frees only slots of runs already
marked finished. The instance's ``dagster.yaml`` still enables both for runs launched from the UI.

Inside an in-process run Dagster captures SIGINT/SIGTERM and only honours them when a step starts, so a run whose
step waits for a slot held by another live run spun forever (1.13: ``interval_to_next_pending_claim_check`` is
never positive, hence ~100 % CPU). :func:`wait_for_pools` waits *before* launching, in our code, sleeping and
interruptible; :func:`interruptible` covers the remaining race (a slot taken between the wait and the claim): when
an interrupt is captured while this run has a step pending on a slot, it raises Dagster's own
``DagsterExecutionInterruptedError`` in the main thread, so the run ends FAILURE ("Execution was interrupted") and
releases its pending claims.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator

import dagster as dg

PID_TAG = "trader/pid"
HOST_TAG = "trader/host"
PID_START_TAG = "trader/pid_start"

UNFINISHED = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def pid_start_time(pid: int) -> str | None:
    """Start time of process ``pid`` in clock ticks since boot (``/proc/<pid>/stat`` field 22), or None when the
    process does not exist or ``/proc`` is unavailable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def launch_tags() -> dict[str, str]:
    """Run tags naming the launching process (this one): ``trader/pid``, ``trader/host``, ``trader/pid_start``."""
    pid = os.getpid()
    return {PID_TAG: str(pid), HOST_TAG: socket.gethostname(), PID_START_TAG: pid_start_time(pid) or ""}


def process_alive(pid: int, start: str | None = None) -> bool:
    """Whether ``pid`` runs on this host (and, when ``start`` is given and ``/proc`` exists, is the same process)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    if start and os.path.isdir("/proc"):
        return pid_start_time(pid) == start
    return True


def _worker_pid(instance: dg.DagsterInstance, run_id: str) -> int | None:
    """The PID Dagster's in-process executor recorded for a run ("Executing steps in process (pid: N)"), if any."""
    for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        pid = e.dagster_event.event_specific_data.metadata.get("pid") if e.dagster_event else None
        if pid is not None:
            return int(getattr(pid, "value", pid))
    return None


def dead_reason(
    run: dg.DagsterRun, own_pid_is_dead: bool = True, instance: dg.DagsterInstance | None = None
) -> str | None:
    """Why ``run`` (not finished) cannot still be executing, or None when it may be (its process is alive, it runs
    on another host, or no process is known for it).

    The process is the one in the launch tags; for a run without them (launched by the UI, a schedule or an older
    version) and a local ``instance``, the run worker's PID that Dagster's executor logged (no start time: a recycled
    PID counts as alive, the safe side)."""
    tags = dict(run.tags)
    if PID_TAG not in tags and instance is not None and type(instance.run_storage).__name__.startswith("Sqlite"):
        pid = _worker_pid(instance, run.run_id)
        if pid is None or pid == os.getpid():
            return None
        tags = {PID_TAG: str(pid), HOST_TAG: socket.gethostname()}
    if PID_TAG not in tags or tags.get(HOST_TAG) != socket.gethostname():
        return None
    pid = int(tags[PID_TAG])
    if pid == os.getpid():
        # the caller is about to launch a run from this (single-threaded) process: an unfinished run of ours is a
        # leftover of an execution that was torn down (e.g. an exception in a test), not one still running
        return f"its process (pid {pid}, this process) is no longer executing it" if own_pid_is_dead else None
    if not process_alive(pid, tags.get(PID_START_TAG) or None):
        return f"its process (pid {pid} on {tags[HOST_TAG]}) is gone (killed, out of memory or power loss)"
    return None


def recover_dead_runs(
    instance: dg.DagsterInstance, own_pid_is_dead: bool = True, log: Callable[[str], None] | None = None
) -> list[str]:
    """Mark every unfinished run whose process is gone FAILURE (with an engine event saying why) and free its
    concurrency slots and pending claims; also free slots held by finished or deleted runs. Idempotent.

    Returns the ids of the runs marked failed. ``log`` (e.g. the CLI console's ``print``) is told about each.
    """
    failed = []
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=UNFINISHED)):
        why = dead_reason(run, own_pid_is_dead, instance)
        if why is None:
            continue
        msg = f"Run marked failed by the next launch: {why}; its concurrency slots were freed."
        instance.report_engine_event(msg, run)
        instance.report_run_failed(run, msg)
        failed.append(run.run_id)
        if log:
            log(f"recovered dead run {run.run_id[:8]} ({run.job_name}, {run.status.value}): {why}")
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return failed
    holders = set(failed) | storage.get_concurrency_run_ids()
    for info in storage.get_concurrency_infos(list(storage.get_concurrency_keys())).values():
        holders |= {s.run_id for s in info.claimed_slots}
    for run_id in holders:
        rec = instance.get_run_by_id(run_id)
        if rec is None or rec.is_finished:
            storage.free_concurrency_slots_for_run(run_id)
    return failed


def live_holders(instance: dg.DagsterInstance, exclude: str | None = None) -> dict[str, list[str]]:
    """``{pool: [run id, …]}`` of the slots claimed by unfinished runs other than ``exclude``."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return {}
    out: dict[str, list[str]] = {}
    for key, info in storage.get_concurrency_infos(list(storage.get_concurrency_keys())).items():
        if info.limit is not None and len(info.claimed_slots) < info.limit:
            continue
        runs = sorted({s.run_id for s in info.claimed_slots if s.run_id != exclude})
        if runs:
            out[key] = runs
    return out


def wait_for_pools(
    instance: dg.DagsterInstance,
    poll_seconds: float = 1.0,
    log: Callable[[str], None] | None = None,
    own_pid_is_dead: bool = True,
) -> None:
    """Recover dead runs, then sleep until no pool is full of other runs' claimed slots (a live run holding the
    ``duckdb_warehouse`` slot is waited for; one that dies meanwhile is recovered). Interruptible: SIGINT raises
    ``KeyboardInterrupt`` as usual (call it under :func:`sigterm_as_interrupt` for SIGTERM too)."""
    announced = None
    while True:
        recover_dead_runs(instance, own_pid_is_dead, log)
        held = live_holders(instance)
        if not held:
            return
        if log and held != announced:
            log(
                "waiting for "
                + "; ".join(f"pool {k}: run {', '.join(r[:8] for r in v)}" for k, v in held.items())
                + " (Ctrl-C to stop)"
            )
            announced = held
        time.sleep(poll_seconds)


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises ``KeyboardInterrupt`` like Ctrl-C inside this block (main thread only; Dagster maps both to
    its own handler during execution and restores these afterwards)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _blocked_on_slot(instance: dg.DagsterInstance, run_id: str) -> bool:
    storage = instance.event_log_storage
    infos = storage.get_concurrency_infos(list(storage.get_concurrency_keys()))
    return any(p.run_id == run_id for info in infos.values() for p in info.pending_steps)


@contextmanager
def interruptible(instance: dg.DagsterInstance, run_id: str, poll_seconds: float = 0.25) -> Iterator[dict]:
    """While this block executes run ``run_id`` in-process on the main thread, turn a captured SIGINT/SIGTERM into
    Dagster's ``DagsterExecutionInterruptedError`` when the run is waiting for a pool slot (Dagster would ignore it
    there forever). Yields a dict whose ``"interrupted"`` is True once that happened."""
    from dagster._core.errors import DagsterExecutionInterruptedError
    from dagster._utils.interrupts import check_captured_interrupt

    state = {"interrupted": False}
    stop = threading.Event()
    main = threading.main_thread().ident

    def watch() -> None:
        while not stop.wait(poll_seconds):
            if check_captured_interrupt() and _blocked_on_slot(instance, run_id):
                state["interrupted"] = True
                ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(main), ctypes.py_object(DagsterExecutionInterruptedError)
                )
                return

    t = threading.Thread(target=watch, name="trader-interrupt-watch", daemon=True)
    if threading.current_thread() is threading.main_thread():
        t.start()
    try:
        yield state
    finally:
        stop.set()
        if t.is_alive():
            t.join()
