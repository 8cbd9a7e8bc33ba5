"""REST API of the desks (seed 000 "REST API"), served by uvicorn: ``trader api serve``.

Reads only the published read-only snapshot (``serving.duckdb``, a link to the current published version, see
:mod:`warehouse.publish`) through :mod:`warehouse.serving`, never the writer's file. One read-only DuckDB connection
is kept per published version and reopened when the pointer moves; each query uses its own cursor of it (DuckDB's
thread-safe pattern). The small tables are read once per version and answered from memory (a version never changes).
Health is cached for :data:`HEALTH_TTL_S` seconds. Tokens live in a small SQLite file beside the warehouse, stored
as SHA-256 hashes (a token is 32 random bytes, so a plain hash is enough) and shown once at creation.

Endpoints: ``GET /api/v1/health/`` (no auth: ages of the latest signal and of each input, ``ok``/``degraded``);
with ``Authorization: Token <token>`` (the OpenAPI security scheme ``Token``, an API-key header): the options desk's
``/api/v1/signals/`` (paginated, newest first), ``/api/v1/signals/latest/``, ``/api/v1/signals/{date}/``; the setup
scanner's gated signals ``/api/v1/setups/`` (``symbol``, ``timeframe`` filters) and ``/api/v1/setups/latest/``
(newest per symbol × timeframe); every desk's newest backtest summary ``/api/v1/backtests/`` and
``/api/v1/backtests/{desk}/``; model status (latest training, champion) ``/api/v1/models/`` and
``/api/v1/models/{name}/``. Lists take ``page`` (1 … 1,000,000) and ``page_size`` (1 … 500) and answer ``count,
page, page_size, pages, next, previous, results``; a page past the last is a 404 (page 1 of nothing is empty).
Errors are JSON ``{"detail": ...}``: 401 wrong or missing token, 404 unknown date/desk/model or page past the last,
422 malformed date (only ISO ``YYYY-MM-DD``) or page out of bounds, 503 no snapshot published yet, 500 anything
else; none of them names a path or an internal error. ``HEAD`` is answered wherever ``GET`` is (same headers, no
body). ``/docs`` (Swagger UI) and ``/redoc`` load their JavaScript and CSS from the installed ``fastapi_offline``
package under :data:`DOCS_STATIC`, never from a CDN.
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
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any, Generic, Literal, TypeVar
from urllib.parse import urlencode

import pandas as pd
from fastapi import Depends, FastAPI, HTTPException, Query, Request, Security
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import APIKeyHeader
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, JsonValue

from pipeline.config import TraderConfig
from pipeline.core.timeframes import TIMEFRAME_MS
from warehouse import serving
from warehouse.serving import CACHE_ENTRIES, Snapshot, SnapshotUnavailable  # noqa: F401 (re-exported)

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
MAX_INPUT_ERRORS = 50
"""Input failures listed by health (the count is always complete)."""
DOCS_STATIC = "/static/docs"
"""URL prefix of the Swagger UI / ReDoc files served from the installed ``fastapi_offline`` package (no CDN)."""
_UNAVAILABLE = "serving snapshot not available (nothing published yet, or it is being replaced); retry later"
_ABS_PATH = re.compile(r"(?:[A-Za-z]:)?(?:[\\/][^\\/\s'\"`:,;()]+)+[\\/]")
_NAME = r"^[A-Za-z0-9_.-]{1,100}$"
_JSON_COLUMNS = ("universe", "params", "costs", "metrics", "benchmark", "per_symbol", "promotion_reasons")


class Error(BaseModel):
    """Every error body: ``{"detail": "<message>"}``."""

    detail: str


class InputError(BaseModel):
    """One input failing validation now (``ops.input_errors``), file names only."""

    input: str
    partition_key: str | None = None
    file: str | None = None
    rule: str | None = None
    message: str | None = None
    detected_at: dt.datetime | None = Field(None, description="UTC.")


class InputAge(BaseModel):
    """How old one input (or signal table) of the snapshot is."""

    input: str = Field(description="signals | setups | candles | onchain | sentiment")
    table: str = Field(description="Snapshot table, e.g. market.ohlcv.")
    rows: int
    latest: dt.datetime | None = Field(
        description="UTC end of the newest period: a candle's close, the end (next 00:00 UTC) of a daily row's day, "
        "a setup signal's candle open time; null when the table is empty."
    )
    age_hours: float | None = Field(description="Hours from `latest` to the time of the answer (`checked_at`).")
    max_age_hours: float | None = Field(description="Configured bound (null: reported only, never degrades).")
    stale: bool = Field(description="Older than `max_age_hours` (candles: the stalest series), or empty.")
    stalest_series: str | None = Field(None, description="Candles: the series whose newest candle is oldest.")
    stalest_age_hours: float | None = Field(None, description="Candles: that series' age, hours.")


class Health(BaseModel):
    """``ok``, or ``degraded`` with the reasons (stale or empty inputs, inputs failing validation)."""

    status: Literal["ok", "degraded"]
    reasons: list[str] = Field(description="Why degraded (empty when ok).")
    checked_at: dt.datetime = Field(description="UTC time the ages are measured to.")
    latest_signal_date: dt.date | None
    signal_age_days: int | None = Field(
        description="UTC today - latest_signal_date, days (degraded above options_desk.max_data_age_days)."
    )
    days: int = Field(description="Daily signals in the snapshot.")
    inputs: list[InputAge]
    input_errors: int
    failed_inputs: list[InputError]


class _Row(BaseModel):
    # new warehouse columns still reach the answer (typed once added here); every current column is declared
    model_config = ConfigDict(extra="allow")


class Trade(_Row):
    """One options-desk trade (``signals.options_trades``): the structure to open that day."""

    date: dt.date
    trade_type: str = Field(description="LONG | PRIMARY_SHORT | BULL_PROBE | BEAR_PROBE | TACTICAL_PUT")
    direction: int | None = Field(None, description="+1 long, -1 short.")
    structure: str | None = Field(None, description="LONG_CALL, CALL_SPREAD, LONG_PUT, PUT_SPREAD ...")
    strike_long: float | None = Field(None, description="USD.")
    strike_short: float | None = Field(None, description="USD (spreads).")
    expiry: dt.date | None = None
    dte: int | None = Field(None, description="Days to expiry.")
    size: float | None = Field(None, description="Position size multiplier.")
    confidence: str | None = None
    reason: str | None = None
    spot_usd: float | None = Field(None, description="BTC reference price that day, USD.")
    model_gate: str | None = None
    cooldown_status: str | None = None
    model_version: str | None = None


class SignalRow(_Row):
    """One day of the options desk (``signals.options_daily``)."""

    date: dt.date
    state: str = Field(description="Fusion state, e.g. strong_bullish, no_trade.")
    mdia_regime: str | None = None
    mdia_source: str | None = None
    whale_regime: str | None = None
    whale_source: str | None = None
    mvrv_ls_regime: str | None = None
    mvrv_ls_source: str | None = None
    score: int | None = None
    conflicts: int | None = None
    conviction: int | None = None
    state_reason: str | None = None
    trade_type: str | None = None
    direction: int | None = None
    confidence: str | None = None
    base_size: float | None = None
    overlay: str | None = None
    overlay_level: float | None = None
    size_mult: float | None = None
    dte_mult: float | None = None
    overlay_reason: str | None = None
    tactical_put: bool | None = None
    tactical_size: float | None = None
    tactical_signs: int | None = None
    tactical_confidence: str | None = None
    tactical_reason: str | None = None
    near_peak: float | None = None
    size: float | None = None
    spot_usd: float | None = Field(None, description="USD.")
    available_at: dt.datetime | None = Field(None, description="UTC time the day's inputs were usable.")
    p_long: float | None = Field(None, description="Champion p_long (null: no champion score).")
    p_short: float | None = None
    signal_option_call: float | None = None
    signal_option_put: float | None = None
    p_long_version: str | None = None
    p_short_version: str | None = None
    model_gate_mode: str | None = None


class Signal(SignalRow):
    """One day's signal with its trades."""

    trades: list[Trade]


class SetupSignal(_Row):
    """One gated signal of the setup scanner (``signals.setups``): plan, gate and execution. Times ``*_ts`` are epoch
    ms UTC (``time`` is ``ts`` as an ISO time); prices in the quote currency; ``*_pct`` in percent."""

    time: dt.datetime = Field(description="Open time of the signal's candle, UTC (= ts).")
    ts: int
    candidate_id: str
    exchange: str | None = None
    symbol: str
    timeframe: str
    side: int | None = Field(None, description="+1 long, -1 short.")
    level: float | None = Field(None, description="Fibonacci retracement level of the entry.")
    entry_type: str | None = None
    entry: float | None = None
    sl: float | None = None
    tp1: float | None = None
    tp2: float | None = None
    atr: float | None = None
    avwap: float | None = None
    avwap_dist_atr: float | None = None
    avwap_slope_atr: float | None = None
    leg_low: float | None = None
    leg_high: float | None = None
    leg_atr: float | None = None
    rr_tp1: float | None = None
    tp1_net_pct: float | None = None
    sl_pct: float | None = None
    qty: float | None = None
    notional: float | None = None
    leverage: float | None = None
    liq_price: float | None = None
    validity_candles: int | None = None
    reject_reason: str | None = None
    trend_regime: str | None = None
    volatility_level: str | None = None
    p_win: float | None = Field(None, description="Calibrated p(win) of the meta-model in force.")
    scored_by: str | None = None
    ev_pct: float | None = None
    threshold: float | None = None
    threshold_source: str | None = None
    passed: bool | None = None
    why: str | None = None
    outcome_alone: str | None = None
    net_pct_alone: float | None = None
    win_alone: float | None = None
    status: str | None = Field(None, description="Execution status: TP, SL, TP1_TRAIL, TIMEOUT, EXPIRED, SKIPPED ...")
    status_reason: str | None = None
    entry_ts: int | None = None
    exit_ts: int | None = None
    entry_price: float | None = None
    exit_price: float | None = None
    exit_reason: str | None = None
    pnl: float | None = None
    net_pct: float | None = None
    tp1_hit: bool | None = None
    gate_mode: str | None = None
    model_version: str | None = None
    scanned_at: dt.datetime | None = None


class BacktestSummary(BaseModel):
    """The newest backtest of one desk × strategy (``backtest.runs``; ``params`` and ``per_symbol`` stay there)."""

    run_id: str
    desk: str
    strategy: str
    sample: str | None = Field(None, description="in/out of sample, as the desk states it.")
    period_start: dt.datetime | None = None
    period_end: dt.datetime | None = None
    timeframe: str | None = None
    universe: list[str] = []
    metrics: dict[str, JsonValue] = Field(
        default_factory=dict,
        description="total_return, annual_return, sharpe, max_drawdown, n_trades, ... (fractions).",
    )
    benchmark: dict[str, JsonValue] = Field(default_factory=dict, description="Buy-and-hold (and the desk's) figures.")
    costs: dict[str, JsonValue] = Field(default_factory=dict)
    model_name: str | None = None
    model_run_id: str | None = None
    mlflow_run_id: str | None = None
    code_version: str | None = None
    created_at: dt.datetime | None = None


class Scores(_Row):
    """Out-of-sample probability scores of one training run."""

    n: float | None = None
    base_rate: float | None = None
    brier: float | None = None
    brier_base: float | None = None
    brier_skill: float | None = None
    log_loss: float | None = None
    ece: float | None = None
    auc: float | None = None


class ModelVersion(BaseModel):
    """One training run of a model (``ml.model_runs``)."""

    model_version: str
    mlflow_run_id: str
    trained_at: dt.datetime | None = None
    data_start: dt.datetime | None = None
    data_end: dt.datetime | None = None
    n_rows: int | None = None
    n_folds: int | None = None
    oos_raw: Scores | None = Field(None, description="Walk-forward out-of-sample scores, uncalibrated.")
    oos_calibrated: Scores | None = None
    promotion_passed: bool | None = None
    promotion_reasons: list[str] = []
    promoted: bool | None = Field(None, description="This version carries @champion (as of the snapshot).")
    code_version: str | None = None


class ModelStatus(BaseModel):
    """A model's latest training and its champion (the newest promoted version)."""

    model_name: str
    status: Literal["latest_is_champion", "older_champion", "no_champion"]
    versions: int = Field(description="Training runs in the snapshot.")
    latest: ModelVersion
    champion: ModelVersion | None


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """A page of ``results``; ``next`` / ``previous`` are relative links (null at the ends)."""

    count: int = Field(description="Items over all pages.")
    page: int
    page_size: int
    pages: int = Field(description="Number of pages (1 when there is nothing).")
    next: str | None
    previous: str | None
    results: list[T]


class SignalPage(Page[SignalRow]):
    """Daily signals, newest first."""


class SetupPage(Page[SetupSignal]):
    """Gated setup signals, newest first."""


class BacktestPage(Page[BacktestSummary]):
    """Newest backtest of every desk × strategy."""


class ModelPage(Page[ModelStatus]):
    """Status of every model."""


def _err(desc: str) -> dict:
    return {"model": Error, "description": desc}


_E401 = {401: _err("Missing or invalid token (send `Authorization: Token <token>`).")}
_E503 = {503: _err("No serving snapshot published yet.")}
_E500 = {500: _err("Internal error (details only in the server log).")}
_E404_PAGE = {404: _err("Page beyond the last page.")}


def _file_name_only(text: Any) -> str | None:
    """``text`` with every directory part of an absolute or relative path removed (``/a/b/c.csv:12`` → ``c.csv:12``)."""
    return None if text is None else _ABS_PATH.sub("", str(text))


def _ms(ts: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts / 1000, dt.UTC)


def _json(v: Any) -> Any:
    return json.loads(v) if isinstance(v, str) else v


def _hours(now: dt.datetime, t: dt.datetime | None) -> float | None:
    return None if t is None else round((now - t).total_seconds() / 3600, 2)


def _day_end(d: dt.date | None) -> dt.datetime | None:
    return None if d is None else dt.datetime.combine(d + dt.timedelta(days=1), dt.time(), dt.UTC)


def input_ages(fresh: dict[str, dict], now: dt.datetime, cfg: TraderConfig) -> list[InputAge]:
    """The age of every input and signal table in ``fresh`` (:func:`warehouse.serving.freshness`) at ``now``.

    Bounds (hours): ``signals`` ``options_desk.max_data_age_days`` × 24 from the end of the signal's day (the same
    day count as the CLI's STALE DATA warning), ``candles`` / ``onchain`` / ``sentiment`` ``api.health.max_*``;
    ``setups`` is reported only. An empty table is stale.
    """
    h = cfg.api.health
    bounds = {
        "signals": cfg.options_desk.max_data_age_days * 24.0,
        "onchain": h.max_onchain_age_hours,
        "sentiment": h.max_sentiment_age_hours,
        "candles": h.max_candle_age_hours,
        "setups": None,
    }
    out = []
    for name in ("signals", "setups", "candles", "onchain", "sentiment"):
        f = fresh.get(name)
        if f is None:
            continue
        stalest = stalest_age = None
        if name == "candles":
            closes = [(_ms(s["last_ts"] + TIMEFRAME_MS.get(s["timeframe"], 0)), s) for s in f["series"]]
            latest = max((c for c, _ in closes), default=None)
            if closes:
                c, s = min(closes, key=lambda x: x[0])
                stalest, stalest_age = f"{s['exchange']} {s['symbol']} {s['timeframe']}", _hours(now, c)
        elif name == "setups":
            latest = None if f["last_ts"] is None else _ms(f["last_ts"])
        else:
            latest = _day_end(f["last_date"])
        age, bound = _hours(now, latest), bounds[name]
        judged = stalest_age if stalest_age is not None else age
        stale = bound is not None and (judged is None or judged > bound)
        out.append(
            InputAge(
                input=name,
                table=f["table"],
                rows=f["rows"],
                latest=latest,
                age_hours=age,
                max_age_hours=bound,
                stale=stale,
                stalest_series=stalest,
                stalest_age_hours=stalest_age,
            )
        )
    return out


class _HeadAsGet:
    """ASGI middleware: a ``HEAD`` request is routed as ``GET`` (uvicorn drops the body for ``HEAD`` itself)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "HEAD":
            scope = dict(scope, method="GET")
        await self.app(scope, receive, send)


def compute_health(snap: Snapshot, cfg: TraderConfig, now: dt.datetime) -> Health:
    def load(cur):
        n_err, errs = serving.input_errors(cur, MAX_INPUT_ERRORS)
        return serving.freshness(cur), n_err, errs

    fresh, n_err, rows = snap.memo("health", load)
    if "signals" not in fresh:
        raise SnapshotUnavailable
    failed = [
        InputError(
            input=str(r["input"]),
            partition_key=None if r["partition_key"] is None else str(r["partition_key"]),
            file=None if r["locator"] is None else os.path.basename(str(r["locator"]).replace("\\", "/")),
            rule=None if r["rule"] is None else str(r["rule"]),
            message=_file_name_only(r["message"]),
            detected_at=r["detected_at"],
        )
        for r in rows
    ]
    ages = input_ages(fresh, now, cfg)
    reasons = [
        f"{a.input} ({a.table}) is empty"
        if a.latest is None
        else f"{a.input} ({a.stalest_series or a.table}) is {a.stalest_age_hours or a.age_hours:,.1f} h old "
        f"(max {a.max_age_hours:g} h)"
        for a in ages
        if a.stale
    ]
    if n_err:
        reasons.append(f"{n_err} input(s) fail validation (failed_inputs)")
    last = fresh["signals"]["last_date"]
    return Health(
        status="degraded" if reasons else "ok",
        reasons=reasons,
        checked_at=now.replace(microsecond=0),
        latest_signal_date=last,
        signal_age_days=None if last is None else (now.date() - last).days,
        days=fresh["signals"]["rows"],
        inputs=ages,
        input_errors=n_err,
        failed_inputs=failed,
    )


def _paginate(items: list, page: int, page_size: int, path: str, filters: dict | None = None) -> dict:
    """``count, page, page_size, pages, next, previous, results`` of ``items``; a page past the last is a 404
    (page 1 of nothing is an empty page), as Django REST framework's page-number pagination does."""
    n = len(items)
    pages = max(1, math.ceil(n / page_size))
    if page > pages:
        raise HTTPException(404, f"page {page} is beyond the last page ({pages} pages of {page_size})")
    q = {k: v for k, v in (filters or {}).items() if v is not None}

    def link(p: int) -> str:
        return f"{path}?{urlencode({**q, 'page': p, 'page_size': page_size})}"

    start = (page - 1) * page_size
    return {
        "count": n,
        "page": page,
        "page_size": page_size,
        "pages": pages,
        "next": link(page + 1) if page < pages else None,
        "previous": link(page - 1) if page > 1 else None,
        "results": items[start : start + page_size],
    }


def _model_version(r: dict) -> ModelVersion:
    m = _json(r.get("metrics")) or {}
    return ModelVersion(
        **{k: r.get(k) for k in ("mlflow_run_id", "trained_at", "data_start", "data_end", "n_rows", "n_folds")},
        model_version=str(r["model_version"]),
        oos_raw=m.get("raw"),
        oos_calibrated=m.get("cal"),
        promotion_passed=r.get("promotion_passed"),
        promotion_reasons=_json(r.get("promotion_reasons")) or [],
        promoted=r.get("promoted"),
        code_version=None if r.get("code_version") is None else str(r["code_version"]),
    )


def model_statuses(runs: list[dict]) -> list[ModelStatus]:
    """One :class:`ModelStatus` per model of ``runs`` (newest training first within a model)."""
    by: dict[str, list[dict]] = {}
    for r in runs:
        by.setdefault(r["model_name"], []).append(r)
    out = []
    for name, rs in sorted(by.items()):
        champ = next((r for r in rs if r.get("promoted")), None)
        status = "no_champion" if champ is None else "latest_is_champion" if champ is rs[0] else "older_champion"
        out.append(
            ModelStatus(
                model_name=name,
                status=status,
                versions=len(rs),
                latest=_model_version(rs[0]),
                champion=None if champ is None else _model_version(champ),
            )
        )
    return out


def _backtest(r: dict) -> BacktestSummary:
    r = {k: (_json(v) if k in _JSON_COLUMNS else v) for k, v in r.items()}
    fields = BacktestSummary.model_fields
    return BacktestSummary(
        **{k: v for k, v in r.items() if k in fields and v is not None and k != "code_version"},
        code_version=None if r.get("code_version") is None else str(r["code_version"]),
    )


_PAGE = Query(1, ge=1, le=MAX_PAGE, description="1-based; past the last page: 404.")
_PAGE_SIZE = Query(50, ge=1, le=500)


def create_app(serving_path: str, tokens_path: str, cfg: TraderConfig | None = None) -> FastAPI:
    """The API over ``serving_path`` (DuckDB snapshot, or the link to the current version) with tokens from
    ``tokens_path``; health's age bounds from ``cfg`` (default: the defaults of :class:`TraderConfig`)."""
    cfg = cfg or TraderConfig()
    store = TokenStore(tokens_path)
    snap = Snapshot(serving_path)
    app = FastAPI(
        title="Trader API",
        version="1",
        description=__doc__.split("\n\n")[0],
        docs_url=None,
        redoc_url=None,
    )
    app.add_middleware(_HeadAsGet)
    app.mount(DOCS_STATIC, StaticFiles(directory=str(files("fastapi_offline") / "static")), name="docs-static")
    health_cache: dict[str, Any] = {}
    health_lock = threading.Lock()
    token_header = APIKeyHeader(
        name="Authorization",
        scheme_name="Token",
        description="The header `Authorization: Token <token>`: type `Token ` then the token "
        "(from `trader api create-token --username NAME`).",
        auto_error=False,
    )

    @app.exception_handler(SnapshotUnavailable)
    async def _unavailable(request: Request, exc: SnapshotUnavailable) -> JSONResponse:
        return JSONResponse({"detail": _UNAVAILABLE}, status_code=503, headers={"Retry-After": "5"})

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": "internal error"}, status_code=500)

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{DOCS_STATIC}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_STATIC}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_STATIC}/favicon.png",
            swagger_ui_parameters={"persistAuthorization": True, "validatorUrl": None},
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=app.openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{DOCS_STATIC}/redoc.standalone.js",
            redoc_favicon_url=f"{DOCS_STATIC}/favicon.png",
            with_google_fonts=False,
        )

    async def auth(header: str | None = Security(token_header)) -> str:
        scheme, _, token = (header or "").partition(" ")
        user = store.user_for(token.strip()) if scheme == "Token" and token.strip() else None
        if user is None:
            raise HTTPException(
                401,
                "missing or invalid token (send 'Authorization: Token <token>')",
                headers={"WWW-Authenticate": "Token"},
            )
        return user

    def json_response(body: bytes, missing: str | None = None) -> Response:
        if body == b"null":
            raise HTTPException(404, missing or "not found")
        return Response(body, media_type="application/json")

    def loaded() -> tuple[list[SignalRow], dict[str, int], dict[str, list[Trade]]]:
        """The version's daily signals (newest first), their index by ISO date and the trades by date, read once
        per version with one cursor (6,440 days and 1,323 trades on the real data: ~0.1 s)."""

        def load(cur):
            daily = serving.options_daily(cur)
            trades = serving.options_trades(cur)
            if daily is None or trades is None:
                return None
            by_day: dict[str, list[Trade]] = {}
            for t in trades:
                by_day.setdefault(t["date"].isoformat(), []).append(Trade(**t))
            rows = [SignalRow(**r) for r in daily]
            return rows, {r.date.isoformat(): i for i, r in enumerate(rows)}, by_day

        return snap.memo("signals", load)

    def signal(day: dt.date) -> Signal | None:
        daily, index, trades = loaded()
        i = index.get(day.isoformat())
        if i is None:
            return None
        row = daily[i]
        return Signal(**row.model_dump(), trades=trades.get(day.isoformat(), []))

    def setups() -> list[SetupSignal]:
        return snap.memo("setups", lambda cur: _opt(serving.setups(cur), lambda r: SetupSignal(time=_ms(r["ts"]), **r)))

    @app.get(
        "/api/v1/health/",
        summary="Health: input ages, ok / degraded",
        response_model=Health,
        responses={**_E503, **_E500},
    )
    async def health() -> Response:
        """Snapshot status (no token): the age of the latest signal and of each input (candles, on-chain,
        sentiment, setup signals: whatever the snapshot holds) and the inputs failing validation. ``degraded`` with
        its ``reasons`` when an input is older than its configured bound (``api.health``,
        ``options_desk.max_data_age_days``) or fails validation; 503 when no snapshot is published. Cached a few
        seconds."""
        now = time.monotonic()
        key = snap.version()  # raises SnapshotUnavailable → 503
        hit = health_cache.get("v")
        if hit is None or hit[0] != key or now - hit[1] > HEALTH_TTL_S:
            with health_lock:
                hit = health_cache.get("v")
                if hit is None or hit[0] != key or now - hit[1] > HEALTH_TTL_S:
                    body = compute_health(snap, cfg, dt.datetime.now(dt.UTC)).model_dump_json().encode()
                    hit = health_cache["v"] = (key, now, body)
        return Response(hit[2], media_type="application/json")

    @app.get(
        "/api/v1/signals/",
        summary="Options desk: daily signals (paginated)",
        response_model=SignalPage,
        responses={**_E401, **_E404_PAGE, **_E503, **_E500},
    )
    async def signals(
        page: int = _PAGE,
        page_size: int = _PAGE_SIZE,
        _: str = Depends(auth),
    ) -> Response:
        """Daily signals of the options desk, newest first."""

        def build() -> SignalPage:
            return SignalPage(**_paginate(loaded()[0], page, page_size, "/api/v1/signals/"))

        return json_response(snap.cached(("page", page, page_size), build))

    @app.get(
        "/api/v1/signals/latest/",
        summary="Options desk: latest signal",
        response_model=Signal,
        responses={**_E401, 404: _err("No signal published yet."), **_E503, **_E500},
    )
    async def latest(_: str = Depends(auth)) -> Response:
        """The newest day's signal with its trades."""

        def build() -> Signal | None:
            daily = loaded()[0]
            return signal(daily[0].date) if daily else None

        return json_response(snap.cached(("latest",), build), "no signals yet")

    @app.get(
        "/api/v1/signals/{day}/",
        summary="Options desk: signal of a date",
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
    ) -> Response:
        """One day's signal with its trades."""
        try:
            d = dt.date.fromisoformat(day)
        except ValueError:
            raise RequestValidationError(
                [{"type": "date_parsing", "loc": ("path", "day"), "msg": "not a valid ISO date", "input": day}]
            ) from None
        return json_response(snap.cached(("day", d), lambda: signal(d)), f"no signal for {d.isoformat()}")

    @app.get(
        "/api/v1/setups/",
        summary="Setup scanner: gated signals (paginated)",
        response_model=SetupPage,
        responses={**_E401, **_E404_PAGE, **_E503, **_E500},
    )
    async def setup_signals(
        symbol: str | None = Query(None, max_length=40, description="e.g. BTC/USDT"),
        timeframe: str | None = Query(None, max_length=10, description="e.g. 1h"),
        page: int = _PAGE,
        page_size: int = _PAGE_SIZE,
        _: str = Depends(auth),
    ) -> Response:
        """The setup scanner's gated signals (``signals.setups``), newest first; optionally one symbol and/or
        timeframe."""

        def build() -> SetupPage:
            rows = [
                s
                for s in setups()
                if (symbol is None or s.symbol == symbol) and (timeframe is None or s.timeframe == timeframe)
            ]
            filters = {"symbol": symbol, "timeframe": timeframe}
            return SetupPage(**_paginate(rows, page, page_size, "/api/v1/setups/", filters))

        return json_response(snap.cached(("setups", symbol, timeframe, page, page_size), build))

    @app.get(
        "/api/v1/setups/latest/",
        summary="Setup scanner: newest signal per symbol x timeframe",
        response_model=SetupPage,
        responses={**_E401, **_E404_PAGE, **_E503, **_E500},
    )
    async def setup_latest(page: int = _PAGE, page_size: int = _PAGE_SIZE, _: str = Depends(auth)) -> Response:
        """The newest gated signal of every symbol × timeframe, newest first."""

        def build() -> SetupPage:
            seen: set[tuple[str, str]] = set()
            rows = [s for s in setups() if (k := (s.symbol, s.timeframe)) not in seen and not seen.add(k)]
            return SetupPage(**_paginate(rows, page, page_size, "/api/v1/setups/latest/"))

        return json_response(snap.cached(("setups-latest", page, page_size), build))

    def backtests() -> list[BacktestSummary]:
        return snap.memo("backtests", lambda cur: _opt(serving.latest_backtests(cur), _backtest))

    def models() -> list[ModelStatus]:
        return snap.memo("models", lambda cur: _opt(serving.model_runs(cur), None, model_statuses))

    @app.get(
        "/api/v1/backtests/",
        summary="Backtests: newest summary of every desk",
        response_model=BacktestPage,
        responses={**_E401, **_E404_PAGE, **_E503, **_E500},
    )
    async def backtest_list(page: int = _PAGE, page_size: int = _PAGE_SIZE, _: str = Depends(auth)) -> Response:
        """The newest backtest summary of every desk × strategy (metrics and buy-and-hold benchmark), by desk."""

        def build() -> BacktestPage:
            return BacktestPage(**_paginate(backtests(), page, page_size, "/api/v1/backtests/"))

        return json_response(snap.cached(("backtests", page, page_size), build))

    @app.get(
        "/api/v1/backtests/{desk}/",
        summary="Backtests: newest summaries of one desk",
        response_model=BacktestPage,
        responses={**_E401, 404: _err("Unknown desk, or page beyond the last."), **_E503, **_E500},
    )
    async def backtest_desk(
        desk: Annotated[str, PathParam(pattern=_NAME, description="research, options_desk, setup_scanner ...")],
        page: int = _PAGE,
        page_size: int = _PAGE_SIZE,
        _: str = Depends(auth),
    ) -> Response:
        """The newest backtest summary of every strategy of one desk."""

        def build() -> BacktestPage | None:
            rows = [b for b in backtests() if b.desk == desk]
            return BacktestPage(**_paginate(rows, page, page_size, f"/api/v1/backtests/{desk}/")) if rows else None

        return json_response(snap.cached(("backtests", desk, page, page_size), build), f"no backtest of desk {desk}")

    @app.get(
        "/api/v1/models/",
        summary="Models: status of every model",
        response_model=ModelPage,
        responses={**_E401, **_E404_PAGE, **_E503, **_E500},
    )
    async def model_list(page: int = _PAGE, page_size: int = _PAGE_SIZE, _: str = Depends(auth)) -> Response:
        """Every model's status: its latest training (OOS scores, promotion verdict and reasons) and its champion."""

        def build() -> ModelPage:
            return ModelPage(**_paginate(models(), page, page_size, "/api/v1/models/"))

        return json_response(snap.cached(("models", page, page_size), build))

    @app.get(
        "/api/v1/models/{name}/",
        summary="Models: status of one model",
        response_model=ModelStatus,
        responses={**_E401, 404: _err("Unknown model."), **_E503, **_E500},
    )
    async def model_one(
        name: Annotated[str, PathParam(pattern=_NAME, description="options_p_long, setup_meta ...")],
        _: str = Depends(auth),
    ) -> Response:
        """One model's status."""
        body = snap.cached(("model", name), lambda: next((m for m in models() if m.model_name == name), None))
        return json_response(body, f"no model {name}")

    return app


def _opt(rows: list[dict] | None, each=None, whole=None):
    """``None`` stays ``None`` (table missing → 503); else ``[each(r)]`` or ``whole(rows)``."""
    if rows is None:
        return None
    return whole(rows) if whole else [each(r) for r in rows]


def uvicorn_config(app: FastAPI, host: str = "127.0.0.1", port: int = 8000, **kw):
    """The ``uvicorn.Config`` the API is served with: the h11 parser with the request head capped at
    :data:`MAX_HEADER_BYTES` (a bigger head is refused with 431/400 before reaching the app)."""
    import uvicorn

    return uvicorn.Config(app, host=host, port=port, http="h11", h11_max_incomplete_event_size=MAX_HEADER_BYTES, **kw)
