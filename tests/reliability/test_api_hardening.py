"""Issue 13 items 12-15: the REST API's bounds, its answers without a snapshot, health with input failures, its
OpenAPI document (every response, ISO dates only, HEAD) and a bounded schemathesis run, all against a real uvicorn
server on 127.0.0.1 over a snapshot published by :func:`warehouse.publish.publish_snapshot` from signals computed
by the pure engine on the real on-chain data."""

import time

import duckdb
import httpx
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from pipeline.api import MAX_HEADER_BYTES, TokenStore, create_app
from pipeline.config import TraderConfig
from tests.apps.api_helpers import API_TABLES, options_signals, serve, write_desk_tables
from warehouse.publish import publish_snapshot

__all__ = ["options_signals"]  # the session fixture, shared with tests/apps/test_api.py


def _publish(tmp, daily, trades, onchain_inputs, input_errors: pd.DataFrame | None = None):
    with duckdb.connect(str(tmp / "warehouse.duckdb")) as con:
        con.execute("CREATE SCHEMA IF NOT EXISTS signals; CREATE SCHEMA IF NOT EXISTS ops")
        con.register("d", daily)
        con.register("t", trades)
        con.execute("CREATE OR REPLACE TABLE signals.options_daily AS SELECT * FROM d")
        con.execute("CREATE OR REPLACE TABLE signals.options_trades AS SELECT * FROM t")
        con.execute("DROP TABLE IF EXISTS ops.input_errors")
        if input_errors is not None:
            con.register("e", input_errors)
            con.execute("CREATE TABLE ops.input_errors AS SELECT * FROM e")
        write_desk_tables(con, *onchain_inputs)
        publish_snapshot(con, API_TABLES, str(tmp / "serving.duckdb"), str(tmp / "exports"))
    return tmp / "serving.duckdb"


@pytest.fixture(scope="module")
def signals_frames(options_signals):
    daily, trades = options_signals
    return daily.assign(date=daily["date"].dt.date), trades.assign(date=pd.to_datetime(trades["date"]).dt.date)


@pytest.fixture(scope="module")
def server(signals_frames, onchain_inputs, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("api13")
    serving = _publish(tmp, *signals_frames, onchain_inputs)
    token = TokenStore(tmp / "tokens.sqlite").create("bot")
    srv, th, base = serve(create_app(str(serving), str(tmp / "tokens.sqlite")))
    yield base, {"Authorization": f"Token {token}"}
    srv.should_exit = True
    th.join(5)


def test_page_bounds_are_422_not_500(server):
    base, h = server
    for params in ({"page": 2**62}, {"page": 2**63 + 5}, {"page": 1_000_001}, {"page_size": 501}, {"page": -1}):
        r = httpx.get(f"{base}/api/v1/signals/", params=params, headers=h)
        assert r.status_code == 422, (params, r.status_code, r.text)
    r = httpx.get(f"{base}/api/v1/signals/", params={"page": 1_000_000, "page_size": 500}, headers=h)
    assert r.status_code == 404 and r.json()["detail"].startswith("page 1000000 is beyond the last page")


def test_dates_only_iso(server):
    base, h = server
    assert httpx.get(f"{base}/api/v1/signals/2024-03-06/", headers=h).json()["state"] == "strong_bullish"
    for bad in ("1709683200", "2024-03-06T00:00:00", "2024-03-06T00:00:00Z", "2024-02-30", "20240306", "2024-3-6"):
        r = httpx.get(f"{base}/api/v1/signals/{bad}/", headers=h)
        assert r.status_code == 422 and isinstance(r.json()["detail"], list), (bad, r.status_code)


def test_head_where_get(server):
    base, h = server
    for path in ("/api/v1/health/", "/api/v1/signals/latest/", "/api/v1/signals/2024-03-06/", "/api/v1/signals/"):
        get = httpx.get(f"{base}{path}", headers=h)
        head = httpx.head(f"{base}{path}", headers=h)
        assert (
            head.status_code == 200 and head.content == b"" and head.headers["content-length"] == str(len(get.content))
        ), path
    assert httpx.head(f"{base}/api/v1/signals/latest/").status_code == 401


def test_big_request_head_refused(server):
    base, h = server
    try:  # uvicorn answers 400 and closes; the client may see the reset before reading the answer
        assert httpx.get(f"{base}/api/v1/health/", headers={"X-Big": "a" * (1 << 20)}).status_code in (400, 431)
    except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError):
        pass
    ok = httpx.get(f"{base}/api/v1/health/", headers={"X-Small": "a" * (MAX_HEADER_BYTES // 2)})
    assert ok.status_code == 200


def test_openapi_documents_every_response(server):
    base, _ = server
    spec = httpx.get(f"{base}/openapi.json").json()
    lists = ("/api/v1/signals/", "/api/v1/setups/", "/api/v1/setups/latest/", "/api/v1/backtests/", "/api/v1/models/")
    want = {
        "/api/v1/health/": {"200", "503", "500"},
        **{p: {"200", "401", "404", "422", "503", "500"} for p in lists},
        "/api/v1/signals/latest/": {"200", "401", "404", "503", "500"},
        "/api/v1/signals/{day}/": {"200", "401", "404", "422", "503", "500"},
        "/api/v1/backtests/{desk}/": {"200", "401", "404", "422", "503", "500"},
        "/api/v1/models/{name}/": {"200", "401", "404", "422", "503", "500"},
    }
    assert set(spec["paths"]) == set(want)
    for path, codes in want.items():
        got = spec["paths"][path]["get"]["responses"]
        assert codes <= set(got), (path, set(got))
        for c in codes - {"200", "422"}:
            assert got[c]["content"]["application/json"]["schema"]["$ref"].endswith("/Error")
    day = spec["paths"]["/api/v1/signals/{day}/"]["get"]["parameters"][0]["schema"]
    assert day["format"] == "date" and day["pattern"]


def test_no_snapshot_is_503_without_paths(tmp_path):
    missing = tmp_path / "nowhere" / "serving.duckdb"
    store = TokenStore(tmp_path / "tokens.sqlite")
    h = {"Authorization": f"Token {store.create('bot')}"}
    client = TestClient(create_app(str(missing), str(tmp_path / "tokens.sqlite")))
    paths = ("/api/v1/health/", "/api/v1/signals/latest/", "/api/v1/signals/", "/api/v1/signals/2024-03-06/")
    paths += ("/api/v1/setups/", "/api/v1/setups/latest/", "/api/v1/backtests/", "/api/v1/backtests/research/")
    for path in (*paths, "/api/v1/models/", "/api/v1/models/alpha/"):
        r = client.get(path, headers=h)
        assert r.status_code == 503 and r.headers["retry-after"], (path, r.status_code)
        assert str(tmp_path) not in r.text and "/" not in r.json()["detail"] and "Error" not in r.text, r.text


def test_health_reports_input_errors_with_file_names_only(signals_frames, onchain_inputs, tmp_path):
    daily, trades = signals_frames
    errors = pd.DataFrame(
        {
            "input": ["raw/ohlcv", "raw/onchain"],
            "partition_key": ["BTCUSDT|1d", None],
            "locator": [f"{tmp_path}/data/ohlcv/BTCUSDT_1d.csv:row 12", "/srv/data/onchain/mvrv.csv"],
            "rule": ["finite", "numeric"],
            "message": [f"high=inf in {tmp_path}/data/ohlcv/BTCUSDT_1d.csv row 12", "value 'abc' is not numeric"],
            "detected_at": pd.to_datetime(["2026-12-01 10:00", "2026-12-01 10:01"]),
        }
    )
    serving = _publish(tmp_path, daily, trades, onchain_inputs, errors)
    cfg = TraderConfig()  # ages far inside their bounds: only the input errors degrade
    cfg.options_desk.max_data_age_days = 100_000
    for k in ("max_candle_age_hours", "max_onchain_age_hours", "max_sentiment_age_hours"):
        setattr(cfg.api.health, k, 1e9)
    client = TestClient(create_app(str(serving), str(tmp_path / "tokens.sqlite"), cfg))
    body = client.get("/api/v1/health/").json()
    assert body["status"] == "degraded" and body["input_errors"] == 2
    assert body["reasons"] == ["2 input(s) fail validation (failed_inputs)"]
    assert {(e["input"], e["file"], e["rule"]) for e in body["failed_inputs"]} == {
        ("raw/ohlcv", "BTCUSDT_1d.csv:row 12", "finite"),
        ("raw/onchain", "mvrv.csv", "numeric"),
    }
    assert str(tmp_path) not in client.get("/api/v1/health/").text and "/srv/" not in client.get("/api/v1/health/").text
    # the failure fixed and republished: ok again (the cache is keyed by the published version)
    _publish(tmp_path, daily, trades, onchain_inputs, errors.iloc[0:0])
    body = client.get("/api/v1/health/").json()
    assert {k: body[k] for k in ("status", "reasons", "days", "input_errors", "failed_inputs")} == {
        "status": "ok",
        "reasons": [],
        "days": len(daily),
        "input_errors": 0,
        "failed_inputs": [],
    }


def test_openapi_declares_the_token_scheme_and_types_every_answer(server):
    """Issue 14 item 7: "Authorize" needs a security scheme (the `Authorization: Token <token>` header) on every
    operation but health, and every 200 answer is a named pydantic model whose properties are listed."""
    base, _ = server
    spec = httpx.get(f"{base}/openapi.json").json()
    scheme = spec["components"]["securitySchemes"]["Token"]
    assert {k: scheme[k] for k in ("type", "in", "name")} == {"type": "apiKey", "in": "header", "name": "Authorization"}
    assert "Token <token>" in scheme["description"]
    schemas = spec["components"]["schemas"]
    for path, item in spec["paths"].items():
        op = item["get"]
        assert (op.get("security") is None) == (path == "/api/v1/health/"), path
        assert op.get("security") in (None, [{"Token": []}]), path
        ref = op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
        model = schemas[ref.rsplit("/", 1)[1]]
        assert model["type"] == "object" and model["properties"], (path, model)
    for name in ("SignalRow", "Trade", "SetupSignal"):  # every column of the published table is a typed field
        assert len(schemas[name]["properties"]) >= {"SignalRow": 37, "Trade": 15, "SetupSignal": 54}[name], name


def test_docs_load_only_local_files(server):
    """Issue 14 item 7: /docs and /redoc reference no other host; every script and stylesheet they name answers 200
    from this server with JavaScript / CSS (Swagger UI 5, which renders OpenAPI 3.1)."""
    import re

    base, h = server
    for page, kinds in (("/docs", {"js", "css"}), ("/redoc", {"js"})):
        html = httpx.get(f"{base}{page}").text
        urls = re.findall(r'(?:src|href)="([^"]+)"', html) + re.findall(r"url: '([^']+)'", html)
        assert urls and not [u for u in urls if "//" in u], (page, urls)
        assert "spec-url" not in html or 'spec-url="/openapi.json"' in html
        seen = set()
        for u in urls:
            r = httpx.get(f"{base}{u}")
            assert r.status_code == 200, u
            kind = u.rsplit(".", 1)[-1]
            if kind == "js":
                assert r.headers["content-type"].startswith("text/javascript") and len(r.content) > 100_000, u
            if kind == "css":
                assert r.headers["content-type"].startswith("text/css"), u
            seen.add(kind)
        assert kinds <= seen, (page, seen)
    assert b'"5.' in httpx.get(f"{base}/static/docs/swagger-ui-bundle.js").content  # Swagger UI 5.x


def test_schemathesis_all_checks(server):
    """Bounded schemathesis run (every built-in check, positive and negative data, 10 examples per operation and mode)."""
    import hypothesis
    import schemathesis
    from schemathesis import GenerationMode

    base, h = server
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    failures = []
    t0 = time.monotonic()
    for res in schema.get_all_operations():
        op = res.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @hypothesis.settings(
                max_examples=10,  # 10 operations x 2 modes x 10 = the 200 cases of the 4-operation API before
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(hypothesis.HealthCheck),
                phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
            )
            @hypothesis.given(case=op.as_strategy(generation_mode=mode))
            def run(case):
                # a valid token unless a negative case dropped the header on purpose (then 401 is the answer)
                if mode is GenerationMode.POSITIVE or "Authorization" in (case.headers or {}):
                    case.headers = {**(case.headers or {}), **h}
                case.call_and_validate(base_url=base)

            try:
                run()
            except hypothesis.errors.Unsatisfiable:  # no parameter to make invalid (health, latest)
                assert mode is GenerationMode.NEGATIVE and not op.path_parameters and not op.query
            except Exception as e:  # collect every operation's failure, then fail once
                failures.append(f"{op.label} {mode.value}: {e}")
    assert not failures, "\n".join(failures)
    assert time.monotonic() - t0 < 30
