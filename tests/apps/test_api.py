"""The REST API over real HTTP on 127.0.0.1 (uvicorn in a thread), against a snapshot built from the real on-chain
data by the pure engine, real candle slices and hand-made setup signals, backtest runs and model runs."""

import datetime as dt

import duckdb
import httpx
import pandas as pd
import pytest

from pipeline.api import Signal, TokenStore, Trade, create_app
from tests.apps.api_helpers import options_signals, serve, write_desk_tables

__all__ = ["options_signals"]  # the session fixture, shared with tests/reliability/test_api_hardening.py


@pytest.fixture(scope="module")
def server(onchain_inputs, options_signals, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("api")
    oc, fng = onchain_inputs
    daily, trades = options_signals
    serving = tmp / "serving.duckdb"
    with duckdb.connect(str(serving)) as con:
        con.execute("CREATE SCHEMA signals")
        con.register("d", daily.assign(date=daily["date"].dt.date))
        con.register("t", trades.assign(date=pd.to_datetime(trades["date"]).dt.date))
        con.execute("CREATE TABLE signals.options_daily AS SELECT * FROM d")
        con.execute("CREATE TABLE signals.options_trades AS SELECT * FROM t")
        write_desk_tables(con, oc, fng)
    store = TokenStore(tmp / "tokens.sqlite")
    token = store.create("telegram_bot")
    srv, th, base = serve(create_app(str(serving), str(tmp / "tokens.sqlite")))
    yield base, token, store, daily, trades
    srv.should_exit = True
    th.join(5)


def test_health_needs_no_token(server):
    base, *_ = server
    r = httpx.get(f"{base}/api/v1/health/")
    assert r.status_code == 200 and r.json()["latest_signal_date"] == "2026-08-21"


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


def _ts(s: str) -> dt.datetime:
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00"))


def test_health_reports_ages_and_degrades_on_old_data(server):
    """Issue 14 item 8: the real data ends 2026-08-21 (signal and on-chain), Fear & Greed 2026-08-22, the candle
    slices 2019-06-30 23:00 (BTC 1h) and 2019-12-31 (ETH 1d): every age is past its default bound, so degraded."""
    base, *_ = server
    body = httpx.get(f"{base}/api/v1/health/").json()
    now = _ts(body["checked_at"])
    ages = {a["input"]: a for a in body["inputs"]}
    assert set(ages) == {"signals", "setups", "candles", "onchain", "sentiment"}
    want_latest = {
        "signals": "2026-08-22T00:00:00Z",  # the end of the signal's day
        "onchain": "2026-08-22T00:00:00Z",
        "sentiment": "2026-08-23T00:00:00Z",
        "candles": "2020-01-01T00:00:00Z",  # the close of ETH's last daily candle (newest of all series)
        "setups": "2024-01-02T06:00:00Z",  # ETH 1h at +30 h
    }
    for name, latest in want_latest.items():
        a = ages[name]
        assert a["latest"] == latest, name
        # checked_at is shown to the second, the server measured at its own instant: one 0.01 h rounding step apart
        assert a["age_hours"] == pytest.approx((now - _ts(latest)).total_seconds() / 3600, abs=0.011), name
    assert ages["candles"]["stalest_series"] == "binance BTC/USDT 1h"  # BTC 1h closed 2019-07-01 00:00
    stalest = (now - _ts("2019-07-01T00:00:00Z")).total_seconds() / 3600
    assert ages["candles"]["stalest_age_hours"] == pytest.approx(stalest, abs=0.011)
    bounds = {"signals": 48.0, "candles": 26.0, "onchain": 48.0, "sentiment": 48.0, "setups": None}
    assert {k: (a["max_age_hours"], a["stale"]) for k, a in ages.items()} == {
        k: (b, b is not None) for k, b in bounds.items()
    }
    assert body["status"] == "degraded" and len(body["reasons"]) == 4
    assert body["signal_age_days"] == (now.date() - dt.date(2026, 8, 21)).days
    assert "binance BTC/USDT 1h" in body["reasons"][1] and "(max 26 h)" in body["reasons"][1]


def test_pages_past_the_last_are_404_with_links(server):
    base, token, _, daily, _ = server
    h = {"Authorization": f"Token {token}"}
    n, size = len(daily), 500
    last = -(-n // size)
    r = httpx.get(f"{base}/api/v1/signals/", params={"page": last, "page_size": size}, headers=h).json()
    assert len(r["results"]) == n - (last - 1) * size and r["next"] is None
    assert r["previous"] == f"/api/v1/signals/?page={last - 1}&page_size={size}"
    assert httpx.get(f"{base}{r['previous']}", headers=h).json()["page"] == last - 1  # links are followable
    r = httpx.get(f"{base}/api/v1/signals/", params={"page": last + 1, "page_size": size}, headers=h)
    assert r.status_code == 404 and r.json() == {
        "detail": f"page {last + 1} is beyond the last page ({last} pages of 500)"
    }
    # page 1 of nothing is an empty page, not a 404
    r = httpx.get(f"{base}/api/v1/setups/", params={"symbol": "NOPE/USDT"}, headers=h).json()
    assert r["count"] == 0 and r["pages"] == 1 and r["results"] == [] and r["next"] is None


def test_setups_backtests_models_need_the_token(server):
    base, *_ = server
    for path in ("/api/v1/setups/", "/api/v1/setups/latest/", "/api/v1/backtests/", "/api/v1/backtests/research/"):
        for headers in ({}, {"Authorization": "Token wrong"}):
            assert httpx.get(f"{base}{path}", headers=headers).status_code == 401, path
    assert httpx.get(f"{base}/api/v1/models/alpha/").status_code == 401


def test_setups_newest_first_filtered_and_latest_per_series(server):
    base, token, *_ = server
    h = {"Authorization": f"Token {token}"}
    r = httpx.get(f"{base}/api/v1/setups/", params={"page_size": 2}, headers=h).json()
    assert r["count"] == 5 and r["pages"] == 3 and r["next"] == "/api/v1/setups/?page=2&page_size=2"
    assert [(s["symbol"], s["timeframe"], s["time"]) for s in r["results"]] == [
        ("ETH/USDT", "1h", "2024-01-02T06:00:00Z"),
        ("BTC/USDT", "15m", "2024-01-02T01:00:00Z"),
    ]
    assert r["results"][0]["net_pct"] is None and r["results"][0]["status"] == "PENDING"  # NaN -> null
    r = httpx.get(f"{base}/api/v1/setups/", params={"symbol": "BTC/USDT", "timeframe": "1h"}, headers=h).json()
    assert [s["status"] for s in r["results"]] == ["SL", "TP"]
    r = httpx.get(f"{base}/api/v1/setups/", params={"symbol": "BTC/USDT", "page_size": 1, "page": 2}, headers=h).json()
    assert r["next"] == "/api/v1/setups/?symbol=BTC%2FUSDT&page=3&page_size=1" and r["results"][0]["status"] == "SL"
    r = httpx.get(f"{base}/api/v1/setups/latest/", headers=h).json()
    assert [(s["symbol"], s["timeframe"], s["status"]) for s in r["results"]] == [
        ("ETH/USDT", "1h", "PENDING"),
        ("BTC/USDT", "15m", "OPEN"),
        ("BTC/USDT", "1h", "SL"),
    ]


def test_backtests_newest_of_every_desk_and_strategy(server):
    base, token, *_ = server
    h = {"Authorization": f"Token {token}"}
    r = httpx.get(f"{base}/api/v1/backtests/", headers=h).json()
    assert [(b["desk"], b["run_id"]) for b in r["results"]] == [
        ("options_desk", "options"),
        ("research", "baseline-new"),
    ]
    b = r["results"][1]
    assert b["metrics"]["total_return"] == 0.12 and b["benchmark"] == {"buy_and_hold": {"total_return": 1.5}}
    assert b["universe"] == ["BTC/USDT"] and b["created_at"] == "2024-02-01T00:00:00Z"
    r = httpx.get(f"{base}/api/v1/backtests/research/", headers=h).json()
    assert [b["run_id"] for b in r["results"]] == ["baseline-new"]
    r = httpx.get(f"{base}/api/v1/backtests/policy_trader/", headers=h)
    assert r.status_code == 404 and r.json() == {"detail": "no backtest of desk policy_trader"}


def test_models_latest_training_and_champion(server):
    base, token, *_ = server
    h = {"Authorization": f"Token {token}"}
    r = httpx.get(f"{base}/api/v1/models/", headers=h).json()
    got = {
        m["model_name"]: (
            m["status"],
            m["versions"],
            m["latest"]["model_version"],
            (m["champion"] or {}).get("model_version"),
        )
        for m in r["results"]
    }
    assert got == {
        "alpha": ("older_champion", 2, "2", "1"),  # v2 trained later and rejected: v1 still serves
        "beta": ("latest_is_champion", 1, "1", "1"),
        "gamma": ("no_champion", 1, "1", None),
    }
    a = httpx.get(f"{base}/api/v1/models/alpha/", headers=h).json()
    assert a["latest"]["promotion_reasons"] == ["FAIL ece 0.04 <= 0.03"] and a["latest"]["promotion_passed"] is False
    assert a["champion"]["oos_calibrated"]["ece"] == 0.01 and a["champion"]["oos_raw"]["auc"] == 0.55
    r = httpx.get(f"{base}/api/v1/models/delta/", headers=h)
    assert r.status_code == 404 and r.json() == {"detail": "no model delta"}


def test_typed_models_declare_every_published_column(server):
    """Issue 14 item 7: the response models list every column the options desk publishes (none only 'extra')."""
    *_, daily, trades = server
    assert set(daily.columns) <= set(Signal.model_fields) and set(trades.columns) <= set(Trade.model_fields)
