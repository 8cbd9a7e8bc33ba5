"""Each candle partition's materialisation reports its own rows, time range and gaps (issue 14 item 3), on slices of
the real files; a partition without source data says so."""

import dagster as dg
import pandas as pd
import pytest

from assets.keys import MARKET_OHLCV, RAW_OHLCV
from pipeline.definitions import ALL_ASSETS
from pipeline.partitions import full_range_tags, partition_key


def _events(result, key) -> dict[str, dict]:
    """``{partition key: metadata}`` of ``key``'s materialisations in ``result``."""
    return {
        e.partition: {k: v.value for k, v in e.materialization.metadata.items()}
        for e in result.get_asset_materialization_events()
        if e.asset_key == key
    }


def _expected(path) -> dict:
    """Rows, first/last candle and gaps of one sliced source file, computed directly from the file."""
    ts = pd.read_csv(path)["timestamp"]
    step = int(ts.diff().mode()[0])
    d = ts.diff().dropna()
    return {
        "rows": len(ts),
        "first": pd.Timestamp(int(ts.iloc[0]), unit="ms").isoformat(),
        "last": pd.Timestamp(int(ts.iloc[-1]), unit="ms").isoformat(),
        "gaps": int((d > step).sum()),
        "missing_bars": int((d[d > step] // step - 1).sum()),
    }


@pytest.mark.integration
def test_each_partition_shows_its_own_rows_range_and_gaps(resources, data_dir):
    for f in data_dir.glob("ohlcv/*/ETH_USDT-1m.csv.gz"):  # ETH has no 1m source -> 1m and 5m have nothing to build
        f.unlink()
    with dg.instance_for_test() as instance:
        r = dg.materialize(
            ALL_ASSETS,
            selection=dg.AssetSelection.keys(RAW_OHLCV, MARKET_OHLCV),
            resources=resources,
            instance=instance,
            tags=full_range_tags(["ETH/USDT"], ["1m", "1h"]),  # ETH x 1m, 5m, 15m, 1h
        )
    market, raw = _events(r, MARKET_OHLCV), _events(r, RAW_OHLCV)
    assert len(market) == len(raw) == 4
    h1 = _expected(data_dir / "ohlcv/binance/ETH_USDT-1h.csv.gz")
    assert h1["gaps"] >= 1  # the window holds real outages
    m = market[partition_key("ETH/USDT", "1h")]
    assert {k: m[k] for k in h1} == h1 and m["dagster/row_count"] == h1["rows"] and m["origin"] == "native"
    assert m["new_rows"] == h1["rows"]
    m15 = market[partition_key("ETH/USDT", "15m")]
    assert m15["rows"] == _expected(data_dir / "ohlcv/binance/ETH_USDT-15m.csv.gz")["rows"] != h1["rows"]
    for tf in ("1m", "5m"):  # nothing to ingest or resample: shown as such, not as the table's size
        m = market[partition_key("ETH/USDT", tf)]
        assert m["rows"] == m["dagster/row_count"] == 0 and m["status"].startswith("no source data"), m
        assert "first" not in m
    assert raw[partition_key("ETH/USDT", "1m")]["status"].startswith("no source data")
    assert raw[partition_key("ETH/USDT", "1h")]["rows"] == h1["rows"]
    # the run-wide figures are named as such
    assert m["run_new_rows"] == h1["rows"] + m15["rows"] and m["run_partitions"] == 4
