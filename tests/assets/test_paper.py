"""Signal log and paper trading (issue 16) on real candles: BTC/ETH 15m + 1h, 2023-03-01 → 2023-03-12.

The warehouse holds the real candles (``market.ohlcv`` and the stored ATR(14) of ``features.technical``) and
``signals.setups`` rows with plans built from those candles (limit entries around the close, SL/TP at ATR
multiples, 1-5x leverage); the candles are released in chunks, as a live exchange would, and the paper book is
stepped after each chunk.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import talib

from assets.paper import common as pa
from pipeline.config import settings
from pipeline.core import paper
from pipeline.core.setup_signals import execution_params, simulate_book
from pipeline.core.timeframes import timeframe_ms
from tests.conftest import real_ohlcv
from warehouse import io
from warehouse import paper as store

REPO = Path(__file__).resolve().parents[2]


def _ms(s: str) -> int:
    return int(pd.Timestamp(s, tz="UTC").value // 1_000_000)


SERIES = [(s, tf) for s in ("BTC/USDT", "ETH/USDT") for tf in ("15m", "1h")]
START, END = _ms("2023-03-01"), _ms("2023-03-12")
CUTS = [_ms("2023-03-04"), _ms("2023-03-06 13:00"), _ms("2023-03-09 07:15"), END]


@pytest.fixture(scope="module")
def candles() -> dict:
    out = {}
    for sym, tf in SERIES:
        b = real_ohlcv(sym, tf)
        b = b[(b["ts"] >= START - 40 * 3_600_000) & (b["ts"] < END)].reset_index(drop=True)
        b["atr"] = talib.ATR(b["high"].to_numpy(), b["low"].to_numpy(), b["close"].to_numpy(), timeperiod=14)
        out[(sym, tf)] = b[b["ts"] >= START].reset_index(drop=True)
    return out


def _plans(candles: dict, seed: int, rate: float) -> pd.DataFrame:
    """Gated plans on ``rate`` of the bars of every series (both sides, some on the same bar)."""
    rng = np.random.default_rng(seed)
    rows = []
    for (sym, tf), b in candles.items():
        for i in np.flatnonzero(rng.random(len(b)) < rate):
            c, a = float(b["close"][i]), float(b["atr"][i])
            for side in (1, -1) if rng.random() < 0.1 else (int(rng.choice([1, -1])),):
                e = c - side * 0.2 * a
                lev = float(rng.integers(1, 6))
                rows.append(
                    {
                        "candidate_id": f"{sym}|{tf}|{int(b['ts'][i])}|{side}",
                        "symbol": sym,
                        "timeframe": tf,
                        "ts": int(b["ts"][i]),
                        "side": side,
                        "entry_type": "limit",
                        "entry": e,
                        "sl": e - side * 1.5 * a,
                        "tp1": e + side * 2.0 * a,
                        "tp2": e + side * 3.5 * a,
                        "leverage": lev,
                        "liq_price": e * (1 - side * 0.9 / lev),
                        "qty": 1.0,
                        "notional": e,
                        "p_win": float(rng.random()),
                        "ev_pct": float(rng.normal(0.2, 0.1)),
                        "threshold": 0.0,
                        "threshold_source": "global",
                        "why": "EV % >= 0.0 (global)",
                        "gate_mode": "ev",
                        "passed": True,
                        "model_version": "setup_meta v1",
                    }
                )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def setups(candles) -> pd.DataFrame:
    """Gated plans on ~6 % of the bars of every series (both sides, some on the same bar)."""
    return _plans(candles, 16, 0.06)


@pytest.fixture
def cfg(tmp_path):
    c = settings().model_copy(deep=True)
    c.warehouse.path = str(tmp_path / "wh.duckdb")
    c.setup_scanner.symbols = ["BTC/USDT", "ETH/USDT"]
    c.setup_scanner.timeframes = ["15m", "1h"]
    c.paper.start = "2023-03-01"
    c.paper.log_recent_candles = 10**6  # log every plan of the fixture (the recent-window rule has its own test)
    return c


def _release(con, candles: dict, upto: int, exchange: str) -> None:
    """The candles closed by ``upto`` (``ts + timeframe <= upto``) in market.ohlcv and features.technical."""
    for (sym, tf), b in candles.items():
        part = b[b["ts"] + timeframe_ms(tf) <= upto].assign(exchange=exchange, symbol=sym, timeframe=tf)
        io.upsert(
            con,
            "market.ohlcv",
            part[["exchange", "symbol", "timeframe", "ts", "open", "high", "low", "close"]],
            ["exchange", "symbol", "timeframe", "ts"],
        )
        f = part.rename(columns={"atr": "atr_14"})[["exchange", "symbol", "timeframe", "ts", "close", "atr_14"]]
        io.upsert(con, "features.technical", f, ["exchange", "symbol", "timeframe", "ts"])


def _scan(con, setups: pd.DataFrame, upto: int) -> None:
    closed = setups["ts"] + setups["timeframe"].map(timeframe_ms) <= upto  # the scan runs on closed candles
    io.replace_table(con, "signals.setups", setups[closed].reset_index(drop=True))


def _live(cfg, candles, setups, cuts) -> list[dict]:
    """Release candles chunk by chunk; after each: scan → log → paper step (the live job's order)."""
    out = []
    with io.connect(cfg.warehouse.path) as con:
        for cut in cuts:
            _release(con, candles, cut, cfg.exchange.id)
            _scan(con, setups, cut)
            pa.log_new_signals(con, cfg)
            out.append(pa.step_book(con, cfg))
    return out


def _book(path: str) -> dict:
    with io.connect(path, read_only=True) as con:
        t, e = store.book_frames(con, pa.DESK)
        s = store.latest_state(con, pa.DESK)
        pos = io.read_df(con, "SELECT * EXCLUDE (version) FROM paper.positions ORDER BY asset")
    return {
        "trades": t.drop(columns="version"),
        "equity": e.drop(columns="version"),
        "state": s["state"],
        "positions": pos,
    }


def test_paper_steps_equal_one_backtest_run_and_the_check_passes(cfg, candles, setups):
    steps = _live(cfg, candles, setups, CUTS)
    assert [s["version"] for s in steps] == [1, 2, 3, 4]
    assert steps[1]["bars"] < steps[0]["bars"]  # each step reads only the bars after the previous one's
    # the watermark on the 15m grid: every series has closed the bar (the 1h candle opening at 12:00 closed at 13:00
    # = CUTS[1], with the 15m candle opening at 12:45); at CUTS[2] = 07:15 the hour's 1h candle is still open, so
    # the 15m candle of 07:00 waits for it
    assert steps[1]["last_ts"] == _ms("2023-03-06 12:45")
    assert steps[2]["last_ts"] == _ms("2023-03-09 06:45")
    with io.connect(cfg.warehouse.path) as con:
        assert pa.step_book(con, cfg)["status"] == "no new closed bar"  # nothing new: nothing written
        assert io.fetch_one(con.execute("SELECT max(version) FROM paper.state"))[0] == 4
    book = _book(cfg.warehouse.path)
    assert len(book["trades"]) > 40  # enough fills that a wrong resume would show
    with io.connect(cfg.warehouse.path, read_only=True) as con:
        r = pa.resimulate(con, cfg)
    assert r["passed"] and r["differing_trades"] == 0 and r["equity_max_abs_diff"] <= 1e-9, r
    assert r["paper_trades"] == len(book["trades"])
    # ... and equals the setup scanner's backtest (simulate_book) on the same candles and signals, trade for trade
    sc = cfg.setup_scanner
    params = execution_params(sc.signals, sc.risk, sc.execution, sc.costs, cfg.paper.initial_cash)
    last = steps[-1]["last_ts"]
    sig = setups[setups["ts"] <= last].assign(score=setups["ev_pct"])
    bars = {k: b[b["ts"] <= last] for k, b in candles.items()}
    port, bt, _ = simulate_book(bars, sig, "score", params, cfg.paper.initial_cash, None, START)
    bt = bt[bt["exit_reason"] != "open"].assign(asset=lambda d: d["symbol"] + "|" + d["timeframe"])
    cmp = paper.compare_books(book["trades"], bt, book["equity"], port, 1e-9)
    assert cmp["differing_trades"] == 0 and cmp["sim_trades"] == len(bt), cmp
    assert cmp["equity_max_abs_diff"] <= 1e-9


def test_the_shared_book_decides_at_each_15m_close_on_what_is_known_then(cfg, candles, setups):
    """No look-ahead across timeframes: the shared 15m + 1h book run on the candles closed by a cut inside an hour
    equals the whole run up to that cut (same equity at every bar, same trades). With the 1h candles in the same run
    as 15m ones, a 1h candle opening at T was processed whole (stops, close mark) before the 15m candles of T+15…T+45
    were sized, so the truncated run differed."""
    sc = cfg.setup_scanner
    params = execution_params(sc.signals, sc.risk, sc.execution, sc.costs, cfg.paper.initial_cash)
    sig = setups.assign(score=setups["ev_pct"])
    full, full_trades, _ = simulate_book(candles, sig, "score", params, cfg.paper.initial_cash, None, START)
    assert full["ts"].diff().dropna().eq(900_000).mean() > 0.99  # one 15m grid, the 1h series on their 15m candles
    assert set(full_trades["timeframe"]) == {"15m", "1h"} and len(full_trades) > 40
    one_h = full_trades[full_trades["timeframe"] == "1h"]
    assert ((one_h["signal_ts"] % 3_600_000) == 0).all()  # a 1h trade keeps its plan's own candle time
    assert (one_h["entry_ts"] % 3_600_000 != 0).any() or (one_h["exit_ts"] % 3_600_000 != 0).any()  # 15m exits
    for cut in (_ms("2023-03-04 10:30"), _ms("2023-03-07 05:15"), _ms("2023-03-10 19:45")):
        bars = {k: b[b["ts"] + timeframe_ms(k[1]) <= cut] for k, b in candles.items()}
        s = sig[sig["ts"] + sig["timeframe"].map(timeframe_ms) <= cut]
        port, trades, _ = simulate_book(bars, s, "score", params, cfg.paper.initial_cash, None, START)
        f = full[full["ts"] <= port["ts"].max()]
        assert port["ts"].tolist() == f["ts"].tolist()
        np.testing.assert_allclose(port["equity"], f["equity"], rtol=0, atol=1e-9)
        closed = trades[trades["exit_reason"] != "open"]
        key = ["symbol", "timeframe", "signal_ts", "entry_ts", "exit_ts", "exit_reason"]
        m = closed.merge(full_trades, on=key, how="left", suffixes=("", "_full"), indicator=True)
        assert (m["_merge"] == "both").all(), m[m["_merge"] != "both"][key]
        np.testing.assert_allclose(m["pnl"], m["pnl_full"], rtol=1e-12, atol=1e-9)


def test_a_1h_candle_without_15m_candles_reveals_its_range_only_at_its_close():
    """Hand case: before a symbol's 15m history, a 1h candle is four 15m rows, three flat at its open and the last with
    its range; the ATR is the last closed 1h candle's; covered hours keep their real 15m candles."""
    from pipeline.core.setup_signals import on_base_bars

    h, q = 3_600_000, 900_000
    coarse = pd.DataFrame(
        {"ts": [0, h, 2 * h], "open": [10.0, 20, 30], "high": [15.0, 25, 35], "low": [5.0, 15, 25]}
        | {"close": [12.0, 22, 32], "atr": [1.0, 2, 3]}
    )
    base = pd.DataFrame(
        {"ts": [2 * h + q * i for i in range(4)], "open": [30.0, 31, 32, 33], "high": [31.0, 32, 33, 35]}
        | {"low": [29.0, 30, 31, 25], "close": [31.0, 32, 33, 32]}
    )
    got = on_base_bars(base, coarse, h, q)
    assert got["ts"].tolist() == [q * i for i in range(12)]
    assert got["open"].tolist()[:8] == [10.0] * 4 + [20.0] * 4
    assert got["high"].tolist()[:8] == [10.0, 10, 10, 15, 20, 20, 20, 25]
    assert got["low"].tolist()[:8] == [10.0, 10, 10, 5, 20, 20, 20, 15]
    assert got["close"].tolist()[:8] == [10.0, 10, 10, 12, 20, 20, 20, 22]
    assert got.iloc[8:][["open", "high", "low", "close"]].to_numpy().tolist() == base.iloc[:, 1:].to_numpy().tolist()
    np.testing.assert_array_equal(got["atr"], [np.nan] * 3 + [1.0] * 4 + [2.0] * 4 + [3.0])


def test_1h_plans_on_synthetic_15m_rows_trade_as_on_their_1h_candles(cfg, candles, setups):
    """Where a symbol has no 15m candles, its 1h series in a 15m-grid book trades exactly as on its own 1h candles
    (same fills, exits, PnL and equity at each hour's close): the rows add no information."""
    sc = cfg.setup_scanner
    params = execution_params(sc.signals, sc.risk, sc.execution, sc.costs, cfg.paper.initial_cash)
    own = {}
    for sym in ("BTC/USDT", "ETH/USDT", "SOL/USDT"):  # 2021: before the 15m files begin
        b = real_ohlcv(sym, "1h")
        b = b[(b["ts"] >= _ms("2021-01-01")) & (b["ts"] < _ms("2021-04-01"))].reset_index(drop=True)
        own[(sym, "1h")] = b.assign(atr=talib.ATR(b["high"], b["low"], b["close"], timeperiod=14).to_numpy())
    sig = _plans(own, 7, 0.05).assign(score=lambda d: d["ev_pct"])
    empty = {(s, "15m"): b.iloc[:0] for (s, _), b in own.items()}
    a_port, a, _ = simulate_book(own, sig, "score", params, cfg.paper.initial_cash, 2, None, "1h")
    b_port, b, _ = simulate_book(own | empty, sig, "score", params, cfg.paper.initial_cash, 2, None, "15m")
    assert len(a) > 40 and len(a) == len(b)
    key = ["symbol", "timeframe", "signal_ts", "exit_reason", "direction"]
    a, b = a.sort_values(key).reset_index(drop=True), b.sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(a[key], b[key])
    for c in ("entry_ts", "exit_ts"):  # inside the same hour (a limit fill or a stop: in the row with its range)
        assert ((b[c] - b[c] % 3_600_000) == a[c]).all()
    for c in ("entry_price", "exit_price", "units", "fees", "pnl"):
        np.testing.assert_allclose(b[c], a[c], rtol=1e-12, atol=1e-9)
    hourly = b_port[(b_port["ts"] + 900_000) % 3_600_000 == 0].assign(ts=lambda d: d["ts"] - 2_700_000)
    m = a_port.merge(hourly, on="ts", suffixes=("_1h", "_15m"))
    assert len(m) == len(a_port)
    np.testing.assert_allclose(m["equity_15m"], m["equity_1h"], rtol=1e-12)


def test_the_signal_log_is_append_only(cfg, candles, setups):
    with io.connect(cfg.warehouse.path) as con:
        _release(con, candles, CUTS[1], cfg.exchange.id)
        _scan(con, setups, CUTS[1])
        n = pa.log_new_signals(con, cfg)["new"]
        before = io.read_df(con, "SELECT * FROM signals.log ORDER BY signal_id")
        # a recomputed history (other plans, later scan time) re-logs nothing and rewrites nothing
        io.replace_table(con, "signals.setups", setups[setups["ts"] < CUTS[1]].assign(entry=1.0, why="changed"))
        assert pa.log_new_signals(con, cfg)["new"] == 0
        after = io.read_df(con, "SELECT * FROM signals.log ORDER BY signal_id")
    assert n == len(before) == (setups["ts"] < CUTS[1]).sum()
    pd.testing.assert_frame_equal(before, after)
    p = json.loads(before["payload"][0])
    assert {"side", "entry", "sl", "tp1", "tp2", "leverage", "qty", "p_win", "ev_pct", "threshold", "why"} <= set(p)


def test_only_recent_candles_are_logged(cfg, candles, setups):
    cfg.paper.log_recent_candles = 40
    with io.connect(cfg.warehouse.path) as con:
        _release(con, candles, CUTS[1], cfg.exchange.id)
        _scan(con, setups, CUTS[1])
        pa.log_new_signals(con, cfg)
        got = io.read_df(con, "SELECT signal_id, timeframe, ts FROM signals.log")
    s = setups[setups["ts"] < CUTS[1]]
    step = s["timeframe"].map({"15m": 900_000, "1h": 3_600_000})
    newest = s["timeframe"].map({"15m": CUTS[1] - 900_000, "1h": CUTS[1] - 3_600_000})
    want = s[s["ts"] > newest - 40 * step]
    assert 0 < len(got) == len(want) < len(s)
    assert set(got["signal_id"]) == set(want["candidate_id"])


def test_a_late_signal_is_recorded_the_book_still_matches_and_a_tampered_fill_fails_the_check(cfg, candles, setups):
    steps = _live(cfg, candles, setups[setups["ts"] != int(setups["ts"].iloc[3])], CUTS[:2])
    with io.connect(cfg.warehouse.path) as con:
        _scan(con, setups, CUTS[1])  # the scan of an old candle arrives after its bar was stepped
        assert pa.log_new_signals(con, cfg)["new"] >= 1
        _release(con, candles, CUTS[2], cfg.exchange.id)
        _scan(con, setups, CUTS[2])
        pa.log_new_signals(con, cfg)
        s = pa.step_book(con, cfg)
        late = store.late_ids(con, pa.DESK)
        r = pa.resimulate(con, cfg)
        con.execute(
            "UPDATE paper.trades SET exit_price = exit_price * (1 + 1e-7) WHERE entry_ts = "
            "(SELECT min(entry_ts) FROM paper.trades)"
        )
        bad = pa.resimulate(con, cfg)
    assert s["late"] >= 1 and setups["candidate_id"].iloc[3] in late
    assert int(setups["ts"].iloc[3]) <= steps[-1]["last_ts"]
    assert r["passed"], r
    assert not bad["passed"] and bad["differing_trades"] == 1, bad


_STEP = """
import sys
from assets.paper import common as pa
from pipeline.config import settings
from warehouse import io
cfg = settings().model_copy(deep=True)
cfg.warehouse.path = sys.argv[1]
cfg.setup_scanner.symbols = ["BTC/USDT", "ETH/USDT"]
cfg.setup_scanner.timeframes = ["15m", "1h"]
cfg.paper.log_recent_candles = 10**6
cfg.paper.start = "2023-03-01"
with io.connect(cfg.warehouse.path) as con:
    print(pa.step_book(con, cfg))
"""


def test_kill_9_mid_step_then_restart_gives_the_uninterrupted_book(cfg, candles, setups, tmp_path):
    _live(cfg, candles, setups, CUTS[:2])
    with io.connect(cfg.warehouse.path) as con:
        _release(con, candles, CUTS[2], cfg.exchange.id)
        _scan(con, setups, CUTS[2])
        pa.log_new_signals(con, cfg)
    ref = cfg.model_copy(deep=True)  # the same warehouse, stepped without interruption
    ref.warehouse.path = str(tmp_path / "ref.duckdb")
    shutil.copy(cfg.warehouse.path, ref.warehouse.path)
    with io.connect(ref.warehouse.path) as con:
        assert pa.step_book(con, ref)["version"] == 3
    # killed inside the step's transaction, every row of the step written but not committed: the previous version
    # stands, and the restart redoes the step from it
    env = {**os.environ, "PYTHONPATH": str(REPO), "TRADER_PAPER_CRASH_AT": "state"}
    run = subprocess.run([sys.executable, "-c", _STEP, cfg.warehouse.path], env=env, cwd=REPO, capture_output=True)
    assert run.returncode == 9, run.stderr.decode()[-2000:]
    with io.connect(cfg.warehouse.path, read_only=True) as con:
        assert io.fetch_one(con.execute("SELECT max(version) FROM paper.state"))[0] == 2
        assert io.fetch_one(con.execute("SELECT count(*) FROM paper.equity WHERE version = 3"))[0] == 0
    with io.connect(cfg.warehouse.path) as con:
        assert pa.step_book(con, cfg)["version"] == 3  # the restart
        assert pa.step_book(con, cfg)["status"] == "no new closed bar"
    got, want = _book(cfg.warehouse.path), _book(ref.warehouse.path)
    pd.testing.assert_frame_equal(got["trades"], want["trades"])
    pd.testing.assert_frame_equal(got["equity"], want["equity"])
    pd.testing.assert_frame_equal(got["positions"], want["positions"])
    assert got["state"] == want["state"]


def test_paper_job_assets_check_status_and_reset(cfg, candles, setups, resources, monkeypatch):
    import dagster as dg
    from typer.testing import CliRunner

    from assets.paper import book
    from pipeline.cli import app
    from pipeline.cli import paper as cli_paper
    from pipeline.jobs import paper_reset_job

    cfg.warehouse.path = resources["warehouse"].path
    monkeypatch.setattr(book, "settings", lambda: cfg)
    with io.connect(cfg.warehouse.path) as con:
        _release(con, candles, CUTS[1], cfg.exchange.id)
        _scan(con, setups, CUTS[1])
    res = dg.materialize(
        [book.signals_log, book.paper_setup_scanner, book.paper_matches_backtest],
        resources=resources,
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert res.success
    from pipeline.definitions import defs  # the check is in the code location and in paper_job, not in main_job

    assert "paper__setup_book_paper_matches_backtest" in defs.resolve_job_def("paper_job").graph.node_dict
    assert not [n for n in defs.resolve_job_def("main_job").graph.node_dict if "paper" in n or n == "signals__log"]
    (check,) = res.get_asset_check_evaluations()
    assert check.passed and check.check_name == "paper_matches_backtest"
    step = res.asset_materializations_for_node("paper__setup_book")[0].metadata
    assert step["version"].value == 1 and step["closed_trades"].value > 0

    @contextmanager
    def readonly():
        with io.connect(cfg.warehouse.path, read_only=True) as con:
            yield con

    monkeypatch.setattr(cli_paper, "open_readonly", readonly)
    out = CliRunner().invoke(app, ["paper", "status", "--desk", "setup_scanner"], env={"COLUMNS": "250"})
    assert out.exit_code == 0, out.output
    assert "paper books" in out.output and "setup_scanner" in out.output and "open positions" in out.output

    r = paper_reset_job.execute_in_process(
        run_config={"ops": {"paper_reset": {"config": {"desk": "setup_scanner"}}}},
        resources={"warehouse": resources["warehouse"]},
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert r.success and r.output_for_node("paper_reset")["paper.state"] == 1
    with io.connect(cfg.warehouse.path, read_only=True) as con:
        assert io.fetch_one(con.execute("SELECT count(*) FROM paper.trades"))[0] == 0
        assert io.fetch_one(con.execute("SELECT count(*) FROM signals.log"))[0] > 0  # the log is kept


def test_a_sleeves_book_resumes_like_one_run(cfg, candles, setups):
    """book: sleeves (one equal account per series): two steps equal one run (pure, no warehouse)."""
    cfg.paper.book = "sleeves"
    names = paper.series_names(["BTC/USDT", "ETH/USDT"], ["15m", "1h"])
    sc = cfg.setup_scanner
    params = execution_params(sc.signals, sc.risk, sc.execution, sc.costs, cfg.paper.initial_cash)
    sig = setups.assign(score=setups["ev_pct"])
    bars = {f"{s}|{tf}": b for (s, tf), b in candles.items()}
    cut = CUTS[1]
    one = paper.advance(paper.new_state(names, cfg.paper), bars, sig, params, cfg.paper).result
    a = paper.advance(
        paper.new_state(names, cfg.paper),
        {k: b[b["ts"] < cut] for k, b in bars.items()},
        sig[sig["ts"] < cut],
        params,
        cfg.paper,
    ).result
    b = paper.advance(
        a.state, {k: b[b["ts"] >= cut] for k, b in bars.items()}, sig[sig["ts"] >= cut], params, cfg.paper
    ).result
    assert one.state.cash.shape == (4,) and np.allclose(paper.new_state(names, cfg.paper).cash, 25_000.0)
    steps = pd.concat([paper.history(a)[0], paper.history(b)[0]], ignore_index=True)
    cmp = paper.compare_books(
        steps,
        paper.history(one)[0],
        pd.concat([paper.equity_rows(a), paper.equity_rows(b)]),
        paper.equity_rows(one),
        1e-12,
    )
    assert cmp["passed"] and cmp["paper_trades"] > 20, cmp


def test_live_notices_send_each_new_signal_and_closed_trade_once(cfg, candles, setups):
    """What ``ops/setup_notices`` does after each live step: every logged signal and every recently closed paper trade
    gets one message (status from the engine's exit reason); a repeated step sends nothing again; the next step sends
    only what is new. The outbox's 20-a-minute limit runs on a simulated clock."""
    import re

    from pipeline.core.messages import setup_messages
    from pipeline.core.setups import seed_status
    from resources.notifier import MemoryNotifier, deliver, enqueue

    bot = MemoryNotifier(chat_id="1")
    clock = [1.8e9]

    def notify(con):
        sig, tr = store.unnotified(con, pa.DESK)
        new = sum(enqueue(con, m, cfg.notify.kinds, now=clock[0]) for m in setup_messages(sig, tr))
        rep = deliver(
            con,
            bot,
            cfg.notify.outbox,
            clock=lambda: clock[0],
            sleep=lambda s: clock.__setitem__(0, clock[0] + s),
            max_wait_s=3600,
        )
        assert rep.delivered == new
        return sig, tr, new

    _live(cfg, candles, setups, CUTS[:2])
    with io.connect(cfg.warehouse.path) as con:
        sig, tr, new = notify(con)
        assert len(sig) > 5 and len(tr) > 0 and new == len(sig) + len(tr) == len(bot.sent)
        again = notify(con)
        assert (len(again[0]), len(again[1]), again[2]) == (0, 0, 0)  # nothing twice
    first = bot.sent[0]["text"]
    assert "New signal" in first and sig["symbol"].iloc[0].split("/")[0] in first and "p\\(win\\)" in first
    titles = [m["text"].split("\n")[0] for m in bot.sent if "New signal" not in m["text"]]
    got = [re.search(r"(TP1\\_TRAIL|TIMEOUT|TP|SL):", t).group(1).replace("\\", "") for t in titles]
    assert got == list(seed_status(tr["exit_reason"].to_numpy(object), tr["tp1_hit"].to_numpy(bool)))
    n = len(bot.sent)
    _live(cfg, candles, setups, CUTS[2:3])
    with io.connect(cfg.warehouse.path) as con:
        sig, tr, new = notify(con)
    assert new == len(sig) + len(tr) > 0 and len(bot.sent) == n + new
