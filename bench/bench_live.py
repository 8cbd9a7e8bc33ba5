"""Live latency benchmark (issue 16, speed; run by hand): candle close → row in ``signals.log`` → request received by a
fake Telegram Bot API, in replay, p50 / p95 split by stage.

    python bench/bench_live.py [--start 2026-04-20T06:00] [--speed 600] [--candles 50] [--out /tmp/bench_live]
                               [--no-pause-during-runs]

What runs: the replay exchange (:func:`resources.replay_exchange.start_replay`, in this process, so the bench knows
its simulated clock) and the fake Bot API of the tests (``tests/resources/fake_telegram.py``) on 127.0.0.1, then the
real ``trader live`` (``python -m pipeline.cli live``: dagster dev, daemon, the ``closed_candles_<tf>`` sensors at
the configured ``live.sensor_interval_s``) on the configuration ``trader live --replay`` writes
(:func:`pipeline.config.write_replay_config`: all symbols, the live timeframes, its own warehouse under ``--out``)
with Telegram enabled towards the fake server and ``paper.log_recent_candles`` set to ``--log-recent`` (raise it
when one run spans several candles, else the signals of a run's older candles are not logged, and not measured). The replay clock stands still at ``--start`` until the first live run of each
timeframe (the cold one: it loads the features' warm-up history through ccxt) has succeeded, then runs at
``--speed``: every candle closing after that is measured (the steady state), until ``--candles`` 15m candles are.
By default the clock then advances one 15m candle at a time: it stops just after a close (plus the close lag) until
live runs of every timeframe closing then have covered it and none is left, so each candle meets an idle pipeline
and no later candle closes meanwhile, as in real time (a 15m candle lasts 900 s, a run under a minute);
``--no-pause-during-runs`` keeps it running: at ``--speed 90`` a candle closes every 10 s, runs coalesce several
candles and the figures are those of a saturated pipeline (a stress test, not the latency a user sees).

Stages of a candle of timeframe tf (wall clock; the close is the simulated close mapped back to the wall clock):

* ``sensor wait``  close → the live run covering it is requested (a tick finds it closed and no run of tf going;
  includes waiting for the previous run to end: candles coalesce);
* ``run launch``   requested → run worker started (queue, warehouse pool, process start, code location import);
* ``compute``      run started → its ``signals/log`` step ended (ingest ... gating, the row is in signals.log);
* ``notify``       signals.log step ended → ``ops/setup_notices`` ended (per candle) / first_seen → the fake server
  received the message (per signal).

Per signal the table also shows close → ``first_seen`` (the log row's wall time) and → received by Telegram.
"""

from __future__ import annotations

import argparse
import bisect
import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from pipeline.config import load_config, write_replay_config  # noqa: E402
from pipeline.core.timeframes import timeframe_ms  # noqa: E402
from resources.replay_exchange import parse_utc, start_replay  # noqa: E402
from tests.resources.fake_telegram import FakeTelegram  # noqa: E402

STAGES = ["sensor wait", "run launch", "compute", "notify"]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _epoch(t) -> float:
    """Seconds since the epoch of a naive-UTC / aware datetime or a float."""
    if t is None:
        return float("nan")
    if isinstance(t, (int, float)):
        return float(t)
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    return t.timestamp()


def _config(out: Path, base_url: str, start_ms: int, telegram: str, log_recent: int) -> Path:
    cfg = load_config()
    p = write_replay_config(cfg, base_url, start_ms, out)
    raw = yaml.safe_load(p.read_text())
    raw["notify"]["telegram"] |= {"enabled": True, "api_base": telegram, "chat_id": "1"}
    raw["paper"]["log_recent_candles"] = log_recent
    p.write_text(yaml.safe_dump(raw, sort_keys=False))
    return p


def _runs(home: Path) -> tuple[pd.DataFrame, dict]:
    import dagster as dg

    rows, steps = [], {}
    with dg.DagsterInstance.from_config(str(home)) as inst:
        for rec in inst.get_run_records(filters=dg.RunsFilter(job_name="live_candle_job")):
            r = rec.dagster_run
            if r.status != dg.DagsterRunStatus.SUCCESS:
                continue
            rows.append(
                {
                    "run_id": r.run_id,
                    "tf": r.tags.get("trader/timeframe"),
                    "candle_ts": int(r.tags.get("trader/candle_ts", -1)),
                    "created": _epoch(rec.create_timestamp),
                    "started": _epoch(rec.start_time),
                    "ended": _epoch(rec.end_time),
                }
            )
            steps[r.run_id] = {
                s.step_key.replace("__", "/"): (s.start_time, s.end_time) for s in inst.get_run_step_stats(r.run_id)
            }
    cols = ["run_id", "tf", "candle_ts", "created", "started", "ended"]
    return pd.DataFrame(rows, columns=cols).sort_values("created").reset_index(drop=True), steps


class SteppedWall:
    """The replay's wall clock: it stands still while paused (at start, and with ``--pause-during-runs`` while a live
    run is queued or running) and otherwise advances with real time. :meth:`real` maps a reading back to the real
    wall time at which the clock showed it."""

    def __init__(self) -> None:
        self.v = time.time()
        self.since: float | None = None  # real time of the last resume; None = paused
        self.segments: list[tuple[float, float]] = []  # (real time, reading) of each resume

    def __call__(self) -> float:
        return self.v if self.since is None else self.v + (time.time() - self.since)

    def resume(self) -> None:
        if self.since is None:
            self.since = time.time()
            self.segments.append((self.since, self.v))

    def pause(self) -> None:
        if self.since is not None:
            self.v, self.since = self(), None

    def real(self, reading: float) -> float:
        if not self.segments:
            return float("nan")
        i = max(bisect.bisect_left([v for _, v in self.segments], reading) - 1, 0)
        r, v = self.segments[i]
        return r + (reading - v)


def _close_wall(wall: SteppedWall, start_ms: int, speed: float):
    """Real wall time (s) at which the replay clock (started at ``start_ms``, ``speed``) passed ``sim_ms``."""
    v0 = wall.segments[0][1] if wall.segments else 0.0
    return lambda sim_ms: wall.real(v0 + (sim_ms - start_ms) / 1000.0 / speed)


def candles(out: Path, start_ms: int, close_wall) -> dict:
    """Per-candle stage latencies (seconds) of the live runs recorded in the Dagster instance under ``out`` (never
    opens the warehouse: a reader's lock would make a live run wait)."""
    runs, steps = _runs(out / ".dagster_home")
    cand, per_step = [], []
    for tf, g in runs.groupby("tf"):
        step = timeframe_ms(tf)
        g = g.sort_values("candle_ts").reset_index(drop=True)
        if len(g) < 2:
            continue
        prev_newest = g.iloc[0]["candle_ts"]  # the cold run (the features' warm-up ingest) is not measured
        for r in g.iloc[1:].itertuples():
            st = steps[r.run_id]
            log_end = st.get("signals/log", (None, np.nan))[1]
            notes_end = st.get("ops/setup_notices", (None, np.nan))[1]
            per_step.append({"tf": tf, **{k: v[1] - v[0] for k, v in st.items()}})
            for ts in range(int(prev_newest) + step, int(r.candle_ts) + step, step):
                if ts + step <= start_ms:  # closed before the clock started: the cold run's
                    continue
                close = close_wall(ts + step)
                cand.append(
                    {
                        "tf": tf,
                        "ts": ts,
                        "run_id": r.run_id,
                        "sensor wait": r.created - close,
                        "run launch": r.started - r.created,
                        "compute": log_end - r.started,
                        "notify": notes_end - log_end,
                        "close → signals.log": log_end - close,
                        "total": notes_end - close,
                    }
                )
            prev_newest = r.candle_ts
    return {"candles": pd.DataFrame(cand), "steps": pd.DataFrame(per_step), "runs": runs}


def measure(out: Path, fake: FakeTelegram, start_ms: int, close_wall) -> dict:
    """:func:`candles` plus the per-signal latencies (``signals.log`` and ``ops.notifications`` read after the
    live process stopped)."""
    import duckdb

    res = candles(out, start_ms, close_wall)
    cand = res["candles"]
    with duckdb.connect(str(out / "warehouse.duckdb"), read_only=True) as con:
        log = con.execute("SELECT signal_id, timeframe, ts, first_seen FROM signals.log").df()
        notes = con.execute("SELECT dedup_key, text, plain_text FROM ops.notifications WHERE kind = 'signal'").df()
    got = {}
    for q in fake.requests:
        got.setdefault(q.get("text"), q["at"])
    sig = []
    for r in log.itertuples():
        step = timeframe_ms(r.timeframe)
        close = close_wall(r.ts + step)
        m = notes[notes["dedup_key"].str.contains(r.signal_id, regex=False)]
        at = min((got.get(t, np.inf) for t in list(m["text"]) + list(m["plain_text"])), default=np.inf)
        ok = cand[(cand["tf"] == r.timeframe) & (cand["ts"] == r.ts)]
        if ok.empty:  # a candle of the cold run: not measured
            continue
        seen = _epoch(r.first_seen.to_pydatetime())
        sig.append(
            {
                "tf": r.timeframe,
                "close → first_seen": seen - close,
                "first_seen → telegram": at - seen if np.isfinite(at) else np.nan,
                "close → telegram": at - close if np.isfinite(at) else np.nan,
            }
        )
    return {**res, "signals": pd.DataFrame(sig)}


def _table(df: pd.DataFrame, cols: list[str]) -> str:
    lines = ["| stage | n | p50 s | p95 s | max s |", "|---|---:|---:|---:|---:|"]
    for c in cols:
        v = df[c].dropna().to_numpy(float) if c in df else np.array([])
        if len(v):
            lines.append(
                f"| {c} | {len(v)} | {np.percentile(v, 50):.1f} | {np.percentile(v, 95):.1f} | {v.max():.1f} |"
            )
    return "\n".join(lines)


def report(res: dict) -> str:
    out = []
    c = res["candles"]
    for tf, g in c.groupby("tf"):
        out += [
            f"\n{tf} candles ({len(g)}, {g['run_id'].nunique()} runs)",
            _table(g, [*STAGES, "close → signals.log", "total"]),
        ]
    s = res["signals"]
    if len(s):
        out += [f"\nsignals ({len(s)})", _table(s, ["close → first_seen", "first_seen → telegram", "close → telegram"])]
    st = res["steps"]
    if len(st):
        med = st.drop(columns="tf").median().sort_values(ascending=False)
        out += ["\nmedian step durations of the measured runs (s)", "| step | s |", "|---|---:|"]
        out += [f"| {k} | {v:.1f} |" for k, v in med.items()]
    return "\n".join(out)


def _step_candle(wall: SteppedWall, home: Path, sim, target: int, tfs: dict[str, int], lag_ms: int, proc) -> int:
    """Run the replay clock until candle close ``target`` (sim ms) plus the close lag has passed, stop it there until
    a live run of every timeframe closing at ``target`` has covered it and no live run is left, then return the next
    15m close: each candle meets an idle pipeline and no later candle closes meanwhile, as in real time."""
    import dagster as dg

    wall.resume()
    time.sleep(max(0.0, (target + lag_ms + 200 - sim()) / 1000.0 / SPEED[0]))
    wall.pause()
    active = [
        dg.DagsterRunStatus.QUEUED,
        dg.DagsterRunStatus.NOT_STARTED,
        dg.DagsterRunStatus.STARTING,
        dg.DagsterRunStatus.STARTED,
    ]
    due = {tf for tf, step in tfs.items() if target % step == 0}
    with dg.DagsterInstance.from_config(str(home)) as inst:
        while True:
            runs = inst.get_runs(filters=dg.RunsFilter(job_name="live_candle_job"), limit=20)
            busy = any(r.status in active for r in runs)
            done = {
                r.tags.get("trader/timeframe")
                for r in runs
                if r.status == dg.DagsterRunStatus.SUCCESS
                and int(r.tags.get("trader/candle_ts", -1)) + tfs.get(r.tags.get("trader/timeframe"), 0) >= target
            }
            if (not busy and due <= done) or proc.poll() is not None:  # covered, or trader live has ended
                return target + tfs["15m"]
            time.sleep(0.5)


#: the replay speed (set by main; the clock helpers read it)
SPEED = [600.0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--start", default="2026-04-20T06:00", help="replay start, UTC")
    ap.add_argument("--speed", type=float, default=600.0, help="simulated seconds per wall second")
    ap.add_argument("--candles", type=int, default=50, help="steady-state 15m candles to measure")
    ap.add_argument(
        "--log-recent",
        type=int,
        default=4,
        help="paper.log_recent_candles of the bench config (the default 4; with --no-pause-during-runs use 32: a run "
        "then spans several candles)",
    )
    ap.add_argument("--out", default="/tmp/bench_live", help="warehouse and Dagster home of the bench (wiped)")
    ap.add_argument("--timeout", type=float, default=1800.0, help="give up after this many wall seconds")
    ap.add_argument(
        "--pause-during-runs",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="advance the replay clock one 15m candle at a time, stopped until the live runs covering it are done: "
        "each candle meets an idle pipeline, as in real time (--no-pause-during-runs: candles coalesce, a stress test)",
    )
    ap.add_argument("--json", help="also write the per-candle / per-signal rows here")
    ap.add_argument("--port", type=int, default=0, help="Dagster UI port (0: a free one)")
    a = ap.parse_args(argv)
    out = Path(a.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    cfg = load_config()
    start_ms = parse_utc(a.start)
    fake = FakeTelegram()
    wall = SteppedWall()
    handle = start_replay(cfg.data_dir, start_ms, a.speed, wall=wall)
    p = _config(out, handle.base_url, start_ms, fake.url, a.log_recent)
    home = out / ".dagster_home"
    home.mkdir()
    shutil.copyfile(REPO / ".dagster_home" / "dagster.yaml", home / "dagster.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADER_", "DAGSTER_"))}
    env |= {"TRADER_CONFIG": str(p), "DAGSTER_HOME": str(home), "PYTHONPATH": str(REPO), "TELEGRAM_BOT_TOKEN": "b"}
    log = (out / "live.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "live", "--port", str(a.port or _port())],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    print(f"replay {handle.base_url} from {a.start} at {a.speed:g}x; fake Telegram {fake.url}; logs {out}/live.log")
    t0 = time.time()
    live_cfg = load_config(p)
    tfs = set(live_cfg.live.timeframes or live_cfg.setup_scanner.timeframes)
    steps = {tf: timeframe_ms(tf) for tf in tfs}
    lag_ms = int(live_cfg.live.close_lag_s * 1000)
    SPEED[0] = a.speed
    target = start_ms + steps["15m"]  # the first candle closing after the start

    def sim() -> float:
        return handle.exchange.clock.now_ms()

    try:
        while time.time() - t0 < a.timeout and proc.poll() is None:
            if not (a.pause_during_runs and wall.segments):
                time.sleep(5)
            if not (home / "storage").exists():
                continue
            try:
                res = candles(out, start_ms, _close_wall(wall, start_ms, a.speed))
            except Exception as e:  # the instance is being created: try again
                print(f"  ({type(e).__name__}: {str(e)[:80]})")
                continue
            if not wall.segments:
                if tfs <= set(res["runs"]["tf"]):
                    wall.resume()
                    if a.pause_during_runs:  # one candle at a time from here (_step_candle)
                        wall.pause()
                    print(f"  {time.time() - t0:5.0f} s: cold runs done; replay clock running at {a.speed:g}x")
                continue
            if a.pause_during_runs:
                target = _step_candle(wall, home, sim, target, steps, lag_ms, proc)
            n = int((res["candles"]["tf"] == "15m").sum()) if len(res["candles"]) else 0
            print(f"  {time.time() - t0:5.0f} s: {n} steady-state 15m candles measured, {len(res['runs'])} runs")
            if n >= a.candles:
                break
    finally:
        proc.send_signal(signal.SIGTERM)  # trader live stops dagster dev and its processes
        try:
            proc.wait(timeout=180)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        handle.stop()
        fake.stop()
        log.close()
    res = measure(out, fake, start_ms, _close_wall(wall, start_ms, a.speed))
    print(report(res))
    if a.json:
        Path(a.json).write_text(
            json.dumps({k: v.to_dict("records") for k, v in res.items()}, default=float, indent=1), encoding="utf-8"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
