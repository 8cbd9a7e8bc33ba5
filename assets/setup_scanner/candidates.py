"""Group ``setup_scanner``: Fibonacci / AVWAP / ATR candidates with trade plans and their simulated outcomes.

Pure code: :mod:`pipeline.core.setups` (pivots, levels, AVWAP, plans, risk, outcomes) and
:mod:`pipeline.core.setup_gating` (EV, overrides, tuner). This asset reads candles, ATR and regimes for every
scanned symbol × timeframe, calls them and writes ``signals.setup_candidates``: every candidate with its plan, its
rejection reason (NULL = valid) and the outcome it would have had if taken on its own (the meta-model's label).
The whole table is recomputed when its inputs or the configuration change (about 20 series, seconds), else skipped.
"""

import dagster as dg
import pandas as pd

from assets.checks import count_result
from assets.common import POOL, if_unchanged, md_table, rounded
from assets.keys import FEATURES, GROUP_SETUPS, PLANS_CONSISTENT, REGIMES, SETUP_CANDIDATES
from pipeline.config import settings
from pipeline.core.setups import candidates, plan_outcomes
from pipeline.core.validity import inconsistent_plans
from resources.warehouse import WarehouseResource
from warehouse import io, readers

CODE_VERSION = "3"  # 3: outcomes obey the gap rule (issue 12 item 11)


def scan_series(bars: pd.DataFrame, sc) -> pd.DataFrame:
    """Candidates + independent outcomes of one series under the ``setup_scanner`` section ``sc`` (pure wiring)."""
    c = candidates(bars, sc.signals, sc.risk, bars["trend_regime"].to_numpy(), sc.costs)
    if c.empty:
        return c
    o = plan_outcomes(
        bars,
        c,
        sc.signals,
        costs=sc.costs,
        tp1_fraction=sc.execution.tp1_fraction,
        breakeven_after_tp1=sc.execution.breakeven_after_tp1,
        trail_atr=sc.execution.trail_atr,
    )
    reg = bars.iloc[c["bar"].to_numpy()]
    return pd.concat([c, o], axis=1).assign(
        trend_regime=reg["trend_regime"].to_numpy(), volatility_level=reg["volatility_level"].to_numpy()
    )


def _fingerprint(con, sc, symbols: list[str], tfs: list[str]) -> str:
    tf_list = ", ".join(repr(t) for t in tfs)
    return io.inputs_fingerprint(
        con,
        f"""SELECT symbol, timeframe, max(ts)::VARCHAR, count(*) FROM features.technical
                 WHERE timeframe IN ({tf_list}) GROUP BY ALL UNION ALL SELECT asset, fingerprint, epoch_ms(updated_at)::VARCHAR, 0
                 FROM ops.asset_inputs WHERE asset LIKE 'code:%' ORDER BY ALL""",
        extra=sc.model_dump_json() + ",".join(symbols) + CODE_VERSION,
    )


def scan(con, sc, ex: str, symbols: list[str], tfs: list[str]) -> pd.DataFrame:
    """Every candidate of every scanned series (series under 100 bars are skipped), with its ``candidate_id``
    (``symbol|timeframe|ts|side``)."""
    parts = []
    for sym in symbols:
        for tf in tfs:
            b = readers.bars(con, ex, sym, tf)
            if len(b) < 100:
                continue
            s = scan_series(b, sc)
            if len(s):
                parts.append(s.drop(columns=["bar"]).assign(exchange=ex, symbol=sym, timeframe=tf))
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    if len(out):
        out["candidate_id"] = (
            out["symbol"] + "|" + out["timeframe"] + "|" + out["ts"].astype(str) + "|" + out["side"].astype(str)
        )
    return out


def _report(out: pd.DataFrame) -> dict:
    valid = out[out["reject_reason"].isna()]
    closed = valid[valid["win"].notna()]
    summary = (
        closed.groupby(["symbol", "timeframe"])
        .agg(candidates=("win", "size"), win_rate=("win", "mean"), avg_net_pct=("net_pct", "mean"))
        .reset_index()
    )
    return {
        "dagster/row_count": len(out),
        "valid": len(valid),
        "rejected": md_table(out["reject_reason"].value_counts().rename_axis("reason").reset_index()),
        "outcomes": md_table(valid["status"].value_counts().rename_axis("status").reset_index()),
        "ungated_by_series": md_table(summary, 40),
        "ungated_win_rate": float(closed["win"].mean()) if len(closed) else None,
        "ungated_avg_net_pct": float(closed["net_pct"].mean()) if len(closed) else None,
    }


@dg.asset(
    key=SETUP_CANDIDATES,
    group_name=GROUP_SETUPS,
    pool=POOL,
    deps=[FEATURES, REGIMES],
    kinds={"duckdb", "numba"},
    code_version=CODE_VERSION,
    check_specs=[
        dg.AssetCheckSpec(
            PLANS_CONSISTENT,
            asset=SETUP_CANDIDATES,
            blocking=True,
            description="Valid plans: SL on the losing side, TP1 beyond entry, TP2 beyond TP1, "
            "0 < leverage <= max_leverage, positive size.",
        )
    ],
    description="Every Fibonacci retracement + AVWAP confluence candidate per symbol x timeframe x closed candle with "
    "its full trade plan (entry, SL, TP1/TP2, size, leverage, liquidation, net TP1), the rejection reason, "
    "and the outcome if taken alone (TP / SL / TP1_TRAIL / TIMEOUT / EXPIRED / OPEN, net %).",
)
def signals_setup_candidates(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    cfg = settings()
    sc, ex = cfg.setup_scanner, cfg.exchange.id
    symbols = sc.symbols or cfg.universe.symbols
    tfs = [t for t in sc.timeframes if t in cfg.universe.timeframes]
    with warehouse.connect() as con:
        fp = _fingerprint(con, sc, symbols, tfs)
        if skip := if_unchanged(
            context, con, "signals.setup_candidates", fp, "inputs unchanged; not rescanned", checks=(PLANS_CONSISTENT,)
        ):
            return skip
        out = scan(con, sc, ex, symbols, tfs)
        if out.empty:
            raise dg.Failure("no setup candidates in any series; check setup_scanner.timeframes and the features")
        with io.transaction(con):
            io.replace_table(con, "signals.setup_candidates", out)
            io.record_inputs(con, "signals.setup_candidates", fp)
    bad = inconsistent_plans(out[out["reject_reason"].isna()], sc.risk.max_leverage)
    return dg.MaterializeResult(
        metadata=rounded(_report(out)), check_results=[count_result(PLANS_CONSISTENT, bad, "inconsistent_plans")]
    )
