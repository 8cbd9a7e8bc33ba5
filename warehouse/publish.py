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
import os
import re
import shutil
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


def publish_snapshot(
    con: duckdb.DuckDBPyConnection,
    tables: list[str],
    serving_path: str,
    exports_dir: str,
    keep: int = KEEP_VERSIONS,
) -> dict[str, int]:
    """Copy ``tables`` from the open writer connection into a new version (snapshot + Parquet) and switch to it.

    Args:
        con: the writer's connection (holding its lock is what makes the debris clean-up safe).
        tables: ``schema.table`` names; missing ones are skipped.
        serving_path: where the compatibility symlink to ``exports/current/serving.duckdb`` lives.
        exports_dir: the folder of versions (see the module docstring).
        keep: completed versions kept after the switch.

    Returns rows per table published. The previous version stays current until the pointer's ``os.replace``;
    a crash at any point leaves it current and the debris is removed by the next publish.
    """
    serving, exports = Path(serving_path), Path(exports_dir)
    exports.mkdir(parents=True, exist_ok=True)
    serving.parent.mkdir(parents=True, exist_ok=True)
    clean_debris(serving, exports, keep)
    version = f"v{dt.datetime.now(dt.UTC).strftime('%Y%m%dT%H%M%S%f')}Z-{os.getpid()}"
    build = exports / f".tmp-{version}"
    build.mkdir()
    snap = build / SNAPSHOT_FILE
    rows: dict[str, int] = {}
    con.execute(f"ATTACH '{snap}' AS snap")
    try:
        for t in tables:
            if not table_exists(con, t):
                continue
            schema, name = t.split(".")
            con.execute(f"CREATE SCHEMA IF NOT EXISTS snap.{schema}")
            con.execute(f"CREATE TABLE snap.{schema}.{name} AS SELECT * FROM {t}")
            rows[t] = fetch_one(con.execute(f"SELECT count(*) FROM snap.{schema}.{name}"))[0]
            con.execute(
                f"COPY (SELECT * FROM snap.{schema}.{name}) TO '{build / (t + '.parquet')}' "
                "(FORMAT parquet, COMPRESSION zstd)"
            )
        con.execute("CHECKPOINT snap")
    finally:
        con.execute("DETACH snap")
    os.replace(build, exports / version)
    _atomic_symlink(version, exports / CURRENT)
    link_target = os.path.relpath(exports / CURRENT / SNAPSHOT_FILE, serving.parent)
    if not (serving.is_symlink() and os.readlink(serving) == link_target):
        _atomic_symlink(link_target, serving)  # replaces an old-layout plain file atomically too
    clean_debris(serving, exports, keep)
    return rows
