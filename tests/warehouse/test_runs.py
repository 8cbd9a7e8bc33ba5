"""Run records and readers on a real DuckDB file: one transaction per record, the pruning rule, champion lookups."""

import json

import numpy as np
import pandas as pd
import pytest

from warehouse import io, readers, runs


def _run(run_id: str, name: str = "m", version: str = "1") -> dict:
    return {
        **_row(run_id, name, version),
        "trained_at": pd.Timestamp("2024-06-02") + pd.Timedelta(minutes=int(run_id[1:])),
    }


def _row(run_id: str, name: str, version: str) -> dict:
    return runs.model_run_row(
        mlflow_run_id=run_id,
        model_name=name,
        model_version=version,
        data_start=pd.Timestamp("2024-01-01"),
        data_end=pd.Timestamp("2024-06-01"),
        n_rows=10,
        n_folds=2,
        scores_raw={"auc": 0.6, "ece": float("nan")},
        scores_cal={"auc": np.float64(0.61)},
        dagster_run_id="d",
        code_version="1",
    )


def _scores(run_id: str, name: str = "m") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "model_name": name,
            "model_version": "1",
            "mlflow_run_id": run_id,
            "candidate_id": ["a", "b"],
            "p_cal": [0.4, 0.6],
        }
    )


def test_model_run_row_is_json_safe():
    r = _run("r1")
    assert json.loads(r["metrics"]) == {"raw": {"auc": 0.6, "ece": None}, "cal": {"auc": 0.61}}
    assert r["promoted"] is False and r["promotion_passed"] is None


def test_record_model_run_keeps_new_and_champion_scores_only(tmp_path):
    with io.connect(str(tmp_path / "w.duckdb")) as con:
        runs.record_model_run(con, _run("r1"), scores=_scores("r1"), scores_table="ml.setup_meta_scores")
        runs.mark_promoted(con, "r1")
        assert readers.champion_run(con, "m").mlflow_run_id == "r1"
        runs.record_model_run(
            con, _run("r2"), scores=_scores("r2"), scores_table="ml.setup_meta_scores", inputs=("ml.m", "r2")
        )
        runs.record_model_run(con, _run("r3"), scores=_scores("r3"), scores_table="ml.setup_meta_scores")
        kept = sorted(set(io.read_df(con, "SELECT mlflow_run_id FROM ml.setup_meta_scores")["mlflow_run_id"]))
        assert kept == ["r1", "r3"]  # r2 was neither the champion nor the new run
        assert readers.latest_run(con, "m").mlflow_run_id == "r3"
        assert readers.champion_run(con, "other") is None and readers.latest_run(con, "other") is None
        assert io.inputs_unchanged(con, "ml.m", "r2")


def test_a_failed_record_writes_nothing(tmp_path):
    with io.connect(str(tmp_path / "w.duckdb")) as con:
        runs.record_model_run(con, _run("r1"), scores=_scores("r1"), scores_table="ml.setup_meta_scores")
        bad = _scores("r2").assign(p_cal=["x", "y"])  # not a DOUBLE: the insert fails inside the transaction
        with pytest.raises(Exception):
            runs.record_model_run(
                con, _run("r2"), scores=bad, scores_table="ml.setup_meta_scores", inputs=("ml.m", "fp")
            )
        assert io.read_df(con, "SELECT DISTINCT mlflow_run_id FROM ml.setup_meta_scores")["mlflow_run_id"].tolist() == [
            "r1"
        ]
        assert io.read_df(con, "SELECT mlflow_run_id FROM ml.model_runs")["mlflow_run_id"].tolist() == ["r1"]
        assert not io.inputs_unchanged(con, "ml.m", "fp")


def _backtest(run_id: str, strategy: str = "s") -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    row = runs.backtest_run_row(
        run_id=run_id,
        desk="d",
        strategy=strategy,
        sample="oos",
        period_start=pd.Timestamp(0),
        period_end=pd.Timestamp(1),
        timeframe="1h",
        universe=["BTC/USDT"],
        params={"a": 1},
        costs='{"fee": 0}',
        metrics={"total_return": 0.1},
        benchmark={},
        per_symbol=None,
        model_name=None,
        model_run_id=None,
        mlflow_run_id=None,
        code_version="1",
        dagster_run_id="x",
    )
    trades = runs.simulator_trades(
        pd.DataFrame(
            {
                "symbol": ["BTC/USDT"],
                "direction": [1],
                "entry_ts": [0],
                "exit_ts": [3_600_000],
                "pnl": [5.0],
                "not_a_column": [1],
            }
        )
    )
    equity = pd.DataFrame({"ts": [0, 3_600_000], "equity": [100.0, 105.0], "extra": [0, 0]})
    return row, trades, equity


def test_write_backtest_replaces_the_run_or_the_strategy(tmp_path):
    with io.connect(str(tmp_path / "w.duckdb")) as con:
        runs.write_backtest(con, *_backtest("a"))
        runs.write_backtest(con, *_backtest("a"))  # same run id: replaced, not duplicated
        runs.write_backtest(con, *_backtest("b"))  # another run of the same strategy is kept...
        assert io.read_df(con, "SELECT count(*) n FROM backtest.trades")["n"][0] == 2
        runs.write_backtest(con, *_backtest("c"), replace_strategy=True)  # ...unless the strategy is replaced
        r = io.read_df(con, "SELECT run_id, universe, params, costs FROM backtest.runs")
        assert (
            r["run_id"].tolist() == ["c"]
            and json.loads(r["universe"][0]) == ["BTC/USDT"]
            and r["costs"][0] == '{"fee": 0}'
        )
        t = io.read_df(con, "SELECT * FROM backtest.trades")
        assert t["trade_id"].tolist() == [0] and str(t["exit_time"][0]) == "1970-01-01 01:00:00"
        assert io.read_df(con, "SELECT count(*) n FROM backtest.equity WHERE run_id = 'c'")["n"][0] == 2


def test_an_old_backtest_trades_table_gets_the_new_columns(tmp_path):
    """Issue 12 item 8: a warehouse created before ``instrument`` / ``underlying_*_price`` existed gets them (NULL in
    its old rows) on the next read-write open, and new rows of every desk fill them."""
    import duckdb

    path = str(tmp_path / "old.duckdb")
    with duckdb.connect(path) as con:  # the table as the old code created it
        con.execute("CREATE SCHEMA backtest")
        con.execute(
            """CREATE TABLE backtest.trades (run_id VARCHAR NOT NULL, trade_id BIGINT NOT NULL, symbol VARCHAR,
            direction INTEGER, signal_ts BIGINT, entry_ts BIGINT, exit_ts BIGINT, entry_time TIMESTAMP, exit_time TIMESTAMP,
            entry_price DOUBLE, exit_price DOUBLE, units DOUBLE, notional DOUBLE, fees DOUBLE, pnl DOUBLE, ret DOUBLE,
            exit_reason VARCHAR, mae DOUBLE, mfe DOUBLE, r_multiple DOUBLE, tp1_hit BOOLEAN, sl_initial DOUBLE,
            tp_initial DOUBLE, bars_held BIGINT)"""
        )
        con.execute("INSERT INTO backtest.trades (run_id, trade_id, symbol) VALUES ('old', 0, 'BTC/USDT')")
    with io.connect(path) as con:
        row, trades, equity = _backtest("a")
        trades = trades.assign(entry_price=100.0, exit_price=105.0)
        runs.write_backtest(con, row, runs.simulator_trades(trades), equity)
        t = io.read_df(con, "SELECT * FROM backtest.trades ORDER BY run_id")
    assert {"instrument", "underlying_entry_price", "underlying_exit_price"} <= set(t.columns)
    assert t["underlying_entry_price"].isna().tolist() == [False, True]  # run 'a' filled, the old row NULL
    assert t.loc[t["run_id"] == "a", ["underlying_entry_price", "underlying_exit_price"]].values.tolist() == [
        [100.0, 105.0]
    ]
    assert t["instrument"].isna().all()  # a linear instrument: the symbol itself


def test_an_old_backtest_runs_table_gets_the_trials_and_sharpe_columns(tmp_path):
    """Issue 15: a ``backtest.runs`` created before ``n_trials`` / ``sharpe`` / ``psr`` / ``dsr`` existed gets them on
    the next read-write open (NULL in its old rows); a new run fills them from its metrics."""
    import duckdb

    path = str(tmp_path / "old.duckdb")
    with duckdb.connect(path) as con:  # the table as the old code created it
        con.execute("CREATE SCHEMA backtest")
        con.execute(
            """CREATE TABLE backtest.runs (run_id VARCHAR NOT NULL, desk VARCHAR, strategy VARCHAR, sample VARCHAR,
            period_start TIMESTAMP, period_end TIMESTAMP, timeframe VARCHAR, universe JSON, params JSON, costs JSON,
            metrics JSON, benchmark JSON, per_symbol JSON, model_name VARCHAR, model_run_id VARCHAR,
            mlflow_run_id VARCHAR, code_version VARCHAR, dagster_run_id VARCHAR, created_at TIMESTAMP)"""
        )
        con.execute("INSERT INTO backtest.runs (run_id, desk) VALUES ('old', 'd')")
    with io.connect(path) as con:
        _, trades, equity = _backtest("a")
        m = {"total_return": 0.1, "sharpe": 1.5, "psr": 0.97, "dsr": 0.61, "n_trials": 39.0}
        runs.write_backtest(con, runs.backtest_run_row(**_run_kwargs(m)), trades, equity)
        r = io.read_df(con, "SELECT run_id, n_trials, sharpe, psr, dsr FROM backtest.runs ORDER BY run_id")
    assert r.set_index("run_id").loc["a"].tolist() == [39, 1.5, 0.97, 0.61]
    assert r.set_index("run_id").loc["old"].isna().all()


def _run_kwargs(metrics: dict) -> dict:
    return dict(
        run_id="a",
        desk="d",
        strategy="s",
        sample="oos",
        period_start=pd.Timestamp(0),
        period_end=pd.Timestamp(1),
        timeframe="1h",
        universe=["BTC/USDT"],
        params={},
        costs={},
        metrics=metrics,
        benchmark={},
        per_symbol=None,
        model_name=None,
        model_run_id=None,
        mlflow_run_id=None,
        code_version="1",
        dagster_run_id="x",
    )
