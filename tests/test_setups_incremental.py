"""Issue 16 (speed), item 1: the live job's ``signals/setups`` gates only the candidates newer than each series'
checkpoint and resumes the execution from the stored engine state; the table equals a full recompute row for row.

History cut 9 bars before the end of every series (real slices, the data chain's warehouse): the live job's first run
recomputes everything and stores the state; the cut bars come back in one live step (the checkpoint
moves); a full recompute on the final candidates is the reference."""

from __future__ import annotations

import dagster as dg
import numpy as np
import pandas as pd

from assets.setup_scanner.candidates import signals_setup_candidates
from assets.setup_scanner.common import series_by_key
from assets.setup_scanner.signals import STATE_TABLE, signals_setups
from models.setup_meta import signal_bar_features
from pipeline.config import settings
from pipeline.core.engine import EngineState, run
from pipeline.core.setup_signals import checkpoint_ts, execution_params, resume_signals, series_input, simulate_signals
from pipeline.definitions import ALL_ASSETS
from warehouse import io, readers

TABLES = ("market.ohlcv", "features.technical", "regimes.market")


def test_checkpoint_ts_by_hand():
    ts = np.arange(10, dtype=np.int64) * 100  # bars 0 .. 900
    assert checkpoint_ts(ts, 2, None) == 600  # the bar before the overlap's first (700)
    assert checkpoint_ts(ts, 2, 300) == 200  # an OPEN candidate at 300 is rescanned next time
    assert checkpoint_ts(ts, 2, 0) is None and checkpoint_ts(ts[:3], 2, None) is None


def _norm(t: pd.DataFrame) -> pd.DataFrame:
    return t.astype(object).where(t.notna(), None)


def _comparable(t: pd.DataFrame) -> pd.DataFrame:
    t = t.drop(columns="scanned_at").sort_values("candidate_id").reset_index(drop=True)
    return t.astype(object).where(t.notna(), None)


def test_live_setups_resume_equals_the_full_recompute(built_warehouse, resources, instance):
    path = resources["warehouse"].path
    sc = settings().setup_scanner
    with io.connect(path) as con:
        newest = dict(con.execute("SELECT timeframe, max(ts) FROM market.ohlcv GROUP BY 1").fetchall())
        for t in TABLES:
            con.execute(f"CREATE TABLE {t}_kept AS SELECT * EXCLUDE (open_time) FROM {t}")
            for tf in sc.timeframes:
                cut = newest[tf] - 9 * int(pd.Timedelta(tf).total_seconds() * 1000)
                con.execute(f"DELETE FROM {t} WHERE timeframe = ? AND ts > ?", [tf, cut])
    both = dg.AssetSelection.assets(signals_setup_candidates, signals_setups)

    def run(incremental: bool, only_setups: bool = False):
        cfg = {
            "ops": {
                "signals__setup_candidates": {"config": {"incremental": True}},
                "signals__setups": {"config": {"incremental": incremental}},
            }
        }
        if only_setups:
            del cfg["ops"]["signals__setup_candidates"]
        sel = dg.AssetSelection.assets(signals_setups) if only_setups else both
        r = dg.materialize(ALL_ASSETS, resources=resources, instance=instance, selection=sel, run_config=cfg)
        return r.asset_materializations_for_node("signals__setups")[0].metadata

    def restore(back: int):
        with io.connect(path) as con:
            for t in TABLES:
                for tf in sc.timeframes:
                    upto = newest[tf] - back * int(pd.Timedelta(tf).total_seconds() * 1000)
                    con.execute(
                        f"INSERT INTO {t} BY NAME SELECT * FROM {t}_kept WHERE timeframe = ? AND ts > "
                        f"(SELECT max(ts) FROM {t} WHERE timeframe = ?) AND ts <= ?",
                        [tf, tf, upto],
                    )

    assert run(True)["mode"].value == "full"  # no state yet: everything, and the state is stored
    with io.connect(path, read_only=True) as con:
        first_state = io.read_df(con, f"SELECT checkpoints FROM {STATE_TABLE}")["checkpoints"].iloc[0]
    restore(0)
    meta = run(True)
    assert meta["mode"].value == "incremental"
    assert 0 < meta["candidates_gated"].value < meta["dagster/row_count"].value / 5  # only the new candidates
    with io.connect(path) as con:
        assert io.read_df(con, f"SELECT checkpoints FROM {STATE_TABLE}")["checkpoints"].iloc[0] != first_state
        got = readers.table(con, "signals.setups")
        con.execute("DELETE FROM ops.asset_inputs WHERE asset = 'signals.setups'")  # force the full recompute
    assert run(False, only_setups=True)["mode"].value == "full"
    with io.connect(path, read_only=True) as con:
        ref = readers.table(con, "signals.setups")
        assert io.read_df(con, f"SELECT count(*) AS n FROM {STATE_TABLE}")["n"].iloc[0] == 0  # a full run drops it
    assert len(ref) > 100 and set(ref["status"]) >= {"OPEN", "SKIPPED"} | {"SL", "TP"} & set(ref["status"])
    pd.testing.assert_frame_equal(_comparable(got)[list(ref.columns.drop("scanned_at"))], _comparable(ref))


def test_signal_bar_features_from_the_tail_equal_the_full_series(built_warehouse, resources):
    """Scoring only the new candidates reads their series from FEATURE_LOOKBACK rows before them: same features."""
    ex = settings().exchange.id
    with io.connect(resources["warehouse"].path, read_only=True) as con:
        c = readers.valid_candidates(con)
        new = c.groupby(["symbol", "timeframe"]).tail(5)
        tail = signal_bar_features(series_by_key(con, ex, new, tail_only=True), new)
        full = signal_bar_features(series_by_key(con, ex, new), new)
    assert len(tail) == len(full) >= 5
    pd.testing.assert_frame_equal(tail.reset_index(drop=True), full.reset_index(drop=True))


def test_resume_with_a_position_open_at_the_checkpoint_equals_one_run(built_warehouse, resources):
    """Pure: one series of real bars and signals, cut inside a trade (open at the checkpoint): the run up to the cut,
    then :func:`resume_signals` from its state, give every signal the status of one :func:`simulate_signals` run; the
    signals before the cut that the resume does not report kept their status of the cut run (final by then)."""
    sc, ex = settings().setup_scanner, settings().exchange.id
    with io.connect(resources["warehouse"].path, read_only=True) as con:
        b = readers.bars(con, ex, "BTC/USDT", "1h")
        sig = readers.valid_candidates(con)
    sig = sig[(sig["symbol"] == "BTC/USDT") & (sig["timeframe"] == "1h")].assign(score=lambda d: d["rr_tp1"])
    params = execution_params(sc.signals, sc.risk, sc.execution, sc.costs, 10_000.0)
    full, sleeves, _ = simulate_signals({("BTC/USDT", "1h"): b}, sig, "score", params)
    t = sleeves["BTC/USDT|1h"].trades
    long_ = t[t["exit_bar"] - t["entry_bar"] > 6].iloc[len(t[t["exit_bar"] - t["entry_bar"] > 6]) // 2]
    ts = b["ts"].to_numpy(np.int64)
    k = int(long_["entry_bar"]) + 3  # bars 0 .. k-1 run before the cut: the trade is open at the checkpoint
    nxt = int(ts[len(ts) - 40])  # the next checkpoint, inside the resumed bars
    name = "BTC/USDT|1h"
    before = sig[sig["ts"] <= ts[k - 1]]
    cut = run(
        {name: series_input(b.iloc[:k], before, "score")[2]},
        params,
        state=EngineState.new([name], 10_000.0, np.arange(1)),
        record_skipped=True,
    )
    after = sig[sig["ts"] > ts[k - 1]]
    st, moved, state = resume_signals(
        {name: (b.iloc[k:], k, nxt)}, after, before[["symbol", "timeframe", "ts"]], "score", params, cut.state
    )
    cols = ["status", "status_reason", "entry_ts", "exit_ts", "entry_price", "exit_price", "pnl", "net_pct"]
    assert len(moved) >= 1 and int(long_["signal_ts"]) in set(before.loc[moved.index, "ts"])
    assert _norm(st[cols]).equals(_norm(full.loc[after.index, cols]))
    assert _norm(moved[cols]).equals(_norm(full.loc[moved.index, cols]))
    rest = before.index.difference(moved.index)
    at_cut, _, _ = simulate_signals({("BTC/USDT", "1h"): b.iloc[:k]}, before, "score", params)
    assert _norm(at_cut.loc[rest, cols]).equals(_norm(full.loc[rest, cols]))
    assert state.last_ts == nxt  # the state returned is the book after the next checkpoint
