"""Group ``alpha_portfolio``: the hourly rebalance backtest of the 10-pair book on the engine (``backtest/alpha_portfolio``).

The stored targets (``signals.alpha_targets``) go through the one engine with one shared cash account
(:func:`pipeline.core.alpha_portfolio.run_book`: next-open taker fills with the cost model's fees and slippage, ATR
stop and trail, drawdown scaling); the same targets without the drawdown scaling; equal-weight buy-and-hold of the
universe and buy-and-hold BTC. Figures from the project's one :func:`pipeline.core.metrics.metrics`. Rows in
``backtest.*`` with desk ``alpha_portfolio`` (``warehouse.runs.write_backtest``).
"""

import dataclasses
import hashlib
import json

import dagster as dg
import pandas as pd

from assets.checks import books_reconcile_result
from assets.common import POOL, if_unchanged, md_table, rounded
from assets.keys import ACCOUNTING_RECONCILES, ALPHA_BACKTEST, ALPHA_TARGETS, GROUP_ALPHA
from pipeline.config import settings
from pipeline.core.alpha_portfolio import (
    HOUR_MS,
    benchmarks,
    book_metrics,
    engine_limits,
    engine_params,
    exposure_by_regime,
    panel_of,
    run_book,
    weights_of,
)
from pipeline.core.backtest import with_benchmark
from pipeline.core.metrics import METRICS_VERSION, metrics
from resources.warehouse import WarehouseResource
from warehouse import io, readers, runs

CODE_VERSION = "1"
TIMEFRAME = "1h"
DESK = "alpha_portfolio"
#: the books: strategy → drawdown scaling on
BOOKS = {"alpha_book": True, "alpha_book_no_dd": False}
COMPARE = (
    "total_return",
    "annual_return",
    "volatility",
    "sharpe",
    "sortino",
    "max_drawdown",
    "turnover",
    "cost_drag",
    "breakeven_cost_bps",
    "exposure",
    "psr",
    "dsr",
)


def run_books(
    scores: pd.DataFrame, candles: pd.DataFrame, targets: pd.DataFrame, cfg, baseline=None, variant: str = ""
) -> dict:
    """Every book and benchmark: ``{"books": {name + variant: (book, trades, metrics)}, "bench": {name: (curve,
    metrics)}, "exposure": per regime of the main book, "panel": the panel}``; ``baseline`` (``(run_id, metrics)`` of
    the research baseline's newest run, its own period) is added to ``bench`` as ``research_baseline``; ``variant``
    (e.g. ``@fee12bps_slip5bps``, :func:`with_costs`) names books run at other costs than the configuration's."""
    ap = cfg.alpha_portfolio
    panel = panel_of(scores, candles, list(cfg.universe.symbols))
    w = weights_of(targets, panel)
    books = {
        name + variant: book_metrics(run_book(panel.ts, panel.ohlc, panel.atr, w, panel.symbols, ap, drawdown_scaling=dd),
                           ap.backtest.n_trials)
        for name, dd in BOOKS.items()
    }  # fmt: skip
    bench = {
        k: (v, metrics(v["ts"].to_numpy(), v["equity"].to_numpy(), known_after_ms=HOUR_MS))
        for k, v in benchmarks(panel, ap.backtest.init_cash).items()
    }
    if baseline is not None:
        bench["research_baseline"] = (None, {"run_id": baseline[0], **baseline[1]})
    return {
        "books": books,
        "bench": bench,
        "exposure": exposure_by_regime(books["alpha_book" + variant][0], panel),
        "panel": panel,
    }


def compare_table(out: dict) -> pd.DataFrame:
    """One row per book and benchmark, the :data:`COMPARE` figures."""
    rows = [{"": k, **{m: v[2].get(m) for m in COMPARE}} for k, v in out["books"].items()]
    return pd.DataFrame(rows + [{"": k, **{m: v[1].get(m) for m in COMPARE}} for k, v in out["bench"].items()])


def _rows(name: str, book: tuple, out: dict, scores: pd.DataFrame, cfg, run_id_suffix: str, dagster_run_id: str):
    port, trades, m = book
    ap = cfg.alpha_portfolio
    panel = out["panel"]
    sources = scores["source"].value_counts().to_dict() if "source" in scores else {}
    row = runs.backtest_run_row(
        run_id=f"{name}-{run_id_suffix}",
        desk=DESK,
        strategy=name,
        sample=f"signals.alpha_scores as stored (rows per source: {sources})",
        period_start=pd.Timestamp(int(panel.ts[0]), unit="ms"),
        period_end=pd.Timestamp(int(panel.ts[-1]), unit="ms"),
        timeframe=TIMEFRAME,
        universe=list(panel.symbols),
        params={
            "sources": sources,
            "drawdown_scaling": BOOKS[name.split("@")[0]],
            "engine": engine_params(ap).to_dict(),
            "limits": dataclasses.asdict(engine_limits(ap, drawdown_scaling=BOOKS[name.split("@")[0]])),
            "book": json.loads(ap.model_dump_json()),
        },
        costs=ap.execution.costs.percent(),
        metrics=runs.clean_metrics(m),
        benchmark={k: runs.clean_metrics(v[1]) for k, v in out["bench"].items()},
        per_symbol=json.dumps({"exposure_by_regime": out["exposure"].round(6).to_dict(orient="records")}),
        model_name=None,
        model_run_id=",".join(sorted(str(v) for v in scores["model_version"].dropna().unique()))
        if "model_version" in scores and scores["model_version"].notna().any()
        else None,
        mlflow_run_id=None,
        code_version=CODE_VERSION,
        dagster_run_id=dagster_run_id,
    )
    t = runs.simulator_trades(trades.rename(columns={"asset": "symbol"})) if len(trades) else None
    bh = out["bench"]["buy_and_hold_universe"][0]
    cols = ["ts", "equity", "cash", "position_value", "gross_exposure", "n_positions"]
    return row, t, with_benchmark(port[cols], bh, ap.backtest.init_cash)


def write_books(con, out: dict, scores: pd.DataFrame, cfg, fp: str, dagster_run_id: str, record: bool = True) -> str:
    """Every book's ``backtest.*`` rows (replacing the desk's earlier runs of each strategy) and, with ``record``, the
    input fingerprint, in one transaction; returns the run-id suffix (a hash of the inputs and the configuration)."""
    suffix = hashlib.sha256((fp + cfg.alpha_portfolio.model_dump_json()).encode()).hexdigest()[:12]
    with io.transaction(con):
        for name, book in out["books"].items():
            runs.write_backtest(
                con, *_rows(name, book, out, scores, cfg, suffix, dagster_run_id), replace_strategy=True
            )
        if record:
            io.record_inputs(con, "backtest.alpha_portfolio", fp)
    return suffix


class AlphaBacktestConfig(dg.Config):
    """Run configuration of ``backtest/alpha_portfolio`` (``trader alpha backtest --fee-bps … --slippage-bps …``):
    costs other than ``alpha_portfolio.execution.costs``, bps per side. The books are then run at those costs and
    stored as their own strategies (``alpha_book@fee12bps_slip5bps``) beside the configuration's, whose skip
    fingerprint they leave alone. The targets are not re-planned: their cost-adjusted scores keep the configured
    costs, so this measures what the same decisions would have earned at other costs."""

    fee_bps: float | None = None
    slippage_bps: float | None = None


def with_costs(cfg, run: AlphaBacktestConfig):
    """``(cfg, variant)``: ``cfg`` with ``run``'s costs in ``alpha_portfolio.execution.costs`` (a copy) and the
    strategy-name suffix naming them, or ``(cfg, "")`` when ``run`` sets none."""
    if run.fee_bps is None and run.slippage_bps is None:
        return cfg, ""
    out = cfg.model_copy(deep=True)
    c = out.alpha_portfolio.execution.costs
    if run.fee_bps is not None:
        c.taker_fee_bps = c.maker_fee_bps = float(run.fee_bps)
    if run.slippage_bps is not None:
        c.slippage_bps = float(run.slippage_bps)
    return out, f"@fee{c.taker_fee_bps:g}bps_slip{c.slippage_bps:g}bps"


@dg.asset(
    key=ALPHA_BACKTEST,
    group_name=GROUP_ALPHA,
    pool=POOL,
    deps=[ALPHA_TARGETS],
    kinds={"numba", "duckdb"},
    code_version=CODE_VERSION,
    check_specs=[
        dg.AssetCheckSpec(
            ACCOUNTING_RECONCILES,
            asset=ALPHA_BACKTEST,
            blocking=True,
            description="Each book's final equity = initial cash + sum of trade PnL.",
        )
    ],
    description="Hourly rebalance backtest of the alpha book over the whole history of signals.alpha_targets on the "
    "engine (one shared cash account, next-open taker fills with fees and slippage, ATR stop 1.3 / trail after "
    "0.8 ATR, drawdown scaling 5 %/10 %), the same targets without drawdown scaling, equal-weight buy-and-hold of the "
    "universe and buy-and-hold BTC; exposure by regime. Rows in backtest.* with desk 'alpha_portfolio'.",
)
def backtest_alpha_portfolio(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, config: AlphaBacktestConfig
) -> dg.MaterializeResult:
    cfg, variant = with_costs(settings(), config)
    ap = cfg.alpha_portfolio
    with warehouse.connect() as con:
        baseline = readers.latest_backtest(con, "research")
        fp = io.inputs_fingerprint(
            con,
            readers.asset_fingerprints(["signals.alpha_targets"]),
            CODE_VERSION + METRICS_VERSION + ap.model_dump_json() + str(baseline and baseline[0]) + variant,
        )
        if not variant and (skip := if_unchanged(context, con, TABLE, fp, SKIPPED, checks=(ACCOUNTING_RECONCILES,))):
            return skip
        targets = readers.alpha_targets(con)
        if targets.empty:
            return dg.MaterializeResult(
                metadata={"status": "signals.alpha_targets is empty; nothing to backtest"},
                check_results=[books_reconcile_result({}, ap.backtest.init_cash)],
            )
        scores = readers.alpha_scores(con, cfg.exchange.id)
        candles = readers.candles_long(
            con, cfg.exchange.id, list(cfg.universe.symbols), TIMEFRAME, int(scores["ts"].min())
        )
        out = run_books(scores, candles, targets, cfg, baseline, variant)
        suffix = write_books(con, out, scores, cfg, fp, context.run_id, record=not variant)
    finals = {k: (float(b[0]["equity"].iloc[-1]), b[1]) for k, b in out["books"].items()}
    return dg.MaterializeResult(
        metadata=rounded(
            {
                "run_ids": ", ".join(f"{n}-{suffix}" for n in out["books"]),
                "costs": "next-open taker fills: taker {taker_fee_bps} bps + slippage {slippage_bps} bps per side".format(
                    **ap.execution.costs.model_dump()
                ),
                "versus_benchmarks": md_table(compare_table(out)),
                "exposure_by_regime": md_table(out["exposure"]),
                "sql": "SELECT strategy, metrics FROM backtest.runs WHERE desk = 'alpha_portfolio'",
            }
        ),
        check_results=[books_reconcile_result(finals, ap.backtest.init_cash)],
    )


SKIPPED = "targets unchanged; not re-run (see backtest.runs)"
TABLE = "backtest.alpha_portfolio"  # its input fingerprint's name in ops.asset_inputs
