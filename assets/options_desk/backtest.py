"""Group ``options_desk``: model-based evaluation of the taken option trades (``backtest/options_desk``)."""

import dagster as dg
import pandas as pd

from assets.common import POOL, md_table
from assets.keys import GROUP_OPTIONS, OPTIONS_BACKTEST, OPTIONS_TRADES
from pipeline.config import settings
from resources.warehouse import WarehouseResource
from warehouse import io

CODE_VERSION = "3"


@dg.asset(
    key=OPTIONS_BACKTEST, group_name=GROUP_OPTIONS, pool=POOL, deps=[OPTIONS_TRADES], kinds={"duckdb"},
    code_version=CODE_VERSION,
    description="Model-based evaluation of every taken trade decision over the whole history: Black-Scholes premium "
                "with a realized-volatility IV proxy, payoff at expiry, underlying move over the DTE; per state and per "
                "year, versus buy-and-hold BTC and always-on calls/puts. Rows in backtest.* with desk 'options_desk'.",
)
def backtest_options_desk(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    import json

    from pipeline.core.backtest import performance
    from pipeline.core.options_eval import always_on, equity_curve, evaluate_trades, summary
    from pipeline.research import clean_metrics
    sp = settings().options_desk.decisions.structures
    run_id = "options_desk-fusion_options"
    with warehouse.connect() as con:
        fp = io.inputs_fingerprint(con, "SELECT fingerprint FROM ops.asset_inputs WHERE asset IN ('signals.options', "
                                        "'market.onchain_daily') ORDER BY 1", extra=CODE_VERSION)
        if io.inputs_unchanged(con, "backtest.options_desk", fp):
            return dg.MaterializeResult(metadata={"status": "trades and prices unchanged; not re-evaluated", "run_id": run_id})
        trades = io.read_df(con, "SELECT t.*, d.state FROM signals.options_trades t JOIN signals.options_daily d USING (date) "
                                 "WHERE t.cooldown_status = 'taken' ORDER BY date")
        px = io.read_df(con, "SELECT date, price_usd FROM market.onchain_daily ORDER BY date")
        price = px.assign(date=pd.to_datetime(px["date"])).set_index("date")["price_usd"]
        ev = evaluate_trades(trades, price)
        start, end = pd.Timestamp(ev["date"].min()), pd.Timestamp(ev["date"].max())
        calls = evaluate_trades(always_on(price, "LONG_CALL", 7, sp.dte["LONG"], sp.long_call_moneyness, sp.strike_grid, start, end), price)
        puts = evaluate_trades(always_on(price, "LONG_PUT", 7, sp.dte["PRIMARY_SHORT"], sp.long_put_moneyness, sp.strike_grid, start, end), price)
        eq = equity_curve(ev)
        bh = price[(price.index >= start) & (price.index <= end)].dropna()
        bh_ts = bh.index.astype("datetime64[ms]").astype("int64").to_numpy()
        metrics = clean_metrics({**performance(eq["ts"].to_numpy(), eq["equity"].to_numpy()),
                                 "n_trades": float(ev["option_ret"].notna().sum()), "option_hit_rate": float(ev["hit"].mean()),
                                 "direction_hit_rate": float(ev["direction_hit"].mean()),
                                 "avg_option_ret": float(ev["option_ret"].mean())})
        bench = {"buy_and_hold": clean_metrics(performance(bh_ts, bh.to_numpy())),
                 "always_on_calls": clean_metrics({**performance(equity_curve(calls)["ts"].to_numpy(), equity_curve(calls)["equity"].to_numpy()),
                                                   "option_hit_rate": float(calls["hit"].mean())}),
                 "always_on_puts": clean_metrics({**performance(equity_curve(puts)["ts"].to_numpy(), equity_curve(puts)["equity"].to_numpy()),
                                                  "option_hit_rate": float(puts["hit"].mean())})}
        by_state, by_year = summary(ev, "state"), summary(ev.assign(year=pd.to_datetime(ev["date"]).dt.year), "year")
        d_ms = pd.to_datetime(ev["date"]).astype("datetime64[ms]").astype("int64")
        x_ms = pd.to_datetime(ev["expiry"]).astype("datetime64[ms]").astype("int64")
        bt_trades = pd.DataFrame({
            "run_id": run_id, "trade_id": range(len(ev)), "symbol": "BTC options (" + ev["structure"] + ")",
            "direction": ev["direction"].astype(int), "signal_ts": d_ms, "entry_ts": d_ms, "exit_ts": x_ms,
            "entry_time": pd.to_datetime(ev["date"]), "exit_time": pd.to_datetime(ev["expiry"]), "entry_price": ev["premium"],
            "exit_price": ev["payoff"], "units": ev["size"], "notional": ev["premium"] * ev["size"], "fees": 0.0,
            "pnl": (ev["payoff"] - ev["premium"]) * ev["size"], "ret": ev["option_ret"], "exit_reason": "expiry",
            "r_multiple": ev["option_ret"], "tp1_hit": False, "bars_held": (x_ms - d_ms) // 86_400_000})
        run = {"run_id": run_id, "desk": "options_desk", "strategy": "fusion_options",
               "sample": "full history; rules fixed a priori (no fitted parameters); option prices model-based (Black-Scholes, IV = 30d realized vol x 1.10)",
               "period_start": start, "period_end": end, "timeframe": "1d", "universe": json.dumps(["BTC"]),
               "params": settings().options_desk.decisions.model_dump_json(), "costs": json.dumps({"fees": 0, "note": "model premium, no spread"}),
               "metrics": json.dumps(metrics), "benchmark": json.dumps(bench),
               "per_symbol": json.dumps({"by_state": by_state.round(4).to_dict(orient="records"),
                                         "by_year": by_year.round(4).to_dict(orient="records"),
                                         "by_trade_type": summary(ev, "trade_type").round(4).to_dict(orient="records")}, default=str),
               "code_version": CODE_VERSION, "dagster_run_id": context.run_id, "created_at": io.now_utc()}
        with io.transaction(con):
            for t in ("backtest.trades", "backtest.equity", "backtest.runs"):
                con.execute(f"DELETE FROM {t} WHERE run_id = ?", [run_id])
            io.upsert(con, "backtest.runs", pd.DataFrame([run]), ["run_id"])
            io.upsert(con, "backtest.trades", bt_trades, ["run_id", "trade_id"])
            io.upsert(con, "backtest.equity", eq.assign(run_id=run_id, drawdown=eq["equity"] / eq["equity"].cummax() - 1), ["run_id", "ts"])
            io.record_inputs(con, "backtest.options_desk", fp)
    compare = pd.DataFrame([{"": "fusion trades", **{k: metrics.get(k) for k in ("n_trades", "option_hit_rate", "total_return", "max_drawdown")}},
                            *[{"": k, **{m: v.get(m) for m in ("option_hit_rate", "total_return", "max_drawdown")}} for k, v in bench.items()]])
    return dg.MaterializeResult(metadata={
        "run_id": run_id, "note": "option prices are MODEL-BASED (Black-Scholes, realized-vol IV proxy), not market quotes",
        "versus_benchmarks": md_table(compare), "by_trade_state": md_table(by_state.round(4)), "by_year": md_table(by_year.round(4)),
        "by_trade_type": md_table(summary(ev, "trade_type").round(4))})
