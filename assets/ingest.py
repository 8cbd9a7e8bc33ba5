"""Group ``ingest``: ``raw.ohlcv`` (symbol × timeframe, incremental) and ``raw.onchain_metrics``."""

import dagster as dg
import pandas as pd

from assets.checks import candle_integrity_result
from assets.common import POOL, SINGLE_RUN, IncrementalConfig, md_table, run_slices, ts_iso
from assets.keys import (
    EXTERNAL_DATA_FOLDER,
    EXTERNAL_EXCHANGE,
    EXTERNAL_ONCHAIN_SHEET,
    GROUP_INGEST,
    RAW_OHLCV,
    RAW_ONCHAIN_METRICS,
)
from pipeline.config import settings
from pipeline.core.onchain import withdrawn_values
from pipeline.core.timeframes import timeframe_ms
from pipeline.partitions import SYMBOL_TIMEFRAME
from resources.exchange import ExchangeSource, utc_ms
from resources.files import FilesSource, file_fingerprint
from resources.sheets import SheetsSource
from resources.warehouse import WarehouseResource
from warehouse import io, readers
from warehouse.quality import cached, candle_integrity

EXTERNAL_FILES = dg.AssetSpec(
    EXTERNAL_DATA_FOLDER,
    group_name=GROUP_INGEST,
    kinds={"csv", "parquet"},
    description="The local data folder (TRADER_DATA_DIR), laid out like shared/data.",
)
EXTERNAL_EXCHANGE_SPEC = dg.AssetSpec(
    EXTERNAL_EXCHANGE,
    group_name=GROUP_INGEST,
    kinds={"ccxt"},
    description="The configured exchange's public candle API via ccxt.",
)
EXTERNAL_SHEET = dg.AssetSpec(
    EXTERNAL_ONCHAIN_SHEET,
    group_name=GROUP_INGEST,
    kinds={"googlesheets"},
    description="Optional Google Sheet of on-chain metric columns (gspread).",
)


def _checkpoint(con, kind: str, exchange: str, symbol: str, tf: str, locator: str) -> tuple[str | None, int | None]:
    r = io.fetch_one(
        con.execute(
            "SELECT fingerprint, last_ts FROM raw.ingest_checkpoints WHERE source_kind=? AND exchange=? AND "
            "symbol=? AND timeframe=? AND locator=?",
            [kind, exchange, symbol, tf, locator],
        )
    )
    return (r[0], r[1]) if r else (None, None)


CANDLE_KEYS = ["exchange", "symbol", "timeframe", "ts"]
CHECKPOINT_KEYS = ["source_kind", "exchange", "symbol", "timeframe", "locator"]


def checkpoint_row(
    kind: str,
    exchange: str,
    symbol: str,
    tf: str,
    locator: str,
    fingerprint: str | None,
    last_ts: int | None,
    rows: int,
    now: pd.Timestamp,
) -> pd.DataFrame:
    """One ``raw.ingest_checkpoints`` row: what of ``locator`` is stored (fingerprint, last ``ts``, rows)."""
    return pd.DataFrame(
        [
            {
                "source_kind": kind,
                "exchange": exchange,
                "symbol": symbol,
                "timeframe": tf,
                "locator": locator,
                "fingerprint": fingerprint,
                "last_ts": last_ts,
                "rows": rows,
                "updated_at": now,
            }
        ]
    )


def write_with_checkpoint(
    con,
    candles: pd.DataFrame,
    kind: str,
    exchange: str,
    symbol: str,
    tf: str,
    locator: str,
    fingerprint: str | None,
    last_ts: int | None,
    rows: int,
) -> None:
    """Upsert new candles and move the slice's checkpoint in one transaction (never one without the other)."""
    now = io.now_utc()
    cp = checkpoint_row(kind, exchange, symbol, tf, locator, fingerprint, last_ts, rows, now)
    candles = candles.assign(exchange=exchange, symbol=symbol, timeframe=tf, locator=locator, ingested_at=now)
    io.upsert_many(con, [("raw.ohlcv", candles, CANDLE_KEYS), ("raw.ingest_checkpoints", cp, CHECKPOINT_KEYS)])


def replace_source_with_checkpoint(
    con, long: pd.DataFrame, source: str, locator: str, fingerprint: str, withdrawn: pd.DataFrame | None = None
) -> None:
    """Replace one vendor's on-chain rows, its ``raw.onchain_withdrawn`` flags (``withdrawn``: ``date, source,
    metric, kept_value, locator, detected_at``) and its file checkpoint in one transaction."""
    cp = checkpoint_row("onchain", "-", "BTC", "1d", locator, fingerprint, None, len(long), io.now_utc())
    with io.transaction(con):
        con.execute("DELETE FROM raw.onchain_metrics WHERE source = ?", [source])
        con.execute("DELETE FROM raw.onchain_withdrawn WHERE source = ?", [source])
        if withdrawn is not None and len(withdrawn):
            con.register("_withdrawn", withdrawn)
            try:
                con.execute("INSERT INTO raw.onchain_withdrawn BY NAME SELECT * FROM _withdrawn")
            finally:
                con.unregister("_withdrawn")
        io.upsert(con, "raw.ingest_checkpoints", cp, CHECKPOINT_KEYS)
        con.register("_long", long)
        try:
            con.execute("INSERT INTO raw.onchain_metrics BY NAME SELECT * FROM _long")
        finally:
            con.unregister("_long")


def ingest_files_slice(con, files: FilesSource, exchange: str, symbol: str, tf: str, full_refresh: bool) -> dict:
    """Ingest new rows of every file of one slice. A file whose fingerprint is unchanged is not read."""
    out = {"symbol": symbol, "timeframe": tf, "files": 0, "new_rows": 0, "skipped_unchanged": 0}
    if full_refresh:
        io.replace_slice(
            con,
            "raw.ohlcv",
            pd.DataFrame(),
            {"exchange": exchange, "symbol": symbol, "timeframe": tf},
            allow_empty=True,
        )
        con.execute(
            "DELETE FROM raw.ingest_checkpoints WHERE source_kind='files' AND exchange=? AND symbol=? AND timeframe=?",
            [exchange, symbol, tf],
        )
    for path in files.ohlcv_files(exchange, symbol, tf):
        out["files"] += 1
        loc = files.rel(path)
        fp = file_fingerprint(path)
        old_fp, last_ts = _checkpoint(con, "files", exchange, symbol, tf, loc)
        if fp == old_fp:
            out["skipped_unchanged"] += 1
            continue
        df = files.read_ohlcv(path, tf)  # raises CandleValidationError before anything is written
        new = df[df["ts"] > last_ts] if last_ts is not None else df
        write_with_checkpoint(
            con, new, "files", exchange, symbol, tf, loc, fp, int(df["ts"].iloc[-1]) if len(df) else last_ts, len(df)
        )
        out["new_rows"] += len(new)
    return out


def ingest_exchange_slice(
    con, exchange_src: ExchangeSource, exchange: str, symbol: str, tf: str, since: str, overlap: int = 0
) -> dict:
    """Sync one slice from the exchange, resuming after the stored checkpoint, ``overlap`` candles earlier
    (``exchange.overlap_candles``: those are fetched again and upserted), never before ``since``."""
    _, last_ts = _checkpoint(con, "exchange", exchange, symbol, tf, "ccxt")
    stored = io.max_ts(con, "raw.ohlcv", {"exchange": exchange, "symbol": symbol, "timeframe": tf})
    step = timeframe_ms(tf)
    back = (1 - overlap) * step
    since_ms = max(
        utc_ms(since), (last_ts + back) if last_ts is not None else 0, (stored + back) if stored is not None else 0
    )
    since_ms = -(-since_ms // step) * step  # align up to the timeframe grid

    def write_page(page: pd.DataFrame) -> None:
        write_with_checkpoint(
            con, page, "exchange", exchange, symbol, tf, "ccxt", None, int(page["ts"].iloc[-1]), len(page)
        )

    rep = exchange_src.sync_ohlcv(symbol, tf, since_ms, write_page)
    return {"symbol": symbol, "timeframe": tf, "pages": rep.pages, "new_rows": rep.rows, "retries": rep.retries}


@dg.asset(
    key=RAW_OHLCV,
    group_name=GROUP_INGEST,
    partitions_def=SYMBOL_TIMEFRAME,
    backfill_policy=SINGLE_RUN,
    pool=POOL,
    kinds={"duckdb", "python"},
    deps=[EXTERNAL_FILES, EXTERNAL_EXCHANGE],
    code_version="1",
    check_specs=[
        dg.AssetCheckSpec(
            "candle_integrity",
            asset=RAW_OHLCV,
            blocking=True,
            description="No duplicate ts, OHLC sanity, positive prices, ts on the timeframe grid.",
        )
    ],
    description="Candles as ingested (files or ccxt), one partition per symbol × timeframe, incremental by "
    "checkpoint. Timeframes the source lacks stay empty here and are resampled in market.ohlcv.",
)
def raw_ohlcv(
    context: dg.AssetExecutionContext,
    config: IncrementalConfig,
    warehouse: WarehouseResource,
    files: FilesSource,
    exchange: ExchangeSource,
) -> dg.MaterializeResult:
    cfg, slices = settings(), run_slices(context)
    ex = cfg.exchange.id
    with warehouse.connect() as con:
        if cfg.source == "files":
            report = [ingest_files_slice(con, files, ex, s, tf, config.full_refresh) for s, tf in slices]
        else:
            e = cfg.exchange
            report = [ingest_exchange_slice(con, exchange, ex, s, tf, e.since, e.overlap_candles) for s, tf in slices]
        changed = {(r["symbol"], r["timeframe"]) for r in report if r["new_rows"] or config.full_refresh}
        integ = cached(con, "raw.ohlcv", ex, slices, changed, lambda c, e, sl: candle_integrity(c, "raw.ohlcv", e, sl))
    rep = pd.DataFrame(report).merge(
        integ[["symbol", "timeframe", "rows", "first_ts", "last_ts"]], how="left", on=["symbol", "timeframe"]
    )
    rep["first"], rep["last"] = rep["first_ts"].map(ts_iso), rep["last_ts"].map(ts_iso)
    return dg.MaterializeResult(
        metadata={
            "source": cfg.source,
            "new_rows": int(rep["new_rows"].sum()),
            "dagster/row_count": int(integ["rows"].sum()),
            "partitions": len(slices),
            "summary": md_table(rep.drop(columns=["first_ts", "last_ts"])),
        },
        check_results=[candle_integrity_result(integ, "candle_integrity", RAW_OHLCV)],
    )


@dg.asset(
    key=RAW_ONCHAIN_METRICS,
    group_name=GROUP_INGEST,
    pool=POOL,
    kinds={"duckdb", "python"},
    deps=[EXTERNAL_FILES, EXTERNAL_SHEET],
    code_version="1",
    description="Bitcoin daily on-chain metrics in long format (date, source, metric, value), one source per "
    "vendor file (and the optional Google Sheet). A file is re-read only when it changed.",
)
def raw_onchain_metrics(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, files: FilesSource, sheets: SheetsSource
) -> dg.MaterializeResult:
    rows = []
    with warehouse.connect() as con:
        for sf, path in files.onchain_sources():
            fp, loc = file_fingerprint(path), files.rel(path)
            if _checkpoint(con, "onchain", "-", "BTC", "1d", loc)[0] == fp:
                rows.append({"source": sf.source, "file": loc, "status": "unchanged", "rows": None})
                continue
            rows.append(ingest_onchain_file(con, files, sf, path, fp, context.log))
        if sheets.spreadsheet_key:
            long = sheets.read_metrics()
            io.replace_slice(
                con,
                "raw.onchain_metrics",
                long,
                {"source": long["source"].iloc[0]} if len(long) else {"source": "sheets"},
            )
            rows.append({"source": "sheets", "file": sheets.worksheet, "status": "loaded", "rows": len(long)})
        total, per = readers.onchain_metrics_summary(con)
        withdrawn = readers.onchain_withdrawn(con)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": int(total),
            "files": md_table(pd.DataFrame(rows)),
            "sources": md_table(per),
            "missing_markers_read": int(sum(r.get("missing_markers", 0) for r in rows)),
            "withdrawn_values": len(withdrawn),
            "withdrawn_days": int(withdrawn["date"].nunique()) if len(withdrawn) else 0,
            "withdrawn": md_table(withdrawn.head(50)) if len(withdrawn) else "none",
        }
    )


def ingest_onchain_file(con, files: FilesSource, sf, path, fp: str, log) -> dict:
    """Read one vendor file (garbage raises before anything is written), keep and flag the values it withdrew
    (:func:`keep_withdrawn`) and replace the source in one transaction; returns the file's metadata row."""
    loc = files.rel(path)
    long = files.read_onchain(sf, path)
    markers = long.attrs.get("missing_markers", {})
    long, flags = keep_withdrawn(long, readers.onchain_source_rows(con, sf.source), loc)
    replace_source_with_checkpoint(con, long, sf.source, loc, fp, flags)
    if len(flags):
        days = flags["date"].dt.date
        log.warning(
            f"{loc}: {len(flags)} stored value(s) on {days.nunique()} day(s) ({days.min()} .. {days.max()}) "
            "are missing in the new file; kept the stored values and flagged them in raw.onchain_withdrawn"
        )
    return {
        "source": sf.source,
        "file": loc,
        "status": "loaded",
        "rows": len(long),
        "missing_markers": sum(markers.values()),
        "withdrawn_kept": len(flags),
    }


def keep_withdrawn(long: pd.DataFrame, stored: pd.DataFrame, locator: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(rows to store, flags)``: the re-read ``long`` rows plus every stored value the file withdrew
    (:func:`pipeline.core.onchain.withdrawn_values`: a missing marker, removed row or column), so that no day's
    indicator input silently becomes missing; ``flags`` are the ``raw.onchain_withdrawn`` rows for them."""
    gone = withdrawn_values(stored, long)
    flags = gone.rename(columns={"value": "kept_value"}).assign(locator=locator, detected_at=io.now_utc())
    if len(gone):
        long = pd.concat([long, gone[long.columns]], ignore_index=True)
    return long, flags
