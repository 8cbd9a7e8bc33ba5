"""Shared by the API tests: the desks' tables beside the options signals (real candles, on-chain and sentiment days;
hand-made setup signals, backtest runs and model runs with known answers) and a real uvicorn server in a thread."""

from __future__ import annotations

import json
import socket
import threading
import time

import duckdb
import pandas as pd
import pytest
import uvicorn

from pipeline.api import uvicorn_config
from pipeline.core.onchain_signals import onchain_features
from pipeline.core.options_fusion import decide_days
from tests.conftest import SLICE_ROOT
from warehouse.schema import DDL

#: every table the API reads, as publish_snapshot copies them (warehouse.schema.SERVING_TABLES has them all)
API_TABLES = [
    "signals.options_daily",
    "signals.options_trades",
    "ops.input_errors",
    "signals.setups",
    "backtest.runs",
    "ml.model_runs",
    "market.ohlcv",
    "market.onchain_daily",
    "market.sentiment_daily",
]
#: the candle series of the fixture: the sliced real files (BTC 1h ends 2019-06-30 23:00, ETH 1d 2019-12-31)
CANDLES = [("BTC/USDT", "1h"), ("ETH/USDT", "1d")]
H = 3_600_000


@pytest.fixture(scope="session")
def options_signals(onchain_inputs) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(daily, trades)`` of the options desk's pure engine on the real on-chain data (computed once per session;
    import this fixture into a test module to use it)."""
    oc, fng = onchain_inputs
    f = onchain_features(oc, fng)
    return decide_days(f, f["date"].map(oc.set_index("date")["price_usd"]))


def _ddl(con: duckdb.DuckDBPyConnection, table: str) -> None:
    con.execute(next(q for q in DDL if f"EXISTS {table} (" in q))


def _setups() -> pd.DataFrame:
    """Five gated signals: BTC 1h x2, BTC 15m, ETH 1h x2 (ts in hours after 2024-01-01, newest = ETH 1h at +30 h)."""
    t0 = int(pd.Timestamp("2024-01-01", tz="UTC").timestamp() * 1000)
    rows = [("BTC/USDT", "1h", 10, 1, "TP"), ("BTC/USDT", "1h", 20, -1, "SL"), ("BTC/USDT", "15m", 25, 1, "OPEN")]
    rows += [("ETH/USDT", "1h", 5, 1, "EXPIRED"), ("ETH/USDT", "1h", 30, -1, "PENDING")]
    return pd.DataFrame(
        [
            {
                "ts": t0 + h * H,
                "side": side,
                "entry_type": "limit",
                "entry": 100.0 + h,
                "sl": 99.0 + h,
                "tp1": 103.0 + h,
                "tp2": 105.0 + h,
                "exchange": "binance",
                "symbol": sym,
                "timeframe": tf,
                "candidate_id": f"{sym}|{tf}|{t0 + h * H}|{side}",
                "p_win": 0.3,
                "ev_pct": 0.05,
                "passed": True,
                "why": "EV % 0.05 >= 0.0 (global)",
                "status": status,
                "net_pct": float("nan") if status in ("OPEN", "PENDING") else 1.5,
                "tp1_hit": status == "TP",
                "scanned_at": pd.Timestamp("2024-01-02 12:00"),
            }
            for sym, tf, h, side, status in rows
        ]
    )


def _backtest_runs() -> pd.DataFrame:
    """Two runs of research/baseline (the newer one, created 2024-02-01, must win), one of options_desk."""
    metrics = {"total_return": 0.12, "sharpe": 0.8, "max_drawdown": -0.2, "n_trades": 40.0, "start": "2020-01-01"}

    def run(run_id, desk, strategy, created, total_return):
        return {
            "run_id": run_id,
            "desk": desk,
            "strategy": strategy,
            "sample": "out_of_sample",
            "period_start": pd.Timestamp("2020-01-01"),
            "period_end": pd.Timestamp("2023-12-31"),
            "timeframe": "1h",
            "universe": json.dumps(["BTC/USDT"]),
            "params": json.dumps({"enter_threshold": 0.45}),
            "costs": json.dumps({"fee_taker_bps": 10.0}),
            "metrics": json.dumps({**metrics, "total_return": total_return}),
            "benchmark": json.dumps({"buy_and_hold": {"total_return": 1.5}}),
            "per_symbol": None,
            "model_name": "baseline_direction",
            "code_version": "1",
            "created_at": pd.Timestamp(created),
        }

    return pd.DataFrame(
        [
            run("baseline-old", "research", "baseline_long_flat", "2024-01-01", 0.01),
            run("baseline-new", "research", "baseline_long_flat", "2024-02-01", 0.12),
            run("options", "options_desk", "fusion_options", "2024-01-15", 3.0),
        ]
    )


def _model_runs() -> pd.DataFrame:
    """alpha: v1 champion, v2 newer and rejected; beta: v1 champion; gamma: v1 rejected."""
    scores = {"n": 1000.0, "base_rate": 0.4, "brier": 0.23, "auc": 0.55, "ece": 0.02}

    def run(name, version, trained, passed, promoted):
        return {
            "mlflow_run_id": f"{name}-{version}",
            "model_name": name,
            "model_version": str(version),
            "trained_at": pd.Timestamp(trained),
            "data_start": pd.Timestamp("2019-01-01"),
            "data_end": pd.Timestamp("2023-12-31"),
            "n_rows": 5000,
            "n_folds": 10,
            "metrics": json.dumps({"raw": scores, "cal": {**scores, "ece": 0.01}}),
            "promotion_passed": passed,
            "promotion_reasons": json.dumps(["PASS auc 0.55 >= 0.51" if passed else "FAIL ece 0.04 <= 0.03"]),
            "promoted": promoted,
            "code_version": "1",
        }

    return pd.DataFrame(
        [
            run("alpha", 1, "2024-01-01", True, True),
            run("alpha", 2, "2024-02-01", False, False),
            run("beta", 1, "2024-01-01", True, True),
            run("gamma", 1, "2024-01-01", False, False),
        ]
    )


def write_desk_tables(con: duckdb.DuckDBPyConnection, onchain: pd.DataFrame, fng: pd.DataFrame) -> None:
    """Create (replace) every table of :data:`API_TABLES` but the options signals and ``ops.input_errors``."""
    for schema in ("market", "signals", "backtest", "ml"):
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    for t in ("market.ohlcv", "market.sentiment_daily", "backtest.runs", "ml.model_runs"):
        con.execute(f"DROP TABLE IF EXISTS {t}")
        _ddl(con, t)
    for sym, tf in CANDLES:
        c = pd.read_csv(SLICE_ROOT / "ohlcv" / "binance" / f"{sym.replace('/', '_')}-{tf}.csv.gz")
        con.register("c", c.assign(exchange="binance", symbol=sym, timeframe=tf).rename(columns={"timestamp": "ts"}))
        con.execute(
            "INSERT INTO market.ohlcv (exchange, symbol, timeframe, ts, open, high, low, close, volume) "
            "SELECT exchange, symbol, timeframe, ts, open, high, low, close, volume FROM c"
        )
    con.register("oc", onchain[["date", "price_usd"]].assign(date=onchain["date"].dt.date))
    con.execute("CREATE OR REPLACE TABLE market.onchain_daily AS SELECT * FROM oc")
    con.register("f", fng.assign(date=pd.to_datetime(fng["date"]).dt.date)[["date"]])
    con.execute(
        "INSERT INTO market.sentiment_daily (date, available_at, fng_value) "
        "SELECT date, date + INTERVAL 1 DAY, 50 FROM f"
    )
    con.register("s", _setups())
    con.execute("CREATE OR REPLACE TABLE signals.setups AS SELECT * FROM s")
    for t, df in (("backtest.runs", _backtest_runs()), ("ml.model_runs", _model_runs())):
        con.register("x", df)
        con.execute(f"INSERT INTO {t} BY NAME SELECT * FROM x")
        con.unregister("x")


def serve(app) -> tuple[uvicorn.Server, threading.Thread, str]:
    """``app`` served by uvicorn (the project's config) on a free 127.0.0.1 port in a daemon thread."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn_config(app, port=port, log_level="warning"))
    th = threading.Thread(target=srv.run, daemon=True)
    th.start()
    for _ in range(400):
        if srv.started:
            break
        time.sleep(0.05)
    return srv, th, f"http://127.0.0.1:{port}"
