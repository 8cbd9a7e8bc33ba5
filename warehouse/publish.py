"""Publish a read-only serving snapshot and its Parquet exports as one versioned set (no Dagster).

DuckDB allows one writer *or* many readers per file, so people never query the writer's file: the pipeline
copies the curated tables into a new version folder and switches an atomic pointer to it.

Layout (``exports_dir`` from the config, default ``warehouse/data/exports``)::

    exports/<version>/serving.duckdb          the snapshot of that publish
    exports/<version>/<schema>.<table>.parquet one Parquet file per table, same rows as the snapshot
    exports/current -> <version>               relative symlink, replaced with ``os.replace`` (atomic rename)
    serving.duckdb -> exports/current/serving.duckdb   fixed symlink at ``serving_path`` (compatibility)

A version is built under ``exports/.tmp-<version>/``, renamed to ``exports/<version>/`` when complete, and only
then does ``current`` switch, so a reader sees either the whole old set or the whole new set. A reader that reads
more than one file must resolve the pointer once (:func:`resolve_version` / :func:`resolve_snapshot`) and read
inside that folder; the last :data:`KEEP_VERSIONS` versions stay on disk so a pinned version outlives a few
publishes. Each publish first removes what a killed publisher left behind (``.tmp-*`` folders with their
half-written ``serving.duckdb`` and ``.wal``, ``*.tmp*`` files, the old layout's ``serving.duckdb.tmp<pid>``/``.wal``
and flat ``exports/*.parquet``) and, after switching, versions older than the last :data:`KEEP_VERSIONS`. Only one
publisher runs at a time: it holds the writer's DuckDB lock (and the ``duckdb_warehouse`` pool).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import shutil
import time
from pathlib import Path

import duckdb

from warehouse.io import fetch_one, table_exists

KEEP_VERSIONS = 3
"""Completed versions kept on disk (the current one included)."""

CURRENT = "current"
SNAPSHOT_FILE = "serving.duckdb"
_VERSION = re.compile(r"^v\d{8}T\d{6}\d{6}Z-\d+$")


def fingerprint(con: duckdb.DuckDBPyConnection, tables: list[str]) -> str:
    """Cheap content fingerprint: row count and max of the first sortable key per table."""
    parts = []
    for t in tables:
        if not table_exists(con, t):
            parts.append(f"{t}:missing")
            continue
        cols = [r[0] for r in con.execute(f"DESCRIBE {t}").fetchall()]
        key = "ts" if "ts" in cols else ("date" if "date" in cols else None)
        agg = f", max({key}), sum(hash(*columns(*)))" if key else ", sum(hash(*columns(*)))"
        parts.append(f"{t}:{fetch_one(con.execute(f'SELECT count(*){agg} FROM {t}'))}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def resolve_version(exports_dir: str | Path) -> Path | None:
    """The folder of the current published version (``exports/<version>``), or ``None`` before the first publish.

    Resolve once and read every file of the set inside the returned folder: it stays complete and unchanged for
    at least :data:`KEEP_VERSIONS` - 1 further publishes.
    """
    pointer = Path(exports_dir) / CURRENT
    try:
        target = os.readlink(pointer)
    except (FileNotFoundError, OSError):
        return None
    return (pointer.parent / target).resolve()


def resolve_snapshot(serving_path: str | Path) -> Path:
    """The real file behind ``serving_path`` (the current version's ``serving.duckdb``, symlinks resolved once).

    An old-layout plain file resolves to itself; a missing snapshot resolves to a path that does not exist.
    """
    return Path(os.path.realpath(serving_path))


def published_at(snapshot: str | Path) -> dt.datetime | None:
    """UTC time a snapshot was published, read from its version folder's name (``v<YYYYmmddTHHMMSSffffff>Z-<pid>``,
    written by :func:`publish_snapshot`): ``snapshot`` is a resolved ``serving.duckdb`` (:func:`resolve_snapshot`)
    or its folder. Falls back to the file's modification time for an old-layout plain file; None when missing."""
    p = Path(snapshot)
    folder = p if p.is_dir() else p.parent
    if _VERSION.match(folder.name):
        return dt.datetime.strptime(folder.name[1:22], "%Y%m%dT%H%M%S%f").replace(tzinfo=dt.UTC)
    try:
        return dt.datetime.fromtimestamp(p.stat().st_mtime, dt.UTC)
    except OSError:
        return None


def _atomic_symlink(target: str, link: Path) -> None:
    tmp = link.with_name(f".{link.name}.tmp{os.getpid()}")
    tmp.unlink(missing_ok=True)
    os.symlink(target, tmp)
    os.replace(tmp, link)


def _remove(p: Path) -> None:
    if p.is_symlink() or p.is_file():
        p.unlink(missing_ok=True)
    elif p.is_dir():
        shutil.rmtree(p, ignore_errors=True)


def clean_debris(serving_path: str | Path, exports_dir: str | Path, keep: int = KEEP_VERSIONS) -> list[str]:
    """Remove what dead publishers left and versions beyond the last ``keep``; returns the names removed.

    Safe only while holding the writer's lock (no other publisher can be running). Never removes the
    current version.
    """
    serving, exports = Path(serving_path), Path(exports_dir)
    removed: list[str] = []
    if exports.is_dir():
        current = resolve_version(exports)
        versions = sorted(p for p in exports.iterdir() if p.is_dir() and not p.is_symlink() and _VERSION.match(p.name))
        kept = set(versions[-keep:]) | ({current} if current else set())
        for p in exports.iterdir():
            debris = (
                p.name.startswith(".tmp-")
                or ".tmp" in p.name
                or (p.is_file() and p.suffix == ".parquet")  # the old flat layout
                or (p in versions and p not in kept)
            )
            if debris and p.name != CURRENT:
                _remove(p)
                removed.append(p.name)
    if serving.parent.is_dir():
        for p in serving.parent.glob(serving.name + ".tmp*"):  # old layout: serving.duckdb.tmp<pid> and its .wal
            _remove(p)
            removed.append(p.name)
        wal = serving.with_name(serving.name + ".wal")
        if wal.exists() and not serving.exists():
            _remove(wal)
            removed.append(wal.name)
    return removed


#: time blocks of the incremental publish: a table with an epoch-ms ``ts`` is compared and copied in blocks of
#: (its partition columns, ``ts // BLOCK_MS``); 7 days = 672 15m candles of one series
BLOCK_MS = 7 * 86_400_000
#: columns that split a table into independent series for the block comparison (those present are used)
PARTITION_COLUMNS = ("desk", "model_name", "run_id", "exchange", "symbol", "timeframe")
#: a full rebuild after this many incremental publishes in a row (rows deleted in place leave free blocks behind)
MAX_CHAIN = 200
MANIFEST = "manifest.json"


def _schema(con: duckdb.DuckDBPyConnection, t: str) -> list[tuple]:
    return [tuple(r[:2]) for r in con.execute(f"DESCRIBE {t}").fetchall()]


def _signature(con: duckdb.DuckDBPyConnection, t: str) -> tuple:
    """Whole-table content signature: row count and the order-independent sum of the rows' 64-bit hashes."""
    return fetch_one(con.execute(f"SELECT count(*), sum(hash(*columns(*))) FROM {t}"))


def _block_key(cols: list[str]) -> str | None:
    """SQL expression of a row's block id (:data:`BLOCK_MS`), None for a table without a ``ts`` column."""
    if "ts" not in cols:
        return None
    parts = [c for c in PARTITION_COLUMNS if c in cols]
    return f"hash({', '.join(parts + [f'ts // {BLOCK_MS}'])})"


def _sync_blocks(con: duckdb.DuckDBPyConnection, t: str, snap_t: str, key: str) -> int:
    """Make ``snap_t`` equal to ``t`` by replacing only the blocks whose row count or hash sums differ; returns the
    rows copied."""
    sig = f"SELECT {key} AS b, count(*) AS n, sum(hash(*columns(*))) AS h"
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _changed AS
            SELECT coalesce(w.b, s.b) AS b FROM ({sig} FROM {t} GROUP BY b) w
            FULL OUTER JOIN ({sig} FROM {snap_t} GROUP BY b) s ON w.b = s.b
            WHERE w.b IS NULL OR s.b IS NULL OR w.n <> s.n OR w.h <> s.h"""
    )
    try:
        if not fetch_one(con.execute("SELECT count(*) FROM _changed"))[0]:
            return 0
        con.execute(f"DELETE FROM {snap_t} WHERE {key} IN (SELECT b FROM _changed)")
        con.execute(f"INSERT INTO {snap_t} SELECT * FROM {t} WHERE {key} IN (SELECT b FROM _changed)")
        return fetch_one(con.execute(f"SELECT count(*) FROM {t} WHERE {key} IN (SELECT b FROM _changed)"))[0]
    finally:
        con.execute("DROP TABLE IF EXISTS _changed")


def _previous(version: Path | None) -> tuple[Path | None, int]:
    """The previous version's snapshot to start from and its incremental chain length (None: build from scratch)."""
    if version is None or not (version / SNAPSHOT_FILE).is_file() or not (version / MANIFEST).is_file():
        return None, 0
    try:
        chain = int(json.loads((version / MANIFEST).read_text())["chain"])
    except (ValueError, KeyError, TypeError, OSError):
        return None, 0
    return (None, 0) if chain >= MAX_CHAIN else (version / SNAPSHOT_FILE, chain)


def publish_snapshot(
    con: duckdb.DuckDBPyConnection,
    tables: list[str],
    serving_path: str,
    exports_dir: str,
    keep: int = KEEP_VERSIONS,
    incremental: bool = True,
    report: dict | None = None,
) -> dict[str, int]:
    """Copy ``tables`` from the open writer connection into a new version (snapshot + Parquet) and switch to it.

    **Incremental** (issue 16, speed: a publish costs what changed): the new version's ``serving.duckdb`` starts as a
    file copy of the current version's; a table whose content signature (rows and the sum of the row hashes,
    :func:`_signature`, per block for a table with ``ts``) and columns equal the snapshot's is kept, and its Parquet file is a hard link to the
    current version's (Parquet files are written once, never modified); a changed table with an epoch-ms ``ts``
    column has only its changed blocks (partition columns × 7 days, :data:`BLOCK_MS`) deleted and re-inserted, and
    its Parquet rewritten; any other changed table is copied whole. The result has the same rows as a full publish
    (row order inside a table is not part of the contract: every reader orders). A full rebuild happens without a
    current version written by this code (its ``manifest.json``), after :data:`MAX_CHAIN` incremental publishes in
    a row, or with ``incremental=False``.

    Args:
        con: the writer's connection (holding its lock is what makes the debris clean-up safe).
        tables: ``schema.table`` names; missing ones are skipped.
        serving_path: where the compatibility symlink to ``exports/current/serving.duckdb`` lives.
        exports_dir: the folder of versions (see the module docstring).
        keep: completed versions kept after the switch.
        report: optional dict that receives, per table published, how: ``linked`` (unchanged), ``blocks`` (the
            changed blocks copied), ``full`` (copied whole), with ``rows_copied``.

    Returns rows per table published. The previous version stays current until the pointer's ``os.replace``;
    a crash at any point leaves it current and the debris is removed by the next publish.
    """
    serving, exports = Path(serving_path), Path(exports_dir)
    exports.mkdir(parents=True, exist_ok=True)
    serving.parent.mkdir(parents=True, exist_ok=True)
    clean_debris(serving, exports, keep)
    prev_version = resolve_version(exports)
    prev, chain = _previous(prev_version) if incremental else (None, 0)
    version = f"v{dt.datetime.now(dt.UTC).strftime('%Y%m%dT%H%M%S%f')}Z-{os.getpid()}"
    build = exports / f".tmp-{version}"
    build.mkdir()
    snap = build / SNAPSHOT_FILE
    if prev is not None:
        shutil.copyfile(prev, snap)
    rows: dict[str, int] = {}
    how: dict[str, dict] = {}
    con.execute(f"ATTACH '{snap}' AS snap")
    try:
        have = {
            f"{s}.{n}"
            for s, n in con.execute(
                "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = 'snap'"
            ).fetchall()
        }
        wanted = [t for t in tables if table_exists(con, t)]
        for t in sorted(have - set(wanted)):  # a full publish would not hold it
            con.execute(f"DROP TABLE snap.{t}")
        for t in wanted:
            t0 = time.perf_counter()
            schema, name = t.split(".")
            st = f"snap.{schema}.{name}"
            mode, copied = "full", None
            old_pq = prev_version / f"{t}.parquet" if prev_version else None
            if t in have and (cols := _schema(con, t)) == _schema(con, st) and old_pq is not None and old_pq.is_file():
                if (key := _block_key([c for c, _ in cols])) is not None:
                    mode, copied = "blocks", _sync_blocks(con, t, st, key)
                    if not copied:
                        mode = "linked"
                elif _signature(con, t) == _signature(con, st):
                    mode, copied = "linked", 0
                if mode == "linked":
                    os.link(old_pq, build / f"{t}.parquet")
            if mode == "full":
                con.execute(f"CREATE SCHEMA IF NOT EXISTS snap.{schema}")
                con.execute(f"CREATE OR REPLACE TABLE {st} AS SELECT * FROM {t}")
            rows[t] = fetch_one(con.execute(f"SELECT count(*) FROM {st}"))[0]
            if mode != "linked":
                con.execute(
                    f"COPY (SELECT * FROM {st}) TO '{build / (t + '.parquet')}' (FORMAT parquet, COMPRESSION zstd)"
                )
            how[t] = {
                "mode": mode,
                "rows_copied": rows[t] if copied is None else int(copied),
                "seconds": round(time.perf_counter() - t0, 3),
            }
        con.execute("CHECKPOINT snap")
    finally:
        con.execute("DETACH snap")
    (build / MANIFEST).write_text(json.dumps({"chain": chain + 1 if prev is not None else 0, "tables": how}))
    os.replace(build, exports / version)
    _atomic_symlink(version, exports / CURRENT)
    link_target = os.path.relpath(exports / CURRENT / SNAPSHOT_FILE, serving.parent)
    if not (serving.is_symlink() and os.readlink(serving) == link_target):
        _atomic_symlink(link_target, serving)  # replaces an old-layout plain file atomically too
    clean_debris(serving, exports, keep)
    if report is not None:
        report.update(how)
    return rows
