"""On-chain normalisation on the real vendor files; splice refusal; point-in-time availability; F&G rules."""

import pandas as pd
import pytest

from pipeline.core.onchain import (
    ONCHAIN_SOURCES,
    C,
    ColumnSpec,
    OnchainSpliceError,
    normalise_fear_greed,
    normalise_onchain,
    wide_to_long,
)


@pytest.fixture(scope="module")
def onchain(shared_data):
    longs = [
        wide_to_long(pd.read_csv(shared_data / "onchain" / sf.filename), sf.source, sf.date_column)
        for sf in ONCHAIN_SOURCES
    ]
    return normalise_onchain(pd.concat(longs, ignore_index=True), publication_lag_hours=2)


def test_daily_table_shape_and_sources(onchain):
    daily, report = onchain
    assert daily["date"].is_monotonic_increasing and daily["date"].diff().dropna().eq(pd.Timedelta(days=1)).all()
    assert daily["date"].max() == pd.Timestamp("2026-08-21")
    row = daily.set_index("date").loc["2026-03-01"]
    assert row.mvrv_source == "cm_2026_03"
    assert daily.set_index("date").loc["2026-08-21"].mvrv_source == "cm_api_2026_08"  # CM API extends CM MVRV
    assert set(report["column"]) >= {
        "price_usd",
        "market_cap_usd",
        "realized_cap_usd",
        "mvrv",
        "supply_btc",
        "active_addresses",
        "exchange_supply_btc",
        "whale_addr_1k_cm",
        "whale_supply_1k_cm_btc",
        "hodl_share_gt1y_glassnode",
    }


def test_realized_cap_identity_and_vendor_separation(onchain):
    daily, _ = onchain
    d = daily.set_index("date").loc["2024-03-13"]
    assert d.realized_cap_usd == pytest.approx(d.market_cap_usd / d.mvrv, rel=1e-12)
    assert d.mvrv == pytest.approx(2.7468, abs=1e-4) and d.mvrv_cryptoquant == pytest.approx(
        2.7531, abs=1e-4
    )  # README §2.6
    # whale series exist only where a vendor has them; the 2020-11 .. 2023-08 hole stays empty
    hole = daily[(daily.date > "2020-11-17") & (daily.date < "2023-08-22")]
    assert hole[["whale_addr_1k_cm", "whale_addr_1k_glassnode"]].isna().all().all()


def test_available_at_is_next_day_plus_lag(onchain):
    daily, _ = onchain
    assert (daily["available_at"] == daily["date"] + pd.Timedelta(days=1, hours=2)).all()


def test_coverage_report(onchain):
    _, report = onchain
    core = report[report["core"]].set_index("column")
    assert (core["coverage_since_2011"] >= 0.99).all()
    assert report.set_index("column").loc["whale_addr_1k_cm", "rows"] == 732


def test_disagreeing_vendors_are_never_spliced():
    long = pd.DataFrame(
        {
            "date": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-02", "2024-01-03"]),
            "source": ["a", "a", "b", "b"],
            "metric": ["m"] * 4,
            "value": [1.0, 2.0, 2.5, 3.0],
        }
    )
    spec = [ColumnSpec("x", "u", "d", [C("a", "m"), C("b", "m")], rtol=1e-6)]
    with pytest.raises(OnchainSpliceError, match="'b' disagrees with 'a' on 2024-01-02"):
        normalise_onchain(long, specs=spec)
    long.loc[2, "value"] = 2.0
    daily, rep = normalise_onchain(long, specs=spec)
    assert daily["x"].tolist() == [1.0, 2.0, 3.0] and daily["x_source"].tolist() == ["a", "a", "b"]


def test_wide_to_long_rejects_bad_dates():
    with pytest.raises(ValueError, match="row 2: duplicate date 2024-01-01"):
        wide_to_long(pd.DataFrame({"date": ["2024-01-01", "2024-01-01"], "m": [1, 2]}), "s", "date")
    with pytest.raises(ValueError, match="missing date column"):
        wide_to_long(pd.DataFrame({"day": ["2024-01-01"], "m": [1]}), "s", "date")


def test_fear_greed_real_file_keeps_missing_days(shared_data):
    fng = normalise_fear_greed(pd.read_csv(shared_data / "sentiment" / "fear_greed_daily.csv.gz"), "fng")
    assert len(fng) == 3121
    missing = set(pd.date_range("2018-02-01", "2026-08-22")) - set(fng["date"])
    assert {d.strftime("%Y-%m-%d") for d in missing} == {"2018-04-14", "2018-04-15", "2018-04-16", "2024-10-26"}
    assert (fng["available_at"] == fng["date"] + pd.Timedelta(days=1)).all()


@pytest.mark.parametrize(
    "col,val,rule",
    [
        ("value", 101, "value_range"),
        ("classification", "Panic", "classification"),
        ("date", "2018-02-01", "duplicate_date"),
    ],
)
def test_fear_greed_rules(col, val, rule):
    df = pd.DataFrame(
        {"date": ["2018-02-01", "2018-02-02"], "value": [30, 15], "classification": ["Fear", "Extreme Fear"]}
    )
    df.loc[1, col] = val
    with pytest.raises(ValueError, match=f"row 2: rule '{rule}'"):
        normalise_fear_greed(df, "fng.csv")
