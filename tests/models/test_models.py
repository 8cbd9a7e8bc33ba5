"""ML toolkit: labels, purged splits, calibration and its scores, trainers, walk-forward, promotion rules."""

import numpy as np
import pandas as pd
import pytest

from models.calibration import ece, fit_calibrator, reliability_table, scores
from models.datasets import MODEL_FEATURES, model_features
from models.evaluation import PromotionCriteria, decide
from models.labels import forward_returns, triple_barrier
from models.splits import parse_window, purged_kfold, walk_forward
from models.trainers import ModelSpec, make_estimator, predict_score
from models.walkforward import predict_out_of_sample, walk_forward_fit
from pipeline.core.indicators import technical_features
from pipeline.core.regimes import RegimeParams, classify_regimes
from tests.conftest import real_ohlcv

H = 3_600_000


def _bars(rows, atr=1.0):
    df = pd.DataFrame(rows, columns=["open", "high", "low", "close"], dtype=float)
    df.insert(0, "ts", np.arange(len(df), dtype=np.int64) * H)
    df["atr"] = atr
    return df


# --- labels -------------------------------------------------------------------------------------------


def test_forward_returns_by_time_with_gap_and_label_end():
    ts = np.array([0, 1, 2, 3, 5, 6], dtype=np.int64) * H  # bar 4 missing
    close = np.array([100, 101, 102, 103, 105, 106], dtype=float)
    r = forward_returns(pd.DataFrame({"ts": ts, "close": close}), 2, H, vol_window=2)
    assert r["fwd_ret"].iloc[0] == pytest.approx(102 / 100 - 1)
    assert r["label_end_ts"].iloc[0] == 2 * H
    assert np.isnan(r["fwd_ret"].iloc[2]) and r["label_end_ts"].iloc[2] == -1  # target bar 4 is in the gap
    assert r["fwd_ret"].iloc[3] == pytest.approx(105 / 103 - 1)
    assert np.isnan(r["fwd_ret"].iloc[-1])  # beyond the data
    assert np.isnan(r["fwd_ret_vol"].iloc[1])  # only one past return: no volatility yet
    assert r["fwd_ret_vol"].iloc[3] == pytest.approx(
        (105 / 103 - 1) / (np.std(np.diff(np.log(close[1:4])), ddof=1) * np.sqrt(2))
    )


def test_triple_barrier_outcomes_hand_computed():
    F = (100, 100.5, 99.5, 100)
    rows = [F, F, (100, 102.5, 99.8, 102), F, F, F, (100, 100.2, 98, 99), F, F, F, F, F]
    lab = triple_barrier(_bars(rows), tp_atr=2, sl_atr=1.5, max_bars=3)
    # t=0: entry open[1]=100, TP 102 hit on bar 2
    assert (lab["outcome"].iloc[0], lab["label_end_ts"].iloc[0], lab["win"].iloc[0]) == (1, 2 * H, 1.0)
    assert lab["barrier_ret"].iloc[0] == pytest.approx(0.02)
    # t=3: entry 100 at bar 4, nothing within bars 4..6? bar 6 low 98 <= 98.5 -> SL at 98.5
    assert (lab["outcome"].iloc[3], lab["label_end_ts"].iloc[3]) == (-1, 6 * H)
    assert lab["barrier_ret"].iloc[3] == pytest.approx(-0.015)
    # t=7: bars 8..10 flat -> timeout at the close of bar 10
    assert (lab["outcome"].iloc[7], lab["label_end_ts"].iloc[7], lab["win"].iloc[7]) == (0, 10 * H, 0.0)
    # the last max_bars rows cannot be labelled: NaN, never a premature timeout
    assert lab["win"].iloc[-3:].isna().all() and (lab["label_end_ts"].iloc[-3:] == -1).all()


def test_triple_barrier_stop_first_and_short_side():
    F = (100, 100.5, 99.5, 100)
    both = [F, F, (100, 103, 98, 100), F, F, F]
    assert triple_barrier(_bars(both), 2, 1.5, 3)["outcome"].iloc[0] == -1
    short = [F, F, (100, 100.2, 97.5, 98), F, F, F]
    assert triple_barrier(_bars(short), 2, 1.5, 3, side=-1)["outcome"].iloc[0] == 1


def _real_frame(symbol="BTC/USDT", n=6000):
    bars = real_ohlcv(symbol, "1h").iloc[-n:].reset_index(drop=True)
    f = technical_features(bars)
    f["close"] = bars["close"].to_numpy()
    reg = classify_regimes(f, RegimeParams(vol_window=100))
    return bars, f, reg


def test_features_and_labels_are_point_in_time_on_real_data():
    """Rebuilding on history truncated at T gives identical features for every row <= T, and labels that are
    known by T (label_end_ts < T) are identical; unknown ones are NaN, never guessed."""
    bars, f, reg = _real_frame()
    full_x = model_features(f, reg)
    full_l = triple_barrier(bars.assign(atr=f["atr_14"]), 2, 1.5, 24)
    cut = 4500
    b2 = bars.iloc[:cut].reset_index(drop=True)
    f2 = technical_features(b2)
    f2["close"] = b2["close"].to_numpy()
    x2 = model_features(f2, classify_regimes(f2, RegimeParams(vol_window=100)))
    l2 = triple_barrier(b2.assign(atr=f2["atr_14"]), 2, 1.5, 24)
    pd.testing.assert_frame_equal(x2, full_x.iloc[:cut].reset_index(drop=True), rtol=1e-9)
    known = l2["label_end_ts"] >= 0
    assert known.sum() == cut - 24 - 14  # ATR warm-up (14 rows) and the last max_bars rows are unlabelled
    pd.testing.assert_frame_equal(l2[known], full_l.iloc[:cut][known.to_numpy()], rtol=1e-12)
    assert (l2.loc[known, "label_end_ts"] <= bars["ts"].iloc[cut - 1]).all()
    assert l2.loc[~known, "win"].isna().all()


# --- splits -------------------------------------------------------------------------------------------


def _overlaps(t0, t1, fold):
    tr = fold.train_idx
    return ((t1[tr] >= fold.test_start) & (t0[tr] <= fold.test_end)).any()


def test_walk_forward_purges_overlapping_labels_hand_built():
    t0 = np.arange(100, dtype=np.int64) * 10
    t1 = t0 + 25  # each label spans the next 2.5 rows
    folds = walk_forward(t0, t1, train_ms=400, test_ms=200, purge_ms=0, embargo_ms=0)
    assert [(f.test_start, f.test_end) for f in folds] == [(400, 599), (600, 799), (800, 999)]
    f = folds[0]
    # rows 38 (t1=405), 39 (t1=415) reach into the test fold and are purged; row 37 (t1=395) stays
    assert f.train_idx.max() == 37 and f.n_purged == 2
    assert list(f.test_idx) == list(range(40, 60))
    for f in folds:
        assert not _overlaps(t0, t1, f)
        assert t0[f.train_idx].max() < f.test_start
    # expanding: fold 2 trains from the first row; rolling: only the last 400 ms
    assert folds[2].train_idx.min() == 0
    roll = walk_forward(t0, t1, train_ms=400, test_ms=200, expanding=False)
    assert t0[roll[2].train_idx].min() == 400


def test_walk_forward_purge_and_embargo_widen_the_gap():
    t0 = np.arange(100, dtype=np.int64) * 10
    t1 = t0
    f = walk_forward(t0, t1, train_ms=400, test_ms=200, purge_ms=30)[0]
    assert t1[f.train_idx].max() < 400 - 30
    g = walk_forward(t0, t1, train_ms=400, test_ms=200, embargo_ms=50)[0]
    assert t0[g.train_idx].max() < 400 - 50 and g.n_embargoed == 5


def test_purged_kfold_drops_overlap_and_embargoes_after_each_test_fold():
    t0 = np.arange(100, dtype=np.int64) * 10
    t1 = t0 + 25
    folds = purged_kfold(t0, t1, n_splits=5, embargo_ms=30)
    assert len(folds) == 5
    for f in folds:
        assert not _overlaps(t0, t1, f)
        assert len(set(f.train_idx) & set(f.test_idx)) == 0
        after = t0[f.train_idx][t0[f.train_idx] > f.test_end]
        if len(after):
            assert after.min() > f.test_end + 30  # embargo follows the test fold
    mid = folds[2]  # test rows 40..59: rows 38, 39 purged (labels reach in), rows 60..62 (t0 <= 590 + 30) embargoed
    assert set(range(38, 63)).isdisjoint(mid.train_idx.tolist()) and {37, 63} <= set(mid.train_idx.tolist())
    assert (mid.n_purged, mid.n_embargoed) == (2, 3)


def test_parse_window():
    assert parse_window("24", H) == 24 * H and parse_window("30d", H) == 30 * 86_400_000
    assert parse_window("12h", H) == 12 * H and parse_window("2w", H) == 14 * 86_400_000
    with pytest.raises(ValueError, match="bars"):
        parse_window("ten days", H)


def test_splits_reject_bad_label_windows():
    with pytest.raises(ValueError, match="precedes"):
        walk_forward(np.array([10, 20]), np.array([5, 30]), train_ms=10, test_ms=10)


# --- calibration --------------------------------------------------------------------------------------


def test_ece_and_reliability_hand_computed():
    p = np.array([0.1, 0.1, 0.9, 0.9])
    y = np.array([0, 1, 1, 1])
    t = reliability_table(p, y, n_bins=10)
    assert t.loc[1, "count"] == 2 and t.loc[1, "y_rate"] == 0.5 and t.loc[9, "y_rate"] == 1.0
    assert ece(p, y) == pytest.approx((2 * 0.4 + 2 * 0.1) / 4)
    s = scores(p, y)
    assert s["brier"] == pytest.approx((0.01 + 0.81 + 0.01 + 0.01) / 4)
    assert s["base_rate"] == 0.75 and s["brier_base"] == pytest.approx(0.1875)
    assert s["auc"] == pytest.approx(0.8333333, rel=1e-6)


@pytest.mark.parametrize("method", ["isotonic", "sigmoid"])
def test_calibration_fixes_a_miscalibrated_score(method):
    rng = np.random.default_rng(0)
    true_p = rng.uniform(0.2, 0.6, 20_000)
    y = (rng.random(20_000) < true_p).astype(float)
    raw = np.clip(true_p * 1.5, 0, 1)  # over-confident
    fit, test = slice(0, 10_000), slice(10_000, None)
    cal = fit_calibrator(raw[fit], y[fit], method)
    before, after = scores(raw[test], y[test]), scores(cal(raw[test]), y[test])
    assert before["ece"] > 0.1 and after["ece"] < 0.02
    assert after["brier"] < before["brier"]


def test_calibrator_rejects_non_binary_labels():
    with pytest.raises(ValueError, match="0/1"):
        fit_calibrator(np.array([0.2, 0.4]), np.array([0, 2]))


# --- trainers and walk-forward ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["lightgbm", "xgboost", "logreg"])
def test_trainers_are_deterministic(kind):
    rng = np.random.default_rng(1)
    X = pd.DataFrame(rng.normal(size=(3000, 5)), columns=list("abcde"))
    y = (X["a"] + 0.5 * rng.normal(size=3000) > 0).astype(int)
    spec = ModelSpec(kind=kind, params={"n_estimators": 30} if kind != "logreg" else {})
    p1 = predict_score(make_estimator(spec).fit(X, y), X)
    p2 = predict_score(make_estimator(spec).fit(X, y), X)
    np.testing.assert_array_equal(p1, p2)
    assert scores(p1, y)["auc"] > 0.8


def test_regressors_train():
    rng = np.random.default_rng(2)
    X = pd.DataFrame(rng.normal(size=(2000, 3)), columns=list("abc"))
    y = 2 * X["a"] + rng.normal(scale=0.1, size=2000)
    for kind in ("lightgbm", "xgboost"):
        est = make_estimator(ModelSpec(kind=kind, task="regressor", params={"n_estimators": 50})).fit(X, y)
        assert np.corrcoef(predict_score(est, X), y)[0, 1] > 0.9
    with pytest.raises(ValueError, match="classifier"):
        make_estimator(ModelSpec(kind="logreg", task="regressor"))


def test_walk_forward_fit_on_real_candles_is_out_of_sample():
    bars, f, reg = _real_frame("ETH/USDT", 8000)
    x = model_features(f, reg)
    lab = triple_barrier(bars.assign(atr=f["atr_14"]), 2, 1.5, 24)
    d = x.assign(label_end_ts=lab["label_end_ts"], win=lab["win"])
    d = d[d["win"].notna()].reset_index(drop=True)
    folds = walk_forward(
        d["ts"], d["label_end_ts"], train_ms=120 * 86_400_000, test_ms=30 * 86_400_000, purge_ms=24 * H
    )
    res = walk_forward_fit(
        d[MODEL_FEATURES], d["win"].to_numpy(), folds, ModelSpec(params={"n_estimators": 40}), min_calibration_rows=500
    )
    assert len(folds) >= 5 and len(res.oof) == sum(len(f.test_idx) for f in folds)
    # fold 0 has no earlier out-of-fold predictions: no calibrated value; later folds have one
    assert res.oof.loc[res.oof.fold == 0, "p_cal"].isna().all() and res.oof.loc[res.oof.fold > 0, "p_cal"].notna().all()
    for fo in folds:  # no training label reaches into its test fold
        assert d["label_end_ts"].to_numpy()[fo.train_idx].max() < fo.test_start
    assert 0 <= res.scores_cal["ece"] < 0.1 and res.final is not None
    assert set(res.importance) == set(MODEL_FEATURES)
    # scoring another series routes each row to the fold model of its window
    p = predict_out_of_sample(res.fold_models, d[MODEL_FEATURES], d["ts"].to_numpy())
    np.testing.assert_allclose(p.loc[res.oof["row"], "p_raw"].to_numpy(), res.oof["p_raw"].to_numpy())


def test_walk_forward_fit_refuses_nan_labels_and_no_folds():
    X = pd.DataFrame({"a": [1.0, 2.0]})
    with pytest.raises(ValueError, match="no folds"):
        walk_forward_fit(X, np.array([0, 1]), [], ModelSpec())


# --- promotion rules ----------------------------------------------------------------------------------


def test_promotion_rules_as_data():
    good = {"n": 5000, "auc": 0.55, "ece": 0.01, "brier": 0.23, "brier_base": 0.24}
    c = PromotionCriteria()
    ok, reasons = decide(good, c)
    assert ok and all(r.startswith("PASS") for r in reasons)
    ok, reasons = decide({**good, "auc": 0.5}, c)
    assert not ok and any(r.startswith("FAIL auc") for r in reasons)
    ok, _ = decide({**good, "brier": 0.25}, c)
    assert not ok
    ok, reasons = decide(good, c, champion={"brier": 0.22})  # worse than the champion
    assert not ok and reasons[-1].startswith("FAIL brier")
    ok, _ = decide({**good, "n": 10}, c)
    assert not ok


def test_fold_calibrator_only_uses_labels_known_at_the_fold_start():
    """Fold 1's calibrator may use fold 0's out-of-fold rows only if their labels ended before fold 1 starts."""
    rng = np.random.default_rng(3)
    n = 900
    t0 = np.arange(n, dtype=np.int64) * 10
    t1 = t0 + 25  # each label needs the next 2.5 rows
    X = pd.DataFrame({"a": rng.normal(size=n)})
    y = (X["a"] + rng.normal(size=n) > 0).astype(float).to_numpy()
    folds = walk_forward(t0, t1, train_ms=3000, test_ms=2000)
    n0 = len(folds[0].test_idx)
    spec = ModelSpec(kind="logreg")
    leaky = walk_forward_fit(X, y, folds, spec, min_calibration_rows=n0, fit_final=False)
    pit = walk_forward_fit(X, y, folds, spec, min_calibration_rows=n0, fit_final=False, t1=t1)
    # without t1 all fold-0 rows count (3 of them end inside fold 1); with t1 they are too few
    assert leaky.oof.loc[leaky.oof.fold == 1, "p_cal"].notna().all()
    assert pit.oof.loc[pit.oof.fold == 1, "p_cal"].isna().all()
    assert pit.fold_models[1].calibrator is None and pit.fold_models[2].calibrator is not None


def test_forecast_folds_extend_the_refit_schedule_to_unlabelled_rows():
    t0 = np.arange(120, dtype=np.int64) * 10
    t1 = t0 + 250
    lab = t1 <= 1190  # history ends at 1190: rows after 940 have no label yet
    f_lab = walk_forward(t0[lab], t1[lab], train_ms=300, test_ms=200)
    f_all = walk_forward(t0[lab], t1[lab], train_ms=300, test_ms=200, until_ms=1190)
    assert [f.test_start for f in f_lab] == [300, 500, 700, 900]
    assert f_all[-1].test_start <= 1190 <= f_all[-1].test_end and len(f_all[-1].test_idx) == 0
    assert len(f_all) == len(f_lab) + 1
    # the training rows of a forecast fold are still those whose labels ended before it
    assert t1[lab][f_all[-1].train_idx].max() < f_all[-1].test_start
    y = (np.arange(120) % 2).astype(float)
    X = pd.DataFrame({"a": y})
    res = walk_forward_fit(X[lab], y[lab], f_all, ModelSpec(kind="logreg"), min_calibration_rows=10, fit_final=False)
    p = predict_out_of_sample(res.fold_models, X, t0)
    late = t0 >= f_all[-1].test_start
    assert p.loc[late, "fold"].eq(f_all[-1].k).all() and p.loc[late, "p_raw"].notna().all()
