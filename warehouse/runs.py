"""Run records: model runs with their folds and scores, promotion verdicts, and backtests (run row, trades, equity).

Each record is written in one transaction (:func:`warehouse.io.transaction`, re-entrant), so a crash leaves either
the whole record or none of it. Keys come from :data:`warehouse.schema.PRIMARY_KEYS`.
"""

from __future__ import annotations

import json
import math

import duckdb
import numpy as np
import pandas as pd

from warehouse import io
from warehouse.schema import EQUITY_COLUMNS, PRIMARY_KEYS, TRADE_COLUMNS


def clean_metrics(m: dict) -> dict:
    """JSON-safe metrics: NaN/inf → None, numpy floats → float, other values unchanged."""
    out = {}
    for k, v in m.items():
        if isinstance(v, (float, np.floating)):
            out[k] = None if not math.isfinite(float(v)) else float(v)
        else:
            out[k] = v
    return out


def _json(v) -> str | None:
    return v if v is None or isinstance(v, str) else json.dumps(v)


# ---- model runs -------------------------------------------------------------------------------------------------------


def model_run_row(
    *,
    mlflow_run_id: str,
    model_name: str,
    model_version: str,
    data_start,
    data_end,
    n_rows: int,
    n_folds: int,
    scores_raw: dict,
    scores_cal: dict,
    dagster_run_id: str,
    code_version: str,
    promotion_passed: bool | None = None,
    promotion_reasons: list[str] | None = None,
    config_hash: str | None = None,
) -> dict:
    """One ``ml.model_runs`` row (``metrics`` = ``{"raw": …, "cal": …}`` out-of-sample scores, JSON-safe).

    ``n_rows``: the labelled rows trained on; with ``code_version`` and ``config_hash``
    (:func:`models.retrain.config_hash`) what :func:`models.retrain.should_retrain` compares a later run with."""
    return {
        "mlflow_run_id": mlflow_run_id,
        "model_name": model_name,
        "model_version": str(model_version),
        "trained_at": io.now_utc(),
        "data_start": data_start,
        "data_end": data_end,
        "n_rows": n_rows,
        "n_folds": n_folds,
        "metrics": json.dumps({"raw": clean_metrics(scores_raw), "cal": clean_metrics(scores_cal)}),
        "promotion_passed": promotion_passed,
        "promotion_reasons": None if promotion_reasons is None else json.dumps(promotion_reasons),
        "promoted": False,
        "dagster_run_id": dagster_run_id,
        "code_version": code_version,
        "config_hash": config_hash,
    }


def record_model_run(
    con: duckdb.DuckDBPyConnection,
    run: dict,
    *,
    scores: pd.DataFrame | None = None,
    scores_table: str | None = None,
    keep_champion_scores: bool = True,
    folds: pd.DataFrame | None = None,
    inputs: tuple[str, str] | None = None,
) -> None:
    """Record one training run in one transaction: its scores, folds, ``ml.model_runs`` row and input fingerprint.

    Args:
        run: a :func:`model_run_row`.
        scores: point-in-time scores of this run for ``scores_table`` (``ml.predictions``, ``ml.options_scores``,
            ``ml.setup_meta_scores``; must carry ``model_name`` and ``mlflow_run_id``). Older runs' scores of the model
            are deleted first, except the current champion's when ``keep_champion_scores``.
        folds: per-fold scores for ``ml.folds`` (``model_name``/``mlflow_run_id`` are added).
        inputs: ``(asset, fingerprint)`` recorded in ``ops.asset_inputs`` with the run.
    """
    name, run_id = run["model_name"], run["mlflow_run_id"]
    with io.transaction(con):
        if scores is not None:
            if keep_champion_scores:
                con.execute(
                    f"""DELETE FROM {scores_table} WHERE model_name = ? AND mlflow_run_id NOT IN (SELECT mlflow_run_id
                               FROM ml.model_runs WHERE model_name = ? AND promoted ORDER BY trained_at DESC LIMIT 1)""",
                    [name, name],
                )
            else:
                con.execute(f"DELETE FROM {scores_table} WHERE model_name = ?", [name])
            io.upsert(con, scores_table, scores, PRIMARY_KEYS[scores_table])
        if folds is not None:
            io.upsert(con, "ml.folds", folds.assign(model_name=name, mlflow_run_id=run_id), PRIMARY_KEYS["ml.folds"])
        io.upsert(con, "ml.model_runs", pd.DataFrame([run]), PRIMARY_KEYS["ml.model_runs"])
        if inputs is not None:
            io.record_inputs(con, *inputs)


def set_promotion_verdict(con: duckdb.DuckDBPyConnection, mlflow_run_id: str, passed: bool, reasons: list[str]) -> None:
    """Store the promotion gate's verdict and reasons on a run."""
    con.execute(
        "UPDATE ml.model_runs SET promotion_passed = ?, promotion_reasons = ? WHERE mlflow_run_id = ?",
        [passed, json.dumps(reasons), mlflow_run_id],
    )


def mark_promoted(con: duckdb.DuckDBPyConnection, mlflow_run_id: str) -> None:
    """Flag a run as promoted (its version now carries ``@champion``)."""
    con.execute("UPDATE ml.model_runs SET promoted = true WHERE mlflow_run_id = ?", [mlflow_run_id])


def sync_promoted(con: duckdb.DuckDBPyConnection, model_name: str, champion_version: str | None) -> int:
    """Make ``ml.model_runs.promoted`` of ``model_name`` agree with the registry alias (the truth, issue 13 item 2).

    ``champion_version`` is the version behind ``<model_name>@champion`` (None: no alias). Its row gets
    ``promoted = true``; any row flagged ``promoted`` that was trained after it (or every flagged row, without an
    alias) is cleared, so :func:`warehouse.readers.champion_run` (the newest promoted row) is exactly the alias's
    version. Earlier champions keep their flag (the promotion history). Repairs both orders of a crash between
    moving the alias and writing the flag. Returns the number of rows changed.
    """
    v = None if champion_version is None else str(champion_version)
    (n,) = con.execute(
        """UPDATE ml.model_runs SET promoted = (model_version IS NOT DISTINCT FROM ?::VARCHAR)
        WHERE model_name = ? AND (
            (model_version = ?::VARCHAR AND NOT coalesce(promoted, false))
            OR (coalesce(promoted, false) AND model_version IS DISTINCT FROM ?::VARCHAR AND trained_at > coalesce(
                (SELECT max(trained_at) FROM ml.model_runs WHERE model_name = ? AND model_version = ?::VARCHAR),
                '-infinity'::TIMESTAMP)))""",
        [v, model_name, v, v, model_name, v],
    ).fetchone()
    return int(n)


# ---- backtests ----------------------------------------------------------------------------------------------------------


def backtest_run_row(
    *,
    run_id: str,
    desk: str,
    strategy: str,
    sample: str,
    period_start,
    period_end,
    timeframe: str,
    universe,
    params,
    costs,
    metrics,
    benchmark,
    per_symbol,
    model_name: str | None,
    model_run_id: str | None,
    mlflow_run_id: str | None,
    code_version: str,
    dagster_run_id: str,
) -> dict:
    """One ``backtest.runs`` row; dict/list values are JSON-encoded, strings are taken as already-encoded JSON.

    ``n_trials``, ``sharpe``, ``psr`` and ``dsr`` are copied from ``metrics`` (a dict from
    :func:`pipeline.core.metrics.metrics`) into their own columns (NULL when absent or not finite)."""
    m = metrics if isinstance(metrics, dict) else json.loads(metrics or "{}")
    num = lambda k: float(v) if isinstance(v := m.get(k), (int, float)) and np.isfinite(v) else None  # noqa: E731
    return {
        "n_trials": None if num("n_trials") is None else int(num("n_trials")),
        "sharpe": num("sharpe"),
        "psr": num("psr"),
        "dsr": num("dsr"),
        "run_id": run_id,
        "desk": desk,
        "strategy": strategy,
        "sample": sample,
        "period_start": period_start,
        "period_end": period_end,
        "timeframe": timeframe,
        "universe": _json(universe),
        "params": _json(params),
        "costs": _json(costs),
        "metrics": _json(metrics),
        "benchmark": _json(benchmark),
        "per_symbol": _json(per_symbol),
        "model_name": model_name,
        "model_run_id": model_run_id,
        "mlflow_run_id": mlflow_run_id,
        "code_version": code_version,
        "dagster_run_id": dagster_run_id,
        "created_at": io.now_utc(),
    }


def simulator_trades(trades: pd.DataFrame) -> pd.DataFrame:
    """Simulator trades in ``backtest.trades`` form: ``trade_id`` (0..n-1), UTC ``entry_time``/``exit_time``, and the
    underlying's prices = the fills' own (the simulator trades the symbol itself, a linear instrument; ``instrument``
    stays NULL — see :data:`warehouse.schema.TRADE_COLUMNS`)."""
    return trades.assign(
        trade_id=np.arange(len(trades), dtype=np.int64),
        entry_time=pd.to_datetime(trades["entry_ts"], unit="ms"),
        exit_time=pd.to_datetime(trades["exit_ts"], unit="ms"),
        **{f"underlying_{c}": trades[c] for c in ("entry_price", "exit_price") if c in trades},
    )


def write_backtest(
    con: duckdb.DuckDBPyConnection,
    run: dict,
    trades: pd.DataFrame | None,
    equity: pd.DataFrame,
    *,
    replace_strategy: bool = False,
    inputs: tuple[str, str] | None = None,
) -> None:
    """Write one backtest (run row, trades, equity curve) in one transaction, replacing the same ``run_id`` (and, with
    ``replace_strategy``, every earlier run of the same desk and strategy). Only the table's columns are written."""
    run_id = run["run_id"]
    with io.transaction(con):
        if replace_strategy:
            for t in ("backtest.trades", "backtest.equity", "backtest.runs"):
                con.execute(
                    f"DELETE FROM {t} WHERE run_id IN (SELECT run_id FROM backtest.runs WHERE desk = ? AND strategy = ?)",
                    [run["desk"], run["strategy"]],
                )
        for t in ("backtest.trades", "backtest.equity", "backtest.runs"):
            con.execute(f"DELETE FROM {t} WHERE run_id = ?", [run_id])
        io.upsert(con, "backtest.runs", pd.DataFrame([run]), PRIMARY_KEYS["backtest.runs"])
        if trades is not None and len(trades):
            t = trades.assign(run_id=run_id)
            io.upsert(
                con,
                "backtest.trades",
                t[["run_id", *[c for c in TRADE_COLUMNS if c in t.columns]]],
                PRIMARY_KEYS["backtest.trades"],
            )
        e = equity.assign(run_id=run_id)
        io.upsert(
            con,
            "backtest.equity",
            e[["run_id", *[c for c in EQUITY_COLUMNS if c in e.columns]]],
            PRIMARY_KEYS["backtest.equity"],
        )
        if inputs is not None:
            io.record_inputs(con, *inputs)
