"""Issue 13 items 7 and 9: an infinite price is rejected at validation with file, row and rule; the bad partition
fails alone (its tables stay bit-identical, the failure is listed in ops.input_errors and the inputs_valid check)
while the other partitions and the downstream assets proceed; fixing the file and re-running is enough (the
tables then equal a clean run's and ops.input_errors is empty)."""

from __future__ import annotations

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from pipeline.core.candles import CandleValidationError, validate_ohlcv
from pipeline.partitions import full_range_tags
from tests.conftest import real_ohlcv
from tests.reliability.ingest_helpers import (
    check_eval,
    memory_instance,
    other_warehouse,
    query,
    run_chain_range,
    table_hashes,
)
from warehouse.schema import SERVING_TABLES

TAGS = full_range_tags(["BTC/USDT", "ETH/USDT"], ["1h"])


@pytest.mark.parametrize("value", [np.inf, -np.inf, "inf", "Infinity"])
def test_non_finite_value_is_rejected_with_row_and_rule(value):
    df = pd.DataFrame(
        {"ts": [0, 3_600_000, 7_200_000], "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5, "volume": 3.0}
    ).assign(ts=lambda d: d["ts"] + 1_546_300_800_000)
    df["high"] = df["high"].astype(object)
    df.loc[1, "high"] = value
    with pytest.raises(
        CandleValidationError, match=r"f.csv, row 2: rule 'finite' violated: non-finite value in \['high'\]"
    ):
        validate_ohlcv(df, "f.csv", "1h")
    df.loc[1, "high"] = 2.0
    df["quote_volume"] = [1.0, np.inf, 2.0]  # optional Binance columns too
    with pytest.raises(CandleValidationError, match="rule 'finite'"):
        validate_ohlcv(df, "f.csv", "1h")


def test_bad_partition_fails_alone_and_a_fixed_file_is_enough(tmp_path, data_dir, resources):
    wh = resources["warehouse"].path
    with memory_instance() as inst:
        assert run_chain_range(resources, inst, TAGS).success
    eth = "symbol = 'ETH/USDT'"
    before_eth = table_hashes(wh, eth)

    bad = data_dir / "ohlcv/binance/ETH_USDT-1h.csv.gz"
    good_bytes = bad.read_bytes()
    df = pd.read_csv(bad)
    df.loc[5, "high"] = np.inf
    df.to_csv(bad, index=False)
    btc = data_dir / "ohlcv/binance/BTC_USDT-1h.csv.gz"  # meanwhile BTC gets 24 genuine new candles
    btc_df = pd.read_csv(btc)
    full = real_ohlcv("BTC/USDT", "1h").rename(columns={"ts": "timestamp"})
    pd.concat([btc_df, full[full["timestamp"] > btc_df["timestamp"].max()].head(24)]).to_csv(btc, index=False)

    with memory_instance() as inst:
        r = run_chain_range(resources, inst, TAGS)
    assert r.success  # the bad partition failed alone; market/features/regimes ran
    check = check_eval(r, "inputs_valid")
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    errs = query(wh, "SELECT * FROM ops.input_errors")
    assert errs[["input", "partition_key", "locator", "rule"]].values.tolist() == [
        ["raw.ohlcv", "ETH-USDT|1h", "ohlcv/binance/ETH_USDT-1h.csv.gz", "finite"]
    ]
    assert "ohlcv/binance/ETH_USDT-1h.csv.gz, row 6: rule 'finite' violated" in errs["message"][0]
    assert table_hashes(wh, eth) == before_eth  # bit-identical: nothing of the bad slice was committed
    for t in ("raw.ohlcv", "market.ohlcv", "features.technical", "regimes.market"):  # BTC proceeded downstream
        assert query(wh, f"SELECT max(ts) m FROM {t} WHERE symbol = 'BTC/USDT' AND timeframe = '1h'")["m"][0] == int(
            full[full["timestamp"] > btc_df["timestamp"].max()].head(24)["timestamp"].max()
        ), t
    assert "ops.input_errors" in SERVING_TABLES

    bad.write_bytes(good_bytes)  # the fix
    with memory_instance() as inst:
        r = run_chain_range(resources, inst, TAGS)
    assert r.success and check_eval(r, "inputs_valid").passed
    assert query(wh, "SELECT count(*) n FROM ops.input_errors")["n"][0] == 0
    clean = other_warehouse(resources, tmp_path / "clean.duckdb")
    with memory_instance() as inst:
        assert run_chain_range(clean, inst, TAGS).success
    fixed, clean_h = table_hashes(wh), table_hashes(str(tmp_path / "clean.duckdb"))
    assert {t: fixed[t] for t in ("raw.ohlcv", "market.ohlcv")} == {
        t: clean_h[t] for t in ("raw.ohlcv", "market.ohlcv")
    }
    # the repaired partition is bit-identical to a clean run's in every table (BTC's appended features are
    # computed incrementally from a warm-up tail, which agrees with a full recompute to rounding only)
    assert table_hashes(wh, eth) == table_hashes(str(tmp_path / "clean.duckdb"), eth) == before_eth
