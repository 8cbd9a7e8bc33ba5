"""Issue 13 item 6: a non-numeric on-chain value is either a vendor's missing marker (counted, the stored value kept
and flagged, the options desk's decisions unchanged) or garbage (an error naming file, row, column and value; every
table bit-identical). Real vendor files in a temporary data folder; the on-chain chain up to the options signals."""

import dagster as dg
import duckdb
import pandas as pd
import pytest

from assets.keys import (
    ONCHAIN_DAILY,
    ONCHAIN_FEATURES,
    OPTIONS_DAILY,
    OPTIONS_TRADES,
    RAW_ONCHAIN_METRICS,
    SENTIMENT_DAILY,
)
from pipeline.definitions import ALL_ASSETS
from resources.files import FilesSource

pytestmark = pytest.mark.integration

CHAIN = dg.AssetSelection.assets(
    RAW_ONCHAIN_METRICS, ONCHAIN_DAILY, SENTIMENT_DAILY, ONCHAIN_FEATURES, OPTIONS_DAILY, OPTIONS_TRADES
)
FILE = "btc_daily_cm_api_mvrv_2010_2026-08.csv.gz"  # the only MVRV source after 2026-03-22
DAY = "2026-08-01"
TABLES = [
    "raw.onchain_metrics",
    "market.onchain_daily",
    "features.onchain",
    "signals.options_daily",
    "signals.options_trades",
]


def _run(resources, instance):
    return dg.materialize(ALL_ASSETS, resources=resources, instance=instance, raise_on_error=False, selection=CHAIN)


def _hashes(resources) -> dict:
    with duckdb.connect(resources["warehouse"].path, read_only=True) as con:
        return {t: con.execute(f"SELECT count(*), sum(hash(*columns(*))) FROM {t}").fetchone() for t in TABLES}


def _plant(data_dir, value: str) -> int:
    """Write ``value`` into the ``mvrv`` cell of DAY (text in, text out: every other cell byte-for-byte); its row."""
    p = data_dir / "onchain" / FILE
    df = pd.read_csv(p.resolve(), dtype=str, keep_default_na=False)
    i = int((df["date"] == DAY).to_numpy().nonzero()[0][0])
    df.loc[i, "mvrv"] = value
    p.unlink()
    df.to_csv(p, index=False)
    return i + 1


def test_garbage_value_is_rejected_and_tables_unchanged(resources, instance, data_dir, built_warehouse):
    # the session's data chain (a successful run of CHAIN and more) copied into `resources`
    before = _hashes(resources)
    for garbage in ("abc", "N/A"):  # "N/A" was NaN to pandas' default reader: not a marker of any real vendor file
        row = _plant(data_dir, garbage)
        r = _run(resources, instance)
        assert not r.success
        msg = "".join(str(e.event_specific_data.error) for e in r.all_events if e.is_step_failure)
        assert FILE in msg and f"row {row}, column 'mvrv'" in msg and repr(garbage) in msg, msg
        assert _hashes(resources) == before


def test_missing_marker_is_counted_kept_and_flagged(resources, instance, data_dir, built_warehouse):
    before = _hashes(resources)
    _plant(data_dir, "")
    r = _run(resources, instance)
    assert r.success
    meta = [e for e in r.get_asset_materialization_events() if e.asset_key == RAW_ONCHAIN_METRICS][-1]
    md = meta.materialization.metadata
    assert md["withdrawn_values"].value == 1 and md["withdrawn_days"].value == 1
    assert md["missing_markers_read"].value == 1  # the planted marker (only the changed file is re-read)
    with duckdb.connect(resources["warehouse"].path, read_only=True) as con:
        flags = con.execute("SELECT date, source, metric, kept_value FROM raw.onchain_withdrawn").fetchall()
    assert [(str(d), s, m) for d, s, m, _ in flags] == [(DAY, "cm_api_2026_08", "mvrv")]
    assert _hashes(resources) == before  # the stored value was kept: no day re-decided, no new trade


def test_real_files_use_only_the_empty_cell_as_missing_marker(shared_data):
    fs = FilesSource(data_dir=str(shared_data))
    counts = {sf.source: fs.read_onchain(sf, p).attrs["missing_markers"] for sf, p in fs.onchain_sources()}
    assert counts["cm_2026_03"] == {"": 35003} and counts["glassnode_2020"] == {"": 105230}
    assert all(set(c) <= {""} for c in counts.values())
