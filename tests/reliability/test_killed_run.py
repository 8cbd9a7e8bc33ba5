"""Issue 13, item 1: a run killed with ``kill -9`` never blocks the next one, and a run waiting for the
``duckdb_warehouse`` pool slot stops on SIGTERM.

Real ``trader`` subprocesses on the test slice, each test with its own warehouse and ``DAGSTER_HOME`` (holding the
tracked ``dagster.yaml``: pool limit 1). Kill points are detected in the run's event log (a step's STEP_START),
never by sleeping a fixed time.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from pipeline.recovery import HOST_TAG, PID_START_TAG, PID_TAG, launch_tags, pid_start_time, recover_dead_runs
from tests.cli.test_operator_cli import assert_run_of_the_code_location
from tests.conftest import REPO, SLICE_ROOT

pytestmark = pytest.mark.integration
POOL = "duckdb_warehouse"


@pytest.fixture
def env(tmp_path: Path, data_dir: Path) -> dict:
    """Environment of a ``trader`` subprocess: the test config pointed at a private data copy and warehouse, and a
    private ``DAGSTER_HOME`` with the project's instance configuration."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / ".dagster_home" / "dagster.yaml", home / "dagster.yaml")
    cfg = tmp_path / "trader.yaml"
    cfg.write_text(
        Path(os.environ["TRADER_CONFIG"])
        .read_text()
        .replace(f"{SLICE_ROOT}/default.duckdb", str(tmp_path / "cli_wh" / "warehouse.duckdb"))
        .replace(str(SLICE_ROOT), str(data_dir))
    )
    return {
        **os.environ,
        "TRADER_CONFIG": str(cfg),
        "DAGSTER_HOME": str(home),
        "PYTHONPATH": str(REPO),
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "COLUMNS": "200",
    }


def _instance(env: dict) -> dg.DagsterInstance:
    return dg.DagsterInstance.from_config(env["DAGSTER_HOME"])


def _trader(env: dict, *args: str, code: str | None = None) -> subprocess.Popen:
    cmd = [sys.executable, "-c", code] if code else [sys.executable, "-m", "pipeline.cli", *args]
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for(pred, proc: subprocess.Popen, timeout: float = 60.0, what: str = ""):
    t0 = time.time()
    while time.time() - t0 < timeout:
        got = pred()
        if got:
            return got
        if proc.poll() is not None:
            raise AssertionError(f"process ended ({proc.returncode}) before {what}:\n{proc.stdout.read()[-3000:]}")
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"timed out waiting for {what}")


def _step_started(inst: dg.DagsterInstance, step_key: str):
    """The run id once ``step_key`` started in some run (read from the event log)."""

    def pred():
        recs = inst.get_event_records(dg.EventRecordsFilter(event_type=dg.DagsterEventType.STEP_START), limit=50)
        hits = [r.event_log_entry.run_id for r in recs if r.event_log_entry.step_key == step_key]
        return hits[0] if hits else None

    return pred


def _claimed(inst: dg.DagsterInstance) -> list[str]:
    return [s.run_id for s in inst.event_log_storage.get_concurrency_info(POOL).claimed_slots]


def _hashes(path: str) -> dict:
    """``bench/table_hashes.py`` content hashes (run ids and times ignored), over the schemas ingest writes too."""
    sys.path.insert(0, str(REPO / "bench"))
    import table_hashes

    schemas = table_hashes.SCHEMAS
    table_hashes.SCHEMAS = ("raw", *schemas)
    try:
        return {k: (v["rows"], v["md5"]) for k, v in table_hashes.snapshot(path).items()}
    finally:
        table_hashes.SCHEMAS = schemas


_CLEAN: dict = {}  # hashes of one clean, uninterrupted ingest of the test slice (the same for every kill point)


@pytest.mark.parametrize("kill_at", ["raw__ingested_ohlcv", "market__sentiment_daily"])
def test_kill_9_during_ingest_then_next_run_recovers(env, resources, kill_at):
    """Killed at two points of a run (the candle step, the sentiment step that runs beside it under the pool)."""
    inst = _instance(env)
    p = _trader(env, "ingest")
    run_id = _wait_for(_step_started(inst, kill_at), p, what=f"{kill_at} to start")
    p.send_signal(signal.SIGKILL)
    p.wait()
    p.stdout.close()
    # the state the issue describes: the run stays STARTED and keeps the pool slot
    assert inst.get_run_by_id(run_id).status == dg.DagsterRunStatus.STARTED
    assert _claimed(inst) == [run_id]

    out = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "ingest"], cwd=REPO, env=env, capture_output=True, text=True, timeout=90
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert f"recovered dead run {run_id[:8]}" in out.stdout
    dead = inst.get_run_by_id(run_id)
    assert dead.status == dg.DagsterRunStatus.FAILURE
    events = [e.message for e in inst.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT)]
    assert any("is gone (killed, out of memory or power loss)" in m for m in events)
    assert _claimed(inst) == [] and inst.event_log_storage.get_concurrency_info(POOL).pending_steps == []
    latest = inst.get_runs(limit=1)[0]
    assert latest.status == dg.DagsterRunStatus.SUCCESS and latest.tags[PID_TAG] != str(os.getpid())
    # issue 14 items 2 and 9: a run of the code location's job, shown step by step, its full log in the log file
    assert_run_of_the_code_location(latest, "ingest_job")
    assert re.search(r"✓ raw__ingested_ohlcv +\d+\.\ds  raw/ingested_ohlcv \(\d+ partitions\)", out.stdout), out.stdout[
        -3000:
    ]
    log = Path(env["TRADER_CONFIG"]).parent / "cli_wh" / "logs" / f"{latest.run_id}.log"
    assert "ingest_job succeeded in " in out.stdout and f"log {log}" in out.stdout
    assert "DEBUG" not in out.stdout and "STEP_SUCCESS" in log.read_text() and "PIPELINE_SUCCESS" in log.read_text()

    # the recovered warehouse equals a clean, uninterrupted ingest of the same data (a separate warehouse)
    from pipeline.definitions import ALL_ASSETS
    from pipeline.jobs import ingest_job
    from pipeline.partitions import full_range_tags

    if not _CLEAN:
        with dg.instance_for_test() as clean_inst:
            clean = dg.materialize(
                ALL_ASSETS,
                selection=ingest_job.selection,
                resources=resources,
                instance=clean_inst,
                tags=full_range_tags(),
            )
        assert clean.success
        _CLEAN.update(_hashes(resources["warehouse"].path))
    killed, reference = _hashes(str(Path(env["TRADER_CONFIG"]).parent / "cli_wh" / "warehouse.duckdb")), _CLEAN
    assert killed == reference and any(k.startswith("raw.ohlcv") for k in killed)


def _live_holder(inst: dg.DagsterInstance, holder: subprocess.Popen) -> str:
    """A STARTED run of process ``holder`` (alive) claiming the pool's only slot."""
    tags = {PID_TAG: str(holder.pid), HOST_TAG: launch_tags()[HOST_TAG], PID_START_TAG: pid_start_time(holder.pid)}
    run = inst.create_run_for_job(dg.GraphDefinition("holder").to_job(), tags=tags, status=dg.DagsterRunStatus.STARTED)
    storage = inst.event_log_storage
    storage.initialize_concurrency_limit_to_default(POOL)
    assert storage.claim_concurrency_slot(POOL, run.run_id, "raw__ingested_ohlcv").is_claimed
    return run.run_id


def test_waiting_for_a_live_runs_slot_stops_on_sigterm(env):
    inst = _instance(env)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        held_by = _live_holder(inst, holder)
        assert recover_dead_runs(inst, own_pid_is_dead=False) == []  # alive: never marked failed
        p = _trader(env, "ingest")
        line = _wait_for(lambda: "waiting for" in (p.stdout.readline() or ""), p, what="the wait message")
        assert line
        t0 = time.time()
        p.send_signal(signal.SIGTERM)
        rc = p.wait(timeout=10)
        p.stdout.close()
        assert rc != 0 and time.time() - t0 < 5
        assert _claimed(inst) == [held_by]  # the live run keeps its slot
    finally:
        holder.kill()
        holder.wait()
    recover_dead_runs(inst, own_pid_is_dead=False)  # its process gone now: failed and freed
    assert inst.get_run_by_id(held_by).status == dg.DagsterRunStatus.FAILURE and _claimed(inst) == []


# the race the wait cannot close (a slot taken between the wait and the claim): Dagster itself blocks the step
BLOCKED_IN_DAGSTER = """
import pipeline.recovery as r
r.wait_for_pools = lambda *a, **k: None
from pipeline.cli import app
app(["ingest"])
"""


def test_a_step_blocked_inside_dagster_stops_on_sigterm(env):
    inst = _instance(env)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        _live_holder(inst, holder)
        p = _trader(env, code=BLOCKED_IN_DAGSTER)

        def pending():
            steps = inst.event_log_storage.get_concurrency_info(POOL).pending_steps
            return sorted({s.run_id for s in steps if not s.assigned_timestamp})

        (run_id,) = _wait_for(pending, p, what="a step pending on the pool")
        time.sleep(1.0)  # let it spin in Dagster's claim loop
        t0 = time.time()
        p.send_signal(signal.SIGTERM)
        rc = p.wait(timeout=15)
        out = p.stdout.read()
        p.stdout.close()
        assert rc != 0 and time.time() - t0 < 20, out[-2000:]  # ~1 s idle; Dagster's failure teardown under load
        assert "interrupted while waiting for a pool slot" in out
        assert inst.get_run_by_id(run_id).status == dg.DagsterRunStatus.FAILURE
        assert run_id not in [s.run_id for s in inst.event_log_storage.get_concurrency_info(POOL).pending_steps]
    finally:
        holder.kill()
        holder.wait()


def test_run_without_launch_tags_is_judged_by_the_worker_pid_dagster_logged(tmp_path):
    """A run launched by the UI or a schedule has no ``trader/pid`` tag: the PID its in-process executor logged is
    used (a live one is left alone)."""
    from dagster._core.events import EngineEventData

    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    inst = dg.DagsterInstance.from_config(str(home))
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        job = dg.GraphDefinition("ui_job").to_job()
        ids = {}
        for label, pid in (("gone", gone.pid), ("alive", alive.pid)):
            run = inst.create_run_for_job(job, status=dg.DagsterRunStatus.STARTED)
            inst.report_engine_event("Executing steps in process", run, EngineEventData.in_process(pid))
            ids[label] = run.run_id
        assert recover_dead_runs(inst, own_pid_is_dead=False) == [ids["gone"]]
        assert inst.get_run_by_id(ids["gone"]).status == dg.DagsterRunStatus.FAILURE
        assert inst.get_run_by_id(ids["alive"]).status == dg.DagsterRunStatus.STARTED
    finally:
        alive.kill()
        alive.wait()
