"""Group ``ingest``: ``raw.ohlcv`` (symbol × timeframe, incremental) and ``raw.onchain_metrics``."""

import dagster as dg
import pandas as pd

from assets.checks import candle_integrity_result, inputs_valid_result
from assets.common import (
    POOL,
    SINGLE_RUN,
    IncrementalConfig,
    md_table,
    partition_metadata,
    rounded,
    run_slices,
    ts_iso,
    with_integrity,
)
from assets.keys import (
    EXTERNAL_DATA_FOLDER,
    EXTERNAL_EXCHANGE,
    EXTERNAL_ONCHAIN_SHEET,
    GROUP_INGEST,
    INPUTS_VALID,
    RAW_OHLCV,
    RAW_ONCHAIN_METRICS,
)
from pipeline.config import settings
from pipeline.core.candles import EXTRA_COLUMNS, CandleValidationError
from pipeline.core.onchain import withdrawn_values
from pipeline.core.timeframes import timeframe_ms
from pipeline.partitions import SYMBOL_TIMEFRAME
from resources.exchange import ExchangeSource, utc_ms
from resources.files import FilesSource, file_fingerprint
from resources.sheets import SheetsSource
from resources.warehouse import WarehouseResource
from warehouse import io, readers
from warehouse.quality import cached, candle_integrity, checkpoints_without_rows

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
    r = _checkpoint_row(con, kind, exchange, symbol, tf, locator)
    return (r[0], r[1]) if r else (None, None)


def _checkpoint_row(con, kind: str, exchange: str, symbol: str, tf: str, locator: str) -> tuple | None:
    """``(fingerprint, last_ts, rows, file_stat)`` of one checkpoint, or None."""
    return io.fetch_one(
        con.execute(
            "SELECT fingerprint, last_ts, rows, file_stat FROM raw.ingest_checkpoints WHERE source_kind=? AND "
            "exchange=? AND symbol=? AND timeframe=? AND locator=?",
            [kind, exchange, symbol, tf, locator],
        )
    )


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
    stat: str | None = None,
) -> pd.DataFrame:
    """One ``raw.ingest_checkpoints`` row: what of ``locator`` is stored (fingerprint, last ``ts``, rows, and the
    file's ``size:mtime`` when the fingerprint was taken)."""
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
                "file_stat": stat,
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
    stat: str | None = None,
) -> None:
    """Upsert new candles and move the slice's checkpoint in one transaction (never one without the other)."""
    now = io.now_utc()
    cp = checkpoint_row(kind, exchange, symbol, tf, locator, fingerprint, last_ts, rows, now, stat)
    candles = candles.assign(exchange=exchange, symbol=symbol, timeframe=tf, locator=locator, ingested_at=now)
    io.upsert_many(con, [("raw.ohlcv", candles, CANDLE_KEYS), ("raw.ingest_checkpoints", cp, CHECKPOINT_KEYS)])


def replace_source_with_checkpoint(
    con,
    long: pd.DataFrame,
    source: str,
    locator: str,
    fingerprint: str,
    withdrawn: pd.DataFrame | None = None,
    stat: str | None = None,
) -> None:
    """Replace one vendor's on-chain rows, its ``raw.onchain_withdrawn`` flags (``withdrawn``: ``date, source,
    metric, kept_value, locator, detected_at``) and its file checkpoint (content ``fingerprint`` and file ``stat``)
    in one transaction (never one without the other)."""
    cp = checkpoint_row("onchain", "-", "BTC", "1d", locator, fingerprint, None, len(long), io.now_utc(), stat)
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


def _same_stored_rows(con, new: pd.DataFrame, exchange: str, symbol: str, tf: str, locator: str) -> bool:
    """True when every stored candle of ``locator`` is in ``new`` with the same values (the file only grew)."""
    cols = [c for c in ["open", "high", "low", "close", "volume", *EXTRA_COLUMNS] if c in new.columns]
    differs = " OR ".join(f"r.{c} IS DISTINCT FROM n.{c}" for c in cols)
    con.register("_new_candles", new)
    try:
        n = io.fetch_one(
            con.execute(
                f"""SELECT count(*) FROM raw.ohlcv r LEFT JOIN _new_candles n ON r.ts = n.ts
                WHERE r.exchange=? AND r.symbol=? AND r.timeframe=? AND r.locator=? AND (n.ts IS NULL OR {differs})""",
                [exchange, symbol, tf, locator],
            )
        )[0]
    finally:
        con.unregister("_new_candles")
    return n == 0


def _has_rows(con, exchange: str, symbol: str, tf: str, locator: str) -> bool:
    return bool(
        io.fetch_one(
            con.execute(
                "SELECT count(*) FROM (SELECT 1 FROM raw.ohlcv WHERE exchange=? AND symbol=? AND timeframe=? AND "
                "locator=? LIMIT 1)",
                [exchange, symbol, tf, locator],
            )
        )[0]
    )


def ingest_files_slice(
    con,
    files: FilesSource,
    exchange: str,
    symbol: str,
    tf: str,
    full_refresh: bool,
    now_ms: int | None = None,
    timeframes: list[str] | None = None,
) -> dict:
    """Ingest the changed files of one slice in **one transaction** (issue 13 items 3, 5, 7, 10).

    A file whose content hash is unchanged is not read (touching or restoring it identically costs one hash; an
    unchanged ``size:mtime`` costs nothing). A changed file that only grew appends its new rows; one whose stored
    rows changed (e.g. a bad candle removed) replaces its rows and marks ``market.ohlcv`` of the symbol (every
    ``timeframes``) for a rebuild. The slice's candle integrity is checked before the commit, so a bad slice is
    never committed. ``now_ms`` (wall clock) rejects future-dated candles.

    Raises:
        CandleValidationError: a file breaks a rule, or the written slice fails the integrity check; nothing of
            the slice (full-refresh delete included) is committed.
    """
    out = {"symbol": symbol, "timeframe": tf, "files": 0, "new_rows": 0, "skipped_unchanged": 0}
    with io.transaction(con):
        if full_refresh:
            io.replace_slice(
                con,
                "raw.ohlcv",
                pd.DataFrame(),
                {"exchange": exchange, "symbol": symbol, "timeframe": tf},
                allow_empty=True,
            )
            con.execute(
                "DELETE FROM raw.ingest_checkpoints WHERE source_kind='files' AND exchange=? AND symbol=? AND "
                "timeframe=?",
                [exchange, symbol, tf],
            )
        rewritten = False
        for path in files.ohlcv_files(exchange, symbol, tf):
            out["files"] += 1
            loc = files.rel(path)
            old = _checkpoint_row(con, "files", exchange, symbol, tf, loc)
            old_fp, last_ts, old_rows, old_stat = old if old else (None, None, None, None)
            stat, fp = file_fingerprint(path, old_stat, old_fp)
            if fp == old_fp and (not old_rows or _has_rows(con, exchange, symbol, tf, loc)):
                if stat != old_stat:  # touched or restored with identical bytes: remember the new stat only
                    cp = checkpoint_row("files", exchange, symbol, tf, loc, fp, last_ts, old_rows, io.now_utc(), stat)
                    io.upsert(con, "raw.ingest_checkpoints", cp, CHECKPOINT_KEYS)
                out["skipped_unchanged"] += 1
                continue
            df = files.read_ohlcv(path, tf, now_ms)  # raises CandleValidationError before anything is written
            stored = _has_rows(con, exchange, symbol, tf, loc)
            if last_ts is not None and stored and _same_stored_rows(con, df, exchange, symbol, tf, loc):
                new = df[df["ts"] > last_ts]
            else:  # first read, or the stored rows of this file changed (or vanished): replace them all
                rewritten = rewritten or stored
                con.execute(
                    "DELETE FROM raw.ohlcv WHERE exchange=? AND symbol=? AND timeframe=? AND locator=?",
                    [exchange, symbol, tf, loc],
                )
                new = df
            write_with_checkpoint(
                con, new, "files", exchange, symbol, tf, loc, fp, int(df["ts"].iloc[-1]), len(df), stat
            )
            out["new_rows"] += len(new)
        if rewritten:
            io.mark_dirty(con, "market.ohlcv", exchange, [(symbol, t) for t in (timeframes or [tf])])
        if out["new_rows"] or full_refresh:
            _assert_slice_integrity(con, exchange, symbol, tf)
    return out


def _assert_slice_integrity(con, exchange: str, symbol: str, tf: str) -> None:
    """The blocking ``candle_integrity`` rule on the uncommitted slice; raising rolls the slice's writes back."""
    integ = candle_integrity(con, "raw.ohlcv", exchange, [(symbol, tf)])
    if len(integ):
        r = integ.iloc[0]
        if r["duplicates"] or r["bad_ohlc"] or r["off_grid"]:
            raise CandleValidationError(
                f"raw.ohlcv {symbol} {tf}",
                None,
                "candle_integrity",
                f"duplicates={r['duplicates']} bad_ohlc={r['bad_ohlc']} off_grid={r['off_grid']}; not committed",
            )


def ingest_exchange_slice(
    con, exchange_src: ExchangeSource, exchange: str, symbol: str, tf: str, since: str, overlap: int = 0
) -> dict:
    """Sync one slice from the exchange, resuming after the stored checkpoint, ``overlap`` candles earlier
    (``exchange.overlap_candles``: those are fetched again and upserted), never before ``since``.

    The market type is recorded in ``raw.ohlcv.locator`` and the checkpoint's locator (``ccxt`` spot, ``ccxt:swap``;
    the symbol stays ``BASE/QUOTE``). Raises ValueError when the slice already holds candles of the other market
    type: spot and perpetual prices differ, one series must not mix them (use another warehouse file).
    """
    locator = exchange_src.locator
    other = io.fetch_one(
        con.execute(
            "SELECT locator, count(*) FROM raw.ohlcv WHERE exchange=? AND symbol=? AND timeframe=? "
            "AND (locator = 'ccxt' OR locator LIKE 'ccxt:%') AND locator <> ? GROUP BY locator LIMIT 1",
            [exchange, symbol, tf, locator],
        )
    )
    if other is not None:
        kind = "spot" if other[0] == "ccxt" else other[0].split(":", 1)[1]
        raise ValueError(
            f"raw.ohlcv holds {other[1]} {kind} candles of {symbol} {tf} from {exchange}; exchange.market_type is "
            f"{exchange_src.market_type!r}: one series cannot mix markets. Point TRADER_WAREHOUSE at another file "
            f"or set exchange.market_type back to {kind!r}"
        )
    _, last_ts = _checkpoint(con, "exchange", exchange, symbol, tf, locator)
    stored = io.max_ts(con, "raw.ohlcv", {"exchange": exchange, "symbol": symbol, "timeframe": tf})
    step = timeframe_ms(tf)
    back = (1 - overlap) * step
    since_ms = max(
        utc_ms(since), (last_ts + back) if last_ts is not None else 0, (stored + back) if stored is not None else 0
    )
    since_ms = -(-since_ms // step) * step  # align up to the timeframe grid

    def write_page(page: pd.DataFrame) -> None:
        write_with_checkpoint(
            con, page, "exchange", exchange, symbol, tf, locator, None, int(page["ts"].iloc[-1]), len(page)
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
            description="No duplicate ts, OHLC sanity, positive finite prices, ts on the timeframe grid; no file "
            "checkpoint pointing at an empty slice.",
        ),
        dg.AssetCheckSpec(
            INPUTS_VALID,
            asset=RAW_OHLCV,
            blocking=False,
            description="Every partition's input passed validation. A failing partition keeps its last good rows, is "
            "listed in ops.input_errors (file, row, rule) and fails alone: the other partitions and the downstream "
            "assets proceed (non-blocking ERROR).",
        ),
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
    ex, keys = cfg.exchange.id, [str(k) for k in context.partition_keys] if slices else []
    with warehouse.connect() as con:
        report, errors = [], []
        for (s, tf), key in zip(slices, keys):
            try:
                report.append(_ingest_slice(con, cfg, files, exchange, s, tf, config.full_refresh))
            except CandleValidationError as e:  # this partition fails alone (issue 13 item 9)
                context.log.error(f"raw/ingested_ohlcv partition {key} rejected: {e}")
                errors.append({"partition_key": key, "locator": e.source, "rule": e.rule, "message": str(e)})
                report.append({"symbol": s, "timeframe": tf, "new_rows": 0, "error": e.rule})
        errors = pd.DataFrame(errors, columns=["partition_key", "locator", "rule", "message"])
        io.replace_input_errors(con, "raw.ohlcv", keys, errors)
        changed = {(r["symbol"], r["timeframe"]) for r in report if r["new_rows"] or config.full_refresh}
        integ = cached(con, "raw.ohlcv", ex, slices, changed, lambda c, e, sl: candle_integrity(c, "raw.ohlcv", e, sl))
        orphans = checkpoints_without_rows(con, ex)
    per_slice = with_integrity(pd.DataFrame(report, columns=["symbol", "timeframe", "new_rows"]), integ)
    partition_metadata(context, per_slice, NO_SOURCE)
    return dg.MaterializeResult(
        metadata=rounded(
            {  # shared by every partition of the run; each partition's own figures: partition_metadata
                "source": cfg.source,
                "run_new_rows": int(sum(r["new_rows"] for r in report)),
                "run_partitions": len(slices),
                "failed_partitions": len(errors),
                "input_errors": md_table(errors[["partition_key", "message"]]),
                "run_summary": md_table(_summary(report, integ)),
            }
        ),
        check_results=[
            _with_orphans(candle_integrity_result(integ, "candle_integrity", RAW_OHLCV), orphans),
            inputs_valid_result(errors, RAW_OHLCV),
        ],
    )


NO_SOURCE = "no source data for this timeframe (market/ohlcv resamples it from a finer one where there is one)"


def _ingest_slice(con, cfg, files: FilesSource, exchange: ExchangeSource, s: str, tf: str, full: bool) -> dict:
    ex = cfg.exchange.id
    if cfg.source == "files":
        now = int(io.now_utc().value // 10**6)
        return ingest_files_slice(con, files, ex, s, tf, full, now, list(cfg.universe.timeframes))
    e = cfg.exchange
    return ingest_exchange_slice(con, exchange, ex, s, tf, e.since, e.overlap_candles)


def _summary(report: list[dict], integ: pd.DataFrame) -> pd.DataFrame:
    rep = pd.DataFrame(report)
    if integ.empty:
        return rep
    rep = rep.merge(
        integ[["symbol", "timeframe", "rows", "first_ts", "last_ts"]], how="left", on=["symbol", "timeframe"]
    )
    rep["first"], rep["last"] = rep["first_ts"].map(ts_iso), rep["last_ts"].map(ts_iso)
    return rep.drop(columns=["first_ts", "last_ts"])


def _with_orphans(res: dg.AssetCheckResult, orphans: pd.DataFrame) -> dg.AssetCheckResult:
    """``candle_integrity`` also fails when a file checkpoint points at an empty slice (issue 13 item 3)."""
    return dg.AssetCheckResult(
        check_name=res.check_name,
        asset_key=res.asset_key,
        passed=bool(res.passed and orphans.empty),
        severity=res.severity,
        metadata=rounded({**res.metadata, "checkpoints_without_rows": md_table(orphans)}),
        description=res.description,
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
            loc = files.rel(path)
            old = _checkpoint_row(con, "onchain", "-", "BTC", "1d", loc)
            stat, fp = file_fingerprint(path, old[3], old[0]) if old else file_fingerprint(path)
            if old and old[0] == fp:  # same content (a touched or restored file costs one hash, no re-read)
                if stat != old[3]:
                    cp = checkpoint_row("onchain", "-", "BTC", "1d", loc, fp, None, old[2], io.now_utc(), stat)
                    io.upsert(con, "raw.ingest_checkpoints", cp, CHECKPOINT_KEYS)
                rows.append({"source": sf.source, "file": loc, "status": "unchanged", "rows": None})
                continue
            rows.append(ingest_onchain_file(con, files, sf, path, fp, context.log, stat))
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
        metadata=rounded(
            {
                "dagster/row_count": int(total),
                "files": md_table(pd.DataFrame(rows)),
                "sources": md_table(per),
                "missing_markers_read": int(sum(r.get("missing_markers", 0) for r in rows)),
                "withdrawn_values": len(withdrawn),
                "withdrawn_days": int(withdrawn["date"].nunique()) if len(withdrawn) else 0,
                "withdrawn": md_table(withdrawn.head(50)) if len(withdrawn) else "none",
            }
        )
    )


def ingest_onchain_file(con, files: FilesSource, sf, path, fp: str, log, stat: str | None = None) -> dict:
    """Read one vendor file (garbage raises before anything is written), keep and flag the values it withdrew
    (:func:`keep_withdrawn`) and replace the source in one transaction; returns the file's metadata row."""
    loc = files.rel(path)
    long = files.read_onchain(sf, path)
    markers = long.attrs.get("missing_markers", {})
    long, flags = keep_withdrawn(long, readers.onchain_source_rows(con, sf.source), loc)
    replace_source_with_checkpoint(con, long, sf.source, loc, fp, flags, stat)
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
