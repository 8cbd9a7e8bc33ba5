"""Issue 13 item 3: a full-refresh ingest deletes the raw slice and its checkpoints in one transaction, and a
checkpoint that points at an empty slice is detected (blocking check) and healed (the file is read again)."""

from __future__ import annotations

import duckdb
import pytest

from assets.ingest import ingest_files_slice
from pipeline.core.candles import CandleValidationError
from resources.files import FilesSource
from warehouse import io
from warehouse.quality import checkpoints_without_rows


class _CrashOn:
    """A connection whose statement matching ``pattern`` dies (the crash between the two deletes)."""

    def __init__(self, con, pattern: str):
        self._con, self._pattern = con, pattern

    def execute(self, sql, *args):
        if self._pattern in sql:
            raise duckdb.IOException("simulated crash")
        return self._con.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self._con, name)


def _state(con):
    """Row count and content hash of raw.ohlcv (``ingested_at`` left out: a re-read stamps the time it ran) and
    the checkpoints' row counts."""
    return (
        con.execute("SELECT count(*), sum(hash(q)) FROM (SELECT * EXCLUDE (ingested_at) FROM raw.ohlcv) q").fetchone(),
        con.execute("SELECT count(*), sum(rows) FROM raw.ingest_checkpoints").fetchone(),
    )


def test_full_refresh_crash_between_deletes_changes_nothing(tmp_path, data_dir):
    files = FilesSource(data_dir=str(data_dir))
    with io.connect(str(tmp_path / "w.duckdb")) as con:
        ingest_files_slice(con, files, "binance", "BTC/USDT", "1d", False)
        before = _state(con)
        assert before[0][0] == 730
        with pytest.raises(duckdb.IOException):
            ingest_files_slice(
                _CrashOn(con, "DELETE FROM raw.ingest_checkpoints"), files, "binance", "BTC/USDT", "1d", True
            )
        assert _state(con) == before  # the raw delete was rolled back with the failed checkpoint delete
        assert checkpoints_without_rows(con, "binance").empty
        # a failure after the deletes (a bad file) rolls the full refresh back too
        (data_dir / "ohlcv/binance/BTC_USDT-1d.csv.gz").write_text("timestamp,open,high,low,close,volume\n")
        with pytest.raises(CandleValidationError):
            ingest_files_slice(con, files, "binance", "BTC/USDT", "1d", True)
        assert _state(con) == before


def test_checkpoint_pointing_at_empty_slice_is_detected_and_healed(tmp_path, data_dir):
    files = FilesSource(data_dir=str(data_dir))
    with io.connect(str(tmp_path / "w.duckdb")) as con:
        ingest_files_slice(con, files, "binance", "ETH/USDT", "1d", False)
        before = _state(con)
        con.execute("DELETE FROM raw.ohlcv")  # what the old code's crash window left behind
        orphans = checkpoints_without_rows(con, "binance")
        assert orphans[["symbol", "timeframe", "rows"]].values.tolist() == [["ETH/USDT", "1d", 730]]
        rep = ingest_files_slice(con, files, "binance", "ETH/USDT", "1d", False)
        assert rep["new_rows"] == 730 and rep["skipped_unchanged"] == 0
        assert checkpoints_without_rows(con, "binance").empty
        assert _state(con)[0] == before[0]
