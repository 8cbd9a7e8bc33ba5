"""Issue 13 item 4: the serving snapshot and its Parquet exports are published as one versioned set behind an
atomic pointer; a reader polling during publishes never sees a mix; a publisher killed mid-way (a real
subprocess, ``kill -9``) leaves debris that the next publish removes while the previous version stays current."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from warehouse.publish import KEEP_VERSIONS, publish_snapshot, resolve_snapshot, resolve_version

TABLES = ["market.onchain_a", "market.onchain_b", "market.onchain_c"]
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def onchain(shared_data):
    """A real on-chain file (CoinMetrics BTC daily) as the published content."""
    return pd.read_csv(shared_data / "onchain" / "btc_daily.csv.gz").iloc[:, :6]


def _write(con, frame: pd.DataFrame, gen: int) -> None:
    con.execute("CREATE SCHEMA IF NOT EXISTS market")
    con.register("f", frame.iloc[: len(frame) - gen].assign(gen=gen))  # each generation: other rows, other marker
    for t in TABLES:
        con.execute(f"CREATE OR REPLACE TABLE {t} AS SELECT * FROM f")


def _read_set(serving: Path, exports: Path) -> tuple[set, set]:
    """What a reader sees: (generations in the snapshot, generations in the exports) of one resolved version."""
    version = resolve_version(exports)
    snap = resolve_snapshot(serving)
    assert snap.parent == version  # the fixed link and the pointer agree
    with duckdb.connect(str(snap), read_only=True) as con:
        in_snap = {con.execute(f"SELECT min(gen), max(gen), count(*) FROM {t}").fetchone() for t in TABLES}
        in_pq = {
            con.execute(f"SELECT min(gen), max(gen), count(*) FROM '{version / (t + '.parquet')}'").fetchone()
            for t in TABLES
        }
    return in_snap, in_pq


def test_reader_never_sees_a_mixed_set(onchain, tmp_path):
    serving, exports = tmp_path / "serving.duckdb", tmp_path / "exports"
    with duckdb.connect(str(tmp_path / "wh.duckdb")) as con:
        _write(con, onchain, 0)
        publish_snapshot(con, TABLES, str(serving), str(exports))
        done, seen, mixed, errors = threading.Event(), set(), [], []

        def reader():
            while not done.is_set():
                try:
                    in_snap, in_pq = _read_set(serving, exports)
                except Exception as e:  # a reader must never fail either
                    errors.append(repr(e))
                    continue
                if len(in_snap) != 1 or in_snap != in_pq:
                    mixed.append((in_snap, in_pq))
                seen.update(in_snap)

        th = threading.Thread(target=reader)
        th.start()
        for gen in range(1, 7):
            _write(con, onchain, gen)
            publish_snapshot(con, TABLES, str(serving), str(exports))
            time.sleep(0.05)
        done.set()
        th.join(30)
    assert not mixed and not errors, (mixed[:3], errors[:3])
    assert len(seen) >= 3  # the reader really saw several versions go by
    versions = [p for p in exports.iterdir() if p.name != "current"]
    assert len(versions) == KEEP_VERSIONS and resolve_version(exports) in versions
    assert _read_set(serving, exports)[0] == {(6, 6, len(onchain) - 6)}


_PUBLISHER = """
import sys, duckdb
sys.path.insert(0, {repo!r})
from warehouse.publish import publish_snapshot
con = duckdb.connect({wh!r})
con.execute("CREATE SCHEMA IF NOT EXISTS market")
for i in range(40):  # enough tables that the publish takes a few seconds
    con.execute(f"CREATE OR REPLACE TABLE market.big_{{i}} AS SELECT range AS k, random() AS x, gen FROM range(300000), "
                "(SELECT 99 AS gen)")
print("publishing", flush=True)
publish_snapshot(con, [f"market.big_{{i}}" for i in range(40)], {serving!r}, {exports!r})
print("done", flush=True)
"""


def test_killed_publisher_debris_is_removed_by_the_next_publish(onchain, tmp_path):
    serving, exports, wh = tmp_path / "serving.duckdb", tmp_path / "exports", tmp_path / "wh.duckdb"
    with duckdb.connect(str(wh)) as con:
        _write(con, onchain, 1)
        publish_snapshot(con, TABLES, str(serving), str(exports))
    first = resolve_version(exports)
    # debris of the old layout (a pre-issue-13 publisher killed mid-copy) and of its flat exports
    (tmp_path / "serving.duckdb.tmp4242").write_bytes(b"x" * 1000)
    (tmp_path / "serving.duckdb.tmp4242.wal").write_bytes(b"x" * 100)
    (exports / "market.onchain_a.parquet.tmp").write_bytes(b"x")
    script = _PUBLISHER.format(repo=str(REPO), wh=str(wh), serving=str(serving), exports=str(exports))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "publishing"
        deadline = time.monotonic() + 60
        build = None
        while time.monotonic() < deadline:  # kill once the new version is half-written (snapshot + some Parquet)
            builds = [p for p in exports.glob(".tmp-*") if len(list(p.glob("*.parquet"))) >= 3]
            if builds:
                build = builds[0]
                break
            time.sleep(0.01)
        assert build is not None and proc.poll() is None, "the publisher finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert build.exists() and (build / "serving.duckdb").exists()  # the dead publisher's debris
    assert resolve_version(exports) == first  # readers still get the complete previous version
    assert _read_set(serving, exports)[0] == {(1, 1, len(onchain) - 1)}
    with duckdb.connect(str(wh)) as con:  # the next publish (the killed one's lock died with it)
        _write(con, onchain, 2)
        publish_snapshot(con, TABLES, str(serving), str(exports))
    leftovers = sorted(p.name for p in tmp_path.rglob("*") if ".tmp" in p.name or p.name.endswith(".wal"))
    assert leftovers == []
    assert sorted(p.name for p in exports.iterdir()) == sorted(["current", first.name, resolve_version(exports).name])
    assert _read_set(serving, exports)[0] == {(2, 2, len(onchain) - 2)}
