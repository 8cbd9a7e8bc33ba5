"""Group ``research``: the baseline direction model (walk-forward, calibrated, MLflow) and its ``@champion`` promotion.

``ml/baseline_direction`` trains and registers a version every time its inputs change and stores its
out-of-sample predictions (the backtest uses them whatever the verdict). ``ml/baseline_gate``
carries the blocking check ``promotion_gate``: the promotion criteria of ``trader.yaml`` applied to the
out-of-sample calibrated scores and compared with the current champion. ``ml/baseline_champion``
moves the alias and only runs when the gate passed, so a worse model is logged and registered but never served.
"""

import json

import dagster as dg
import numpy as np
import pandas as pd

from assets.common import (
    POOL,
    UNCHANGED,
    TrainConfig,
    carried_forward,
    if_unchanged,
    md_table,
    png_md,
    retrain_decision,
    rounded,
    version_metadata,
)
from assets.keys import BASELINE, BASELINE_CHAMPION, BASELINE_EVALUATION, FEATURES, GROUP_RESEARCH, REGIMES
from assets.promotion import promotion_assets
from models.baseline import labelled_rows, oof_by_regime, predictions_for, train_baseline
from models.calibration import reliability_plot, reliability_table
from models.datasets import MODEL_FEATURES
from models.evaluation import scores_by
from models.retrain import TrainingState, config_hash
from pipeline.config import settings
from pipeline.core.timeframes import timeframe_ms
from resources.mlflow_tracking import MlflowTracking, TrainingRecord
from resources.warehouse import WarehouseResource
from warehouse import io, readers, runs

CODE_VERSION = "2"


def _config(cfg) -> str:
    """The configuration the baseline is trained with: its section without the retrain policy, and the universe."""
    return cfg.research.baseline.model_dump_json(exclude={"retrain"}) + json.dumps(cfg.universe.symbols)


def _fingerprint(con, cfg) -> str:
    b = cfg.research.baseline
    # row counts and last bar per symbol, plus when each slice was last rebuilt by a formula change
    return io.inputs_fingerprint(
        con,
        f"""SELECT symbol, max(ts)::VARCHAR, count(*) FROM features.technical WHERE timeframe = '{b.timeframe}' GROUP BY ALL
                 UNION ALL SELECT asset, fingerprint, epoch_ms(updated_at) FROM ops.asset_inputs
                 WHERE asset LIKE 'code:%:{b.timeframe}' ORDER BY ALL""",
        extra=_config(cfg) + CODE_VERSION,
    )


def _stored_scores(con, name: str) -> dict:
    """Metadata of the version already trained on these inputs (shown when the asset skips)."""
    r = readers.latest_run(con, name)
    if r is None:
        return {}
    sc = json.loads(r.metrics)
    tbl = pd.DataFrame(
        [{"set": k, **rounded({m: (np.nan if v is None else v) for m, v in sc[k].items()})} for k in ("raw", "cal")]
    )
    return {"mlflow_run_id": r.mlflow_run_id, "model_version": r.model_version, "oos_scores": md_table(tbl)}


def _model_description(b) -> str:
    """What the registered baseline predicts, its label, features and where its figures come from."""
    lb = b.label
    return (
        f"Research baseline: calibrated p(a long entered at the next {b.timeframe} open reaches +{lb.tp_atr} ATR before "
        f"-{lb.sl_atr} ATR within {lb.max_bars} bars), triple-barrier label y = 1 when the target is hit first. {b.kind} trained on {', '.join(b.train_symbols)}, "
        f"{len(MODEL_FEATURES)} scale-free technical and regime features (models.datasets.MODEL_FEATURES), "
        f"{b.calibration} calibration on out-of-fold predictions. Figures: out-of-sample over the purged walk-forward "
        "folds (experiment baseline_direction; every symbol's OOS probabilities in ml.predictions, used by "
        "backtest/baseline). Serve with models:/" + b.name + "@champion."
    )


def _record(run, b, context, png: bytes, by_regime: pd.DataFrame, now: TrainingState) -> TrainingRecord:
    """The MLflow training record of one baseline version."""
    res = run.result
    data_start, data_end = (
        pd.Timestamp(int(run.data["ts"].min()), unit="ms"),
        pd.Timestamp(int(run.data["ts"].max()), unit="ms"),
    )
    return TrainingRecord(
        experiment="baseline_direction",
        run_name=f"{b.name}-{context.run_id[:8]}",
        tags={
            "dagster_run_id": context.run_id,
            "dagster_asset_key": BASELINE.to_user_string(),
            "partition": "",
            "code_version": CODE_VERSION,
            "config_hash": now.config_hash,
            "labelled_rows": str(now.labelled_rows),
            "data_start": data_start.isoformat(),
            "data_end": data_end.isoformat(),
        },
        params={
            "kind": b.kind,
            "calibration": b.calibration,
            "seed": b.seed,
            "timeframe": b.timeframe,
            "train_symbols": ",".join(b.train_symbols),
            "n_features": len(MODEL_FEATURES),
            **{f"label_{k}": v for k, v in b.label.model_dump().items()},
            **{f"wf_{k}": v for k, v in b.walk_forward.model_dump().items()},
            **{f"param_{k}": v for k, v in b.params.items()},
        },
        scores_raw=res.scores_raw,
        scores_cal=res.scores_cal,
        fold_scores=res.folds,
        model=res.final,
        registered_name=b.name,
        model_description=_model_description(b),
        input_example=run.data[MODEL_FEATURES].head(5),
        images={"reliability.png": png},
        dicts={"features.json": {"features": MODEL_FEATURES}, "feature_importance.json": res.importance},
        texts={"folds.csv": res.folds.to_csv(index=False), "scores_by_regime.csv": by_regime.to_csv(index=False)},
    )


@dg.asset(
    key=BASELINE,
    group_name=GROUP_RESEARCH,
    pool=POOL,
    deps=[FEATURES, REGIMES],
    kinds={"lightgbm", "mlflow", "duckdb"},
    code_version=CODE_VERSION,
    description="LightGBM p(TP before SL) for a long entry on BTC/ETH 1h: triple-barrier labels, purged walk-forward, "
    "isotonic calibration on out-of-fold predictions; MLflow run + registered version; out-of-sample "
    "probabilities for every universe symbol in ml.predictions.",
)
def ml_baseline_direction(
    context: dg.AssetExecutionContext, config: TrainConfig, warehouse: WarehouseResource, mlflow: MlflowTracking
) -> dg.MaterializeResult:
    cfg = settings()
    b, ex, symbols = cfg.research.baseline, cfg.exchange.id, cfg.universe.symbols
    with warehouse.connect() as con:
        fp = _fingerprint(con, cfg)
        stored = _stored_scores(con, b.name)
        # skip only while a trained version is stored (a deleted ml.model_runs row retrains)
        if stored and (
            skip := if_unchanged(
                context,
                con,
                "ml.baseline_direction",
                fp,
                SKIPPED,
                metadata={"retrain": UNCHANGED, **stored},
                force=config.force,
            )
        ):
            return skip
        series = {s: readers.series(con, ex, s, b.timeframe) for s in b.train_symbols}
        now = TrainingState(CODE_VERSION, config_hash(_config(cfg)), labelled_rows(series, b))
        retrain, why = retrain_decision(con, [b.name], now, b.retrain, config.force)
        if not retrain:  # the inputs changed but not enough: the version in force stays (models.retrain)
            meta = {"status": RETRAIN_SKIPPED, "retrain": why, **stored}
            return dg.MaterializeResult(metadata=rounded(carried_forward(context, meta)))
        series |= {s: readers.series(con, ex, s, b.timeframe) for s in symbols if s not in series}
    run = train_baseline(series, b, b.walk_forward.to_ms(timeframe_ms(b.timeframe)))
    report = _report(run, b)
    logged = mlflow.log_training(_record(run, b, context, report["png"], report["by_regime"], now))
    preds = predictions_for(series, symbols, b, run)
    with warehouse.connect() as con:
        row = _record_version(con, run, preds, logged, b, ex, context.run_id, fp, now)
    return dg.MaterializeResult(metadata=rounded({"retrain": why, **_metadata(run, preds, logged, row, report, b)}))


SKIPPED = "features and configuration unchanged; model not retrained"
RETRAIN_SKIPPED = "too few new labelled rows since the last training; model not retrained (research.baseline.retrain)"


def _report(run, b) -> dict:
    """Out-of-fold scores per regime and per symbol, and the reliability diagram (raw and calibrated)."""
    oof = oof_by_regime(run)
    tables = {"raw": reliability_table(oof["p_raw"], oof["y"]), "calibrated": reliability_table(oof["p_cal"], oof["y"])}
    return {
        "by_regime": scores_by(oof, ["trend", "vol"]),
        "by_symbol": scores_by(oof, "symbol"),
        "png": reliability_plot(tables, f"{b.name}: out-of-fold reliability"),
    }


def _record_version(
    con, run, preds: pd.DataFrame, logged, b, ex: str, dagster_run_id: str, fp: str, now: TrainingState
) -> dict:
    """Record the version: its ``ml.model_runs`` row, folds and every symbol's OOS predictions (one transaction)."""
    res = run.result
    row = runs.model_run_row(
        mlflow_run_id=logged.run_id,
        model_name=b.name,
        model_version=logged.version,
        data_start=pd.Timestamp(int(run.data["ts"].min()), unit="ms"),
        data_end=pd.Timestamp(int(run.data["ts"].max()), unit="ms"),
        n_rows=len(run.data),
        n_folds=len(run.folds),
        scores_raw=res.scores_raw,
        scores_cal=res.scores_cal,
        dagster_run_id=dagster_run_id,
        code_version=CODE_VERSION,
        config_hash=now.config_hash,
    )
    scores = preds.assign(
        model_name=b.name,
        mlflow_run_id=logged.run_id,
        exchange=ex,
        timeframe=b.timeframe,
        in_training_universe=preds["symbol"].isin(b.train_symbols),
    )
    runs.record_model_run(
        con,
        row,
        scores=scores,
        scores_table="ml.predictions",
        keep_champion_scores=False,
        folds=res.folds,
        inputs=("ml.baseline_direction", fp),
    )
    return row


def _metadata(run, preds: pd.DataFrame, logged, row: dict, report: dict, b) -> dict:
    res = run.result
    return {
        **version_metadata(logged, b.name, res.scores_raw, res.scores_cal, res.train_seconds, row),
        "rows": len(run.data),
        "folds": len(run.folds),
        "folds_table": md_table(res.folds, 100),
        "scores_by_regime": md_table(report["by_regime"]),
        "scores_by_symbol": md_table(report["by_symbol"]),
        "reliability": png_md(report["png"], "reliability"),
        "prediction_rows": len(preds),
    }


ml_baseline_direction_evaluation, ml_baseline_direction_champion = promotion_assets(
    BASELINE,
    BASELINE_EVALUATION,
    BASELINE_CHAMPION,
    GROUP_RESEARCH,
    lambda cfg: cfg.research.baseline,
    "baseline model",
    CODE_VERSION,
)
