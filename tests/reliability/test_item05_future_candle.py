"""Issue 13 item 5: a future-dated candle (BTC 1d dated 2027-06-01) is rejected with file, row and rule, and a
series an older version already polluted with one is repaired once the file is fixed (raw, market and features
equal a clean run's)."""

from __future__ import annotations

import pandas as pd
import pytest

import resources.files as files_mod
from assets.ingest import ingest_files_slice
from pipeline.core.candles import CandleValidationError, last_closed_open_ms, reject_future
from resources.files import FilesSource
from tests.reliability.ingest_helpers import memory_instance, other_warehouse, query, run_chain, table_hashes
from warehouse import io

FUTURE_MS = int(pd.Timestamp("2027-06-01", tz="UTC").timestamp() * 1000)


def _with_future_row(path):
    df = pd.read_csv(path)
    bad = df.iloc[[-1]].assign(timestamp=FUTURE_MS)
    pd.concat([df, bad]).to_csv(path, index=False)
    return len(df) + 1  # 1-based data row of the future candle


def test_last_closed_candle_hand_computed():
    now = int(pd.Timestamp("2026-12-01 13:20", tz="UTC").timestamp() * 1000)
    assert last_closed_open_ms("1d", now) == int(pd.Timestamp("2026-11-30", tz="UTC").timestamp() * 1000)
    assert last_closed_open_ms("1h", now) == int(pd.Timestamp("2026-12-01 12:00", tz="UTC").timestamp() * 1000)
    forming = pd.DataFrame({"ts": [last_closed_open_ms("1h", now) + 3_600_000]})
    reject_future(forming, "x", "1h", now, allow_forming=True)  # the exchange's forming candle: dropped later
    with pytest.raises(CandleValidationError, match="future_candle"):
        reject_future(forming, "x", "1h", now)  # a file holds closed candles only


def test_future_candle_rejected_with_file_row_rule(tmp_path, data_dir):
    p = data_dir / "ohlcv/binance/BTC_USDT-1d.csv.gz"
    row = _with_future_row(p)
    with io.connect(str(tmp_path / "w.duckdb")) as con:
        with pytest.raises(CandleValidationError) as e:
            ingest_files_slice(con, FilesSource(data_dir=str(data_dir)), "binance", "BTC/USDT", "1d", False, io_now())
        assert con.execute("SELECT count(*) FROM raw.ohlcv").fetchone()[0] == 0
    assert e.value.rule == "future_candle" and e.value.row == row
    assert "ohlcv/binance/BTC_USDT-1d.csv.gz" in str(e.value) and "2027-06-01" in str(e.value)


def io_now() -> int:
    return int(io.now_utc().value // 10**6)


def test_polluted_series_is_repaired_when_the_file_is_fixed(tmp_path, data_dir, resources, monkeypatch):
    p = data_dir / "ohlcv/binance/BTC_USDT-1d.csv.gz"
    clean = p.read_bytes()
    head = pd.read_csv(p).iloc[:-100]  # the file as it was when the bad row arrived: 100 genuine days missing
    head.to_csv(p, index=False)
    _with_future_row(p)
    monkeypatch.setattr(files_mod, "reject_future", lambda *a, **k: None)  # the old code accepted it
    with memory_instance() as inst:
        assert run_chain(resources, inst, "BTC/USDT", "1d").success
    wh = resources["warehouse"].path
    assert query(wh, f"SELECT count(*) n FROM market.ohlcv WHERE ts = {FUTURE_MS}")["n"][0] == 1  # polluted
    monkeypatch.undo()

    p.write_bytes(clean)  # fixed: the bad row removed and the 100 genuine days appended
    with memory_instance() as inst:
        assert run_chain(resources, inst, "BTC/USDT", "1d").success
    repaired = table_hashes(wh)

    clean_res = other_warehouse(resources, tmp_path / "c.duckdb")
    with memory_instance() as inst:
        assert run_chain(clean_res, inst, "BTC/USDT", "1d").success
    assert repaired == table_hashes(str(tmp_path / "c.duckdb"))
    assert query(wh, "SELECT max(ts) m FROM features.technical")["m"][0] < FUTURE_MS
