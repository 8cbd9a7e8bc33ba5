"""Group ``setup_scanner``: gated versus ungated signals versus buy-and-hold (``backtest/setup_scanner``)."""
import hashlib
import json

import dagster as dg
import numpy as np
import pandas as pd

from assets.common import POOL, md_table, png_md
from assets.keys import ACCOUNTING_RECONCILES, GROUP_SETUPS, SETUP_BACKTEST, SETUPS
from assets.setup_scanner.signals import CODE_VERSION, chain_fingerprint, sim_params, simulate_signals
from pipeline.config import settings
from pipeline.core.backtest import buy_and_hold, combine_sleeves, equity_plot, performance
from pipeline.research import clean_metrics
from resources.warehouse import WarehouseResource
from warehouse import io


SUMMARY = ["total_return", "annual_return", "sharpe", "max_drawdown", "n_trades", "win_rate", "profit_factor",
           "expectancy_ret", "exposure"]


@dg.asset(
    key=SETUP_BACKTEST, group_name=GROUP_SETUPS, pool=POOL, deps=[SETUPS], kinds={"numba", "duckdb"},
    code_version=CODE_VERSION,
    check_specs=[dg.AssetCheckSpec(ACCOUNTING_RECONCILES, asset=SETUP_BACKTEST, blocking=True,
                                   description="Each run's final equity = initial cash + sum of trade PnL.")],
    description="Gated versus ungated setup signals versus equal-weight buy-and-hold over the same out-of-sample "
                "period (from the meta-model's first calibrated fold), through the shared simulator with maker/taker "
                "fees and slippage; one sleeve per symbol x timeframe. Rows in backtest.* with desk 'setup_scanner'.",
)
def backtest_setup_scanner(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    cfg = settings()
    sc = cfg.setup_scanner
    with warehouse.connect() as con:
        fp = chain_fingerprint(con)
        if io.inputs_unchanged(con, "backtest.setup_scanner", fp):
            return dg.MaterializeResult(metadata={"status": "signals unchanged; not re-run (see backtest.runs)"},
                                        check_results=[dg.AssetCheckResult(check_name=ACCOUNTING_RECONCILES, passed=True,
                                                                           metadata={"note": "unchanged run"})])
        gated = io.read_df(con, "SELECT * FROM signals.setups")
        if gated.empty:
            raise dg.Failure("signals.setups is empty; nothing to backtest")
        start = int(gated["ts"].min())
        mode = str(gated["gate_mode"].iloc[0])
        ungated = io.read_df(con, """SELECT * FROM signals.setup_candidates WHERE reject_reason IS NULL AND ts >= ?""", [start])
        ungated = ungated.assign(ev_pct=0.0, p_win=np.nan)
        score = "p_win" if mode == "p_win" else "ev_pct"
        sleeves_n = ungated.groupby(["symbol", "timeframe"]).ngroups
        each = sc.init_cash / max(1, sleeves_n)
        runs, recon, out_rows, cache = {}, {}, [], {}
        for name, sig in (("setup_gated", gated), ("setup_ungated", ungated)):
            _, sleeves, closes = simulate_signals(con, sig, score, each, start, cache)
            # sleeves with no signal still hold their cash: the two runs share the same capital base
            port = combine_sleeves(sleeves, each)
            port["equity"] += each * (sleeves_n - len(sleeves))
            trades = pd.concat([r.trades for r in sleeves.values()], ignore_index=True) if sleeves else pd.DataFrame()
            closed = trades[trades["exit_reason"] != "open"] if len(trades) else trades
            runs[name] = (port, trades, performance(port["ts"].to_numpy(), port["equity"].to_numpy(), closed,
                                                    port["gross_exposure"].to_numpy()))
            recon[name] = abs(float(port["equity"].iloc[-1]) - sc.init_cash - (float(trades["pnl"].sum()) if len(trades) else 0.0))
        end = int(max(r[0]["ts"].max() for r in runs.values()))
        bench = buy_and_hold(closes, start, end, sc.init_cash)
        bm = performance(bench["ts"].to_numpy(), bench["equity"].to_numpy())
        created = io.now_utc()
        blob = json.dumps({"sc": sc.model_dump(), "n": len(gated), "start": start, "code": CODE_VERSION}, sort_keys=True, default=str)
        with io.transaction(con):
            for name, (port, trades, m) in runs.items():
                run_id = f"{name}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"
                for t in ("backtest.trades", "backtest.equity", "backtest.runs"):
                    con.execute(f"DELETE FROM {t} WHERE run_id IN (SELECT run_id FROM backtest.runs WHERE desk = 'setup_scanner' AND strategy = ?)", [name])
                eq = port.merge(bench.rename(columns={"equity": "benchmark_equity"}), on="ts", how="left")
                eq["benchmark_equity"] = eq["benchmark_equity"].ffill().fillna(sc.init_cash)
                eq["drawdown"] = eq["equity"] / eq["equity"].cummax() - 1
                io.upsert(con, "backtest.runs", pd.DataFrame([{
                    "run_id": run_id, "desk": "setup_scanner", "strategy": name, "sample": "out_of_sample",
                    "period_start": pd.Timestamp(start, unit="ms"), "period_end": pd.Timestamp(end, unit="ms"),
                    "timeframe": ",".join(sc.timeframes), "universe": json.dumps(sorted(closes)),
                    "params": json.dumps({"gate_mode": mode, **sim_params(each).to_dict()}),
                    "costs": json.dumps(sc.gating.costs.model_dump()), "metrics": json.dumps(clean_metrics(m)),
                    "benchmark": json.dumps(clean_metrics(bm)), "per_symbol": None, "model_name": sc.meta.name,
                    "model_run_id": str(gated["model_version"].iloc[0]), "mlflow_run_id": None, "code_version": CODE_VERSION,
                    "dagster_run_id": context.run_id, "created_at": created}]), ["run_id"])
                if len(trades):
                    t = trades.assign(trade_id=np.arange(len(trades), dtype=np.int64), run_id=run_id,
                                      symbol=trades["symbol"] + "|" + trades["timeframe"],
                                      entry_time=pd.to_datetime(trades["entry_ts"], unit="ms"),
                                      exit_time=pd.to_datetime(trades["exit_ts"], unit="ms"))
                    io.upsert(con, "backtest.trades", t[["run_id", "trade_id", "symbol", "direction", "signal_ts", "entry_ts",
                                                         "exit_ts", "entry_time", "exit_time", "entry_price", "exit_price", "units",
                                                         "notional", "fees", "pnl", "ret", "exit_reason", "mae", "mfe",
                                                         "r_multiple", "tp1_hit", "sl_initial", "tp_initial", "bars_held"]],
                              ["run_id", "trade_id"])
                io.upsert(con, "backtest.equity", eq[["ts", "equity", "cash", "position_value", "gross_exposure", "n_positions",
                                                      "drawdown", "benchmark_equity"]].assign(run_id=run_id), ["run_id", "ts"])
                out_rows.append(run_id)
            io.record_inputs(con, "backtest.setup_scanner", fp)
    r4 = lambda v: round(v, 4) if isinstance(v, float) else v  # noqa: E731
    compare = pd.DataFrame([{"metric": k, "gated": r4(runs["setup_gated"][2].get(k)), "ungated": r4(runs["setup_ungated"][2].get(k)),
                             "buy_and_hold": r4(bm.get(k))} for k in SUMMARY])
    port = runs["setup_gated"][0]
    png = equity_plot(port["ts"].to_numpy(), port["equity"].to_numpy(),
                      np.interp(port["ts"].to_numpy(), bench["ts"].to_numpy(), bench["equity"].to_numpy()),
                      f"setup scanner ({mode}): gated vs buy-and-hold, out of sample")
    ok = all(v < 1e-6 * sc.init_cash for v in recon.values())
    return dg.MaterializeResult(
        metadata={"run_ids": ", ".join(out_rows), "gate_mode": mode, "period": f"{pd.Timestamp(start, unit='ms')} .. {pd.Timestamp(end, unit='ms')}",
                  "costs": f"maker {sc.gating.costs.maker_fee_pct} %, taker {sc.gating.costs.taker_fee_pct} %, slippage "
                           f"{sc.gating.costs.slippage_pct} % per side",
                  "gated_vs_ungated_vs_buy_and_hold": md_table(compare), "equity": png_md(png, "equity"),
                  "sql": "SELECT strategy, metrics FROM backtest.runs WHERE desk = 'setup_scanner'"},
        check_results=[dg.AssetCheckResult(check_name=ACCOUNTING_RECONCILES, passed=ok, severity=dg.AssetCheckSeverity.ERROR,
                                           metadata={k: float(v) for k, v in recon.items()})])
