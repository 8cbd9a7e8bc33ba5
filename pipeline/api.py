"""REST API of the options desk (seed 000 "REST API"), served by uvicorn: ``trader api serve``.

Reads only the published read-only snapshot (``serving.duckdb``, a link to the current published version, see
:mod:`warehouse.publish`), never the writer's file. One read-only DuckDB connection is kept per published version
and reopened when the pointer moves; each query uses its own cursor of it (DuckDB's thread-safe pattern). The small
signal tables are read once per version and answered from memory (a version never changes).
Health is cached for :data:`HEALTH_TTL_S` seconds. Tokens live in a small SQLite file beside the warehouse, stored
as SHA-256 hashes (a token is 32 random bytes, so a plain hash is enough) and shown once at creation.

Endpoints: ``GET /api/v1/health/`` (no auth); ``GET /api/v1/signals/`` (paginated, newest first),
``/api/v1/signals/latest/``, ``/api/v1/signals/{date}/`` with ``Authorization: Token <token>``.
Errors are JSON ``{"detail": ...}``: 401 wrong or missing token, 404 unknown date, 422 malformed date (only ISO
``YYYY-MM-DD``) or page out of bounds, 503 no snapshot published yet, 500 anything else; none of them names a path
or an internal error. ``HEAD`` is answered wherever ``GET`` is (same headers, no body).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
import re
import secrets
import sqlite3
import threading
import time
from contextlib import closing
from pathlib import Path
from typing import Annotated, Any

import duckdb
import pandas as pd
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict

from warehouse.publish import resolve_snapshot

_TOKENS_DDL = """CREATE TABLE IF NOT EXISTS api_tokens (id INTEGER PRIMARY KEY, username TEXT NOT NULL,
    token_sha256 TEXT NOT NULL UNIQUE, created_at TEXT NOT NULL, revoked_at TEXT)"""


class TokenStore:
    """Hashed API tokens in SQLite (``create`` returns the clear token once; only its hash is stored)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._con() as c:
            c.execute(_TOKENS_DDL)

    def _con(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path)

    @staticmethod
    def _hash(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    def create(self, username: str) -> str:
        token = secrets.token_hex(32)
        with self._con() as c:
            c.execute(
                "INSERT INTO api_tokens (username, token_sha256, created_at) VALUES (?, ?, ?)",
                (username, self._hash(token), dt.datetime.now(dt.UTC).isoformat(timespec="seconds")),
            )
        return token

    def revoke(self, username: str) -> int:
        """Revoke every active token of ``username``; returns how many."""
        with self._con() as c:
            return c.execute(
                "UPDATE api_tokens SET revoked_at = ? WHERE username = ? AND revoked_at IS NULL",
                (dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), username),
            ).rowcount

    def list(self) -> pd.DataFrame:
        with self._con() as c:
            return pd.read_sql_query("SELECT id, username, created_at, revoked_at FROM api_tokens ORDER BY id", c)

    def user_for(self, token: str) -> str | None:
        with closing(self._con()) as c:
            r = c.execute(
                "SELECT username FROM api_tokens WHERE token_sha256 = ? AND revoked_at IS NULL", (self._hash(token),)
            ).fetchone()
        return r[0] if r else None


HEALTH_TTL_S = 2.0
"""Seconds a health answer is reused (the endpoint is unauthenticated; it must not query DuckDB per call)."""
MAX_PAGE = 1_000_000
"""Largest ``page`` accepted (with ``page_size`` ≤ 500 the offset stays far inside DuckDB's BIGINT)."""
MAX_HEADER_BYTES = 16 * 1024
"""Largest request head (request line + headers) uvicorn accepts (``h11_max_incomplete_event_size``)."""
CACHE_ENTRIES = 4096
"""Answers memoised per snapshot version (the snapshot is immutable; a new publish empties the cache)."""
MAX_INPUT_ERRORS = 50
"""Input failures listed by health (the count is always complete)."""
_UNAVAILABLE = "serving snapshot not available (nothing published yet, or it is being replaced); retry later"
_ABS_PATH = re.compile(r"(?:[A-Za-z]:)?(?:[\\/][^\\/\s'\"`:,;()]+)+[\\/]")


class SnapshotUnavailable(Exception):
    """No published snapshot (or it lacks the signal tables)."""


class Error(BaseModel):
    """Every error body: ``{"detail": "<message>"}``."""

    detail: str


class InputError(BaseModel):
    input: str
    partition_key: str | None = None
    file: str | None = None
    rule: str | None = None
    message: str | None = None
    detected_at: str | None = None


class Health(BaseModel):
    status: str
    latest_signal_date: dt.date | None
    days: int
    input_errors: int
    failed_inputs: list[InputError]


class Trade(BaseModel):
    model_config = ConfigDict(extra="allow")
    date: dt.date
    trade_type: str


class Signal(BaseModel):
    model_config = ConfigDict(extra="allow")
    date: dt.date
    state: str
    trades: list[Trade]


class SignalRow(BaseModel):
    model_config = ConfigDict(extra="allow")
    date: dt.date
    state: str


class SignalPage(BaseModel):
    count: int
    page: int
    page_size: int
    pages: int
    results: list[SignalRow]


def _err(desc: str) -> dict:
    return {"model": Error, "description": desc}


_E401 = {401: _err("Missing or invalid token (send `Authorization: Token <token>`).")}
_E503 = {503: _err("No serving snapshot published yet.")}
_E500 = {500: _err("Internal error (details only in the server log).")}


def _value(v: Any) -> Any:
    if isinstance(v, dt.datetime):
        return v.date().isoformat() if v.time() == dt.time() else v.isoformat()
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if hasattr(v, "item"):
        return v.item()
    return v


def _file_name_only(text: Any) -> str | None:
    """``text`` with every directory part of an absolute or relative path removed (``/a/b/c.csv:12`` → ``c.csv:12``)."""
    return None if text is None else _ABS_PATH.sub("", str(text))


class Snapshot:
    """One read-only DuckDB connection per published version of ``serving_path``; :meth:`cursor` hands out a
    per-request cursor and reopens when the pointer (or an old-layout file's inode) changes.

    Raises :class:`SnapshotUnavailable` when nothing is published.
    """

    def __init__(self, serving_path: str):
        self.path = serving_path
        self._lock = threading.RLock()
        self._key: tuple | None = None
        self._con: duckdb.DuckDBPyConnection | None = None
        self._cache: dict[tuple, bytes] = {}
        self._memo: dict[str, Any] = {}
        self._cache_version: tuple | None = None

    def version(self) -> tuple:
        real = resolve_snapshot(self.path)
        try:
            st = os.stat(real)
        except OSError:
            raise SnapshotUnavailable from None
        return (str(real), st.st_ino, st.st_mtime_ns)

    def cursor(self) -> tuple[duckdb.DuckDBPyConnection, tuple]:
        key = self.version()
        con = self._con
        if key != self._key or con is None:
            with self._lock:
                if key != self._key or self._con is None:
                    try:
                        self._con = duckdb.connect(key[0], read_only=True)
                    except duckdb.Error:
                        raise SnapshotUnavailable from None
                    self._key = key  # the previous connection closes when its last cursor is dropped
                con = self._con
        return con.cursor(), key

    def cached(self, key: tuple, fn) -> bytes:
        """``fn()`` JSON-encoded, memoised per published version (a version never changes, so this is exact);
        at most :data:`CACHE_ENTRIES` answers are kept, oldest dropped first."""
        version = self.version()
        with self._lock:
            if self._cache_version != version:
                self._cache, self._memo, self._cache_version = {}, {}, version
            hit = self._cache.get(key)
        if hit is None:
            hit = json.dumps(fn(), separators=(",", ":"), allow_nan=False).encode()
            with self._lock:
                if self._cache_version == version:
                    if len(self._cache) >= CACHE_ENTRIES:
                        self._cache.pop(next(iter(self._cache)))
                    self._cache[key] = hit
        return hit

    def memo(self, key: str, fn):
        """``fn()`` computed once per published version (for the small signal tables loaded whole)."""
        version = self.version()
        with self._lock:
            if self._cache_version != version:
                self._cache, self._memo, self._cache_version = {}, {}, version
            if key not in self._memo:
                self._memo[key] = fn()
            return self._memo[key]

    def query(self, sql: str, params: list | None = None) -> list[dict]:
        cur, _ = self.cursor()
        try:
            cur.execute(sql, params or [])
            cols = [d[0] for d in cur.description]
            return [{c: _value(v) for c, v in zip(cols, row)} for row in cur.fetchall()]
        except duckdb.CatalogException:
            raise SnapshotUnavailable from None
        finally:
            cur.close()


class _HeadAsGet:
    """ASGI middleware: a ``HEAD`` request is routed as ``GET`` (uvicorn drops the body for ``HEAD`` itself)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "HEAD":
            scope = dict(scope, method="GET")
        await self.app(scope, receive, send)


def _health_body(snap: Snapshot) -> dict:
    last = snap.query("SELECT max(date) AS d, count(*) AS n FROM signals.options_daily")[0]
    has = snap.query(
        "SELECT count(*) AS n FROM duckdb_tables() WHERE schema_name = 'ops' AND table_name = 'input_errors'"
    )[0]["n"]
    n_err, failed = 0, []
    if has:
        n_err = snap.query("SELECT count(*) AS n FROM ops.input_errors")[0]["n"]
        rows = snap.query(
            "SELECT input, partition_key, locator, rule, message, detected_at FROM ops.input_errors "
            f"ORDER BY detected_at DESC NULLS LAST, input LIMIT {MAX_INPUT_ERRORS}"
        )
        failed = [
            {
                "input": str(r["input"]),
                "partition_key": None if r["partition_key"] is None else str(r["partition_key"]),
                "file": None if r["locator"] is None else os.path.basename(str(r["locator"]).replace("\\", "/")),
                "rule": None if r["rule"] is None else str(r["rule"]),
                "message": _file_name_only(r["message"]),
                "detected_at": None if r["detected_at"] is None else str(r["detected_at"]),
            }
            for r in rows
        ]
    return {
        "status": "degraded" if n_err else "ok",
        "latest_signal_date": last["d"],
        "days": int(last["n"]),
        "input_errors": int(n_err),
        "failed_inputs": failed,
    }


def create_app(serving_path: str, tokens_path: str) -> FastAPI:
    """The API over ``serving_path`` (DuckDB snapshot, or the link to the current version) with tokens from
    ``tokens_path``."""
    store = TokenStore(tokens_path)
    snap = Snapshot(serving_path)
    app = FastAPI(title="Options desk signals", version="1", description=__doc__.split("\n\n")[0])
    app.add_middleware(_HeadAsGet)
    health_cache: dict[str, Any] = {}
    health_lock = threading.Lock()

    @app.exception_handler(SnapshotUnavailable)
    async def _unavailable(request: Request, exc: SnapshotUnavailable) -> JSONResponse:
        return JSONResponse({"detail": _UNAVAILABLE}, status_code=503, headers={"Retry-After": "5"})

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": "internal error"}, status_code=500)

    async def auth(request: Request) -> str:
        h = request.headers.get("Authorization", "")
        scheme, _, token = h.partition(" ")
        user = store.user_for(token.strip()) if scheme == "Token" and token.strip() else None
        if user is None:
            raise HTTPException(
                401,
                "missing or invalid token (send 'Authorization: Token <token>')",
                headers={"WWW-Authenticate": "Token"},
            )
        return user

    def loaded() -> tuple[list[dict], dict[str, int], dict[str, list[dict]]]:
        """The version's daily signals (newest first), their index by ISO date and the trades by date, read once
        per version with one cursor (6,440 days and 1,323 trades on the real data: ~0.1 s)."""

        def load():
            daily = snap.query("SELECT * FROM signals.options_daily ORDER BY date DESC")
            by_day: dict[str, list[dict]] = {}
            for t in snap.query("SELECT * FROM signals.options_trades ORDER BY date, trade_type"):
                by_day.setdefault(t["date"], []).append(t)
            return daily, {r["date"]: i for i, r in enumerate(daily)}, by_day

        return snap.memo("signals", load)

    def signal(day: dt.date) -> dict | None:
        daily, index, trades = loaded()
        i = index.get(day.isoformat())
        return None if i is None else {**daily[i], "trades": trades.get(day.isoformat(), [])}

    @app.get("/api/v1/health/", response_model=Health, responses={**_E503, **_E500})
    async def health() -> JSONResponse:
        """Snapshot status (no token). ``ok``; ``degraded`` while ``ops.input_errors`` lists failed inputs (which
        ones, by input, partition, file name and rule); 503 when no snapshot is published. Cached a few seconds."""
        now = time.monotonic()
        key = snap.version()  # raises SnapshotUnavailable → 503
        hit = health_cache.get("v")
        if hit is None or hit[0] != key or now - hit[1] > HEALTH_TTL_S:
            with health_lock:
                hit = health_cache.get("v")
                if hit is None or hit[0] != key or now - hit[1] > HEALTH_TTL_S:
                    hit = health_cache["v"] = (key, now, _health_body(snap))
        return JSONResponse(hit[2])

    @app.get("/api/v1/signals/", response_model=SignalPage, responses={**_E401, **_E503, **_E500})
    async def signals(
        page: int = Query(1, ge=1, le=MAX_PAGE),
        page_size: int = Query(50, ge=1, le=500),
        _: str = Depends(auth),
    ) -> JSONResponse:
        """Daily signals, newest first (``page`` 1 … 1,000,000; beyond the last page ``results`` is empty)."""

        def build() -> dict:
            daily = loaded()[0]
            n, start = len(daily), (page - 1) * page_size
            pages = max(1, math.ceil(n / page_size))
            return {
                "count": n,
                "page": page,
                "page_size": page_size,
                "pages": pages,
                "results": daily[start : start + page_size],
            }

        return Response(snap.cached(("page", page, page_size), build), media_type="application/json")

    @app.get(
        "/api/v1/signals/latest/",
        response_model=Signal,
        responses={**_E401, 404: _err("No signal published yet."), **_E503, **_E500},
    )
    async def latest(_: str = Depends(auth)) -> JSONResponse:
        """The newest day's signal with its trades."""

        def build() -> dict | None:
            daily = loaded()[0]
            return signal(dt.date.fromisoformat(daily[0]["date"])) if daily else None

        body = snap.cached(("latest",), build)
        if body == b"null":
            raise HTTPException(404, "no signals yet")
        return Response(body, media_type="application/json")

    @app.get(
        "/api/v1/signals/{day}/",
        response_model=Signal,
        responses={**_E401, 404: _err("No signal for that date."), **_E503, **_E500},
    )
    async def by_date(
        day: Annotated[
            str,
            PathParam(
                pattern=r"^\d{4}-\d{2}-\d{2}$",
                description="ISO date YYYY-MM-DD (no epoch seconds, no time part).",
                json_schema_extra={"format": "date"},
            ),
        ],
        _: str = Depends(auth),
    ) -> JSONResponse:
        """One day's signal with its trades."""
        try:
            d = dt.date.fromisoformat(day)
        except ValueError:
            raise RequestValidationError(
                [{"type": "date_parsing", "loc": ("path", "day"), "msg": "not a valid ISO date", "input": day}]
            ) from None
        body = snap.cached(("day", d), lambda: signal(d))
        if body == b"null":
            raise HTTPException(404, f"no signal for {d.isoformat()}")
        return Response(body, media_type="application/json")

    return app


def uvicorn_config(app: FastAPI, host: str = "127.0.0.1", port: int = 8000, **kw):
    """The ``uvicorn.Config`` the API is served with: the h11 parser with the request head capped at
    :data:`MAX_HEADER_BYTES` (a bigger head is refused with 431/400 before reaching the app)."""
    import uvicorn

    return uvicorn.Config(app, host=host, port=port, http="h11", h11_max_incomplete_event_size=MAX_HEADER_BYTES, **kw)
