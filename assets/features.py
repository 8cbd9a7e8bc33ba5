"""Group ``features`` and ``regimes``: ``features.technical`` and ``regimes.market`` (incremental)."""

import dagster as dg
import pandas as pd

from assets.checks import count_result
from assets.common import POOL, SINGLE_RUN, IncrementalConfig, md_table, partition_metadata, rounded, run_slices
from assets.keys import (
    FEATURES,
    GROUP_FEATURES,
    GROUP_REGIMES,
    LABELS_VALID,
    MARKET_OHLCV,
    NO_NULLS_PAST_WARMUP,
    REGIMES,
)
from pipeline.config import settings
from pipeline.core.indicators import FEATURE_COLUMNS, MAX_WARMUP, technical_features
from pipeline.core.regimes import REGIME_COLUMNS, RegimeParams, classify_regimes
from pipeline.partitions import SYMBOL_TIMEFRAME
from resources.warehouse import WarehouseResource
from warehouse import io, readers
from warehouse.quality import cached, feature_nulls_past_warmup, invalid_regime_labels

#: bump when a formula changes: slices computed by another version are rebuilt from scratch
FEATURES_CODE = "1"
REGIMES_CODE = "2"  # 2: trend votes use the MACD line

NO_CANDLES = "no candles in market/ohlcv for this partition (no source data)"


def build_features_slice(
    con, exchange: str, symbol: str, tf: str, warmup: int, full_refresh: bool, done_marks: dict, have_marks: dict
) -> dict:
    """Append features for candles newer than the last stored feature row (re-reading ``warmup`` bars)."""
    f = {"exchange": exchange, "symbol": symbol, "timeframe": tf}
    if full_refresh:
        io.replace_slice(con, "features.technical", pd.DataFrame(), f, allow_empty=True)
    done, have = (None if full_refresh else done_marks.get((symbol, tf))), have_marks.get((symbol, tf))
    if have is None or (done is not None and done >= have):
        return {"symbol": symbol, "timeframe": tf, "new_rows": 0}
    bars = readers.tail(con, "market.ohlcv", "ts, high, low, close, volume", f, done, warmup)
    feats = technical_features(bars)
    feats["close"] = bars["close"].to_numpy()
    new = feats[feats["ts"] > (done if done is not None else -1)].assign(**f)
    if new.empty:
        return {"symbol": symbol, "timeframe": tf, "new_rows": 0}
    io.replace_slice(con, "features.technical", new, f, ts_from=int(new["ts"].min()))
    return {"symbol": symbol, "timeframe": tf, "new_rows": len(new)}


def build_regimes_slice(
    con,
    exchange: str,
    symbol: str,
    tf: str,
    params: RegimeParams,
    full_refresh: bool,
    done_marks: dict,
    have_marks: dict,
) -> dict:
    """Append regime labels for new feature rows; the run-length state continues from the stored row before."""
    f = {"exchange": exchange, "symbol": symbol, "timeframe": tf}
    if full_refresh:
        io.replace_slice(con, "regimes.market", pd.DataFrame(), f, allow_empty=True)
    done, have = (None if full_refresh else done_marks.get((symbol, tf))), have_marks.get((symbol, tf))
    if have is None or (done is not None and done >= have):
        return {"symbol": symbol, "timeframe": tf, "new_rows": 0}
    warm = params.vol_window + params.stability_window + 1
    feats = readers.tail(
        con, "features.technical", "ts, close, ema_20, ema_50, ema_200, adx_14, macd, atr_14", f, done, warm
    )
    prev = readers.regime_state_before(con, f, int(feats["ts"].iloc[0])) if done is not None and len(feats) else None
    reg = classify_regimes(feats, params, prev_state=prev)
    new = reg[reg["ts"] > (done if done is not None else -1)].assign(**f)
    if new.empty:
        return {"symbol": symbol, "timeframe": tf, "new_rows": 0}
    io.replace_slice(con, "regimes.market", new, f, ts_from=int(new["ts"].min()))
    return {"symbol": symbol, "timeframe": tf, "new_rows": len(new)}


@dg.asset(
    key=FEATURES,
    group_name=GROUP_FEATURES,
    partitions_def=SYMBOL_TIMEFRAME,
    backfill_policy=SINGLE_RUN,
    pool=POOL,
    kinds={"duckdb", "python"},
    deps=[MARKET_OHLCV],
    code_version=FEATURES_CODE,
    check_specs=[
        dg.AssetCheckSpec(
            NO_NULLS_PAST_WARMUP,
            asset=FEATURES,
            blocking=True,
            description=f"No NULL feature after the first {MAX_WARMUP} bars (volume z-score excepted).",
        )
    ],
    description="TA-Lib indicator features per candle: " + ", ".join(FEATURE_COLUMNS) + ". Warm-up rows are NULL.",
)
def features_technical(
    context: dg.AssetExecutionContext, config: IncrementalConfig, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    cfg, slices = settings(), run_slices(context)
    ex, warmup = cfg.exchange.id, cfg.features.warmup_bars
    with warehouse.connect() as con:
        done, have = io.watermarks(con, "features.technical", ex), io.watermarks(con, "market.ohlcv", ex)
        stale = io.stale_code_slices(con, "features.technical", ex, slices, FEATURES_CODE)
        rebuild = {(s, tf) for s, tf in slices if config.full_refresh or (s, tf) in stale}
        rep = pd.DataFrame(
            [build_features_slice(con, ex, s, tf, warmup, (s, tf) in rebuild, done, have) for s, tf in slices]
        )
        io.record_code(con, "features.technical", ex, sorted(stale), FEATURES_CODE)
        changed = {(r.symbol, r.timeframe) for r in rep.itertuples() if r.new_rows} | rebuild
        nulls = cached(con, "features.technical", ex, slices, changed, feature_nulls_past_warmup)
        ratio = readers.feature_null_ratio(con, ex, FEATURE_COLUMNS) if changed else pd.DataFrame()
        extent = readers.slice_extent(con, "features.technical", ex)
    bad = nulls[nulls["null_rows"] > 0] if len(nulls) else nulls
    partition_metadata(context, rep.merge(extent, how="left", on=["symbol", "timeframe"]), NO_CANDLES)
    return dg.MaterializeResult(
        metadata=rounded(
            {  # shared by every partition of the run; each partition's own figures: partition_metadata
                "run_new_rows": int(rep["new_rows"].sum()),
                "run_partitions": len(slices),
                "run_summary": md_table(rep),
                "null_ratio": md_table(ratio.T.reset_index().rename(columns={"index": "feature", 0: "null_ratio"})),
            }
        ),
        check_results=[
            dg.AssetCheckResult(
                check_name=NO_NULLS_PAST_WARMUP,
                passed=bool(bad.empty),
                severity=dg.AssetCheckSeverity.ERROR,
                metadata=rounded({"failing": md_table(bad)}),
            )
        ],
    )


@dg.asset(
    key=REGIMES,
    group_name=GROUP_REGIMES,
    partitions_def=SYMBOL_TIMEFRAME,
    backfill_policy=SINGLE_RUN,
    pool=POOL,
    kinds={"duckdb", "python"},
    deps=[FEATURES],
    code_version=REGIMES_CODE,
    check_specs=[
        dg.AssetCheckSpec(
            LABELS_VALID,
            asset=REGIMES,
            blocking=True,
            description="Labels in their vocabularies; confidence/stability in [0, 1].",
        )
    ],
    description="Trend regime (bull/bear/sideways), trend strength, volatility level, confidence and stability per "
    "candle; rules in pipeline/core/regimes.py.",
)
def regimes_market(
    context: dg.AssetExecutionContext, config: IncrementalConfig, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    cfg, slices = settings(), run_slices(context)
    ex, params = cfg.exchange.id, cfg.regimes
    with warehouse.connect() as con:
        done, have = io.watermarks(con, "regimes.market", ex), io.watermarks(con, "features.technical", ex)
        stale = io.stale_code_slices(con, "regimes.market", ex, slices, REGIMES_CODE)
        rebuild = {(s, tf) for s, tf in slices if config.full_refresh or (s, tf) in stale}
        rep = pd.DataFrame(
            [build_regimes_slice(con, ex, s, tf, params, (s, tf) in rebuild, done, have) for s, tf in slices]
        )
        io.record_code(con, "regimes.market", ex, sorted(stale), REGIMES_CODE)
        extent = readers.slice_extent(con, "regimes.market", ex)
        partition_metadata(context, rep.merge(extent, how="left", on=["symbol", "timeframe"]), NO_CANDLES)
        if not rep["new_rows"].any() and not config.full_refresh:
            return dg.MaterializeResult(
                metadata=rounded({"run_new_rows": 0, "run_status": "no new feature rows; nothing recomputed"}),
                check_results=[
                    dg.AssetCheckResult(
                        check_name=LABELS_VALID, passed=True, metadata={"note": "no rows written in this run"}
                    )
                ],
            )
        dist, invalid = readers.regime_distribution(con, ex), invalid_regime_labels(con, ex)
    return dg.MaterializeResult(
        metadata=rounded(
            {  # shared by every partition of the run; each partition's own figures: partition_metadata
                "run_new_rows": int(rep["new_rows"].sum()),
                "run_summary": md_table(rep),
                "distribution": md_table(dist, 100),
                "columns": ", ".join(REGIME_COLUMNS),
            }
        ),
        check_results=[count_result(LABELS_VALID, invalid, "invalid_rows")],
    )
