"""Issue 16 (speed): the live job's incremental setup scan equals the full scan. History cut at t: the full scan on
the bars up to t, then the incremental scan over the bars after t, gives the rows of the full scan over the whole
range (no look-ahead: the rows up to t are the cut history's own), while reading only the newest bars."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from assets.setup_scanner.candidates import rescan_series, scan_series, signals_setup_candidates
from pipeline.config import settings
from pipeline.core.setups import pivots_settled
from pipeline.definitions import ALL_ASSETS
from warehouse import io, readers

KEY = ["ts", "side"]


#: differences of the AVWAP in ATR units (entry - AVWAP is a small difference of large prices): the full scan's running
#: sums start at the series' first bar, the window's at its own first bar, so the last digits of the AVWAP differ
ATR_UNITS = {"avwap_dist_atr", "avwap_slope_atr"}


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Same candidates, same values: floats to 1e-9 relative (1e-7 ATR for the AVWAP's distance and slope), the rest
    exactly."""
    a, b = (x.sort_values(KEY).reset_index(drop=True) for x in (a, b))
    assert list(a.columns) == list(b.columns)
    assert a[KEY].equals(b[KEY]), "different candidates"
    for c in a.columns:
        if pd.api.types.is_float_dtype(a[c]):
            tol = {"rtol": 0, "atol": 1e-7} if c in ATR_UNITS else {"rtol": 1e-9, "atol": 1e-12}
            np.testing.assert_allclose(a[c].to_numpy(float), b[c].to_numpy(float), err_msg=c, **tol)
        else:
            assert a[c].astype(object).where(a[c].notna(), None).tolist() == (
                b[c].astype(object).where(b[c].notna(), None).tolist()
            ), c


def test_pivots_settled_by_hand():
    # pivot highs (k = 1) at 1 and 5, pivot lows at 3 and 7
    high = np.array([1, 5, 2, 2.5, 3, 9, 4, 3.5, 4, 5.0])
    low = high - 1
    low[3], low[7] = 0.0, 0.5
    assert pivots_settled(high, low, 1, 1, 4)  # high 1 and low 3 confirmed by 4 (index <= 3)
    assert not pivots_settled(high, low, 1, 2, 4)  # only one of each so far
    assert pivots_settled(high, low, 1, 2, 8)  # highs 1, 5 and lows 3, 7 confirmed by 8
    assert not pivots_settled(high, low, 1, 1, 2)  # low 3 not confirmed yet


@pytest.mark.parametrize("tf", ["1h", "15m"])
def test_rescan_after_a_cut_equals_the_full_scan(built_warehouse, resources, tf):
    sc, ex = settings().setup_scanner, settings().exchange.id
    with io.connect(resources["warehouse"].path, read_only=True) as con:
        bars = readers.bars(con, ex, "BTC/USDT", tf)
    full = scan_series(bars, sc).drop(columns="bar")
    assert len(bars) > 3000 and len(full) > 50
    for back in (1, 7, 150):  # one new candle, a coalesced run of 7, a long outage
        cut = len(bars) - back
        stored = scan_series(bars.iloc[:cut].reset_index(drop=True), sc).drop(columns="bar")
        open_ts = stored.loc[stored["status"] == "OPEN", "ts"].min() if (stored["status"] == "OPEN").any() else None
        reads = []

        def tail(n):
            reads.append(n)
            return bars.iloc[-n:].reset_index(drop=True)

        new, ts_from, last, used = rescan_series(tail, int(bars["ts"].iloc[cut - 1]), open_ts, sc, 2, first_read=256)
        assert last == bars["ts"].iloc[-1] and ts_from <= bars["ts"].iloc[cut]
        assert used < len(bars) / 4, f"read {used} of {len(bars)} bars"  # proportional to the new bars, not history
        merged = pd.concat([stored[stored["ts"] < ts_from], new.drop(columns="bar")], ignore_index=True)
        _same(merged, full)
    # nothing new: nothing read beyond one window, nothing rescanned
    none = rescan_series(tail, int(bars["ts"].iloc[-1]), None, sc, 2, first_read=256)
    assert none[1] is None and none[0].empty


def test_live_config_scans_incrementally_and_matches_the_full_table(built_warehouse, resources, instance, tmp_path):
    """End to end through the asset: the data chain's full table is the reference; a copy whose candle layers are
    cut 9 bars before the end is scanned in full (it writes the marks), the cut bars come back, and the live job's
    incremental scan rewrites only their tail: the table equals the reference."""
    path = resources["warehouse"].path
    sc = settings().setup_scanner
    tables = ("market.ohlcv", "features.technical", "regimes.market")
    with io.connect(path) as con:
        ref = readers.table(con, "signals.setup_candidates")
        newest = dict(con.execute("SELECT timeframe, max(ts) FROM market.ohlcv GROUP BY 1").fetchall())
        for t in tables:
            con.execute(f"CREATE TABLE {t}_kept AS SELECT * EXCLUDE (open_time) FROM {t}")
            for tf in sc.timeframes:
                cut = newest[tf] - 9 * int(pd.Timedelta(tf).total_seconds() * 1000)
                con.execute(f"DELETE FROM {t} WHERE timeframe = ? AND ts > ?", [tf, cut])
    one = dg.AssetSelection.assets(signals_setup_candidates)

    def run(incremental: bool):
        cfg = {"ops": {"signals__setup_candidates": {"config": {"incremental": incremental}}}}
        r = dg.materialize(ALL_ASSETS, resources=resources, instance=instance, selection=one, run_config=cfg)
        return r.asset_materializations_for_node("signals__setup_candidates")[0].metadata

    assert run(True)["mode"].value == "full"  # no marks yet: the full scan, which writes them
    with io.connect(path) as con:
        for t in tables:
            con.execute(f"DELETE FROM {t}; INSERT INTO {t} BY NAME SELECT * FROM {t}_kept; DROP TABLE {t}_kept")
    meta = run(True)
    assert meta["mode"].value == "incremental" and 0 < meta["rows_rescanned"].value < len(ref) / 10
    with io.connect(path, read_only=True) as con:
        got = readers.table(con, "signals.setup_candidates")
    key = ["symbol", "timeframe", *KEY]
    assert len(got) == len(ref)
    for (sym, tf), g in ref.groupby(["symbol", "timeframe"]):
        _same(got[(got["symbol"] == sym) & (got["timeframe"] == tf)][g.columns], g)
    assert not got.duplicated(key).any()
    assert Path(path).exists()
