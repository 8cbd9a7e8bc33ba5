"""Issue 13 item 8: a header-only candle file is rejected (rule ``no_rows``), never stored as an empty checkpoint."""

from __future__ import annotations

import pandas as pd
import pytest

from assets.ingest import ingest_files_slice
from pipeline.core.candles import CandleValidationError
from resources.files import FilesSource
from warehouse import io


def test_header_only_file_is_rejected_and_keeps_the_stored_candles(tmp_path, data_dir):
    files = FilesSource(data_dir=str(data_dir))
    p = data_dir / "ohlcv/binance/ETH_USDT-1d.csv.gz"
    with io.connect(str(tmp_path / "w.duckdb")) as con:
        ingest_files_slice(con, files, "binance", "ETH/USDT", "1d", False)
        before = con.execute("SELECT count(*), sum(rows) FROM raw.ohlcv, raw.ingest_checkpoints").fetchone()
        pd.read_csv(p).head(0).to_csv(p, index=False)  # header only (a truncated download)
        assert len(pd.read_csv(p)) == 0 and len(pd.read_csv(p).columns) == 10
        with pytest.raises(CandleValidationError) as e:
            ingest_files_slice(con, files, "binance", "ETH/USDT", "1d", False)
        assert e.value.rule == "no_rows" and e.value.source == "ohlcv/binance/ETH_USDT-1d.csv.gz"
        assert con.execute("SELECT count(*), sum(rows) FROM raw.ohlcv, raw.ingest_checkpoints").fetchone() == before
        assert con.execute("SELECT min(rows) FROM raw.ingest_checkpoints").fetchone()[0] == 730
