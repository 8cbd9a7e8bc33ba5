"""ccxt sync through ccxt's real code (markets, request building, parsing, error mapping) against a real
HTTP server on 127.0.0.1 that answers Binance's REST endpoints from real candles, with failures injected."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import ccxt
import pandas as pd
import pytest

from assets.ingest import ingest_exchange_slice
from resources.exchange import ExchangeSource
from tests.conftest import real_ohlcv
from warehouse import io

CANDLES = real_ohlcv("BTC/USDT", "1h")
CANDLES = CANDLES[(CANDLES.ts >= 1704067200000) & (CANDLES.ts < 1704067200000 + 400 * 3_600_000)].reset_index(
    drop=True
)  # 2024-01-01 + 400 h
NOW = int(CANDLES.ts.iloc[350]) + 30 * 60_000  # mid-candle: bar 350 is still forming
EXPECTED = CANDLES[CANDLES.ts + 3_600_000 <= NOW]

MARKET = {
    "symbol": "BTCUSDT",
    "status": "TRADING",
    "baseAsset": "BTC",
    "baseAssetPrecision": 8,
    "quoteAsset": "USDT",
    "quotePrecision": 8,
    "quoteAssetPrecision": 8,
    "orderTypes": ["LIMIT", "MARKET"],
    "icebergAllowed": True,
    "isSpotTradingAllowed": True,
    "isMarginTradingAllowed": False,
    "permissions": ["SPOT"],
    "permissionSets": [["SPOT"]],
    "filters": [
        {"filterType": "PRICE_FILTER", "minPrice": "0.01", "maxPrice": "1000000", "tickSize": "0.01"},
        {"filterType": "LOT_SIZE", "minQty": "0.00001", "maxQty": "9000", "stepSize": "0.00001"},
    ],
}


class FakeBinance(BaseHTTPRequestHandler):
    plan: dict = {}  # n-th klines request -> "500" | "429" | "timeout" | "down"
    calls: list = []

    def log_message(self, *a):
        pass

    def _send(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path.endswith("/exchangeInfo"):
            return self._send(200, {"timezone": "UTC", "serverTime": NOW, "rateLimits": [], "symbols": [MARKET]})
        if url.path.endswith("/klines"):
            FakeBinance.calls.append(q)
            action = FakeBinance.plan.get(len(FakeBinance.calls)) or FakeBinance.plan.get("*")
            if action == "500":
                return self._send(500, {"code": -1000, "msg": "An unknown error occurred"})
            if action == "429":
                return self._send(429, {"code": -1003, "msg": "Too many requests"})
            if action == "timeout":
                time.sleep(1.0)
            start, limit = int(q["startTime"]), int(q.get("limit", 500))
            rows = CANDLES[(CANDLES.ts >= start) & (CANDLES.ts < NOW)].head(
                limit
            )  # the exchange returns the forming bar too
            out = [
                [
                    int(r.ts),
                    str(r.open),
                    str(r.high),
                    str(r.low),
                    str(r.close),
                    str(r.volume),
                    int(r.ts) + 3_599_999,
                    "0",
                    1,
                    "0",
                    "0",
                    "0",
                ]
                for r in rows.itertuples()
            ]
            return self._send(200, out)
        return self._send(404, {"code": -1, "msg": f"unknown path {url.path}"})


@pytest.fixture
def server():
    FakeBinance.plan, FakeBinance.calls = {}, []
    srv = ThreadingHTTPServer(("127.0.0.1", 0), FakeBinance)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def _source(base, **kw):
    return ExchangeSource(
        **{
            "api_base_url": base,
            "page_limit": 100,
            "frozen_now_ms": NOW,
            "timeout_ms": 500,
            "retry_wait_s": 0.01,
            "rate_limit_ms": 1,
            **kw,
        }
    )


def _stored(con):
    return con.execute("SELECT ts, open, high, low, close, volume FROM raw.ohlcv ORDER BY ts").df()


def _assert_complete(con):
    got = _stored(con)
    assert got["ts"].is_unique, "duplicated candles"
    assert got["ts"].tolist() == EXPECTED["ts"].tolist(), "missing or extra candles"
    pd.testing.assert_frame_equal(
        got.reset_index(drop=True),
        EXPECTED[["ts", "open", "high", "low", "close", "volume"]].reset_index(drop=True),
        check_dtype=False,
    )


def test_sync_pages_drops_forming_candle_and_is_idempotent(server, tmp_path):
    with io.connect(str(tmp_path / "w.duckdb")) as con:
        rep = ingest_exchange_slice(con, _source(server), "binance", "BTC/USDT", "1h", "2024-01-01")
        assert rep["pages"] == 4 and rep["new_rows"] == 350
        assert [int(c["limit"]) for c in FakeBinance.calls] == [100] * 4  # paging at the configured limit
        _assert_complete(con)
        n = len(FakeBinance.calls)
        rep2 = ingest_exchange_slice(con, _source(server), "binance", "BTC/USDT", "1h", "2024-01-01")
        assert rep2["new_rows"] == 0 and len(FakeBinance.calls) == n  # next candle cannot have closed yet: no request
        _assert_complete(con)


def test_transient_errors_are_retried(server, tmp_path):
    FakeBinance.plan = {2: "500", 3: "429", 5: "timeout"}
    with io.connect(str(tmp_path / "w.duckdb")) as con:
        rep = ingest_exchange_slice(con, _source(server), "binance", "BTC/USDT", "1h", "2024-01-01")
        assert rep["retries"] == 3
        _assert_complete(con)


def test_outage_mid_sync_then_resume_has_no_gap_or_duplicate(server, tmp_path):
    FakeBinance.plan = {3: "down", "*": None}
    for k in range(3, 20):
        FakeBinance.plan[k] = "500"
    with io.connect(str(tmp_path / "w.duckdb")) as con:
        with pytest.raises(ccxt.OperationFailed, match="unknown error"):
            ingest_exchange_slice(con, _source(server, max_retries=2), "binance", "BTC/USDT", "1h", "2024-01-01")
        partial = _stored(con)
        assert len(partial) == 200  # the two pages written before the outage are kept
        cp = con.execute("SELECT last_ts FROM raw.ingest_checkpoints WHERE source_kind='exchange'").fetchall()
        assert cp == [(int(partial.ts.iloc[-1]),)]
        FakeBinance.plan = {}
        rep = ingest_exchange_slice(con, _source(server), "binance", "BTC/USDT", "1h", "2024-01-01")
        assert int(FakeBinance.calls[-rep["pages"]]["startTime"]) == int(partial.ts.iloc[-1]) + 3_600_000
        _assert_complete(con)


def test_invalid_exchange_response_is_rejected_and_keeps_data(server, tmp_path, monkeypatch):
    with io.connect(str(tmp_path / "w.duckdb")) as con:
        ingest_exchange_slice(con, _source(server), "binance", "BTC/USDT", "1h", "2024-01-01")
        before = _stored(con)
        import sys

        mod = sys.modules[__name__]
        bad = CANDLES.copy()
        bad.loc[360, "low"] = bad.loc[360, "high"] * 2  # low > high in a new candle
        monkeypatch.setattr(mod, "CANDLES", bad)
        monkeypatch.setattr(mod, "NOW", NOW + 20 * 3_600_000)
        with pytest.raises(Exception, match=r"ccxt:binance:BTC/USDT:1h page since .*rule 'ohlc_bounds'"):
            ingest_exchange_slice(
                con, _source(server, frozen_now_ms=NOW + 20 * 3_600_000), "binance", "BTC/USDT", "1h", "2024-01-01"
            )
        pd.testing.assert_frame_equal(_stored(con), before)


def test_overlap_candles_refetches_and_upserts_the_last_n(server, tmp_path):
    """``exchange.overlap_candles`` (seed incremental.overlap_candles): the next sync starts N candles before the
    checkpoint; those are fetched again and upserted (no duplicate), 0 resumes after the last one (no request)."""
    with io.connect(str(tmp_path / "w.duckdb")) as con:
        ingest_exchange_slice(con, _source(server), "binance", "BTC/USDT", "1h", "2024-01-01")
        last = int(EXPECTED["ts"].iloc[-1])
        n = len(FakeBinance.calls)
        rep = ingest_exchange_slice(con, _source(server), "binance", "BTC/USDT", "1h", "2024-01-01", overlap=5)
        assert len(FakeBinance.calls) == n + 1 and int(FakeBinance.calls[-1]["startTime"]) == last - 4 * 3_600_000
        assert rep["new_rows"] == 5
        _assert_complete(con)


def test_since_is_the_backfill_start_date(server, tmp_path):
    """``exchange.since`` is the seed's backfill.start_date: a cold sync's first candle."""
    with io.connect(str(tmp_path / "w.duckdb")) as con:
        ingest_exchange_slice(con, _source(server), "binance", "BTC/USDT", "1h", "2024-01-10")
        assert int(_stored(con)["ts"].min()) == int(pd.Timestamp("2024-01-10", tz="UTC").value // 10**6)
