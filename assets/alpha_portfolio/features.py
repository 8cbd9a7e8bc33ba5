"""Group ``alpha_portfolio``: ``features.alpha`` (the 13 seed features per asset and hour) and
``regimes.alpha_market`` (trend / chop / down on BTC and breadth, with hysteresis). Both are recomputed in full when
their inputs change (the 10 pairs' hourly history takes seconds: :mod:`pipeline.core.alpha_features`)."""

import dagster as dg
import pandas as pd

from assets.alpha_portfolio.common import TIMEFRAME, tiers_of
from assets.common import POOL, if_unchanged, md_table, rounded
from assets.keys import ALPHA_FEATURES, ALPHA_REGIME, GROUP_ALPHA, MARKET_OHLCV
from pipeline.config import settings
from pipeline.core.alpha_features import FEATURE_TABLE_COLUMNS, alpha_features, market_regime, regime_summary
from resources.warehouse import WarehouseResource
from warehouse import io, readers

CODE_VERSION = "1"
UNCHANGED = "inputs unchanged; not recomputed"


@dg.asset(
    key=ALPHA_FEATURES,
    group_name=GROUP_ALPHA,
    pool=POOL,
    deps=[MARKET_OHLCV],
    kinds={"duckdb"},
    code_version=CODE_VERSION,
    description="The seed's 13 features per universe asset and 1h bar (returns 1/3/6/24h, EMA z-scores, RSI, "
    "Bollinger position, realised volatility, ATR, ATR %, drawdown from the running peak, tier), point-in-time "
    "(pipeline/core/alpha_features.py).",
)
def features_alpha(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    cfg = settings()
    ex, symbols, p = cfg.exchange.id, cfg.universe.symbols, cfg.alpha_portfolio.features
    tiers = tiers_of(cfg, symbols)
    with warehouse.connect() as con:
        fp = io.inputs_fingerprint(
            con,
            f"SELECT symbol, max(ts), count(*) FROM market.ohlcv WHERE timeframe = '{TIMEFRAME}' GROUP BY ALL ORDER BY ALL",
            extra=p.model_dump_json() + str(sorted(tiers.items())) + CODE_VERSION,
        )
        if skip := if_unchanged(context, con, "features.alpha", fp, UNCHANGED, require_table=True):
            return skip
        frames = []
        for s in symbols:
            o = readers.candles(con, ex, s, TIMEFRAME)
            if not o.empty:
                frames.append(alpha_features(o, tiers[s], p).assign(exchange=ex, symbol=s, timeframe=TIMEFRAME))
        df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        with io.transaction(con):
            con.execute("DELETE FROM features.alpha WHERE exchange = ? AND timeframe = ?", [ex, TIMEFRAME])
            if not df.empty:
                io.upsert(con, "features.alpha", df, ["exchange", "symbol", "timeframe", "ts"])
            io.record_inputs(con, "features.alpha", fp)
    per = (
        df.groupby("symbol").agg(
            rows=("ts", "size"), tier=("tier", "first"), null_rvol=("rvol_24h", lambda x: x.isna().sum())
        )
        if not df.empty
        else pd.DataFrame()
    )
    return dg.MaterializeResult(
        metadata=rounded(
            {
                "rows": len(df),
                "symbols": len(frames),
                "columns": ", ".join(FEATURE_TABLE_COLUMNS),
                "per_symbol": md_table(per.reset_index()),
            }
        )
    )


@dg.asset(
    key=ALPHA_REGIME,
    group_name=GROUP_ALPHA,
    pool=POOL,
    deps=[ALPHA_FEATURES],
    kinds={"duckdb"},
    code_version=CODE_VERSION,
    description="Market regime per hour (trend / chop / down): BTC's close against its EMAs and the universe's "
    "breadth, with hysteresis (confirmation and minimum dwell; alpha_portfolio.regime).",
)
def regimes_alpha_market(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    cfg = settings()
    ex, p = cfg.exchange.id, cfg.alpha_portfolio.regime
    with warehouse.connect() as con:
        fp = io.inputs_fingerprint(
            con,
            f"SELECT symbol, max(ts), count(*) FROM features.alpha WHERE timeframe = '{TIMEFRAME}' GROUP BY ALL ORDER BY ALL",
            extra=p.model_dump_json() + CODE_VERSION,
        )
        if skip := if_unchanged(context, con, "regimes.alpha_market", fp, UNCHANGED, require_table=True):
            return skip
        f = readers.alpha_features(con, ex, TIMEFRAME)
        if p.symbol not in set(f["symbol"]):
            raise dg.Failure(f"alpha_portfolio.regime.symbol {p.symbol} has no rows in features.alpha")
        closes = f.pivot(index="ts", columns="symbol", values="close").sort_index()
        reg = market_regime(closes, p)
        with io.transaction(con):
            con.execute("DELETE FROM regimes.alpha_market")
            io.upsert(con, "regimes.alpha_market", reg, ["ts"])
            io.record_inputs(con, "regimes.alpha_market", fp)
    summary = regime_summary(reg)
    return dg.MaterializeResult(metadata=rounded({"rows": len(reg), **summary, "last_regime": reg["regime"].iloc[-1]}))
