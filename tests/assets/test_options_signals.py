"""Issue 12 item 6: the ``recent_days_available`` check of ``signals/options_daily`` reads the last 90 calendar days,
so a gap in the data counts as days without a signal (it read the last 90 rows, which jump over a gap)."""

import dagster as dg
import pandas as pd
import pytest

from assets.keys import OPTIONS_DAILY, OPTIONS_TRADES, RECENT_DAYS_AVAILABLE
from pipeline.core.onchain_signals import onchain_features
from pipeline.definitions import ALL_ASSETS
from warehouse import io


def test_recent_days_available_counts_a_gap_in_the_real_data(resources, onchain_inputs):
    daily, fng = onchain_inputs
    f = onchain_features(daily, fng)
    f["available_at"] = f["date"] + pd.Timedelta(days=1)
    f = f[(f["date"] < "2026-05-01") | (f["date"] > "2026-07-20")]  # 81 days without a row
    last = f["date"].max()
    with io.connect(resources["warehouse"].path) as con:
        io.replace_table(con, "market.onchain_daily", daily, date_columns=("date",))
        io.replace_table(con, "features.onchain", f, date_columns=("date",))
    with dg.instance_for_test() as instance:
        r = dg.materialize(
            ALL_ASSETS,
            selection=dg.AssetSelection.keys(OPTIONS_DAILY, OPTIONS_TRADES),
            resources=resources,
            instance=instance,
        )
    assert r.success
    ev = next(e for e in r.get_asset_check_evaluations() if e.check_name == RECENT_DAYS_AVAILABLE)
    assert not ev.passed  # 58 days without a row + the real whale outage: most of the window has no signal
    m = {k: v.value for k, v in ev.metadata.items()}
    window = pd.date_range(last - pd.Timedelta(days=89), last)
    gap_days = int((window <= "2026-07-20").sum())
    with io.connect(resources["warehouse"].path, read_only=True) as con:
        stored = io.read_df(con, "SELECT date, state_reason FROM signals.options_daily WHERE date >= ?", [window[0]])
    unavailable = int(stored["state_reason"].str.startswith("unavailable").sum())
    assert m["days_without_row"] == gap_days == 58 and m["last_day"] == str(last.date())
    assert m["unavailable_share_90d"] == pytest.approx((gap_days + unavailable) / 90, rel=1e-3)  # 4 digits shown
