"""On-chain regime features for the options desk: MDIA proxy by hand, primary/proxy sources, unavailable
days, look-ahead on truncated real history, and the fused states over the real record."""

import numpy as np
import pandas as pd
import pytest

from pipeline.core import onchain_signals as oc
from pipeline.core.onchain_signals import (
    FEATURE_COLUMNS,
    REGIME_COLUMNS,
    UNAVAILABLE,
    daily_calendar,
    mdia_proxy,
    onchain_features,
    source_agreement,
)
from pipeline.core.options_fusion import fuse

REGIMES = ["mdia_regime", "whale_regime", "mvrv_ls_regime"]


@pytest.fixture(scope="module")
def real(onchain_inputs):
    return onchain_inputs


def test_mdia_proxy_hand_computed():
    # day 0 starts at age 0; no new dollars -> +1 day; realized cap doubles -> half the dollars are new (age 0)
    np.testing.assert_allclose(mdia_proxy(np.array([100.0, 100, 200, 200, 150])), [0, 1, 1, 2, 3])
    a = mdia_proxy(np.array([100.0, 100, np.nan, 100, 100]))
    assert np.isnan(a[2]) and a[3] == 0 and a[4] == 1  # a hole restarts the recursion instead of inventing


def test_feature_set_and_sources_on_real_data(real):
    daily, fng = real
    f = onchain_features(daily, fng)
    assert list(f.columns) == ["date", *FEATURE_COLUMNS, *REGIME_COLUMNS]
    assert (f["date"].diff().dropna() == pd.Timedelta(days=1)).all()  # full calendar, nothing dropped
    by_year = f.assign(y=f["date"].dt.year)
    # whales: address counts exist 2010-2020 (Glassnode) and 2023-2025 (Coin Metrics); exchange supply in between
    assert set(by_year.loc[by_year.y == 2016, "whale_source"]) == {"primary:whale_address_counts"}
    assert set(by_year.loc[by_year.y == 2022, "whale_source"]) == {"proxy:exchange_supply"}
    assert (by_year.loc[by_year.y == 2024, "whale_source"] == "primary:whale_address_counts").mean() > 0.9
    assert set(by_year.loc[by_year.y == 2017, "mvrv_ls_source"]) == {"primary:glassnode_lth_sth"}
    assert set(by_year.loc[by_year.y == 2023, "mvrv_ls_source"]) == {"proxy:mvrv_minus_sth155"}
    # every indicator has a value or says unavailable; sources agree with the regime column
    for r in REGIMES:
        assert f[r].notna().all()
        src = r.replace("_regime", "_source")
        assert ((f[r] == UNAVAILABLE) == (f[src] == UNAVAILABLE)).all()
    agree = source_agreement(f).set_index("indicator")
    assert agree.loc["mvrv_ls", "days_both"] > 2500 and agree.loc["whale", "days_both"] > 2500
    assert 0 <= agree.loc["mvrv_ls", "direction_agreement"] <= 1


def test_missing_inputs_make_days_unavailable_not_neutral(real):
    daily, fng = real
    cut = daily[daily["date"] >= pd.Timestamp("2021-01-01")].drop(
        columns=[c for c in daily.columns if c.startswith(("whale_", "exchange_supply"))]
    )
    f = onchain_features(cut, fng)
    assert (f["whale_regime"] == UNAVAILABLE).all() and (f["whale_source"] == UNAVAILABLE).all()
    states = fuse(f)
    assert (states["state"] == "no_trade").all() and states["state_reason"].str.startswith("unavailable:").all()
    mdia_ok = f["mdia_regime"] != UNAVAILABLE  # the first year of a truncated history also warms MDIA up
    assert mdia_ok.sum() > 1000 and (states.loc[mdia_ok, "state_reason"] == "unavailable:whales").all()


@pytest.mark.parametrize(
    "day",
    [
        "2012-03-15",  # early history: long windows still warming up
        "2019-06-30",  # Glassnode whales and LTH/STH primary
        "2020-11-20",  # just after the Glassnode whale counts end (proxy takes over)
        "2022-07-01",  # whale hole: exchange-supply proxy only
        "2024-10-27",  # the day after the Fear & Greed gap of 2024-10-26
        "2024-11-06",
        "2025-08-25",  # just after the Coin Metrics whale cohorts end
    ],
)
def test_signals_are_point_in_time(real, day):
    """Every feature (old and issue 12 item 9 families), regime and fused state for every day up to D is the same
    whether the history ends at D or today."""
    daily, fng = real
    full = _full(real)
    t = pd.Timestamp(day)
    part = onchain_features(daily[daily["date"] <= t], fng[fng["date"] <= t])
    ref = full[full["date"] <= t].reset_index(drop=True)
    assert part["date"].iloc[-1] == t
    pd.testing.assert_frame_equal(part[FEATURE_COLUMNS], ref[FEATURE_COLUMNS], rtol=1e-9, check_dtype=False)
    pd.testing.assert_frame_equal(part[REGIME_COLUMNS], ref[REGIME_COLUMNS])
    assert fuse(part).iloc[-1].equals(fuse(ref).iloc[-1])


_FULL = {}


def _full(real):
    if "f" not in _FULL:
        _FULL["f"] = onchain_features(*real)
    return _FULL["f"]


NEW_COLUMNS = [
    "mdia_slope_7d",
    "mdia_slope_14d",
    "mdia_slope_30d",
    "mdia_slope_90d",
    "mdia_pct_rank_365d",
    "mdia_bucket_365d",
    "mdia_regime_days",
    "mdia_inflow_days_30",
    "mdia_distribution_days_30",
    "mvrv_pct_rank_30d",
    "mvrv_pct_rank_90d",
    "mvrv_pct_rank_180d",
    "mvrv_z_1460d",
    "mvrv_composite_bucket",
    "mvrv_chg_7d",
    "mvrv_chg_30d",
    "mvrv_chg_90d",
    "mvrv_60d_z",
    "mvrv_60d_dist_from_min",
    "mvrv_ls_z",
    "mvrv_ls_slope_primary",
    "mvrv_ls_pct_rank_60d",
    "mvrv_ls_chg_30d_proxy",
    "mvrv_ls_above_zero_days_30",
    "mvrv_ls_regime_days",
    "whale_addr_1k_chg_7d",
    "whale_addr_10k_chg_7d",
    "whale_addr_1k_chg_90d",
    "exchange_supply_chg_7d",
    "exchange_supply_chg_90d",
    "exchange_outflow_days_30",
    "whale_accum_streak",
    "whale_distrib_streak",
    "whale_accum_days_30",
    "whale_distrib_days_30",
    "whale_accum_days_90",
    "whale_distrib_days_90",
    "fng_z_7d",
    "fng_z_14d",
    "fng_z_180d",
    "fng_z_365d",
    "fng_ma_7d",
    "fng_chg_30d",
    "fng_pct_rank_365d",
    "fng_class_bucket",
    "fng_class_days",
    "fng_extreme_fear_days_30",
    "fng_extreme_greed_days_30",
]


def test_sixty_plus_features_in_five_families(real):
    """Seed 000 "FEATURE LAYER": 60+ features; one pure function per indicator family, composed by onchain_features."""
    families = [oc.MDIA_COLUMNS, oc.MVRV_COLUMNS, oc.MVRV_LS_COLUMNS, oc.WHALE_COLUMNS, oc.SENTIMENT_COLUMNS]
    assert len(FEATURE_COLUMNS) >= 60 and len(set(FEATURE_COLUMNS)) == len(FEATURE_COLUMNS) == 93
    assert sum(families, []) == FEATURE_COLUMNS and set(NEW_COLUMNS) <= set(FEATURE_COLUMNS)
    daily, fng = real
    f = _full(real)
    assert (f[FEATURE_COLUMNS].dtypes == "float64").all()
    d, p = daily_calendar(daily), oc.OnchainRegimeParams()
    parts = [
        oc.mdia_features(d, p),
        oc.mvrv_features(d),
        oc.mvrv_ls_features(d, p),
        oc.whale_features(d, p),
        oc.sentiment_features(fng, d.index),
    ]
    for cols, part in zip(families, parts, strict=True):
        pd.testing.assert_frame_equal(part[cols].reset_index(drop=True), f[cols], check_exact=True)
    # every new column has values on the real data, in a plausible range
    assert (f[NEW_COLUMNS].notna().sum() > 2900).all()
    assert (f["mdia_slope_30d"].dropna() <= 0).all()  # the age never grows faster than one day per day
    for c in ("mdia_bucket_365d", "mvrv_composite_bucket", "fng_class_bucket"):
        assert set(f[c].dropna().unique()) == {1.0, 2.0, 3.0, 4.0, 5.0}


def test_run_length_streak_and_window_counts_by_hand():
    idx = pd.date_range("2024-01-01", periods=8, freq="D")
    v = pd.Series(["a", "a", "b", "b", "b", None, "b", "a"], index=idx, dtype=object)
    known = v.notna()
    np.testing.assert_array_equal(oc.run_length(v, known), [1, 2, 1, 2, 3, np.nan, 1, 1])  # a gap restarts the run
    cond = v == "b"
    np.testing.assert_array_equal(oc.streak(cond, known), [0, 0, 1, 2, 3, np.nan, 1, 0])
    np.testing.assert_array_equal(oc.days_in_window(cond, known, 3), [np.nan, np.nan, 1, 2, 3, np.nan, np.nan, np.nan])


def test_new_families_by_hand():
    """MDIA slope, MVRV 60d min distance and z, Fear & Greed classes on a small hand-made history."""
    n = 70
    days = pd.date_range("2020-01-01", periods=n, freq="D")
    rc = np.full(n, 100.0)
    rc[40] = 200.0  # realized cap doubles on day 40: half the dollars are new
    rc[41:] = 200.0
    mvrv = np.linspace(1.0, 2.38, n)
    daily = pd.DataFrame({"date": days, "realized_cap_usd": rc, "mvrv": mvrv, "price_usd": 1.0, "supply_btc": 1.0})
    f = onchain_features(daily, None).set_index("date")
    # no new dollars: the age grows one day per day, slope net of ageing 0; day 40: (39 + 1) / 2 = 20
    assert f["mdia_days"].iloc[39] == 39 and f["mdia_days"].iloc[40] == 20
    assert f["mdia_slope_7d"].iloc[39] == 0 and np.isnan(f["mdia_slope_7d"].iloc[6])
    assert f["mdia_slope_7d"].iloc[40] == pytest.approx((20 - 33) / 7 - 1)
    # MVRV rises linearly (0.02 a day): 60d low is 59 days back on day 59, none before 30 days of history
    assert np.isnan(f["mvrv_60d_dist_from_min"].iloc[28])
    assert f["mvrv_60d_dist_from_min"].iloc[59] == pytest.approx(mvrv[59] / mvrv[0] - 1)
    assert f["mvrv_60d_z"].iloc[59] == pytest.approx((mvrv[59] - mvrv[:60].mean()) / mvrv[:60].std(ddof=1))
    assert f["mvrv_chg_7d"].iloc[20] == pytest.approx(mvrv[20] / mvrv[13] - 1)
    # Fear & Greed classes on the vendor's edges
    fng = pd.DataFrame({"date": days[:6], "fng_value": [25, 26, 46, 47, 75, 76]})
    g = onchain_features(daily, fng)
    assert g["fng_class_bucket"].iloc[:6].tolist() == [1, 2, 2, 3, 4, 5]
    assert g["fng_bucket"].iloc[:6].tolist() == [2, 2, 3, 3, 4, 5]  # the first-built bands, unchanged


def test_fng_classes_match_the_vendor_and_gaps_are_not_bridged(real, shared_data):
    raw = pd.read_csv(shared_data / "sentiment" / "fear_greed_daily.csv.gz", parse_dates=["date"])
    f = _full(real).set_index("date")
    raw = raw[raw["date"] <= f.index.max()]  # the on-chain calendar ends a day before the last index value
    names = {1: "Extreme Fear", 2: "Fear", 3: "Neutral", 4: "Greed", 5: "Extreme Greed"}
    got = f.loc[raw["date"], "fng_class_bucket"].map(names).to_numpy()
    assert (got == raw["classification"].to_numpy()).all()
    # 2024-10-26 is missing at the source: NaN that day, runs restart, 30-day counts wait for 30 clean days
    gap = pd.Timestamp("2024-10-26")
    assert np.isnan(f.loc[gap, "fng_value"]) and np.isnan(f.loc[gap, "fng_class_days"])
    assert f.loc[gap + pd.Timedelta(days=1), "fng_class_days"] == 1
    window = f.loc[gap : gap + pd.Timedelta(days=29), "fng_extreme_fear_days_30"]
    assert window.isna().all() and f.loc[gap + pd.Timedelta(days=30), "fng_extreme_fear_days_30"] >= 0
    # whale patterns are NaN on unavailable days, never carried over
    unavailable = f["whale_regime"] == UNAVAILABLE
    assert unavailable.any() and f.loc[unavailable, ["whale_accum_streak", "whale_distrib_days_30"]].isna().all().all()
