"""The paper desk's shared wiring (no Dagster): log the new signals, step the setup scanner's book, re-simulate it.

What a live job calls: :func:`log_new_signals` and :func:`step_book` take an open warehouse connection and the
configuration and do the whole read → pure → write (:mod:`pipeline.core.paper`, :mod:`warehouse.paper`);
:func:`resimulate` is the check ``paper_matches_backtest``'s comparison. The assets are in :mod:`assets.paper.book`.
"""

import json

import numpy as np
import pandas as pd

from pipeline.core import paper
from pipeline.core.engine import EngineState
from pipeline.core.setup_signals import execution_params, restore_signal_ts
from pipeline.core.setups import with_atr
from pipeline.core.timeframes import timeframe_ms
from warehouse import io, readers
from warehouse import paper as store

DESK = "setup_scanner"


class BookConfigError(ValueError):
    """The stored paper book was built with another configuration (reset it to start a fresh one)."""


TOLERANCE = 1e-9


def _names(cfg) -> list[str]:
    sc = cfg.setup_scanner
    return paper.series_names(sc.symbols or cfg.universe.symbols, sc.timeframes)


def _params(cfg):
    sc = cfg.setup_scanner
    return execution_params(sc.signals, sc.risk, sc.execution, sc.costs, cfg.paper.initial_cash)


def book_hash(cfg) -> str:
    """The paper book's identity: its series, paper settings and execution parameters (changed → reset needed)."""
    names = _names(cfg)
    grid = {"grid": paper.grid(names, cfg.paper)}  # a shared book walks the base candles (changed: reset needed)
    return paper.config_hash(names, cfg.paper, _params(cfg).to_dict(), cfg.setup_scanner.signals.atr_period, grid)


def log_new_signals(con, cfg) -> dict:
    """Append the new gated setup signals to ``signals.log``: ``{"candidates", "new", "recent_window"}``.

    Only signals whose candle is among the newest ``paper.log_recent_candles`` candles of its series (in
    ``market.ohlcv`` now) are logged, so a cold backtest over years does not log its history as just seen."""
    sc = cfg.setup_scanner
    s = readers.table(con, "signals.setups") if io.table_exists(con, "signals.setups") else pd.DataFrame()
    if s.empty:
        return {"candidates": 0, "new": 0}
    marks = io.watermarks(con, "market.ohlcv", cfg.exchange.id)
    newest = np.array([marks.get((a, b), -1) for a, b in zip(s["symbol"], s["timeframe"])], np.int64)
    step = s["timeframe"].map(timeframe_ms).to_numpy(np.int64)
    recent = s[s["passed"].astype(bool) & (s["ts"].to_numpy(np.int64) > newest - cfg.paper.log_recent_candles * step)]
    plan = recent[list(paper.PLAN_FIELDS)]
    payload = plan.astype(object).where(plan.notna(), None).map(lambda v: v.item() if hasattr(v, "item") else v)
    rows = pd.DataFrame(
        {
            "desk": DESK,
            "signal_id": recent["candidate_id"],
            "symbol": recent["symbol"],
            "timeframe": recent["timeframe"],
            "ts": recent["ts"].astype(np.int64),
            "first_seen": io.now_utc(),
            "payload": [json.dumps(r) for r in payload.to_dict("records")],  # exact doubles (repr round trip)
            "model_version": recent["model_version"],
            "config_hash": paper.config_hash(sc),
        }
    )
    return {"candidates": len(recent), "new": store.log_signals(con, rows)}


def _read_bars(con, cfg, names: list[str], after: int, upto: int) -> dict[str, pd.DataFrame]:
    """The series' bars with ``after < ts <= upto`` in one query (the backtest's bars: candles with a feature row,
    ATR(``signals.atr_period``)); on a shared book each on its symbol's base candles
    (:func:`pipeline.core.paper.book_bars`)."""
    pc = cfg.paper
    got = store.new_bars(con, cfg.exchange.id, paper.needed_series(names, pc), paper.read_from(after, names), upto)
    got = {k: with_atr(b, cfg.setup_scanner.signals.atr_period) for k, b in got.items()}
    return paper.book_bars(names, pc, got, after)


def step_book(con, cfg, dagster_run_id: str | None = None) -> dict:
    """One paper step of the setup scanner's book (read → :func:`pipeline.core.paper.advance` → one-transaction
    write); returns the step's figures. Idempotent: with no new closed bar it writes nothing.

    Raises:
        BookConfigError: the stored book was built with another configuration (``trader paper reset --desk``).
    """
    names, pc, h = _names(cfg), cfg.paper, book_hash(cfg)
    prev = store.latest_state(con, DESK)
    if prev is None:
        start = paper.start_ms(pc, store.oldest_signal_ts(con, DESK))
        if start is None:
            return {"status": "no logged signal yet; the book starts at its first"}
        state, after, version = paper.new_state(names, pc), start - 1, 0
    else:
        if prev["config_hash"] != h:
            raise BookConfigError(
                f"paper book {DESK!r} was built with another configuration; `trader paper reset --desk {DESK}`"
            )
        state, after, version, start = (
            EngineState.from_dict(prev["state"]),
            int(prev["last_ts"]),
            int(prev["version"]),
            int(prev["start_ts"]),
        )
    marks = io.watermarks(con, "features.technical", cfg.exchange.id)
    upto = paper.watermark(
        {n: marks[tuple(n.split("|"))] for n in names if tuple(n.split("|")) in marks}, paper.grid(names, pc)
    )
    if upto is None or upto <= after:
        return {"status": "no new closed bar", "version": version, "last_ts": after}
    bars = _read_bars(con, cfg, names, after, upto)
    sig = paper.plans(store.logged(con, DESK, after + 1, upto))
    step = paper.advance(state, bars, sig, _params(cfg), pc)
    late = store.late_signals(con, DESK, start, after if prev is not None else start - 1)
    frames = _step_frames(con, step, late)
    n_bars = sum(len(b) for b in bars.values())
    state_row = {
        "start_ts": start,
        "last_ts": upto,
        "bars": n_bars + (int(prev["bars"]) if prev is not None else 0),
        "state": step.result.state.to_dict(),
        "config_hash": h,
        "dagster_run_id": dagster_run_id,
        "created_at": io.now_utc(),
    }
    version = store.write_step(con, DESK, version, state_row, *frames)
    return {
        "version": version,
        "from_ts": after + 1,
        "last_ts": upto,
        "bars": n_bars,
        "signals": len(sig),
        "late": len(late),
        "closed_trades": len(frames[1]),
        "open_positions": len(frames[3]),
    }


def _step_frames(con, step: paper.StepResult, late: pd.DataFrame):
    """``(orders, closed trades, equity, open positions)`` rows of one step, signal ids attached."""
    raw = paper.history(step.result)
    now = io.now_utc()
    stored = store.sent_ids(
        con,
        DESK,
        sorted(set().union(*(f["asset"] for f in raw))),
        min((int(f["signal_ts"].min()) for f in raw if len(f)), default=0),
    )
    sent = step.sent.rename(columns={"candidate_id": "signal_id"}).assign(signal_ts=lambda d: d["ts"])
    sent_map = pd.concat(
        [
            sent[sent["status"] == paper.SENT][["asset", "bar_ts", "ts"]],
            stored[["asset", "bar_ts", "signal_ts"]].rename(columns={"signal_ts": "ts"}),
        ]
    )
    trades, outcomes, open_ = (restore_signal_ts(f, sent_map) for f in raw)
    ids = pd.concat(
        [sent.loc[sent["status"] == paper.SENT, ["asset", "signal_ts", "signal_id"]], stored.drop(columns="bar_ts")]
    )
    ids = ids.drop_duplicates(["asset", "signal_ts"])

    def with_ids(df):
        df = df.merge(ids, on=["asset", "signal_ts"], how="left")
        return df.assign(symbol=df["asset"].str.split("|").str[0], timeframe=df["asset"].str.split("|").str[1])

    orders = pd.concat(
        [
            sent[["signal_id", "asset", "signal_ts", "status", "bar_ts"]].rename(columns={"bar_ts": "ts"}),
            late.rename(columns={"ts": "signal_ts"}).assign(status=paper.LATE, ts=lambda d: d["signal_ts"]),
            with_ids(outcomes)[["signal_id", "asset", "signal_ts", "status", "ts"]],
        ],
        ignore_index=True,
    ).assign(recorded_at=now)
    orders = orders[orders["signal_id"].notna()]
    cols = [
        c
        for c in (
            "signal_id",
            "asset",
            "symbol",
            "timeframe",
            "signal_ts",
            "entry_ts",
            "exit_ts",
            "direction",
            "entry_price",
            "exit_price",
            "avg_exit_price",
            "units",
            "notional",
            "fees",
            "pnl",
            "ret",
            "exit_reason",
            "tp1_hit",
            "tp1_price",
            "tp1_ts",
            "sl_initial",
            "tp_initial",
            "leverage",
            "r_multiple",
            "mae",
            "mfe",
        )
    ]
    t = with_ids(trades)[cols]
    o = with_ids(open_).rename(columns={"exit_price": "mark", "pnl": "open_pnl", "exit_ts": "as_of_ts"})
    pos = o[
        [
            "signal_id",
            "asset",
            "symbol",
            "timeframe",
            "signal_ts",
            "entry_ts",
            "direction",
            "entry_price",
            "mark",
            "units",
            "notional",
            "fees",
            "open_pnl",
            "tp1_hit",
            "sl_initial",
            "tp_initial",
            "leverage",
            "as_of_ts",
        ]
    ]
    return orders, t, paper.equity_rows(step.result), pos


def resimulate(con, cfg) -> dict | None:
    """The paper window (first paper bar → the book's last bar) in one engine run from the stored candles and the
    logged signals (less those the book recorded as ``late``), compared with the paper book
    (:func:`pipeline.core.paper.compare_books`); None before the first step."""
    prev = store.latest_state(con, DESK)
    if prev is None:
        return None
    names, pc = _names(cfg), cfg.paper
    start, upto = int(prev["start_ts"]), int(prev["last_ts"])
    sig = paper.plans(store.logged(con, DESK, start, upto))
    sig = sig[~sig["candidate_id"].isin(store.late_ids(con, DESK))]
    res = paper.advance(paper.new_state(names, pc), _read_bars(con, cfg, names, start - 1, upto), sig, _params(cfg), pc)
    sim_trades = paper.history(res.result, res.sent)[0]
    paper_trades, paper_eq = store.book_frames(con, DESK)
    return paper.compare_books(paper_trades, sim_trades, paper_eq, paper.equity_rows(res.result), TOLERANCE)
