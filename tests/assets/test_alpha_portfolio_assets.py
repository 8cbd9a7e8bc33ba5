"""signals/alpha_targets and backtest/alpha_portfolio on a test warehouse: real 1h candles of the test universe
(BTC, ETH, 2019-02..06) and a HAND-MADE signals.alpha_scores table (the scores asset is the other helper's; its
stand-in here is 24 h momentum, see tests/core/test_alpha_book.py). Without the table the targets asset plans nothing
and succeeds: the session's data-chain build (tests/conftest.py) runs that path."""

import json

import dagster as dg
import numpy as np
import pandas as pd

from assets.alpha_portfolio.backtest import backtest_alpha_portfolio
from assets.alpha_portfolio.targets import alpha_targets
from pipeline.core.alpha_portfolio import REASONS
from tests.conftest import real_ohlcv
from tests.core.test_alpha_book import standin_scores
from warehouse import io, runs

A, Z = 1_549_929_600_000, 1_556_668_800_000  # 2019-02-12 .. 2019-05-01 UTC


def _warehouse(resources) -> pd.DataFrame:
    c = pd.concat([real_ohlcv(s, "1h").assign(symbol=s) for s in ("BTC/USDT", "ETH/USDT")])
    c = c[(c["ts"] >= A - 200 * 3_600_000) & (c["ts"] < Z)]
    sc = standin_scores(c[["symbol", "ts", "open", "high", "low", "close"]])
    sc = sc[sc["ts"] >= A].assign(
        exchange="binance", pred_6h=np.nan, pred_24h=np.nan, exp_ret=sc["exp_ret_net"] + 0.0024, cost=0.0024,
        tier=1, source="fallback", model_version=None,
    )  # fmt: skip
    with resources["warehouse"].connect() as con:
        cols = ["exchange", "symbol", "timeframe", "ts", "open", "high", "low", "close", "volume"]
        io.upsert(con, "market.ohlcv", c.assign(exchange="binance", timeframe="1h")[cols], cols[:4])
        con.register("sc", sc)
        con.execute("DELETE FROM signals.alpha_scores")
        con.execute("INSERT INTO signals.alpha_scores BY NAME SELECT * FROM sc")
        base = {k: None for k in ("period_start", "period_end", "timeframe", "universe", "params", "costs")}
        row = runs.backtest_run_row(
            run_id="baseline-x", desk="research", strategy="baseline_long_flat", sample="oos", **base,
            metrics={"sharpe": 0.5, "total_return": 0.1}, benchmark=None, per_symbol=None, model_name=None,
            model_run_id=None, mlflow_run_id=None, code_version="t", dagster_run_id="t",
        )  # fmt: skip
        runs.write_backtest(con, row, None, pd.DataFrame({"ts": [A], "equity": [1.0]}))
    return sc


def test_targets_and_backtest_assets_write_their_rows(resources, instance):
    sc = _warehouse(resources)
    r = dg.materialize([alpha_targets, backtest_alpha_portfolio], resources=resources, instance=instance)
    assert r.success
    with resources["warehouse"].connect() as con:
        t = io.read_df(con, "SELECT * FROM signals.alpha_targets ORDER BY ts, symbol")
        out = io.read_df(con, "SELECT * FROM backtest.runs WHERE desk = 'alpha_portfolio' ORDER BY strategy")
        eq = io.read_df(
            con,
            "SELECT run_id, count(*) n, min(cash) c FROM backtest.equity WHERE run_id LIKE 'alpha_book%' GROUP BY run_id",
        )
        n_trades = con.execute("SELECT count(*) FROM backtest.trades").fetchone()[0]
    # one row per asset per rebalance hour; both symbols are tier 1: at most 15 % each
    assert len(t) == 2 * t["ts"].nunique() and t["ts"].nunique() >= sc["ts"].nunique() - 5
    assert t["reason"].isin(REASONS).all() and t["target_weight"].max() <= 0.15 + 1e-12
    assert out["strategy"].tolist() == ["alpha_book", "alpha_book_no_dd"] and out["sharpe"].notna().all()
    bench = json.loads(out["benchmark"].iloc[0])
    assert set(bench) == {"buy_and_hold_universe", "buy_and_hold_btc", "research_baseline"}
    assert bench["research_baseline"]["sharpe"] == 0.5 and bench["buy_and_hold_btc"]["sharpe"] is not None
    assert (eq["n"] > 1_000).all() and (eq["c"] >= -1e-9).all() and n_trades > 0
    checks = [c for c in r.get_asset_check_evaluations()]
    assert checks and all(c.passed for c in checks)
    # unchanged scores: both skip
    r2 = dg.materialize([alpha_targets, backtest_alpha_portfolio], resources=resources, instance=instance)
    meta = r2.asset_materializations_for_node("signals__alpha_targets")[0].metadata
    assert "unchanged" in meta["status"].value


def test_backtest_at_other_costs_is_stored_beside_the_configured_books(resources, instance):
    """``trader alpha backtest --fee-bps 25 --slippage-bps 5``: the books at those costs are their own strategies,
    cost more than the configured ones on the same targets, and leave the configured books' skip fingerprint alone."""
    _warehouse(resources)
    sel = [alpha_targets, backtest_alpha_portfolio]
    assert dg.materialize(sel, resources=resources, instance=instance).success
    cfg = {"ops": {"backtest__alpha_portfolio": {"config": {"fee_bps": 25.0, "slippage_bps": 5.0}}}}
    assert dg.materialize(sel, resources=resources, instance=instance, run_config=cfg).success
    with resources["warehouse"].connect() as con:
        out = io.read_df(con, "SELECT strategy, metrics, costs FROM backtest.runs WHERE desk = 'alpha_portfolio'")
    m = {r.strategy: json.loads(r.metrics) for r in out.itertuples()}
    assert sorted(m) == [
        "alpha_book",
        "alpha_book@fee25bps_slip5bps",
        "alpha_book_no_dd",
        "alpha_book_no_dd@fee25bps_slip5bps",
    ]
    assert m["alpha_book@fee25bps_slip5bps"]["total_return"] < m["alpha_book"]["total_return"]
    again = dg.materialize(sel, resources=resources, instance=instance)  # the configured books are still up to date
    assert "unchanged" in again.asset_materializations_for_node("backtest__alpha_portfolio")[0].metadata["status"].value
