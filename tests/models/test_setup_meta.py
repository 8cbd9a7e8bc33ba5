"""Setup scanner ML and execution: the p(win) meta-model scored point-in-time on truncated real history equals the
full run's, the point-in-time threshold versions only use outcomes known when they were tuned, and the simulator's
trades map to the seed's signal statuses (worked by hand)."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from models.datasets import MODEL_FEATURES, model_features
from models.setup_meta import META_FEATURES, fit_meta, meta_dataset
from models.trainers import ModelSpec
from pipeline.core.costs import futures_costs
from pipeline.core.indicators import technical_features
from pipeline.core.setup_gating import GatingParams, resolve_threshold, threshold_in_force, tune_schedule
from pipeline.core.setups import (
    RiskParams,
    SetupParams,
    candidates,
    execution_status,
    one_signal_per_bar,
    plan_outcomes,
    signal_arrays,
)
from pipeline.core.simulator import SimParams, simulate

DAY = 86_400_000


def _series(shared_data, symbol: str, n: int) -> pd.DataFrame:
    raw = pd.read_csv(shared_data / "ohlcv" / "binance" / f"{symbol.replace('/', '_')}-1h.csv.gz").tail(n)
    return raw.rename(columns={"timestamp": "ts"})[["ts", "open", "high", "low", "close", "volume"]].reset_index(
        drop=True
    )


def _dataset(bars_by_symbol: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """What the assets do, on in-memory bars: technical features -> candidates + outcomes -> meta dataset."""
    cands, tech = [], []
    for sym, b in bars_by_symbol.items():
        f = technical_features(b)
        bars = b.assign(atr=f["atr_14"].to_numpy())
        c = candidates(bars, SetupParams(), RiskParams(), None, futures_costs())
        c = pd.concat([c, plan_outcomes(bars, c, SetupParams(), costs=futures_costs())], axis=1).assign(
            symbol=sym, timeframe="1h"
        )
        c["candidate_id"] = sym + "|1h|" + c["ts"].astype(str) + "|" + c["side"].astype(str)
        cands.append(c)
        tech.append(
            model_features(
                pd.concat([b[["ts"]], f.drop(columns=["ts"], errors="ignore"), b[["close"]]], axis=1)
            ).assign(symbol=sym, timeframe="1h")
        )
    return meta_dataset(pd.concat(cands, ignore_index=True), pd.concat(tech, ignore_index=True))


def test_meta_dataset_rows_and_features(shared_data):
    ds = _dataset({"BTC/USDT": _series(shared_data, "BTC/USDT", 6000)})
    assert list(ds.columns[:7]) == ["candidate_id", "symbol", "timeframe", "ts", "exit_ts", "win", "net_pct"]
    assert set(META_FEATURES) <= set(ds.columns) and ds["ts"].is_monotonic_increasing
    lab = ds[ds["win"].notna()]
    assert len(lab) > 100 and set(lab["win"].unique()) <= {0.0, 1.0} and (lab["exit_ts"] > lab["ts"]).all()
    assert (ds.loc[ds["win"].isna(), "exit_ts"] == -1).all()  # unlabelled rows carry no label end
    assert ds["tf_minutes"].eq(60).all() and ds["hour_utc"].between(0, 23).all()
    with pytest.raises(ValueError, match="no technical features"):
        meta_dataset(
            pd.DataFrame(
                {
                    "candidate_id": ["x"],
                    "symbol": ["BTC/USDT"],
                    "timeframe": ["1h"],
                    "ts": [1],
                    "exit_ts": [-1],
                    "win": [np.nan],
                    "net_pct": [np.nan],
                    "reject_reason": [None],
                    **{
                        k: [1.0]
                        for k in [
                            "side",
                            "level",
                            "rr_tp1",
                            "sl_pct",
                            "tp1_net_pct",
                            "avwap_dist_atr",
                            "avwap_slope_atr",
                            "leg_atr",
                            "leverage",
                        ]
                    },
                }
            ),
            pd.DataFrame(columns=["symbol", "timeframe", "ts", *MODEL_FEATURES]),
        )


def test_meta_scores_on_truncated_real_history_equal_the_full_run(shared_data):
    full_bars = {s: _series(shared_data, s, 9000) for s in ("BTC/USDT", "ETH/USDT")}
    spec = ModelSpec(kind="xgboost", params={"n_estimators": 25, "min_child_weight": 5})
    kw = dict(train_ms=120 * DAY, test_ms=30 * DAY, embargo_ms=DAY, min_calibration_rows=100)
    full = _dataset(full_bars)
    f = fit_meta(full, spec, **kw)
    scored = full.assign(p_cal=f.scores["p_cal"].to_numpy(), fold=f.scores["fold"].to_numpy())
    assert scored["p_cal"].notna().sum() > 500 and len(f.folds) > 5
    for cut_ts in (int(full["ts"].quantile(0.7)), int(full["ts"].max()) - 3 * DAY):
        part = _dataset({s: b[b["ts"] <= cut_ts].reset_index(drop=True) for s, b in full_bars.items()})
        # labels of the truncated history only know outcomes that ended by the cut
        assert not (part["exit_ts"] > cut_ts).any()
        p = fit_meta(part, spec, **kw)
        got = part.assign(p_cal=p.scores["p_cal"].to_numpy())[["candidate_id", "p_cal"]]
        exp = scored[scored["ts"] <= cut_ts][["candidate_id", "p_cal"]]
        m = exp.merge(got, on="candidate_id", suffixes=("_full", "_cut"))
        assert len(m) == len(exp) == len(got) and m["p_cal_full"].notna().sum() > 100
        np.testing.assert_allclose(m["p_cal_cut"], m["p_cal_full"], rtol=0, atol=1e-12)


def test_calibration_none_serves_raw_probabilities(shared_data):
    """``setup_scanner.meta.calibration: none`` (seed ``models.meta.calibration.enabled: false``): p(win) is the
    classifier's raw probability from the first fold on; the default isotonic maps it."""
    from models.setup_meta import SetupMetaConfig, fit_configured

    data = _dataset({"BTC/USDT": _series(shared_data, "BTC/USDT", 9000)})
    kw = dict(
        params={"n_estimators": 25, "min_child_weight": 5},
        walk_forward={
            "train_window": "120d",
            "test_window": "30d",
            "purge": "0",
            "embargo": "1d",
            "min_calibration_rows": 100,
        },
    )
    raw = fit_configured(data, SetupMetaConfig(calibration="none", **kw)).scores
    iso = fit_configured(data, SetupMetaConfig(**kw)).scores
    scored = raw["fold"] >= 0
    assert scored.sum() > 300
    np.testing.assert_array_equal(raw.loc[scored, "p_cal"], raw.loc[scored, "p_raw"])
    np.testing.assert_array_equal(raw["p_raw"], iso["p_raw"])  # same classifier
    both = scored & iso["p_cal"].notna()
    assert both.sum() > 100 and not np.allclose(iso.loc[both, "p_cal"], iso.loc[both, "p_raw"])
    assert iso.loc[scored, "p_cal"].isna().sum() > 0  # isotonic waits for 100 earlier out-of-fold rows


def test_tune_schedule_only_sees_outcomes_known_at_each_version():
    g = GatingParams(use_ev=False, target_winrate_pct=60, window_days=30, min_closed_samples=3)
    ts = np.arange(10) * DAY
    closed = pd.DataFrame(
        {
            "symbol": "BTC/USDT",
            "timeframe": "1h",
            "ts": ts,
            "exit_ts": ts + 2 * DAY,
            "score": [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.95],
            "win": [1, 1, 0, 1, 0, 0, 0, 0, 0, 1],
        }
    )
    rows = tune_schedule(closed, np.array([5 * DAY, 12 * DAY]), g)
    # at day 5 only signals 0..2 have closed (exit day 2, 3, 4): 3 samples, 2/3 wins at >= 0.7
    first = rows.iloc[0]
    assert first["n"] == 3 and first["threshold"] == pytest.approx(0.7) and first["winrate"] == pytest.approx(2 / 3)
    # at day 12 all ten have closed: >= 0.5 keeps {0.95, 0.9, 0.8, 0.7, 0.6, 0.5} -> 4/6 = 67 %; >= 0.4 would be
    # 4/7 = 57 % < 60 %: 0.5 is the widest threshold (an observed score) reaching the target
    last = rows.iloc[1]
    assert last["n"] == 10 and last["threshold"] == pytest.approx(0.5) and last["n_pass"] == 6
    # the version in force at each row's time; before the first version: none -> global
    inforce = threshold_in_force(
        rows, ["BTC/USDT"] * 3 + ["ETH/USDT"], ["1h"] * 4, [4 * DAY, 6 * DAY, 13 * DAY, 13 * DAY]
    )
    np.testing.assert_allclose(inforce, [np.nan, 0.7, 0.5, np.nan])
    thr, src = resolve_threshold(
        ["BTC/USDT"] * 3, ["1h"] * 3, ["trend|low"] * 3, g.model_copy(update={"threshold": 0.55}), inforce[:3]
    )
    assert thr.tolist() == [0.55, 0.7, 0.5] and src.tolist() == ["global", "tuned:BTC/USDT|1h", "tuned:BTC/USDT|1h"]


def test_execution_statuses_by_hand():
    #            0      1      2      3      4      5      6      7      8      9
    o = np.array([100, 100, 100, 100, 104, 106, 104, 100, 100, 100], float)
    h = np.array([101, 101, 101, 105, 107, 107, 105, 101, 101, 101], float)
    lo = np.array([99, 99, 98.5, 99, 103, 103, 99.5, 99, 99, 99], float)
    bars = pd.DataFrame(
        {"ts": np.arange(10, dtype=np.int64) * 3_600_000, "open": o, "high": h, "low": lo, "close": o, "atr": 1.0}
    )
    sig = pd.DataFrame(
        {
            "candidate_id": ["a", "b", "c", "d", "e"],
            "bar": [1, 1, 2, 6, 8],
            "side": [1, -1, 1, 1, 1],
            "entry": [99.0, 101.0, 99.0, 90.0, 98.0],
            "sl": [97.0, 103.0, 97.0, 88.0, 97.0],
            "tp1": [104.0, 98.0, 104.0, 95.0, 104.0],
            "tp2": [110.0, 95.0, 110.0, 99.0, 110.0],
            "leverage": [1.0] * 5,
            "liq_price": [np.nan] * 5,
            "ev_pct": [0.5, 0.2, 0.4, 0.3, 0.1],
        }
    )
    one = one_signal_per_bar(sig, "ev_pct")
    assert one["candidate_id"].tolist() == ["a", "c", "d", "e"]  # the short on bar 1 lost to the better long
    arr = signal_arrays(len(bars), one)
    p = SimParams(
        init_cash=1000.0,
        risk_per_trade=0.01,
        tp1_fraction=0.5,
        breakeven_after_tp1=True,
        trail_atr=1.0,
        trail_after_tp1=True,
        limit_validity_bars=2,
        allow_reverse=False,
    )
    res = simulate(bars, arr.pop("signal"), p, record_skipped=True, **arr)
    st = execution_status(one["bar"].to_numpy(), res.trades, res.orders)
    # a: limit 99 fills on bar 2 (low 98.5); TP1 104 on bar 3 (high 105) closes half, stop -> entry; the trail is armed
    #    only after TP1, at bar 3's close: best 105 - 1 ATR = 104; bar 4's low 103 hits it -> runner out at 104: TP1_TRAIL
    # c: signal while a's order/position is live -> SKIPPED; d: limit 90 never reached in 2 bars -> EXPIRED
    # e: signal on bar 8 of 10, limit 98 not reached by the end and still within its validity -> NEW
    assert st["status"].tolist() == ["TP1_TRAIL", "SKIPPED", "EXPIRED", "NEW"]
    a = st.iloc[0]
    assert a["entry_ts"] == bars.ts[2] and a["exit_ts"] == bars.ts[4] and a["tp1_hit"]
    assert a["exit_price"] == pytest.approx(104.0)  # the runner's fill (TP1's 104 is in trades.tp1_price)
    assert st["status_reason"].tolist()[1:] == [
        "position open since 1970-01-01 02:00 UTC (one position per symbol x timeframe)",  # a filled on bar 2
        "limit not filled within its validity",
        "entry order waiting at the data's end",
    ]
    # without trail_after_tp1 the trail arms at the fill bar's close (best 101 - 1 = 100 > entry 99) and bar 3's
    # low 99 stops the whole position before TP1 is credited (stop first): an SL-side exit, not TP1_TRAIL
    arr2 = signal_arrays(len(bars), one)
    res2 = simulate(bars, arr2.pop("signal"), dataclasses.replace(p, trail_after_tp1=False), **arr2)
    assert res2.trades.iloc[0]["exit_reason"] == "trail" and not res2.trades.iloc[0]["tp1_hit"]
    assert a["net_pct"] > 0 and (st.iloc[1:]["exit_ts"] == -1).all()
