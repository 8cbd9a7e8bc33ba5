"""Group ``setup_scanner``: the XGBoost p(win) meta-model (train -> promotion gate -> ``@champion``).

``ml/setup_meta`` builds the dataset from ``signals.setup_candidates`` (valid plans, label = TP1 before the stop,
pure code in :mod:`models.setup_meta`), fits the purged walk-forward with isotonic calibration, logs an MLflow run
(experiment ``setup_scanner``), registers a version and stores every candidate's point-in-time p(win) in
``ml.setup_meta_scores``. ``ml/setup_meta_gate`` carries the blocking ``promotion_gate`` check and
``ml/setup_champion`` moves the alias (factory :func:`assets.promotion.promotion_assets`). Both run at a higher
Dagster priority so that, inside one run, the gate and the promotion happen before the signals are gated.
"""

import dagster as dg
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
from assets.keys import GROUP_SETUPS, SETUP_CANDIDATES, SETUP_META, SETUP_META_CHAMPION, SETUP_META_EVALUATION
from assets.promotion import promotion_assets
from assets.setup_scanner.common import series_by_key
from models.calibration import reliability_plot, reliability_table
from models.evaluation import scores_by
from models.retrain import TrainingState, config_hash
from models.setup_meta import META_FEATURES, fit_configured, meta_dataset, scored_rows, signal_bar_features
from models.trainers import feature_importance
from pipeline.config import settings
from resources.mlflow_tracking import MlflowTracking, TrainingRecord
from resources.warehouse import WarehouseResource
from warehouse import io, readers, runs

CODE_VERSION = "1"


def load_dataset(con, exchange: str) -> pd.DataFrame:
    """:func:`models.setup_meta.meta_dataset` over every stored valid candidate.

    Raises:
        dagster.Failure: no valid candidate is stored yet.
    """
    cands = readers.valid_candidates(con, ordered=False)
    if cands.empty:
        raise dg.Failure("signals.setup_candidates has no valid candidates; materialise signals/setup_candidates first")
    return meta_dataset(cands, signal_bar_features(series_by_key(con, exchange, cands), cands))


def _fingerprint(con, m) -> str:
    return io.inputs_fingerprint(
        con,
        readers.asset_fingerprints(["signals.setup_candidates"]),
        extra=m.model_dump_json(exclude={"retrain"}) + CODE_VERSION,
    )


def labelled_candidates(con) -> int:
    """Valid candidates whose outcome is known (``win`` set): the rows the meta-model trains on
    (``PointInTimeFit.labelled_rows``), the count :func:`models.retrain.should_retrain` compares."""
    return int(
        con.execute(
            "SELECT count(*) FROM signals.setup_candidates WHERE reject_reason IS NULL AND win IS NOT NULL"
        ).fetchall()[0][0]  # fetchall: no unfinished result left on the connection
    )


MODEL_DESCRIPTION = (
    "Setup scanner precision filter: calibrated p(win) of a valid Fibonacci / AVWAP setup candidate, win = the plan "
    "taken on its own reaches TP1 before its stop (unfilled or unresolved plans have no label). Features "
    "(models.setup_meta.META_FEATURES): the plan's geometry (level, reward/risk, stop distance, net TP1, AVWAP "
    "distance and slope, leg size, leverage), timeframe, UTC hour and weekday, and the technical / regime inputs of "
    "the signal bar. Figures: out-of-sample over the purged walk-forward folds (experiment setup_scanner; every "
    "candidate's point-in-time score in ml.setup_meta_scores). The gate (signals/setups) uses the @champion."
)


def _record(fit, data, m, timeframes, context, png: bytes, rel_cal: pd.DataFrame, now: TrainingState) -> TrainingRecord:
    res = fit.result
    return TrainingRecord(
        experiment="setup_scanner",
        run_name=f"{m.name}-{context.run_id[:8]}",
        tags={
            "dagster_run_id": context.run_id,
            "dagster_asset_key": SETUP_META.to_user_string(),
            "code_version": CODE_VERSION,
            "config_hash": now.config_hash,
            "labelled_rows": str(fit.labelled_rows),
            "data_start": pd.Timestamp(int(data["ts"].min()), unit="ms").isoformat(),
            "data_end": pd.Timestamp(int(data["ts"].max()), unit="ms").isoformat(),
        },
        params={
            "kind": m.kind,
            "calibration": m.calibration,
            "seed": m.seed,
            "n_features": len(META_FEATURES),
            "timeframes": ",".join(timeframes),
            "label": "tp1_before_stop",
            **{f"wf_{k}": v for k, v in m.walk_forward.model_dump().items()},
            **{f"param_{k}": v for k, v in m.params.items()},
        },
        scores_raw=res.scores_raw,
        scores_cal=res.scores_cal,
        fold_scores=res.folds,
        model=fit.served,
        registered_name=m.name,
        model_description=MODEL_DESCRIPTION,
        input_example=data[META_FEATURES].head(5),
        images={"reliability.png": png},
        dicts={
            "features.json": {"features": META_FEATURES},
            "feature_importance.json": feature_importance(fit.served.estimator, META_FEATURES),
        },
        texts={"folds.csv": res.folds.to_csv(index=False), "reliability_calibrated.csv": rel_cal.to_csv(index=False)},
    )


@dg.asset(
    key=SETUP_META,
    group_name=GROUP_SETUPS,
    pool=POOL,
    deps=[SETUP_CANDIDATES],
    kinds={"xgboost", "mlflow", "duckdb"},
    code_version=CODE_VERSION,
    description="XGBoost p(win) of every valid setup candidate (win = TP1 before the stop): purged walk-forward with "
    "forecast folds, isotonic calibration on out-of-fold scores; MLflow run + registered version; point-in-time "
    "scores of every candidate in ml.setup_meta_scores; reliability diagram.",
)
def ml_setup_meta(
    context: dg.AssetExecutionContext, config: TrainConfig, warehouse: WarehouseResource, mlflow: MlflowTracking
) -> dg.MaterializeResult:
    cfg = settings()
    m, ex = cfg.setup_scanner.meta, cfg.exchange.id
    with warehouse.connect() as con:
        fp = _fingerprint(con, m)
        if skip := if_unchanged(
            context, con, "ml.setup_meta", fp, SKIPPED, metadata={"retrain": UNCHANGED}, force=config.force
        ):
            return skip
        now = TrainingState(CODE_VERSION, config_hash(m.model_dump_json(exclude={"retrain"})), labelled_candidates(con))
        retrain, why = retrain_decision(con, [m.name], now, m.retrain, config.force)
        if not retrain:  # new candidates but too few new outcomes: the champion scores them live (common.py)
            return dg.MaterializeResult(
                metadata=rounded(carried_forward(context, {"status": RETRAIN_SKIPPED, "retrain": why}))
            )
        data = load_dataset(con, ex)
    fit = fit_configured(data, m)
    scored = scored_rows(data, fit)
    report = _report(scored, m)
    logged = mlflow.log_training(
        _record(fit, data, m, cfg.setup_scanner.timeframes, context, report["png"], report["rel"], now)
    )
    with warehouse.connect() as con:
        row = _record_version(con, fit, data, scored, logged, m, context.run_id, fp, now)
    return dg.MaterializeResult(metadata=rounded({"retrain": why, **_metadata(fit, scored, logged, row, report, m)}))


SKIPPED = "candidates and configuration unchanged; model not retrained"
RETRAIN_SKIPPED = (
    "too few newly resolved candidates since the last training; not retrained (setup_scanner.meta.retrain)"
)


def _report(scored: pd.DataFrame, m) -> dict:
    """Labelled out-of-fold rows (``y``), the calibrated reliability table and the reliability diagram."""
    oof = scored[scored["p_cal"].notna() & scored["win"].notna()].rename(columns={"win": "y"})
    rel_raw, rel = reliability_table(oof["p_raw"], oof["y"]), reliability_table(oof["p_cal"], oof["y"])
    return {
        "oof": oof,
        "rel": rel,
        "png": reliability_plot({"raw": rel_raw, "calibrated": rel}, f"{m.name}: out-of-fold reliability"),
    }


def _record_version(
    con, fit, data: pd.DataFrame, scored: pd.DataFrame, logged, m, dagster_run_id: str, fp: str, now: TrainingState
) -> dict:
    """Record the version: its ``ml.model_runs`` row, folds and every candidate's point-in-time score."""
    res = fit.result
    row = runs.model_run_row(
        mlflow_run_id=logged.run_id,
        model_name=m.name,
        model_version=logged.version,
        data_start=pd.Timestamp(int(data["ts"].min()), unit="ms"),
        data_end=pd.Timestamp(int(data["ts"].max()), unit="ms"),
        n_rows=fit.labelled_rows,
        n_folds=len(fit.folds),
        scores_raw=res.scores_raw,
        scores_cal=res.scores_cal,
        dagster_run_id=dagster_run_id,
        code_version=CODE_VERSION,
        config_hash=now.config_hash,
    )
    scores = scored.assign(model_name=m.name, model_version=logged.version, mlflow_run_id=logged.run_id)
    runs.record_model_run(
        con, row, scores=scores, scores_table="ml.setup_meta_scores", folds=res.folds, inputs=("ml.setup_meta", fp)
    )
    return row


def _metadata(fit, scored: pd.DataFrame, logged, row: dict, report: dict, m) -> dict:
    res = fit.result
    return {
        **version_metadata(logged, m.name, res.scores_raw, res.scores_cal, res.train_seconds, row),
        "labelled_rows": fit.labelled_rows,
        "scored_candidates": int(scored["fold"].ge(0).sum()),
        "folds": len(fit.folds),
        "scores_by_timeframe": md_table(scores_by(report["oof"], "timeframe")),
        "reliability_table": md_table(report["rel"]),
        "reliability": png_md(report["png"], "reliability"),
    }


ml_setup_meta_evaluation, ml_setup_meta_champion = promotion_assets(
    SETUP_META,
    SETUP_META_EVALUATION,
    SETUP_META_CHAMPION,
    GROUP_SETUPS,
    lambda cfg: cfg.setup_scanner.meta,
    "setup meta-model",
    CODE_VERSION,
    priority=10,
)
