"""The files source: reads the layout of ``shared/data`` (CSV, CSV.GZ, Parquet) and validates it.

Layout (``data_dir``):
    ohlcv/<exchange>[_<suffix>]/<BASE>_<QUOTE>-<timeframe>.{csv,csv.gz,parquet}
    onchain/<vendor files of pipeline.core.onchain.ONCHAIN_SOURCES>
    sentiment/fear_greed_daily.{csv,csv.gz,parquet}

Folders named ``<exchange>_<suffix>`` (e.g. ``binance_1m_2026-03``) hold more windows of the same
exchange's candles; every file of a symbol × timeframe is ingested and checkpointed separately.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from pathlib import Path

import dagster as dg
import pandas as pd
from pydantic import Field

from pipeline.core.candles import CandleValidationError, reject_future, validate_ohlcv
from pipeline.core.onchain import ONCHAIN_SOURCES, SourceFile, normalise_fear_greed, wide_to_long
from pipeline.core.timeframes import TIMEFRAME_MS, file_stem

_EXTS = (".csv.gz", ".csv", ".parquet")


def first_undecodable_line(path: Path) -> tuple[int, int, bytes] | None:
    """``(line, column, line bytes)`` of the first line of a CSV/CSV.GZ file that is not valid UTF-8 (line 1 is the
    header, so data row = line - 1; column is 1-based, counted in comma-separated fields), or None."""
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as fh:
        for n, raw in enumerate(fh, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as e:
                return n, raw[: e.start].count(b",") + 1, raw.rstrip(b"\r\n")
    return None


class NotUtf8Error(ValueError):
    """A CSV file holds bytes that are not UTF-8: ``row`` (1 = first data row), ``line`` (1 = header), ``column``
    (header name or None) and ``detail`` (what is wrong and what to do)."""

    def __init__(self, path: Path, row: int | None, line: int | None, column: str | None, detail: str):
        self.path, self.row, self.line, self.column, self.detail = path, row, line, column, detail
        super().__init__(f"{path}: {self.where()}rule 'utf8' violated: {detail}")

    def where(self) -> str:
        """``"row 17 (line 18), column 'open': "`` (empty when the line was not found)."""
        if self.row is None:
            return ""
        return f"row {self.row} (line {self.line})" + (f", column {self.column!r}" if self.column else "") + ": "


def _not_utf8(path: Path, e: UnicodeDecodeError) -> NotUtf8Error:
    found = first_undecodable_line(path)
    if found is None:
        return NotUtf8Error(path, None, None, None, f"not UTF-8 ({e.reason}); re-save the file as UTF-8")
    line, col, raw = found
    name = None
    with (gzip.open if path.name.endswith(".gz") else open)(path, "rt", encoding="utf-8", errors="replace") as fh:
        names = fh.readline().rstrip("\r\n").split(",")
    if line > 1 and 0 < col <= len(names):
        name = names[col - 1]
    detail = f"byte(s) that are not UTF-8 ({e.reason}) in {raw[:120]!r}; re-save the file as UTF-8 or fix that row"
    return NotUtf8Error(path, line - 1 if line > 1 else None, line, name, detail)


def read_table(path: Path, text: bool = False) -> pd.DataFrame:
    """Read a CSV/CSV.GZ/Parquet file into pandas (validation is the caller's).

    ``text=True`` reads every CSV cell as a string with no NA conversion (``"N/A"`` stays ``"N/A"``, an empty cell
    is ``""``), for callers that tell a vendor's missing marker from garbage; Parquet keeps its types.

    Raises:
        NotUtf8Error: a byte that is not UTF-8 (its row, line and column).
        ValueError: unsupported extension or unreadable/corrupt file (message names the file).
    """
    try:
        if path.name.endswith(".parquet"):
            return pd.read_parquet(path)
        if path.name.endswith((".csv", ".csv.gz")):
            if text:
                return pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False, low_memory=False)
            return pd.read_csv(path, low_memory=False)
    except UnicodeDecodeError as e:
        raise _not_utf8(path, e) from e
    except Exception as e:  # pandas/pyarrow raise many types for corrupt input
        raise ValueError(f"{path}: cannot read file: {type(e).__name__}: {e}") from e
    raise ValueError(f"{path}: unsupported file type (expected {', '.join(_EXTS)})")


def file_stat(path: Path) -> str:
    """``size:mtime_ns`` — cheap; changes whenever the file is rewritten, appended to or touched."""
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


def content_hash(path: Path, chunk: int = 1 << 20) -> str:
    """``blake2b:<hex>`` (128-bit digest) of the file's bytes, read in 1 MiB chunks (hashlib, ~1 GB/s)."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while b := f.read(chunk):
            h.update(b)
    return "blake2b:" + h.hexdigest()


def file_fingerprint(path: Path, known_stat: str | None = None, known_hash: str | None = None) -> tuple[str, str]:
    """``(stat, content fingerprint)`` of ``path`` (issue 13 item 10).

    The fingerprint is the content hash, so rewriting, touching or restoring a file with identical bytes changes
    nothing downstream. Hashing costs one read of the file, done only when ``stat`` differs from ``known_stat``
    (the stat recorded with ``known_hash``); otherwise ``known_hash`` is returned unread.
    """
    stat = file_stat(path)
    if known_hash is not None and known_hash.startswith("blake2b:") and stat == known_stat:
        return stat, known_hash
    return stat, content_hash(path)


class FilesSource(dg.ConfigurableResource):
    """Local data folder laid out like ``shared/data``; read in place, never copied."""

    data_dir: str = Field(description="Absolute path of the data folder (TRADER_DATA_DIR overrides).")

    @property
    def root(self) -> Path:
        return Path(self.data_dir)

    def rel(self, path: Path) -> str:
        """Path relative to the data folder (used as checkpoint locator and in messages)."""
        return os.path.relpath(path, self.root)

    def ohlcv_files(self, exchange: str, symbol: str, timeframe: str) -> list[Path]:
        """Candle files for one exchange/symbol/timeframe, oldest window first (sorted by folder name)."""
        base = self.root / "ohlcv"
        if not base.is_dir():
            return []
        dirs = sorted(
            d for d in base.iterdir() if d.is_dir() and (d.name == exchange or d.name.startswith(exchange + "_"))
        )
        out = []
        for d in dirs:
            for ext in _EXTS:
                p = d / f"{file_stem(symbol)}-{timeframe}{ext}"
                if p.exists():
                    out.append(p)
                    break
        return out

    def available_timeframes(self, exchange: str, symbol: str) -> set[str]:
        return {tf for tf in TIMEFRAME_MS if self.ohlcv_files(exchange, symbol, tf)}

    def read_ohlcv(self, path: Path, timeframe: str, now_ms: int | None = None) -> pd.DataFrame:
        """Read and validate one candle file (``timestamp`` or ``ts`` column, epoch ms).

        Besides :func:`validate_ohlcv`'s rules: a file without data rows (header only) is rejected (rule
        ``no_rows``: a truncated download must not pass as "nothing new"), and with ``now_ms`` (the wall clock)
        a candle opening after the last closed one is rejected (rule ``future_candle``).

        Raises:
            CandleValidationError: naming the file (relative to the data folder), row and rule.
        """
        src = self.rel(path)
        try:
            df = read_table(path)
        except NotUtf8Error as e:
            col = f"column {e.column!r}: " if e.column else ""
            raise CandleValidationError(src, e.row, "utf8", col + e.detail) from e
        except ValueError as e:
            raise CandleValidationError(src, None, "readable", str(e)) from e
        if "ts" not in df.columns and "timestamp" in df.columns:
            df = df.rename(columns={"timestamp": "ts"})
        out = validate_ohlcv(df, src, timeframe)
        if out.empty:
            raise CandleValidationError(src, None, "no_rows", "the file has a header but no candle rows")
        if now_ms is not None:
            reject_future(out, src, timeframe, now_ms)
        return out

    def onchain_sources(self) -> list[tuple[SourceFile, Path]]:
        """Vendor files present in ``onchain/``."""
        return [
            (sf, self.root / "onchain" / sf.filename)
            for sf in ONCHAIN_SOURCES
            if (self.root / "onchain" / sf.filename).exists()
        ]

    def read_onchain(self, sf: SourceFile, path: Path) -> pd.DataFrame:
        """Long rows ``date, source, metric, value`` of one vendor file, read as text so that only the vendor's
        documented ``missing_markers`` mean "no value" (counts in ``attrs["missing_markers"]``).

        Raises:
            ValueError: naming the file (and row/column for a non-numeric value or a non-UTF-8 byte).
        """
        try:
            return wide_to_long(read_table(path, text=True), sf.source, sf.date_column, sf.missing_markers)
        except NotUtf8Error as e:
            raise ValueError(f"{self.rel(path)}: {e.where()}rule 'utf8' violated: {e.detail}") from e
        except ValueError as e:
            raise ValueError(f"{self.rel(path)}: {e}") from e

    def fear_greed_path(self) -> Path | None:
        for ext in _EXTS:
            p = self.root / "sentiment" / f"fear_greed_daily{ext}"
            if p.exists():
                return p
        return None

    def read_fear_greed(self, publication_lag_hours: float = 0.0) -> pd.DataFrame:
        p = self.fear_greed_path()
        if p is None:
            raise FileNotFoundError(f"{self.root / 'sentiment'}: no fear_greed_daily file")
        return normalise_fear_greed(read_table(p), self.rel(p), publication_lag_hours)
