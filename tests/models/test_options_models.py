"""p_long / p_short: labels by hand, the refit schedule, and no look-ahead — the score of day D from history
truncated at D equals the full run's score for D (features, labels, training rows and calibration included)."""

import numpy as np
import pandas as pd
import pytest

from models.options_direction import (
    DAY_MS,
    LEVEL_COLUMNS,
    OPTIONS_MODEL_FEATURES,
    direction_dataset,
    fit_direction,
    option_signals,
)
from models.trainers import ModelSpec
from pipeline.core.onchain_signals import onchain_features

SPEC = ModelSpec(params={"n_estimators": 30, "num_leaves": 3, "min_child_samples": 200})
WIN = dict(train_ms=1460 * DAY_MS, test_ms=180 * DAY_MS, calibration="sigmoid", min_calibration_rows=365)


@pytest.fixture(scope="module")
def daily_inputs(onchain_inputs):
    return onchain_inputs


def _dataset(daily, fng, until=None):
    if until is not None:
        daily, fng = daily[daily["date"] <= until], fng[fng["date"] <= until]
    f = onchain_features(daily, fng)
    price = daily.assign(date=pd.to_datetime(daily["date"])).set_index("date")["price_usd"]
    return direction_dataset(f, price, horizon_days=30, long_min_return=0.05, short_min_return=0.05, start="2012-01-01")


def test_labels_by_hand_and_unknown_tail():
    dates = pd.date_range("2020-01-01", periods=40, freq="D")
    f = pd.DataFrame({"date": dates})
    price = pd.Series(np.r_[np.full(10, 100.0), np.full(30, 110.0)], index=dates)
    price.iloc[5] = 104.0
    d = direction_dataset(f, price, horizon_days=30, long_min_return=0.05, short_min_return=0.05)
    # day 0: 100 -> day 30 (110): +10 % -> long 1, short 0; day 5: 104 -> 110 = +5.77 %; day 9: 100 -> 110
    assert d.loc[0, "fwd_ret"] == pytest.approx(0.10) and d.loc[0, "y_long"] == 1 and d.loc[0, "y_short"] == 0
    assert d.loc[5, "fwd_ret"] == pytest.approx(110 / 104 - 1) and d.loc[5, "y_long"] == 1
    assert d.loc[0, "label_end_ts"] == int(pd.Timestamp("2020-01-31").value // 1_000_000)
    # days 10..39 have no price 30 days later: unknown, never guessed
    assert d.loc[10:, ["y_long", "y_short", "fwd_ret"]].isna().all().all() and (d.loc[10:, "label_end_ts"] == -1).all()
    # a hole in the price gives no label rather than a longer horizon
    price.iloc[30] = np.nan
    d2 = direction_dataset(f, price, horizon_days=30, long_min_return=0.05, short_min_return=0.05)
    assert np.isnan(d2.loc[0, "y_long"]) and d2.loc[1, "y_long"] == 1
    # level columns (trend with the calendar) are not model inputs; BTC momentum is, from past prices only
    assert not set(LEVEL_COLUMNS) & set(OPTIONS_MODEL_FEATURES) and "btc_ret_30d" in OPTIONS_MODEL_FEATURES
    assert d.loc[35, "btc_ret_30d"] == pytest.approx(110 / 104 - 1)
    with pytest.raises(ValueError, match="duplicate dates"):
        direction_dataset(pd.concat([f, f]), price, horizon_days=30, long_min_return=0.05, short_min_return=0.05)


def test_option_signals_thresholds():
    s = option_signals(pd.Series([0.7, 0.5, 0.2, np.nan]), pd.Series([0.1, np.nan, 0.6, 0.5]), 0.5, 0.55)
    assert s["signal_option_call"].tolist()[:3] == [1.0, 1.0, 0.0] and np.isnan(s["signal_option_call"].iloc[3])
    assert s["signal_option_put"].tolist()[0] == 0.0 and np.isnan(s["signal_option_put"].iloc[1])
    assert s["signal_option_put"].tolist()[2:] == [1.0, 0.0]


def test_scores_are_point_in_time_on_real_history(daily_inputs):
    daily, fng = daily_inputs
    full = _dataset(daily, fng)
    fit = fit_direction(full, "p_short", SPEC, **WIN)
    res = fit.result
    # every fold trains only on labels that ended before it starts; the last window reaches the last (unlabelled) day
    lab = full[full["y_short"].notna() & (full["label_end_ts"] >= 0)].reset_index(drop=True)
    for fo in fit.folds:
        assert lab["label_end_ts"].to_numpy()[fo.train_idx].max() < fo.test_start
    last_ts = int(full["ts"].iloc[-1])
    assert (
        fit.folds[-1].test_start <= last_ts <= fit.folds[-1].test_end
        and fit.daily["date"].iloc[-1] == full["date"].iloc[-1]
    )
    assert fit.daily["p_cal"].iloc[-1] == pytest.approx(fit.served.predict(full.tail(1))[0])
    assert 0.4 < res.scores_cal["auc"] < 0.7 and res.scores_cal["n"] > 2000  # honest, weak skill on the real record
    scores = fit.daily.set_index("date")
    for day in ("2020-03-20", "2024-06-14"):
        d = pd.Timestamp(day)
        cut = _dataset(daily, fng, until=d)
        part = fit_direction(cut, "p_short", SPEC, **WIN).daily.set_index("date")
        assert part.index[-1] == d
        assert part.loc[d, "fold"] == scores.loc[d, "fold"]
        np.testing.assert_allclose(
            part.loc[d, ["p_raw", "p_cal"]].to_numpy(float),
            scores.loc[d, ["p_raw", "p_cal"]].to_numpy(float),
            rtol=1e-12,
        )
        assert np.isnan(part.loc[d, "y"])  # the outcome of day D is not known at D


def test_model_inputs_are_named_not_all_feature_columns(daily_inputs):
    """Issue 12 item 9 added 48 columns to features.onchain; the models' inputs stay the 37 named on-chain features
    plus 5 price features, so adding a feature never silently changes a model."""
    assert len(OPTIONS_MODEL_FEATURES) == 42 and len(set(OPTIONS_MODEL_FEATURES)) == 42
    assert not {"mdia_slope_7d", "whale_accum_streak", "fng_z_365d", "mvrv_pct_rank_90d"} & set(OPTIONS_MODEL_FEATURES)
    d = _dataset(*daily_inputs, until=pd.Timestamp("2014-06-30"))
    assert list(d.columns) == ["date", "ts", "label_end_ts", "fwd_ret", "y_long", "y_short", *OPTIONS_MODEL_FEATURES]
