"""The replay exchange: Binance's public market-data REST endpoints on 127.0.0.1, answered from the candle files.

A small HTTP server (stdlib ``ThreadingHTTPServer``) that answers what ccxt's ``binance`` class calls for market data,
so the project's :class:`resources.exchange.ExchangeSource` talks to it through ccxt unchanged (only
``api_base_url`` differs; every ccxt API host, spot ``/api/v3`` and USDT-M ``/fapi/v1``, is rebased onto it):

| endpoint | answers |
|---|---|
| ``/api/v3/ping``, ``/fapi/v1/ping`` | ``{}`` |
| ``/api/v3/time``, ``/fapi/v1/time`` | ``{"serverTime": now_sim}`` |
| ``/api/v3/exchangeInfo`` | spot markets ``BTCUSDT`` ... (ccxt ``BTC/USDT``) |
| ``/fapi/v1/exchangeInfo`` | USDT-M perpetuals ``BTCUSDT`` (ccxt ``BTC/USDT:USDT``), same candles as spot |
| ``/api/v3/klines``, ``/fapi/v1/klines`` | Binance 12-field klines: ``symbol, interval, startTime, endTime, limit`` |

**Simulated clock.** ``now_sim = start + (wall_now - wall_started) * speed`` (epoch ms; ``start`` a UTC date/time,
``speed`` a float > 0, 1 = real time). Only candles that closed at or before ``now_sim`` (``ts + tf <= now_sim``) are
released, plus, as Binance does, the still-forming candle (``ts <= now_sim < ts + tf``) built from the finer closed
bars of the files (first open, max high, min low, last close, summed volume); where no finer file covers it, the
forming candle is left out. Nothing opening after ``now_sim`` is ever sent.

**Candles.** Files are read in place with :meth:`resources.files.FilesSource.read_ohlcv` (validated), lazily per
(symbol, timeframe) and cached; every window of a symbol × timeframe (``ohlcv/binance``, ``ohlcv/binance_1m_2026-03``)
is unioned on ``ts``. A timeframe the files lack is resampled with :func:`pipeline.core.candles.resample_ohlcv` from
the source :func:`pipeline.core.timeframes.resample_source` picks (``base_timeframe`` = ``resample.base_timeframe``),
so it equals what ``market.ohlcv`` builds. Gaps stay gaps (Binance answers an outage with missing candles too).

**Binance semantics kept** (spot API docs "Kline/Candlestick data"): ``startTime``/``endTime`` filter on the open
time (inclusive); without ``startTime`` the newest ``limit`` candles up to ``endTime`` are sent; ``limit`` defaults to
500, at most 1000 on spot and 1500 on fapi; errors are Binance's JSON ``{"code", "msg"}`` with HTTP 400 (``-1121``
invalid symbol, ``-1120`` invalid interval, ``-1100`` bad parameter), which ccxt maps to its own exceptions. Fields the
files lack (taker volumes of 15m/1m candles) are placeholders: market data only, no trading. The market filters are
Binance spot's: ``LOT_SIZE`` steps of :data:`LOT_STEPS` (1e-8 for other bases) and a 5 USDT ``NOTIONAL`` minimum
(``MIN_NOTIONAL`` on fapi), so order rounding and the minimum order arrive through ccxt as on the exchange.

Start it with :func:`start_replay` (background thread; returns the base URL and a stop handle) or
``python -m resources.replay_exchange --start 2026-04-20 --speed 600``.
"""

from __future__ import annotations

import argparse
import json
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pandas as pd

from pipeline.core.candles import EXTRA_COLUMNS, OHLCV_COLUMNS, resample_ohlcv
from pipeline.core.timeframes import TIMEFRAME_MS, resample_source, timeframe_ms
from resources.files import FilesSource

SPOT_MAX_LIMIT, FAPI_MAX_LIMIT, DEFAULT_LIMIT = 1000, 1500, 500
PERPETUAL_DELIVERY_MS = 4133404800000  # Binance's deliveryDate of a perpetual (2100-12-25)
#: Binance spot LOT_SIZE stepSize of the universe's bases (base units), served by exchangeInfo
LOT_STEPS = {
    "BTC": "0.00001",
    "ETH": "0.0001",
    "SOL": "0.001",
    "BNB": "0.001",
    "XRP": "0.1",
    "ADA": "0.1",
    "DOGE": "1",
    "AVAX": "0.01",
    "LINK": "0.01",
    "DOT": "0.01",
}
MIN_NOTIONAL = "5"  # Binance spot NOTIONAL.minNotional of USDT pairs (quote currency)
_STEM = re.compile(r"^([A-Z0-9]+)_([A-Z0-9]+)-(\w+?)\.(csv\.gz|csv|parquet)$")


class ReplayError(ValueError):
    """A replay exchange cannot start (start outside the data, no candle files, bad speed)."""


@dataclass
class SimClock:
    """``now_ms() = start_ms + (wall() - wall_started) * 1000 * speed``, floored to an int (epoch ms UTC).

    ``wall`` returns wall-clock seconds (default ``time.time``); tests pass a callable they advance by hand.
    """

    start_ms: int
    speed: float = 1.0
    wall: Callable[[], float] = time.time
    wall_started: float = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if not np.isfinite(self.speed) or self.speed <= 0:
            raise ReplayError(f"speed must be a finite number > 0 (1 = real time), got {self.speed!r}")
        if self.wall_started is None:
            self.wall_started = self.wall()

    def now_ms(self) -> int:
        return int(self.start_ms + (self.wall() - self.wall_started) * 1000.0 * self.speed)


def parse_utc(text: str) -> int:
    """``YYYY-MM-DD[THH:MM[:SS]]`` (UTC unless an offset is given) -> epoch ms. Raises ReplayError."""
    try:
        ts = pd.Timestamp(text)
    except (ValueError, TypeError) as e:
        raise ReplayError(f"cannot read the replay start {text!r}: use YYYY-MM-DD or YYYY-MM-DDTHH:MM (UTC)") from e
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return int(ts.value // 10**6)


def _iso(ms: int) -> str:
    return pd.Timestamp(int(ms), unit="ms").strftime("%Y-%m-%d %H:%M")


class ReplayData:
    """Candles of the data folder, loaded lazily per (symbol, timeframe) and cached (thread-safe).

    Frames have ``ts`` (open time, epoch ms int64), OHLCV float64 and the file's extra Binance columns.
    """

    def __init__(self, data_dir: str | Path, exchange: str = "binance", base_timeframe: str | None = None):
        self.files = FilesSource(data_dir=str(data_dir))
        self.exchange, self.base = exchange, base_timeframe
        self._cache: dict[tuple[str, str], pd.DataFrame] = {}
        self._native: dict[str, set[str]] = {}
        self._lock = threading.RLock()  # re-entrant: a resampled frame loads its source
        self._symbols = self._scan()
        if not self._symbols:
            raise ReplayError(f"{self.files.root / 'ohlcv'}: no {exchange} candle files (<BASE>_<QUOTE>-<tf>.csv.gz)")

    def _scan(self) -> dict[str, tuple[str, str]]:
        base = self.files.root / "ohlcv"
        out: dict[str, tuple[str, str]] = {}
        if not base.is_dir():
            return out
        for d in base.iterdir():
            if d.is_dir() and (d.name == self.exchange or d.name.startswith(self.exchange + "_")):
                for p in d.iterdir():
                    m = _STEM.match(p.name)
                    if m and m.group(3) in TIMEFRAME_MS:
                        out[f"{m.group(1)}/{m.group(2)}"] = (m.group(1), m.group(2))
        return dict(sorted(out.items()))

    def pair(self, symbol: str) -> tuple[str, str]:
        """``BTC/USDT`` -> ``("BTC", "USDT")`` (base and quote asset ids)."""
        return self._symbols[symbol]

    def symbols(self) -> list[str]:
        """``BASE/QUOTE`` of every pair with at least one candle file."""
        return list(self._symbols)

    def native(self, symbol: str) -> set[str]:
        """Timeframes the files hold for ``symbol`` (looked up once: the folder is read in place, not watched)."""
        if symbol not in self._native:
            self._native[symbol] = self.files.available_timeframes(self.exchange, symbol)
        return self._native[symbol]

    def source_of(self, symbol: str, tf: str) -> str | None:
        """The file timeframe ``tf`` is served from (itself when native), None when nothing can build it."""
        return resample_source(tf, self.native(symbol), self.base)

    def candles(self, symbol: str, tf: str) -> pd.DataFrame:
        """All candles of ``symbol`` × ``tf`` in the files (native, or resampled); empty frame when none.

        Raises:
            CandleValidationError: a file breaks a rule of :func:`pipeline.core.candles.validate_ohlcv`.
        """
        key = (symbol, tf)
        with self._lock:
            if key not in self._cache:
                self._cache[key] = self._build(symbol, tf)
            return self._cache[key]

    def _read_native(self, symbol: str, tf: str) -> pd.DataFrame:
        frames = [self.files.read_ohlcv(p, tf) for p in self.files.ohlcv_files(self.exchange, symbol, tf)]
        if not frames:
            return pd.DataFrame({c: pd.Series(dtype="int64" if c == "ts" else "float64") for c in OHLCV_COLUMNS})
        df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        return df.drop_duplicates("ts", keep="last").sort_values("ts", ignore_index=True)

    def _build(self, symbol: str, tf: str) -> pd.DataFrame:
        src = self.source_of(symbol, tf)
        if src is None or src == tf:
            return self._read_native(symbol, tf)  # native, or an empty frame
        out = resample_ohlcv(self.candles(symbol, src), src, tf)
        return out.drop(columns=["bar_count", "expected_bars"])

    def span(self, symbol: str) -> tuple[int, int]:
        """``(first open, last close)`` epoch ms of the symbol's coarsest native file (the cheapest to read)."""
        tfs = sorted(self.native(symbol), key=TIMEFRAME_MS.__getitem__)
        df = self.candles(symbol, tfs[-1])
        return int(df["ts"].iloc[0]), int(df["ts"].iloc[-1]) + timeframe_ms(tfs[-1])


class ReplayExchange:
    """Answers Binance REST requests from :class:`ReplayData` under a :class:`SimClock` (no HTTP here: see
    :meth:`handle`). ``requests`` records ``(path, query)`` of the last 10,000 requests; :meth:`revise` simulates the
    exchange correcting a candle after it was first sent (what ``exchange.overlap_candles`` is for).

    Raises:
        ReplayError: the clock's start lies outside the files' span (first open -> last close of the coarsest files).
    """

    def __init__(self, data: ReplayData, clock: SimClock):
        self.data, self.clock = data, clock
        self.requests: deque[tuple[str, dict]] = deque(maxlen=10_000)  # bounded: a replay may run for days
        self._revisions: dict[tuple[str, str, int], dict[str, float]] = {}
        spans = {s: data.span(s) for s in data.symbols()}
        self.spans = spans
        first, last = min(a for a, _ in spans.values()), max(b for _, b in spans.values())
        if not first <= clock.start_ms < last:
            raise ReplayError(
                f"replay start {_iso(clock.start_ms)} UTC is outside the candle files of {data.files.root}: they span "
                f"{_iso(first)} -> {_iso(last)} UTC; pick a start in that range"
            )

    def revise(self, symbol: str, tf: str, ts: int, **values: float) -> None:
        """From now on answer the candle ``symbol`` × ``tf`` opening at ``ts`` with ``values`` (e.g. ``close=...``)."""
        self._revisions[(symbol, tf, int(ts))] = {k: float(v) for k, v in values.items()}

    def listed(self, now: int) -> list[str]:
        """Pairs whose first candle opened at or before ``now`` (a pair is not on the exchange before its listing)."""
        return [s for s, (first, _) in self.spans.items() if first <= now]

    # ------------------------------------------------------------------ endpoints

    def handle(self, path: str, query: dict[str, str]) -> tuple[int, object]:
        """``(HTTP status, JSON body)`` for one GET request."""
        self.requests.append((path, dict(query)))
        now = self.clock.now_ms()
        m = re.fullmatch(r"/(api/v3|fapi/v1)/(\w+)", path.rstrip("/"))
        if not m:
            return 404, {"code": -1, "msg": f"replay exchange: unknown endpoint {path}"}
        api, name = m.groups()
        fapi = api == "fapi/v1"
        if name == "ping":
            return 200, {}
        if name == "time":
            return 200, {"serverTime": now}
        if name == "exchangeInfo":
            return 200, self._exchange_info(now, fapi)
        if name == "klines":
            return self._klines(query, now, fapi)
        return 404, {"code": -1, "msg": f"replay exchange: {path} is not served (market data only)"}

    def _exchange_info(self, now: int, fapi: bool) -> dict:
        price = {
            "filterType": "PRICE_FILTER",
            "minPrice": "0.00000001",
            "maxPrice": "10000000",
            "tickSize": "0.00000001",
        }
        if fapi:
            notional = {"filterType": "MIN_NOTIONAL", "notional": MIN_NOTIONAL}
        else:
            notional = {"filterType": "NOTIONAL", "minNotional": MIN_NOTIONAL, "applyMinToMarket": True}
            notional |= {"maxNotional": "9000000", "applyMaxToMarket": False, "avgPriceMins": 5}
        out = []
        for s in self.listed(now):
            b, q = self.data.pair(s)
            step = LOT_STEPS.get(b, "0.00000001")
            flt = [price, {"filterType": "LOT_SIZE", "minQty": step, "maxQty": "90000000", "stepSize": step}, notional]
            m = {"symbol": b + q, "status": "TRADING", "baseAsset": b, "quoteAsset": q, "filters": flt}
            m |= {"baseAssetPrecision": 8, "quotePrecision": 8, "orderTypes": ["LIMIT", "MARKET"]}
            if fapi:
                m |= {
                    "pair": b + q,
                    "contractType": "PERPETUAL",
                    "deliveryDate": PERPETUAL_DELIVERY_MS,
                    "onboardDate": self.spans[s][0],
                    "marginAsset": q,
                    "pricePrecision": 8,
                    "quantityPrecision": 8,
                    "underlyingType": "COIN",
                }
            else:
                m |= {"quoteAssetPrecision": 8, "isSpotTradingAllowed": True, "isMarginTradingAllowed": False}
                m |= {"permissions": ["SPOT"], "permissionSets": [["SPOT"]]}
            out.append(m)
        return {"timezone": "UTC", "serverTime": now, "rateLimits": [], "exchangeFilters": [], "symbols": out}

    def _klines(self, q: dict[str, str], now: int, fapi: bool) -> tuple[int, object]:
        ids = {"".join(self.data.pair(s)): s for s in self.listed(now)}
        sym = ids.get(str(q.get("symbol", "")).upper())
        if sym is None:
            return 400, {"code": -1121, "msg": f"Invalid symbol. (replay exchange: {q.get('symbol')!r} not listed)"}
        tf = q.get("interval", "")
        if tf not in TIMEFRAME_MS or self.data.source_of(sym, tf) is None:
            have = sorted((t for t in TIMEFRAME_MS if self.data.source_of(sym, t)), key=TIMEFRAME_MS.__getitem__)
            return 400, {"code": -1120, "msg": f"Invalid interval. (replay exchange: {sym} serves {', '.join(have)})"}
        try:
            limit = int(q.get("limit", DEFAULT_LIMIT))
            start = int(q["startTime"]) if "startTime" in q else None
            end = int(q["endTime"]) if "endTime" in q else None
        except ValueError:
            return 400, {"code": -1100, "msg": "Illegal characters found in a parameter."}
        if not 1 <= limit <= (FAPI_MAX_LIMIT if fapi else SPOT_MAX_LIMIT):
            return 400, {"code": -1100, "msg": f"Illegal characters found in parameter 'limit'; got {limit}."}
        return 200, self.klines(sym, tf, now, start, end, limit)

    def klines(self, symbol: str, tf: str, now: int, start: int | None, end: int | None, limit: int) -> list[list]:
        """Binance kline rows released at ``now``: closed candles (``ts + tf <= now``) and the forming one."""
        df = self.data.candles(symbol, tf)
        step = timeframe_ms(tf)
        ts = df["ts"].to_numpy()
        hi = int(np.searchsorted(ts, now - step, side="right"))  # closed: ts <= now - step
        if end is not None:
            hi = min(hi, int(np.searchsorted(ts, end, side="right")))
        forming = (now // step) * step
        part = None
        if (start is None or forming >= start) and (end is None or forming <= end):
            part = self._forming(symbol, tf, forming, now)
        if start is None:  # the newest candles up to endTime, the forming one included
            lo = max(0, hi - (limit - (part is not None)))
        else:
            lo = min(int(np.searchsorted(ts, start, side="left")), hi)
        rows = df.iloc[lo : min(hi, lo + limit)]
        out = [self._row(r, step) for r in rows.to_dict("records")]
        if part is not None and len(out) < limit:
            out.append(self._row(part, step))
        for r in out:
            rev = self._revisions.get((symbol, tf, r[0]))
            if rev:
                for i, k in enumerate(["open", "high", "low", "close", "volume"], start=1):
                    if k in rev:
                        r[i] = repr(rev[k])
        return out

    def _forming(self, symbol: str, tf: str, p: int, now: int) -> dict | None:
        step = timeframe_ms(tf)
        finer = sorted(
            (t for t in self.data.native(symbol) if TIMEFRAME_MS[t] < step and step % TIMEFRAME_MS[t] == 0),
            key=TIMEFRAME_MS.__getitem__,
        )
        for f in finer:
            df = self.data.candles(symbol, f)
            ts = df["ts"].to_numpy()
            lo, hi = np.searchsorted(ts, p), np.searchsorted(ts, now - TIMEFRAME_MS[f], side="right")
            if hi > lo:
                b = df.iloc[lo:hi]
                row = {"ts": p, "open": b["open"].iloc[0], "high": b["high"].max(), "low": b["low"].min()}
                row |= {"close": b["close"].iloc[-1], "volume": b["volume"].sum()}
                return row | {c: b[c].sum() for c in EXTRA_COLUMNS if c in b.columns}
        return None

    @staticmethod
    def _row(r: dict, step: int) -> list:
        def num(k):
            v = r.get(k)
            return "0" if v is None or pd.isna(v) else repr(float(v))

        trades = r.get("trades")
        n = 0 if trades is None or pd.isna(trades) else int(trades)
        t = int(r["ts"])
        head = [t, num("open"), num("high"), num("low"), num("close"), num("volume"), t + step - 1]
        return head + [num("quote_volume"), n, num("taker_buy_base"), num("taker_buy_quote"), "0"]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args) -> None:  # quiet: ccxt pages fast
        pass

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        try:
            code, body = self.server.replay.handle(url.path, q)
        except Exception as e:  # a file that fails validation, a bug: Binance's "unknown error", never a hang
            code, body = 500, {"code": -1000, "msg": f"replay exchange: {type(e).__name__}: {e}"}
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json;charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, addr, replay: ReplayExchange):
        self.replay = replay
        super().__init__(addr, _Handler)


@dataclass
class ReplayHandle:
    """A running replay server: ``base_url`` (``http://127.0.0.1:<port>``, the ``api_base_url`` of
    ``ExchangeSource``), ``exchange`` (its state: clock, requests, revisions) and ``stop()``."""

    base_url: str
    exchange: ReplayExchange
    _server: _Server
    _thread: threading.Thread

    def stop(self) -> None:
        """Stop serving and close the socket (idempotent)."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()

    def __enter__(self) -> ReplayHandle:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_replay(
    data_dir: str | Path | ReplayData,
    start: str | int,
    speed: float = 1.0,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    exchange: str = "binance",
    base_timeframe: str | None = None,
    wall: Callable[[], float] = time.time,
) -> ReplayHandle:
    """Start a replay exchange in a background (daemon) thread and return its handle.

    Args:
        data_dir: folder laid out like ``shared/data`` (``ohlcv/<exchange>[_<suffix>]/<BASE>_<QUOTE>-<tf>.csv.gz``),
            or a :class:`ReplayData` already loaded (its cache is shared; ``exchange``/``base_timeframe`` unused).
        start: simulated time at start: ``YYYY-MM-DD[THH:MM]`` UTC or epoch ms.
        speed: simulated seconds per wall-clock second (600 = 10 simulated minutes a second).
        port: 0 = a free port. base_timeframe: ``resample.base_timeframe`` (None = native files first).
        wall: wall-clock seconds (tests pass a hand-advanced clock).

    Raises:
        ReplayError: no candle files, ``start`` unreadable or outside the files' span, ``speed`` not > 0.
        OSError: the port is taken.
    """
    start_ms = int(start) if isinstance(start, (int, np.integer)) else parse_utc(start)
    clock = SimClock(start_ms, float(speed), wall)
    data = data_dir if isinstance(data_dir, ReplayData) else ReplayData(data_dir, exchange, base_timeframe)
    replay = ReplayExchange(data, clock)
    srv = _Server((host, port), replay)
    t = threading.Thread(target=srv.serve_forever, args=(0.05,), name="replay-exchange", daemon=True)
    t.start()
    return ReplayHandle(f"http://{host}:{srv.server_address[1]}", replay, srv, t)


def main(argv: list[str] | None = None) -> int:
    """``python -m resources.replay_exchange --start 2026-04-20 --speed 600 [--port 8765] [--data-dir DIR]``."""
    ap = argparse.ArgumentParser(prog="python -m resources.replay_exchange", description=__doc__.splitlines()[0])
    ap.add_argument("--start", required=True, help="simulated start, YYYY-MM-DD[THH:MM] UTC")
    ap.add_argument("--speed", type=float, default=1.0, help="simulated seconds per real second (default 1)")
    ap.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    ap.add_argument("--data-dir", default=None, help="candle folder (default: trader.yaml's data_dir)")
    a = ap.parse_args(argv)
    data_dir = a.data_dir
    if data_dir is None:
        from pipeline.config import settings

        data_dir = settings().data_dir
    try:
        h = start_replay(data_dir, a.start, a.speed, port=a.port)
    except ReplayError as e:
        print(f"error: {e}")
        return 2
    print(f"replay exchange on {h.base_url} (spot /api/v3, USDT-M /fapi/v1), {len(h.exchange.spans)} pairs")
    print(f"simulated clock starts {_iso(h.exchange.clock.start_ms)} UTC at speed {a.speed:g}; Ctrl-C stops")
    print(f"use it: exchange.api_base_url: {h.base_url} (trader.yaml) with source: exchange")
    try:
        while True:
            time.sleep(60)
            print(f"simulated now {_iso(h.exchange.clock.now_ms())} UTC, {len(h.exchange.requests)} requests")
    except KeyboardInterrupt:
        pass
    finally:
        h.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
