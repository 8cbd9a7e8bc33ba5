"""REST API of the options desk (seed 000 "REST API"), served by uvicorn: ``trader api serve``.

Reads only the published read-only snapshot (``serving.duckdb``), never the writer's file; a fresh read-only
connection per request picks up each newly published snapshot. Tokens live in a small SQLite file beside
the warehouse, stored as SHA-256 hashes (a token is 32 random bytes, so a plain hash is enough) and shown
once at creation.

Endpoints: ``GET /api/v1/health/`` (no auth); ``GET /api/v1/signals/`` (paginated, newest first),
``/api/v1/signals/latest/``, ``/api/v1/signals/{date}/`` with ``Authorization: Token <token>``.
Errors are JSON ``{"detail": ...}``: 401 wrong or missing token, 404 unknown date, 422 malformed date or page.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import secrets
import sqlite3
from pathlib import Path

import pandas as pd
from fastapi import Depends, FastAPI, HTTPException, Query, Request

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
        with self._con() as c:
            r = c.execute(
                "SELECT username FROM api_tokens WHERE token_sha256 = ? AND revoked_at IS NULL", (self._hash(token),)
            ).fetchone()
        return r[0] if r else None


def _records(df: pd.DataFrame) -> list[dict]:
    out = []
    for row in df.to_dict(orient="records"):
        clean = {}
        for k, v in row.items():
            if isinstance(v, pd.Timestamp):
                v = v.date().isoformat() if v == v.normalize() else v.isoformat()
            elif isinstance(v, float) and not math.isfinite(v):
                v = None
            elif v is pd.NA or (not isinstance(v, (str, list, dict)) and pd.isna(v)):
                v = None
            elif hasattr(v, "item"):
                v = v.item()
            clean[k] = v
        out.append(clean)
    return out


def create_app(serving_path: str, tokens_path: str) -> FastAPI:
    """The API over ``serving_path`` (DuckDB snapshot) with tokens from ``tokens_path``."""
    import duckdb

    store = TokenStore(tokens_path)
    app = FastAPI(title="Options desk signals", version="1", description=__doc__.split("\n\n")[0])

    def query(sql: str, params: list | None = None) -> pd.DataFrame:
        try:
            with duckdb.connect(serving_path, read_only=True) as con:
                return con.execute(sql, params or []).df()
        except (duckdb.IOException, duckdb.CatalogException) as e:
            raise HTTPException(503, f"serving snapshot not available: {e}") from None

    def auth(request: Request) -> str:
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

    def signal(day: dt.date) -> dict | None:
        d = query("SELECT * FROM signals.options_daily WHERE date = ?", [day])
        if d.empty:
            return None
        t = query("SELECT * FROM signals.options_trades WHERE date = ? ORDER BY trade_type", [day])
        rec = _records(d)[0]
        rec["trades"] = _records(t)
        return rec

    @app.get("/api/v1/health/")
    def health() -> dict:
        try:
            last = query("SELECT max(date) AS d, count(*) AS n FROM signals.options_daily")
            return {"status": "ok", "latest_signal_date": _records(last)[0]["d"], "days": int(last["n"][0])}
        except HTTPException as e:
            return {"status": "degraded", "detail": e.detail}

    @app.get("/api/v1/signals/")
    def signals(page: int = Query(1, ge=1), page_size: int = Query(50, ge=1, le=500), _: str = Depends(auth)) -> dict:
        n = int(query("SELECT count(*) AS n FROM signals.options_daily")["n"][0])
        rows = query(
            "SELECT * FROM signals.options_daily ORDER BY date DESC LIMIT ? OFFSET ?",
            [page_size, (page - 1) * page_size],
        )
        return {
            "count": n,
            "page": page,
            "page_size": page_size,
            "pages": max(1, math.ceil(n / page_size)),
            "results": _records(rows),
        }

    @app.get("/api/v1/signals/latest/")
    def latest(_: str = Depends(auth)) -> dict:
        last = query("SELECT max(date) AS d FROM signals.options_daily")["d"][0]
        if pd.isna(last):
            raise HTTPException(404, "no signals yet")
        return signal(pd.Timestamp(last).date())

    @app.get("/api/v1/signals/{day}/")
    def by_date(day: dt.date, _: str = Depends(auth)) -> dict:
        s = signal(day)
        if s is None:
            raise HTTPException(404, f"no signal for {day.isoformat()}")
        return s

    return app
