"""Group ``market``: analysis-ready candles for every configured timeframe, on-chain daily, sentiment."""

import dagster as dg
import pandas as pd

from assets.checks import candle_integrity_result, gap_budget_result, staleness_result
from assets.common import (
    POOL,
    SINGLE_RUN,
    IncrementalConfig,
    carried_forward,
    md_table,
    partition_metadata,
    rounded,
    run_slices,
    ts_iso,
    with_integrity,
)
from assets.keys import (
    CANDLE_INTEGRITY,
    CORE_COVERAGE,
    EXTERNAL_DATA_FOLDER,
    FRESH,
    GAPS_WITHIN_BUDGET,
    GROUP_MARKET,
    MARKET_OHLCV,
    ONCHAIN_DAILY,
    RAW_OHLCV,
    RAW_ONCHAIN_METRICS,
    SENTIMENT_DAILY,
)
from pipeline.config import settings
from pipeline.core.candles import EXTRA_COLUMNS, resample_ohlcv
from pipeline.core.onchain import normalise_onchain
from pipeline.core.timeframes import resample_source, timeframe_ms
from pipeline.partitions import SYMBOL_TIMEFRAME
from resources.files import FilesSource, content_hash
from resources.warehouse import WarehouseResource
from warehouse import io, readers
from warehouse.quality import cached, candle_integrity, gap_list

_SAME_SYMBOL_ANY_TF = dg.MultiPartitionMapping(
    {
        "symbol": dg.DimensionPartitionMapping("symbol", dg.IdentityPartitionMapping()),
        "timeframe": dg.DimensionPartitionMapping("timeframe", dg.AllPartitionMapping()),
    }
)
_PRICE_COLS = ["ts", "open", "high", "low", "close", "volume"] + EXTRA_COLUMNS


def build_market_slice(
    con,
    exchange: str,
    symbol: str,
    tf: str,
    drop_incomplete: bool,
    full_refresh: bool,
    raw_marks: dict,
    market_marks: dict,
    base: str | None = None,
) -> dict:
    """Append the new closed candles of one slice: native copy or resample (see ``resample_source``).

    ``raw_marks`` / ``market_marks`` are :func:`warehouse.io.watermarks` of raw.ohlcv / market.ohlcv; ``base`` is
    ``resample.base_timeframe`` (null = native where the source has the timeframe).
    """
    f = {"exchange": exchange, "symbol": symbol, "timeframe": tf}
    src = resample_source(tf, [t for (s, t) in raw_marks if s == symbol], base)
    out = {
        "symbol": symbol,
        "timeframe": tf,
        "origin": "none" if src is None else ("native" if src == tf else f"resampled:{src}"),
        "new_rows": 0,
    }
    if full_refresh:
        io.replace_slice(con, "market.ohlcv", pd.DataFrame(), f, allow_empty=True)
    if src is None:
        return out
    last = None if full_refresh else market_marks.get((symbol, tf))
    if last is not None and raw_marks[(symbol, src)] < last + (timeframe_ms(src) if src == tf else timeframe_ms(tf)):
        return out  # the source has nothing past what is built
    step = timeframe_ms(tf)
    start = -1 if last is None else (last + 1 if src == tf else last + step)
    raw = io.read_df(
        con,
        f"SELECT {', '.join(_PRICE_COLS)} FROM raw.ohlcv WHERE exchange=? AND symbol=? AND timeframe=? "
        "AND ts >= ? ORDER BY ts",
        [exchange, symbol, src, start],
    )
    if raw.empty:
        return out
    if src == tf:
        new = raw.assign(bar_count=1, expected_bars=1)
    else:
        new = resample_ohlcv(raw, src, tf, drop_incomplete=drop_incomplete)
        new = new[new["ts"] > (last if last is not None else -1)]  # NaN extras (absent in 15m/1m files) stay NaN
    if new.empty:  # e.g. the last period is still open
        return out
    new = new.assign(exchange=exchange, symbol=symbol, timeframe=tf, origin=out["origin"])
    io.replace_slice(con, "market.ohlcv", new, f, ts_from=int(new["ts"].min()))
    out["new_rows"] = len(new)
    return out


def freshness(
    con,
    exchange: str,
    slices: list[tuple[str, str]],
    origins: dict,
    now_ms: int | None,
    raw_marks: dict,
    market_marks: dict,
) -> pd.DataFrame:
    """Expected last closed candle per slice: implied by the source's last bar (files) or by ``now_ms`` (exchange)."""
    rows = []
    for s, tf in slices:
        org = origins.get((s, tf), "none")
        if org == "none":
            continue
        step = timeframe_ms(tf)
        last = market_marks.get((s, tf))
        src_tf = tf if org == "native" else org.split(":")[1]
        src_last = raw_marks[(s, src_tf)]
        if now_ms is not None:
            expected = (now_ms // step) * step - step
        else:  # last period whose final source bar is present
            src_step = timeframe_ms(src_tf)
            expected = ((src_last + src_step) // step) * step - step
        lag = 0 if last is None else max(0, (expected - last) // step)
        rows.append(
            {
                "symbol": s,
                "timeframe": tf,
                "last_ts": last,
                "expected_ts": expected,
                "lag_bars": int(lag),
                "age_hours": round((io.now_utc().value // 10**6 - (last or 0) - step) / 3.6e6, 1),
            }
        )
    return pd.DataFrame(rows, columns=["symbol", "timeframe", "last_ts", "expected_ts", "lag_bars", "age_hours"])


@dg.asset(
    key=MARKET_OHLCV,
    group_name=GROUP_MARKET,
    partitions_def=SYMBOL_TIMEFRAME,
    backfill_policy=SINGLE_RUN,
    pool=POOL,
    kinds={"duckdb", "python"},
    code_version="1",
    ins={"raw": dg.AssetIn(key=RAW_OHLCV, partition_mapping=_SAME_SYMBOL_ANY_TF, dagster_type=dg.Nothing)},
    check_specs=[
        dg.AssetCheckSpec(
            CANDLE_INTEGRITY,
            asset=MARKET_OHLCV,
            blocking=True,
            description="No duplicate ts, OHLC sanity, positive finite prices, ts on the timeframe grid (blocking: "
            "features wait for it).",
        ),
        dg.AssetCheckSpec(GAPS_WITHIN_BUDGET, asset=MARKET_OHLCV, description="Gap list; WARN over budget."),
        dg.AssetCheckSpec(FRESH, asset=MARKET_OHLCV, description="Last candle vs the expected last closed candle."),
    ],
    description="Analysis-ready closed candles for every configured timeframe: the exchange's own candles where the "
    "source has the timeframe, else resampled from the coarsest finer one (1m->5m, 1h->4h) over closed "
    "periods; bar_count < expected_bars flags periods with missing source bars (never filled).",
)
def market_ohlcv(
    context: dg.AssetExecutionContext, config: IncrementalConfig, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    cfg, slices = settings(), run_slices(context)
    ex, full, (drop, base) = (
        cfg.exchange.id,
        config.full_refresh,
        (cfg.resample.drop_incomplete, cfg.resample.base_timeframe),
    )
    with warehouse.connect() as con:
        raw_marks, marks = io.watermarks(con, "raw.ohlcv", ex), io.watermarks(con, "market.ohlcv", ex)
        dirty = io.dirty_slices(con, "market.ohlcv", ex, slices)  # raw rows rewritten (not appended): rebuild
        rep = []
        for s, tf in slices:
            with io.transaction(con):
                rep.append(build_market_slice(con, ex, s, tf, drop, full or (s, tf) in dirty, raw_marks, marks, base))
                if (s, tf) in dirty:
                    io.clear_dirty(con, "market.ohlcv", ex, [(s, tf)])
        rep = pd.DataFrame(rep)
        changed = {(r.symbol, r.timeframe) for r in rep.itertuples() if r.new_rows or full} | dirty
        integ = cached(
            con, "market.ohlcv", ex, slices, changed, lambda c, e, sl: candle_integrity(c, "market.ohlcv", e, sl)
        )
        gaps = gap_list(con, "market.ohlcv", ex, slices) if changed else pd.DataFrame({"note": [GAPS_UNCHANGED]})
        now_ms = None if cfg.source == "files" else int(io.now_utc().value // 10**6)
        origins = {(r.symbol, r.timeframe): r.origin for r in rep.itertuples()}
        fresh = freshness(con, ex, slices, origins, now_ms, raw_marks, io.watermarks(con, "market.ohlcv", ex))
        flagged = readers.incomplete_periods(con, ex)
    c = cfg.checks
    partition_metadata(context, with_integrity(rep, integ), NO_SOURCE)
    return dg.MaterializeResult(
        metadata={  # shared by every partition of the run; each partition's own figures: partition_metadata
            "run_new_rows": int(rep["new_rows"].sum()),
            "run_partitions": len(slices),
            "incomplete_periods_flagged": flagged,
            "run_summary": md_table(_slice_summary(rep, integ)),
        },
        check_results=[
            candle_integrity_result(integ, CANDLE_INTEGRITY, MARKET_OHLCV),
            gap_budget_result(integ, gaps, c.max_gap_bars, c.max_missing_fraction, MARKET_OHLCV),
            staleness_result(fresh, c.max_staleness_bars, MARKET_OHLCV),
        ],
    )


NO_SOURCE = "no source data: the source has neither this timeframe nor a finer one to resample"
GAPS_UNCHANGED = "no new candles; gap list unchanged since the last materialisation"


def _slice_summary(rep: pd.DataFrame, integ: pd.DataFrame) -> pd.DataFrame:
    """Per slice: new rows and origin beside its stored rows, time range and gaps."""
    cols = ["symbol", "timeframe", "rows", "first_ts", "last_ts", "n_gaps", "missing_bars"]
    summary = rep.merge(integ[cols], how="left", on=["symbol", "timeframe"])
    summary["first"], summary["last"] = summary["first_ts"].map(ts_iso), summary["last_ts"].map(ts_iso)
    return summary.drop(columns=["first_ts", "last_ts"])


@dg.asset(
    key=ONCHAIN_DAILY,
    group_name=GROUP_MARKET,
    pool=POOL,
    kinds={"duckdb", "python"},
    code_version="1",
    deps=[RAW_ONCHAIN_METRICS],
    check_specs=[
        dg.AssetCheckSpec(
            CORE_COVERAGE,
            asset=ONCHAIN_DAILY,
            blocking=True,
            description="Core columns cover >= min_onchain_coverage of days since 2011.",
        ),
        dg.AssetCheckSpec(FRESH, asset=ONCHAIN_DAILY, description="Days since the last core value (WARN)."),
    ],
    description="One row per UTC day: normalised on-chain columns with per-column source, available_at = D+1 00:00 "
    "UTC + publication lag. Column catalogue and coverage in market.onchain_columns.",
)
def market_onchain_daily(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    cfg = settings()
    with warehouse.connect() as con:
        fp = io.inputs_fingerprint(
            con,
            "SELECT fingerprint FROM raw.ingest_checkpoints WHERE source_kind='onchain' ORDER BY locator",
            extra=f"lag={cfg.onchain.publication_lag_hours};v=1",
        )
        if io.inputs_unchanged(con, "market.onchain_daily", fp):
            return dg.MaterializeResult(
                metadata=carried_forward(context, {"status": "inputs unchanged; not recomputed"}),
                check_results=_onchain_checks(con, cfg),
            )
        long = io.read_df(con, "SELECT date, source, metric, value FROM raw.onchain_metrics")
        long["date"] = pd.to_datetime(long["date"]).dt.as_unit("us")
        daily, report = normalise_onchain(long, cfg.onchain.publication_lag_hours)
        io.replace_table(con, "market.onchain_daily", daily, date_columns=("date",))
        io.replace_table(con, "market.onchain_columns", report, date_columns=("first_date", "last_date"))
        io.record_inputs(con, "market.onchain_daily", fp)
        checks = _onchain_checks(con, cfg)
    return dg.MaterializeResult(
        metadata=rounded(
            {
                "dagster/row_count": len(daily),
                "first_date": str(daily["date"].min().date()),
                "last_date": str(daily["date"].max().date()),
                "columns": len(report),
                "coverage": md_table(
                    report[["column", "unit", "first_date", "last_date", "coverage", "max_overlap_rel_diff"]], 80
                ),
            }
        ),
        check_results=checks,
    )


def _onchain_checks(con, cfg) -> list[dg.AssetCheckResult]:
    """Coverage of core columns since 2011 (blocking ERROR) and days since the last core value (WARN)."""
    report = io.read_df(con, "SELECT * FROM market.onchain_columns")
    core = report[report["core"]]
    low = core[core["coverage_since_2011"] < cfg.checks.min_onchain_coverage]
    last_core = pd.Timestamp(core["last_date"].min())
    days_behind = int((io.now_utc().normalize() - last_core).days)
    return [
        dg.AssetCheckResult(
            check_name=CORE_COVERAGE,
            passed=bool(low.empty),
            severity=dg.AssetCheckSeverity.ERROR,
            metadata=rounded(
                {
                    "below_threshold": md_table(low[["column", "coverage_since_2011"]]),
                    "threshold": cfg.checks.min_onchain_coverage,
                    "coverage": md_table(core[["column", "first_date", "last_date", "coverage_since_2011"]]),
                }
            ),
        ),
        dg.AssetCheckResult(
            check_name=FRESH,
            passed=days_behind <= 3,
            severity=dg.AssetCheckSeverity.WARN,
            metadata=rounded({"last_core_date": str(last_core.date()), "days_behind_today": days_behind}),
        ),
    ]


@dg.asset(
    key=SENTIMENT_DAILY,
    group_name=GROUP_MARKET,
    pool=POOL,
    kinds={"duckdb", "python"},
    code_version="1",
    deps=[EXTERNAL_DATA_FOLDER],
    check_specs=[dg.AssetCheckSpec(FRESH, asset=SENTIMENT_DAILY, description="Days since the last value (WARN).")],
    description="Crypto Fear & Greed Index (alternative.me) per UTC day with available_at = D+1 00:00 UTC + lag. "
    "Days missing at the source stay missing.",
)
def market_sentiment_daily(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, files: FilesSource
) -> dg.MaterializeResult:
    cfg = settings()
    path = files.fear_greed_path()
    fp = f"{content_hash(path) if path else None};lag={cfg.onchain.publication_lag_hours}"  # content, not mtime
    with warehouse.connect() as con:
        if io.inputs_unchanged(con, "market.sentiment_daily", fp):
            return dg.MaterializeResult(
                metadata=carried_forward(context, {"status": "source file unchanged; not re-read"}),
                check_results=[_sentiment_fresh(con)],
            )
        fng = files.read_fear_greed(cfg.onchain.publication_lag_hours)  # validates before anything is replaced
        io.replace_slice(con, "market.sentiment_daily", fng, {})
        io.record_inputs(con, "market.sentiment_daily", fp)
        check = _sentiment_fresh(con)
    full = pd.date_range(fng["date"].min(), fng["date"].max(), freq="D")
    missing = sorted(set(full) - set(fng["date"]))
    return dg.MaterializeResult(
        metadata=rounded(
            {
                "dagster/row_count": len(fng),
                "first_date": str(fng["date"].min().date()),
                "last_date": str(fng["date"].max().date()),
                "missing_days": ", ".join(str(d.date()) for d in missing) or "none",
                "preview": md_table(fng.tail(10)),
            }
        ),
        check_results=[check],
    )


def _sentiment_fresh(con) -> dg.AssetCheckResult:
    last = io.fetch_one(con.execute("SELECT max(date) FROM market.sentiment_daily"))[0]
    days_behind = int((io.now_utc().normalize() - pd.Timestamp(last)).days) if last is not None else 10**6
    return dg.AssetCheckResult(
        check_name=FRESH,
        passed=days_behind <= 3,
        severity=dg.AssetCheckSeverity.WARN,
        metadata=rounded({"last_date": str(last), "days_behind_today": days_behind}),
    )
