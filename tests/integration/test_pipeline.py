"""Integration: the whole asset chain on slices of real data in a temporary warehouse and Dagster instance."""

import gzip

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest

from pipeline.config import settings
from pipeline.core.indicators import FEATURE_COLUMNS, technical_features
from pipeline.core.regimes import classify_regimes
from pipeline.definitions import ALL_ASSETS
from pipeline.partitions import full_range_tags
from tests.conftest import data_chain_selection, real_ohlcv

pytestmark = pytest.mark.integration


DATA_ONLY = data_chain_selection()


def _run(resources, instance, **kw):
    """The data chain (ingest → market → features → regimes → snapshot); the ml/backtest groups have their own test."""
    return dg.materialize(
        ALL_ASSETS,
        resources=resources,
        instance=instance,
        tags=full_range_tags(),
        raise_on_error=False,
        selection=DATA_ONLY,
        **kw,
    )


def _q(resources, sql):
    with duckdb.connect(resources["warehouse"].path, read_only=True) as con:
        return con.execute(sql).df()


def _meta(result, key):
    ev = [e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey(key)]
    return ev[-1].materialization.metadata


def test_full_chain_then_noop_then_append(resources, instance, data_dir, built_warehouse):
    r1 = built_warehouse  # the session's cold run of the data chain; its warehouse copied into `resources`
    assert r1.success
    evals = {(tuple(e.asset_key.path), e.check_name): e for e in r1.get_asset_check_evaluations()}
    for (key, name), e in evals.items():
        if e.severity == dg.AssetCheckSeverity.ERROR:
            assert e.passed, (key, name, e.metadata)
    gap_check = evals[(("market", "ohlcv"), "gaps_within_budget")]
    assert gap_check.severity == dg.AssetCheckSeverity.WARN  # reported, never blocking
    assert "2019-05-15 02:00:00" in gap_check.metadata["largest_gaps"].value  # the +10 h Binance outage is listed

    # setup scanner: candidates for both scanned timeframes, plans checked, outcomes resolved where the data allows
    assert evals[(("signals", "setup_candidates"), "plans_consistent")].passed
    cand = _q(
        resources,
        "SELECT timeframe, count(*) n, count(win) closed, count(*) FILTER (WHERE reject_reason IS NULL) valid "
        "FROM signals.setup_candidates GROUP BY ALL",
    ).set_index("timeframe")
    assert set(cand.index) == {"15m", "1h"} and (cand["n"] > 100).all() and (cand["closed"] > 0.5 * cand["valid"]).all()

    counts = _q(
        resources,
        "SELECT symbol, timeframe, count(*) n, sum((bar_count < expected_bars)::INT) flagged, any_value(origin) origin "
        "FROM market.ohlcv GROUP BY ALL",
    ).set_index(["symbol", "timeframe"])
    raw_btc_1h = pd.read_csv(data_dir / "ohlcv/binance/BTC_USDT-1h.csv.gz")
    assert counts.loc[("BTC/USDT", "1h"), "n"] == len(raw_btc_1h)
    assert counts.loc[("BTC/USDT", "4h"), "origin"] == "resampled:1h" and counts.loc[("BTC/USDT", "4h"), "flagged"] > 0
    assert counts.loc[("BTC/USDT", "5m"), "origin"] == "resampled:1m"
    assert counts.loc[("ETH/USDT", "15m"), "origin"] == "native"
    feats = _q(resources, "SELECT symbol, timeframe, count(*) n FROM features.technical GROUP BY ALL").set_index(
        ["symbol", "timeframe"]
    )
    assert (feats["n"] == counts["n"].reindex(feats.index)).all()
    assert _q(resources, "SELECT count(*) n FROM market.onchain_daily")["n"][0] > 6000
    assert (
        len(_q(resources, "SELECT * FROM ops.slice_quality WHERE tbl='market.ohlcv'")) == 12
    )  # stats cached per slice

    # serving snapshot is readable by another connection while the writer holds the main file
    with duckdb.connect(resources["warehouse"].path) as writer:
        writer.execute("SELECT 1")
        with duckdb.connect(resources["warehouse"].serving_path, read_only=True) as reader:
            assert reader.execute("SELECT count(*) FROM market.ohlcv").fetchone()[0] == counts["n"].sum()

    before = _q(resources, "SELECT count(*) n, sum(hash(*columns(*))) h FROM features.technical")
    r2 = _run(resources, instance)
    assert r2.success
    assert _meta(r2, ["raw", "ingested_ohlcv"])["run_new_rows"].value == 0
    assert _meta(r2, ["features", "technical"])["run_new_rows"].value == 0
    pd.testing.assert_frame_equal(
        before, _q(resources, "SELECT count(*) n, sum(hash(*columns(*))) h FROM features.technical")
    )

    # append the next 48 real candles to the BTC 1h file: only those are processed
    full = real_ohlcv("BTC/USDT", "1h")
    last = int(raw_btc_1h["timestamp"].iloc[-1])
    extra = full[full["ts"] > last].head(48).rename(columns={"ts": "timestamp"})
    with gzip.open(data_dir / "ohlcv/binance/BTC_USDT-1h.csv.gz", "at") as fh:
        extra.to_csv(fh, header=False, index=False)
    r3 = _run(resources, instance)
    assert r3.success
    assert _meta(r3, ["raw", "ingested_ohlcv"])["run_new_rows"].value == 48
    assert _meta(r3, ["features", "technical"])["run_new_rows"].value in (
        48,
        48 + 12,
        48 + 12 + 2,
    )  # 1h + new 4h (+1d) periods

    # incremental features/regimes equal a from-scratch computation on the whole history
    bars = _q(
        resources,
        "SELECT ts, high, low, close, volume FROM market.ohlcv WHERE symbol='BTC/USDT' AND timeframe='1h' ORDER BY ts",
    )
    stored = _q(resources, "SELECT * FROM features.technical WHERE symbol='BTC/USDT' AND timeframe='1h' ORDER BY ts")
    ref = technical_features(bars)
    np.testing.assert_allclose(
        stored[FEATURE_COLUMNS].to_numpy(), ref[FEATURE_COLUMNS].to_numpy(), rtol=1e-9, equal_nan=True
    )
    ref["close"] = bars["close"]
    reg = classify_regimes(ref, settings().regimes)
    got = _q(
        resources,
        "SELECT trend_regime, volatility_level, regime_age_bars FROM regimes.market WHERE symbol='BTC/USDT' "
        "AND timeframe='1h' ORDER BY ts",
    )
    assert (got["trend_regime"].fillna("-") == reg["trend_regime"].fillna("-")).all()
    assert (got["regime_age_bars"].fillna(-1).astype(int) == reg["regime_age_bars"].fillna(-1).astype(int)).all()

    # a slice computed by another code version is rebuilt from scratch; slices of the current version are left alone
    with duckdb.connect(resources["warehouse"].path) as con:
        con.execute(
            "UPDATE regimes.market SET regime_confidence = 0.123456 WHERE timeframe = '1h' AND ts = (SELECT max(ts) - 3600000 * 500 "
            "FROM regimes.market WHERE timeframe = '1h')"
        )
        con.execute(
            "UPDATE ops.asset_inputs SET fingerprint = '0' WHERE asset = 'code:regimes.market:binance:BTC/USDT:1h'"
        )
    r4 = _run(resources, instance)
    assert r4.success
    tampered = _q(resources, "SELECT symbol, regime_confidence FROM regimes.market WHERE regime_confidence = 0.123456")
    assert tampered["symbol"].tolist() == ["ETH/USDT"]  # BTC 1h (stale code record) recomputed, ETH 1h untouched


@pytest.mark.parametrize(
    "corrupt,rule,row",
    [
        (lambda d: d.assign(low=d["low"].where(d.index != 5, d["high"] + 10)), "ohlc_bounds", 6),
        (lambda d: pd.concat([d.iloc[:4], d.iloc[[3]], d.iloc[4:]]).reset_index(drop=True), "duplicate_ts", 5),
        (lambda d: pd.concat([d, d.iloc[[3]]]).reset_index(drop=True), "ordering", None),
        (lambda d: d.assign(timestamp=d["timestamp"] // 1000), "timestamp_unit", 1),
        (lambda d: d.drop(columns=["volume"]), "required_columns", None),
        (lambda d: d.assign(close=d["close"].where(d.index != 2, np.nan)), "no_nan", 3),
    ],
)
def test_bad_file_fails_clearly_and_loses_nothing(resources, instance, data_dir, built_warehouse, corrupt, rule, row):
    before = _q(resources, "SELECT count(*) n, sum(hash(*columns(*))) h FROM raw.ohlcv")
    before_m = _q(resources, "SELECT count(*) n, sum(hash(*columns(*))) h FROM market.ohlcv")
    p = data_dir / "ohlcv/binance/ETH_USDT-1h.csv.gz"
    df = pd.read_csv(p)
    corrupt(df).to_csv(p, index=False)
    r = _run(resources, instance)
    assert r.success  # issue 13 item 9: the bad partition fails alone, recorded in ops.input_errors
    check = [e for e in r.get_asset_check_evaluations() if e.check_name == "inputs_valid"][-1]
    assert not check.passed
    msg = _q(resources, "SELECT string_agg(message, ' | ') m FROM ops.input_errors WHERE partition_key = 'ETH-USDT|1h'")
    msg = msg["m"][0]
    assert "ETH_USDT-1h.csv.gz" in msg and f"rule '{rule}'" in msg, msg
    if row is not None:
        assert f"row {row}:" in msg
    pd.testing.assert_frame_equal(before, _q(resources, "SELECT count(*) n, sum(hash(*columns(*))) h FROM raw.ohlcv"))
    pd.testing.assert_frame_equal(
        before_m, _q(resources, "SELECT count(*) n, sum(hash(*columns(*))) h FROM market.ohlcv")
    )


def test_missing_onchain_column_fails_and_keeps_table(resources, instance, data_dir, built_warehouse):
    before = _q(resources, "SELECT count(*) n, sum(hash(*columns(*))) h FROM market.onchain_daily")
    p = data_dir / "onchain" / "btc_daily_cm_api_mvrv_2010_2026-08.csv.gz"
    df = pd.read_csv(p.resolve()).drop(columns=["date"])
    p.unlink()
    df.to_csv(p, index=False)
    r = _run(resources, instance)
    assert not r.success
    msg = "".join(str(e.event_specific_data.error) for e in r.all_events if e.is_step_failure)
    assert "btc_daily_cm_api_mvrv_2010_2026-08.csv.gz" in msg and "missing date column 'date'" in msg
    pd.testing.assert_frame_equal(
        before, _q(resources, "SELECT count(*) n, sum(hash(*columns(*))) h FROM market.onchain_daily")
    )
