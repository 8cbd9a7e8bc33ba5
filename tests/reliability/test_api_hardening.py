"""Issue 13 items 12-15: the REST API's bounds, its answers without a snapshot, health with input failures, its
OpenAPI document (every response, ISO dates only, HEAD) and a bounded schemathesis run, all against a real uvicorn
server on 127.0.0.1 over a snapshot published by :func:`warehouse.publish.publish_snapshot` from signals computed
by the pure engine on the real on-chain data."""

import socket
import threading
import time

import duckdb
import httpx
import pandas as pd
import pytest
import uvicorn
from fastapi.testclient import TestClient

from pipeline.api import MAX_HEADER_BYTES, TokenStore, create_app, uvicorn_config
from pipeline.core.onchain import ONCHAIN_SOURCES, normalise_fear_greed, normalise_onchain, wide_to_long
from pipeline.core.onchain_signals import onchain_features
from pipeline.core.options_fusion import decide_days
from warehouse.publish import publish_snapshot

TABLES = ["signals.options_daily", "signals.options_trades", "ops.input_errors"]


def _signals(shared_data):
    longs = [
        wide_to_long(pd.read_csv(shared_data / "onchain" / sf.filename), sf.source, sf.date_column)
        for sf in ONCHAIN_SOURCES
    ]
    oc, _ = normalise_onchain(pd.concat(longs, ignore_index=True))
    fng = normalise_fear_greed(pd.read_csv(shared_data / "sentiment" / "fear_greed_daily.csv.gz"), "fng")
    f = onchain_features(oc, fng)
    daily, trades = decide_days(f, f["date"].map(oc.set_index("date")["price_usd"]))
    return daily.assign(date=daily["date"].dt.date), trades.assign(date=pd.to_datetime(trades["date"]).dt.date)


def _publish(tmp, daily, trades, input_errors: pd.DataFrame | None = None):
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
        publish_snapshot(con, TABLES, str(tmp / "serving.duckdb"), str(tmp / "exports"))
    return tmp / "serving.duckdb"


def _serve(app):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn_config(app, port=port, log_level="warning"))
    th = threading.Thread(target=srv.run, daemon=True)
    th.start()
    for _ in range(200):
        if srv.started:
            break
        time.sleep(0.05)
    return srv, th, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def signals_frames(shared_data):
    return _signals(shared_data)


@pytest.fixture(scope="module")
def server(signals_frames, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("api13")
    serving = _publish(tmp, *signals_frames)
    token = TokenStore(tmp / "tokens.sqlite").create("bot")
    srv, th, base = _serve(create_app(str(serving), str(tmp / "tokens.sqlite")))
    yield base, {"Authorization": f"Token {token}"}
    srv.should_exit = True
    th.join(5)


def test_page_bounds_are_422_not_500(server):
    base, h = server
    for params in ({"page": 2**62}, {"page": 2**63 + 5}, {"page": 1_000_001}, {"page_size": 501}, {"page": -1}):
        r = httpx.get(f"{base}/api/v1/signals/", params=params, headers=h)
        assert r.status_code == 422, (params, r.status_code, r.text)
    r = httpx.get(f"{base}/api/v1/signals/", params={"page": 1_000_000, "page_size": 500}, headers=h)
    assert r.status_code == 200 and r.json()["results"] == []  # the largest page: empty, not an error


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
    want = {
        "/api/v1/health/": {"200", "503", "500"},
        "/api/v1/signals/": {"200", "401", "422", "503", "500"},
        "/api/v1/signals/latest/": {"200", "401", "404", "503", "500"},
        "/api/v1/signals/{day}/": {"200", "401", "404", "422", "503", "500"},
    }
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
    for path in ("/api/v1/health/", "/api/v1/signals/latest/", "/api/v1/signals/", "/api/v1/signals/2024-03-06/"):
        r = client.get(path, headers=h)
        assert r.status_code == 503 and r.headers["retry-after"], (path, r.status_code)
        assert str(tmp_path) not in r.text and "/" not in r.json()["detail"] and "Error" not in r.text, r.text


def test_health_reports_input_errors_with_file_names_only(signals_frames, tmp_path):
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
    serving = _publish(tmp_path, daily, trades, errors)
    client = TestClient(create_app(str(serving), str(tmp_path / "tokens.sqlite")))
    body = client.get("/api/v1/health/").json()
    assert body["status"] == "degraded" and body["input_errors"] == 2
    assert {(e["input"], e["file"], e["rule"]) for e in body["failed_inputs"]} == {
        ("raw/ohlcv", "BTCUSDT_1d.csv:row 12", "finite"),
        ("raw/onchain", "mvrv.csv", "numeric"),
    }
    assert str(tmp_path) not in client.get("/api/v1/health/").text and "/srv/" not in client.get("/api/v1/health/").text
    # the failure fixed and republished: ok again (the cache is keyed by the published version)
    _publish(tmp_path, daily, trades, errors.iloc[0:0])
    assert client.get("/api/v1/health/").json() | {"latest_signal_date": None} == {
        "status": "ok",
        "latest_signal_date": None,
        "days": len(daily),
        "input_errors": 0,
        "failed_inputs": [],
    }


def test_schemathesis_all_checks(server):
    """Bounded schemathesis run (every built-in check, positive and negative data, a few examples per operation)."""
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
                max_examples=25,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(hypothesis.HealthCheck),
                phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
            )
            @hypothesis.given(case=op.as_strategy(generation_mode=mode))
            def run(case):
                case.call_and_validate(base_url=base, headers=h)

            try:
                run()
            except hypothesis.errors.Unsatisfiable:  # no parameter to make invalid (health, latest)
                assert mode is GenerationMode.NEGATIVE and not op.path_parameters and not op.query
            except Exception as e:  # collect every operation's failure, then fail once
                failures.append(f"{op.label} {mode.value}: {e}")
    assert not failures, "\n".join(failures)
    assert time.monotonic() - t0 < 30
