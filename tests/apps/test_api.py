"""The options desk REST API over real HTTP on 127.0.0.1 (uvicorn in a thread), against a snapshot built from
the real on-chain data by the pure engine."""

import socket
import threading
import time

import duckdb
import httpx
import pandas as pd
import pytest
import uvicorn

from pipeline.api import TokenStore, create_app, uvicorn_config
from pipeline.core.onchain import ONCHAIN_SOURCES, normalise_fear_greed, normalise_onchain, wide_to_long
from pipeline.core.onchain_signals import onchain_features
from pipeline.core.options_fusion import decide_days


@pytest.fixture(scope="module")
def server(shared_data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("api")
    longs = [
        wide_to_long(pd.read_csv(shared_data / "onchain" / sf.filename), sf.source, sf.date_column)
        for sf in ONCHAIN_SOURCES
    ]
    oc, _ = normalise_onchain(pd.concat(longs, ignore_index=True))
    fng = normalise_fear_greed(pd.read_csv(shared_data / "sentiment" / "fear_greed_daily.csv.gz"), "fng")
    f = onchain_features(oc, fng)
    daily, trades = decide_days(f, f["date"].map(oc.set_index("date")["price_usd"]))
    serving = tmp / "serving.duckdb"
    with duckdb.connect(str(serving)) as con:
        con.execute("CREATE SCHEMA signals")
        con.register("d", daily.assign(date=daily["date"].dt.date))
        con.register("t", trades.assign(date=pd.to_datetime(trades["date"]).dt.date))
        con.execute("CREATE TABLE signals.options_daily AS SELECT * FROM d")
        con.execute("CREATE TABLE signals.options_trades AS SELECT * FROM t")
    store = TokenStore(tmp / "tokens.sqlite")
    token = store.create("telegram_bot")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(
        uvicorn_config(create_app(str(serving), str(tmp / "tokens.sqlite")), port=port, log_level="warning")
    )
    th = threading.Thread(target=srv.run, daemon=True)
    th.start()
    for _ in range(100):
        if srv.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", token, store, daily, trades
    srv.should_exit = True
    th.join(5)


def test_health_needs_no_token(server):
    base, *_ = server
    r = httpx.get(f"{base}/api/v1/health/")
    assert r.status_code == 200 and r.json()["status"] == "ok" and r.json()["latest_signal_date"] == "2026-08-21"


def test_auth_errors_are_json_401(server):
    base, *_ = server
    for headers in ({}, {"Authorization": "Token wrong"}, {"Authorization": "Bearer x"}):
        r = httpx.get(f"{base}/api/v1/signals/latest/", headers=headers)
        assert r.status_code == 401 and "token" in r.json()["detail"] and r.headers["www-authenticate"] == "Token"


def test_signals_latest_by_date_and_pagination(server):
    base, token, _, daily, trades = server
    h = {"Authorization": f"Token {token}"}
    latest = httpx.get(f"{base}/api/v1/signals/latest/", headers=h).json()
    assert (
        latest["date"] == "2026-08-21"
        and latest["state"] == "no_trade"
        and latest["state_reason"] == "unavailable:whales"
    )
    day = httpx.get(f"{base}/api/v1/signals/2024-03-06/", headers=h).json()
    assert day["state"] == "strong_bullish" and {t["trade_type"] for t in day["trades"]} == {"LONG", "TACTICAL_PUT"}
    assert all(t["structure"] and t["expiry"] for t in day["trades"])
    page = httpx.get(f"{base}/api/v1/signals/", params={"page": 2, "page_size": 10}, headers=h).json()
    assert page["count"] == len(daily) and page["page"] == 2 and len(page["results"]) == 10
    assert page["results"][0]["date"] == str((daily["date"].max() - pd.Timedelta(days=10)).date())  # newest first


def test_unknown_and_bad_dates(server):
    base, token, *_ = server
    h = {"Authorization": f"Token {token}"}
    r = httpx.get(f"{base}/api/v1/signals/1999-01-01/", headers=h)
    assert r.status_code == 404 and r.json()["detail"] == "no signal for 1999-01-01"
    r = httpx.get(f"{base}/api/v1/signals/2024-13-45/", headers=h)
    assert r.status_code == 422 and isinstance(r.json()["detail"], list)
    assert httpx.get(f"{base}/api/v1/signals/", params={"page": 0}, headers=h).status_code == 422


def test_revoked_token_and_openapi(server):
    base, _, store, *_ = server
    t = store.create("temp")
    h = {"Authorization": f"Token {t}"}
    assert httpx.get(f"{base}/api/v1/signals/latest/", headers=h).status_code == 200
    assert store.revoke("temp") == 1
    assert httpx.get(f"{base}/api/v1/signals/latest/", headers=h).status_code == 401
    spec = httpx.get(f"{base}/openapi.json").json()
    assert {"/api/v1/health/", "/api/v1/signals/", "/api/v1/signals/latest/", "/api/v1/signals/{day}/"} <= set(
        spec["paths"]
    )
    assert t not in store.path.read_bytes().decode("latin-1")  # only the hash is stored
