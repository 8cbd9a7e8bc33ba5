"""Issue 12 item 6: the age of the options desk's data, why an indicator is unavailable, the inputs behind each regime,
and the share of recent calendar days without a usable signal."""

import numpy as np
import pandas as pd
import pytest

from pipeline.core.onchain_signals import FEATURE_COLUMNS, onchain_features
from pipeline.core.options_explain import (
    OVERLAY_INPUTS,
    REGIME_INPUTS,
    days_behind,
    recent_availability,
    regime_inputs,
    unavailable_reason,
)


def test_every_named_input_is_a_stored_feature():
    named = {c for _, srcs in REGIME_INPUTS.values() for s in srcs for c in (*s.base, *s.shown)} | set(OVERLAY_INPUTS)
    assert named <= set(FEATURE_COLUMNS), named - set(FEATURE_COLUMNS)


def test_days_behind_today():
    assert days_behind("2026-08-21", pd.Timestamp("2026-12-01 13:00")) == 102
    assert days_behind(pd.Timestamp("2026-11-30"), "2026-12-01") == 1  # as fresh as daily data gets


def test_recent_availability_counts_calendar_days_not_rows():
    """100 usable days, a 60-day gap without rows, 40 usable days: the last 90 calendar days hold 50 days without a
    row, so 50/90 are unusable — the last 90 *rows* (all usable) would say 0."""
    dates = pd.date_range("2024-01-01", periods=200, freq="D")
    keep = np.r_[0:100, 160:200]
    daily = pd.DataFrame({"date": dates[keep], "state_reason": "no alignment"})
    daily.loc[daily.index[-5:], "state_reason"] = "unavailable:whales"
    share, reasons, window = recent_availability(daily, 90)
    assert share == pytest.approx(55 / 90)
    assert dict(zip(reasons["reason"], reasons["days"])) == {"no row for the day": 50, "unavailable:whales": 5}
    assert window == {"first_day": str(dates[110].date()), "last_day": str(dates[199].date()), "days_without_row": 50}
    assert recent_availability(daily.iloc[:100], 90)[0] == 0.0


def test_unavailable_reason_names_the_missing_input_by_hand():
    dates = pd.date_range("2024-01-01", periods=50, freq="D")
    f = pd.DataFrame({"date": dates, "exchange_supply_btc": 1.0, "whale_addr_1k": np.nan, "whale_addr_10k": 5.0})
    f.loc[10:15, "exchange_supply_btc"] = np.nan  # 30 days before day 45 (day 15) is missing
    why = unavailable_reason(f, dates[45], "whales")
    assert "primary:whale_address_counts: whale_addr_1k has no value on the day (2024-02-15; last value never)" in why
    assert f"exchange_supply_btc has no value 30 days before ({dates[15].date()}; last value {dates[9].date()})" in why
    f2 = f.assign(whale_addr_1k=1.0, exchange_supply_btc=1.0)
    assert "trailing z-score window is not yet filled" in unavailable_reason(f2, dates[45], "whales")


@pytest.fixture(scope="module")
def real_features(onchain_inputs):
    daily, fng = onchain_inputs
    return onchain_features(daily, fng)


def test_real_latest_days_say_why_whales_are_unavailable(real_features):
    f = real_features
    last = f["date"].max()
    assert f.loc[f["date"] == last, "whale_regime"].iloc[0] == "unavailable"  # the real files end this way
    why = unavailable_reason(f, last, "whales")
    a1k = f.loc[f["whale_addr_1k"].notna(), "date"].max().date()
    ex = f.loc[f["exchange_supply_btc"].notna(), "date"].max().date()
    assert f"whale_addr_1k has no value on the day ({last.date()}; last value {a1k})" in why
    assert f"exchange_supply_btc has no value on the day ({last.date()}; last value {ex})" in why


def test_regime_inputs_list_the_used_source_first_with_its_values(real_features):
    f = real_features
    row = f[f["date"] == "2018-06-01"].iloc[0]
    out = regime_inputs(row, row)
    assert [ind for ind, _, _ in out] == ["mdia", "whales", "mvrv_ls"]
    for ind, header, sources in out:
        prefix = REGIME_INPUTS[ind][0]
        assert header == f"{row[f'{prefix}_regime']} ({row[f'{prefix}_source']})"
        assert sources[0][0] == f"{row[f'{prefix}_source']} (used)"
    mdia_values = dict(out[0][2][0][1])
    assert mdia_values["mdia_chg_30d_z"] == row["mdia_chg_30d_z"] and np.isfinite(mdia_values["mdia_chg_30d_z"])
