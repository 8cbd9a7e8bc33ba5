"""Group ``setup_scanner``: gated versus ungated signals versus buy-and-hold (``backtest/setup_scanner``).

Both books run through the same engine as live signals. ``setup_scanner.book: shared`` (default): one cash account of
``init_cash`` for every symbol × timeframe, each plan risk-sized on its equity, at most ``max_positions`` open
(:func:`assets.setup_scanner.common.execute_book`). ``sleeves``: one sleeve per symbol × timeframe of equal capital
(:func:`assets.setup_scanner.common.execute`); sleeves without a signal hold their cash, so the books share one
capital base. Rows in ``backtest.*`` with desk ``setup_scanner`` (``warehouse.runs.write_backtest``).
"""

import hashlib
import json

import dagster as dg
import numpy as np
import pandas as pd

from assets.checks import books_reconcile_result
from assets.common import POOL, if_unchanged, md_table, png_md, rounded
from assets.keys import ACCOUNTING_RECONCILES, GROUP_SETUPS, SETUP_BACKTEST, SETUPS
from assets.setup_scanner.common import CODE_VERSION, chain_fingerprint, execute, execute_book, model_in_force
from pipeline.config import settings
from pipeline.core.backtest import (
    SUMMARY_METRICS,
    buy_and_hold,
    combine_sleeves,
    equity_plot,
    with_benchmark,
)
from pipeline.core.metrics import METRICS_VERSION, N_TRIALS, metrics
from pipeline.core.setup_signals import execution_params
from pipeline.core.timeframes import timeframe_ms
from resources.mlflow_tracking import MlflowTracking
from resources.warehouse import WarehouseResource
from warehouse import io, readers, runs


def sleeve_capital(sc, ungated: pd.DataFrame) -> tuple[int, float]:
    """``(sleeves, capital of each)``: one equal sleeve per symbol × timeframe that has candidates."""
    n = ungated.groupby(["symbol", "timeframe"]).ngroups
    return n, sc.init_cash / max(1, n)


def run_books(con, sc, exchange: str, gated: pd.DataFrame, ungated: pd.DataFrame, score: str, start: int):
    """``({book: (portfolio per bar, trades, metrics)}, closes of the universe)`` of the gated and the ungated book."""
    sleeves_n, each = sleeve_capital(sc, ungated)
    books, cache = {}, {}
    for name, sig in (("setup_gated", gated), ("setup_ungated", ungated)):
        if sc.book == "shared":  # one cash account, risk-sized on its equity, at most sc.max_positions open
            port, trades, closes = execute_book(con, sc, exchange, sig, score, start, cache)
        else:
            _, sleeves, closes = execute(con, sc, exchange, sig, score, each, start, cache)
            port = combine_sleeves(sleeves, each)
            port["equity"] += each * (sleeves_n - len(sleeves))  # sleeves with no signal still hold their cash
            trades = pd.concat([r.trades for r in sleeves.values()], ignore_index=True) if sleeves else pd.DataFrame()
        closed = trades[trades["exit_reason"] != "open"] if len(trades) else trades
        m = metrics(
            port["ts"].to_numpy(),
            port["equity"].to_numpy(),
            closed,
            port["gross_exposure"].to_numpy(),
            known_after_ms=known_after_ms(sc),
            n_trials=N_TRIALS[name],
        )
        books[name] = (port, trades, m)
    return books, closes


def known_after_ms(sc) -> int:
    """When a value of the books' union bar grid is known at the latest: one bar of the longest timeframe after its
    time (a sleeve's equity is marked at its bar's close), so the daily closes of the metrics never look ahead."""
    return max(timeframe_ms(tf) for tf in sc.timeframes)


def book_rows(
    name: str, book: tuple, run: dict, sc, bench: pd.DataFrame, bm: dict, mlflow_run_id: str | None = None
) -> tuple[dict, pd.DataFrame | None, pd.DataFrame]:
    """``(backtest.runs row, trades, equity)`` of one book; ``run`` holds the shared ``run_id`` suffix, mode, period,
    universe, sleeve capital, model version and Dagster run id; ``mlflow_run_id``: the book's MLflow run."""
    port, trades, m = book
    row = runs.backtest_run_row(
        run_id=f"{name}-{run['suffix']}",
        desk="setup_scanner",
        strategy=name,
        sample="out_of_sample",
        period_start=pd.Timestamp(run["start"], unit="ms"),
        period_end=pd.Timestamp(run["end"], unit="ms"),
        timeframe=",".join(sc.timeframes),
        universe=run["universe"],
        params={
            "gate_mode": run["mode"],
            "book": sc.book,
            "max_positions": sc.max_positions,
            **execution_params(
                sc.signals, sc.risk, sc.execution, sc.costs, run["each"] if sc.book == "sleeves" else sc.init_cash
            ).to_dict(),
        },
        costs=sc.costs.percent(),
        metrics=runs.clean_metrics(m),
        benchmark=runs.clean_metrics(bm),
        per_symbol=None,
        model_name=sc.meta.name,
        model_run_id=run["model_version"],
        mlflow_run_id=mlflow_run_id,
        code_version=CODE_VERSION,
        dagster_run_id=run["dagster_run_id"],
    )
    t = (
        runs.simulator_trades(trades).assign(symbol=trades["symbol"] + "|" + trades["timeframe"])
        if len(trades)
        else None
    )
    return row, t, with_benchmark(port, bench, sc.init_cash)


@dg.asset(
    key=SETUP_BACKTEST,
    group_name=GROUP_SETUPS,
    pool=POOL,
    deps=[SETUPS],
    kinds={"numba", "duckdb", "mlflow"},
    code_version=CODE_VERSION,
    check_specs=[
        dg.AssetCheckSpec(
            ACCOUNTING_RECONCILES,
            asset=SETUP_BACKTEST,
            blocking=True,
            description="Each run's final equity = initial cash + sum of trade PnL.",
        )
    ],
    description="Gated versus ungated setup signals versus equal-weight buy-and-hold over the same out-of-sample "
    "period (from the meta-model's first calibrated fold), through the shared simulator with maker/taker "
    "fees and slippage; one shared-cash book (setup_scanner.book / max_positions). Rows in backtest.* with desk "
    "'setup_scanner'; one MLflow run per book (experiment backtests) with buy-and-hold as bh_* and the equity plot.",
)
def backtest_setup_scanner(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, mlflow: MlflowTracking
) -> dg.MaterializeResult:
    cfg = settings()
    sc = cfg.setup_scanner
    with warehouse.connect() as con:
        fp = chain_fingerprint(con, sc, model_in_force(con, sc)) + METRICS_VERSION  # new definitions re-score
        if skip := if_unchanged(context, con, "backtest.setup_scanner", fp, SKIPPED, checks=(ACCOUNTING_RECONCILES,)):
            return skip
        gated = readers.table(con, "signals.setups")
        if gated.empty:
            raise dg.Failure("signals.setups is empty; nothing to backtest")
        start, mode = int(gated["ts"].min()), str(gated["gate_mode"].iloc[0])
        ungated = readers.valid_candidates(con, start, ordered=False).assign(ev_pct=0.0, p_win=np.nan)
        books, closes = run_books(
            con, sc, cfg.exchange.id, gated, ungated, "p_win" if mode == "p_win" else "ev_pct", start
        )
        end = int(max(b[0]["ts"].max() for b in books.values()))
        bench = buy_and_hold(closes, start, end, sc.init_cash)
        bm = metrics(bench["ts"].to_numpy(), bench["equity"].to_numpy(), known_after_ms=known_after_ms(sc))
        run = _shared_run(sc, gated, ungated, closes, mode, start, end, context.run_id)
        logged = {name: _log_book(mlflow, name, book, run, sc, bench, bm, context) for name, book in books.items()}
        with io.transaction(con):
            for name, book in books.items():
                row = book_rows(name, book, run, sc, bench, bm, logged[name].run_id)
                runs.write_backtest(con, *row, replace_strategy=True)
            io.record_inputs(con, "backtest.setup_scanner", fp)
    finals = {k: (float(p["equity"].iloc[-1]), t) for k, (p, t, _) in books.items()}
    return dg.MaterializeResult(
        metadata=rounded(
            {
                "run_ids": ", ".join(f"{n}-{run['suffix']}" for n in books),
                **_report(books, bm, bench, mode, start, end, sc),
                **{f"mlflow_{n}": dg.MetadataValue.url(lr.url) for n, lr in logged.items()},
            }
        ),
        check_results=[books_reconcile_result(finals, sc.init_cash)],
    )


SKIPPED = "signals unchanged; not re-run (see backtest.runs)"


def _equity_png(port: pd.DataFrame, bench: pd.DataFrame, title: str) -> bytes:
    """Equity/drawdown plot of one book with buy-and-hold on the book's bars."""
    t = port["ts"].to_numpy()
    return equity_plot(
        t, port["equity"].to_numpy(), np.interp(t, bench["ts"].to_numpy(), bench["equity"].to_numpy()), title
    )


def _log_book(mlflow: MlflowTracking, name: str, book: tuple, run: dict, sc, bench: pd.DataFrame, bm: dict, context):
    """One MLflow run (experiment ``backtests``) of one book: its metrics dict as produced, buy-and-hold as ``bh_*``,
    the equity plot."""
    port, _, m = book
    c = sc.costs
    return mlflow.log_backtest(
        f"{name}-{run['suffix']}",
        {
            "desk": "setup_scanner",
            "dagster_run_id": context.run_id,
            "dagster_asset_key": SETUP_BACKTEST.to_user_string(),
            "code_version": CODE_VERSION,
            "sample": "out_of_sample",
            "model_version": run["model_version"],
            "data_start": pd.Timestamp(run["start"], unit="ms").isoformat(),
            "data_end": pd.Timestamp(run["end"], unit="ms").isoformat(),
        },
        {
            "strategy": name,
            "gate_mode": run["mode"],
            "timeframes": ",".join(sc.timeframes),
            "symbols": ",".join(run["universe"]),
            "sleeve_capital": round(run["each"], 2),
            "maker_fee_bps": c.maker_fee_bps,
            "taker_fee_bps": c.taker_fee_bps,
            "slippage_bps": c.slippage_bps,
        },
        runs.clean_metrics(m),
        runs.clean_metrics(bm),
        {"equity_drawdown.png": _equity_png(port, bench, f"{name} ({run['mode']}) vs buy-and-hold, out of sample")},
    )


def _shared_run(
    sc, gated: pd.DataFrame, ungated: pd.DataFrame, closes: dict, mode: str, start: int, end: int, dagster_run_id: str
) -> dict:
    """What both books' run rows share: the run-id suffix (a hash of the configuration and the signals), the gate
    mode, the period, the universe, each sleeve's capital and the model version."""
    blob = json.dumps(
        {"sc": sc.model_dump(), "n": len(gated), "start": start, "code": CODE_VERSION}, sort_keys=True, default=str
    )
    return {
        "suffix": hashlib.sha256(blob.encode()).hexdigest()[:12],
        "mode": mode,
        "start": start,
        "end": end,
        "universe": sorted(closes),
        "each": sleeve_capital(sc, ungated)[1],
        "model_version": str(gated["model_version"].iloc[0]),
        "dagster_run_id": dagster_run_id,
    }


def _report(books: dict, bm: dict, bench: pd.DataFrame, mode: str, start: int, end: int, sc) -> dict:
    compare = pd.DataFrame(
        [
            {
                "metric": k,
                "gated": rounded(books["setup_gated"][2].get(k)),
                "ungated": rounded(books["setup_ungated"][2].get(k)),
                "buy_and_hold": rounded(bm.get(k)),
            }
            for k in SUMMARY_METRICS
        ]
    )
    png = _equity_png(books["setup_gated"][0], bench, f"setup scanner ({mode}): gated vs buy-and-hold, out of sample")
    c = sc.costs
    return {
        "gate_mode": mode,
        "period": f"{pd.Timestamp(start, unit='ms')} .. {pd.Timestamp(end, unit='ms')}",
        "costs": f"maker {c.maker_fee_bps} bps, taker {c.taker_fee_bps} bps, slippage {c.slippage_bps} bps per side",
        "gated_vs_ungated_vs_buy_and_hold": md_table(compare),
        "equity": png_md(png, "equity"),
        "sql": "SELECT strategy, metrics FROM backtest.runs WHERE desk = 'setup_scanner'",
    }
