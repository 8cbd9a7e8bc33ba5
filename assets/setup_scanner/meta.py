"""Group ``setup_scanner``: the XGBoost p(win) meta-model (train -> promotion gate -> ``@champion``).

``ml/setup_meta`` builds the dataset from ``signals.setup_candidates`` (valid plans, label = TP1 before the stop,
pure code in :mod:`models.setup_meta`), fits the purged walk-forward with isotonic calibration, logs an MLflow run
(experiment ``setup_scanner``), registers a version and stores every candidate's point-in-time p(win) in
``ml.setup_meta_scores``. ``ml/setup_meta_evaluation`` carries the blocking ``promotion_gate`` check and
``ml/setup_meta_champion`` moves the alias (factory :func:`assets.ml.promotion_assets`). Both run at a higher
Dagster priority so that, inside one run, the gate and the promotion happen before the signals are gated.
"""
import json

import dagster as dg
import numpy as np
import pandas as pd

from assets.common import POOL, TrainConfig, md_table, png_array, png_md
from assets.keys import GROUP_SETUPS, SETUP_CANDIDATES, SETUP_META, SETUP_META_CHAMPION, SETUP_META_EVALUATION
from assets.promotion import promotion_assets
from models.calibration import reliability_plot, reliability_table
from models.datasets import model_features
from models.evaluation import scores_by
from models.setup_meta import META_FEATURES, fit_meta, meta_dataset
from models.splits import parse_window
from models.trainers import ModelSpec, feature_importance
from pipeline import research
from pipeline.config import settings
from resources.mlflow_tracking import MlflowTracking
from resources.warehouse import WarehouseResource
from warehouse import io

CODE_VERSION = "1"


def technical_for(con, exchange: str, cands: pd.DataFrame) -> pd.DataFrame:
    """:func:`models.datasets.model_features` rows of the candidates' signal bars, per series."""
    parts = []
    for (sym, tf), g in cands.groupby(["symbol", "timeframe"], sort=True):
        s = research.load_series(con, exchange, sym, tf)
        x = model_features(s, s[["ts", "trend_regime", "volatility_level", "natr_pct_rank", "regime_confidence"]])
        parts.append(x[x["ts"].isin(g["ts"].unique())].assign(symbol=sym, timeframe=tf))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["symbol", "timeframe", "ts"])


def load_dataset(con, exchange: str) -> pd.DataFrame:
    """:func:`models.setup_meta.meta_dataset` over every stored candidate."""
    cands = io.read_df(con, "SELECT * FROM signals.setup_candidates WHERE reject_reason IS NULL")
    if cands.empty:
        raise dg.Failure("signals.setup_candidates has no valid candidates; materialise signals/setup_candidates first")
    return meta_dataset(cands, technical_for(con, exchange, cands))


def _fingerprint(con, cfg) -> str:
    return io.inputs_fingerprint(con, "SELECT fingerprint FROM ops.asset_inputs WHERE asset = 'signals.setup_candidates'",
                                 extra=cfg.setup_scanner.meta.model_dump_json() + CODE_VERSION)


@dg.asset(
    key=SETUP_META, group_name=GROUP_SETUPS, pool=POOL, deps=[SETUP_CANDIDATES], kinds={"xgboost", "mlflow", "duckdb"},
    code_version=CODE_VERSION,
    description="XGBoost p(win) of every valid setup candidate (win = TP1 before the stop): purged walk-forward with "
                "forecast folds, isotonic calibration on out-of-fold scores; MLflow run + registered version; point-in-time "
                "scores of every candidate in ml.setup_meta_scores; reliability diagram.",
)
def ml_setup_meta(context: dg.AssetExecutionContext, config: TrainConfig, warehouse: WarehouseResource,
                  mlflow: MlflowTracking) -> dg.MaterializeResult:
    cfg = settings()
    m, ex = cfg.setup_scanner.meta, cfg.exchange.id
    with warehouse.connect() as con:
        fp = _fingerprint(con, cfg)
        if not config.force and io.inputs_unchanged(con, "ml.setup_meta", fp):
            return dg.MaterializeResult(metadata={"status": "candidates and configuration unchanged; model not retrained"})
        data = load_dataset(con, ex)
    step = 3_600_000
    w = m.walk_forward
    fit = fit_meta(data, ModelSpec(kind=m.kind, params=m.params, seed=m.seed), train_ms=parse_window(w.train_window, step),
                   test_ms=parse_window(w.test_window, step), purge_ms=parse_window(w.purge, step),
                   embargo_ms=parse_window(w.embargo, step), expanding=w.expanding, calibration=m.calibration,
                   min_calibration_rows=w.min_calibration_rows)
    res = fit.result
    scored = pd.concat([data[["candidate_id", "symbol", "timeframe", "ts", "exit_ts", "win", "net_pct"]], fit.scores], axis=1)
    oof = scored[scored["p_cal"].notna() & scored["win"].notna()].rename(columns={"win": "y"})
    rel_raw, rel_cal = reliability_table(oof["p_raw"], oof["y"]), reliability_table(oof["p_cal"], oof["y"])
    png = reliability_plot({"raw": rel_raw, "calibrated": rel_cal}, f"{m.name}: out-of-fold reliability")
    by_tf = scores_by(oof, "timeframe")
    data_start, data_end = (pd.Timestamp(int(data["ts"].min()), unit="ms"), pd.Timestamp(int(data["ts"].max()), unit="ms"))
    tags = {"dagster_run_id": context.run_id, "dagster_asset_key": SETUP_META.to_user_string(), "code_version": CODE_VERSION,
            "data_start": data_start.isoformat(), "data_end": data_end.isoformat()}
    import mlflow as mlf
    with mlflow.start_run("setup_scanner", f"{m.name}-{context.run_id[:8]}", tags) as mrun:
        mlf.log_params({"kind": m.kind, "calibration": m.calibration, "seed": m.seed, "n_features": len(META_FEATURES),
                        "timeframes": ",".join(cfg.setup_scanner.timeframes), "label": "tp1_before_stop",
                        **{f"wf_{k}": v for k, v in w.model_dump().items()}, **{f"param_{k}": v for k, v in m.params.items()}})
        mlf.log_metrics({f"oos_{k}_raw": float(v) for k, v in res.scores_raw.items() if np.isfinite(v)})
        mlf.log_metrics({f"oos_{k}_cal": float(v) for k, v in res.scores_cal.items() if np.isfinite(v)})
        mlf.log_image(png_array(png), "reliability.png")
        mlf.log_dict({"features": META_FEATURES}, "features.json")
        mlf.log_dict(feature_importance(fit.served.estimator, META_FEATURES), "feature_importance.json")
        mlf.log_text(res.folds.to_csv(index=False), "folds.csv")
        mlf.log_text(rel_cal.to_csv(index=False), "reliability_calibrated.csv")
        version = mlflow.log_sklearn_model(fit.served, m.name, input_example=data[META_FEATURES].head(5))
        exp_id, run_id = mrun.info.experiment_id, mrun.info.run_id
    clean = research.clean_metrics
    with warehouse.connect() as con, io.transaction(con):
        io.upsert(con, "ml.setup_meta_scores", scored.assign(model_name=m.name, model_version=version, mlflow_run_id=run_id),
                  ["mlflow_run_id", "candidate_id"])
        # keep the scores of this version and of the champion only (older versions are in MLflow)
        con.execute("""DELETE FROM ml.setup_meta_scores WHERE model_name = ? AND mlflow_run_id <> ? AND mlflow_run_id NOT IN
                       (SELECT mlflow_run_id FROM ml.model_runs WHERE model_name = ? AND promoted)""", [m.name, run_id, m.name])
        io.upsert(con, "ml.folds", res.folds.assign(model_name=m.name, mlflow_run_id=run_id), ["model_name", "mlflow_run_id", "fold"])
        io.upsert(con, "ml.model_runs", pd.DataFrame([{
            "mlflow_run_id": run_id, "model_name": m.name, "model_version": version, "trained_at": io.now_utc(),
            "data_start": data_start, "data_end": data_end, "n_rows": fit.labelled_rows, "n_folds": len(fit.folds),
            "metrics": json.dumps({"raw": clean(res.scores_raw), "cal": clean(res.scores_cal)}),
            "promotion_passed": None, "promotion_reasons": None, "promoted": False,
            "dagster_run_id": context.run_id, "code_version": CODE_VERSION}]), ["mlflow_run_id"])
        io.record_inputs(con, "ml.setup_meta", fp)
    r4 = lambda d: {k: round(float(v), 5) for k, v in d.items()}  # noqa: E731
    return dg.MaterializeResult(metadata={
        "mlflow_run": dg.MetadataValue.url(mlflow.run_url(exp_id, run_id)), "mlflow_run_id": run_id,
        "model_uri": f"models:/{m.name}/{version}", "model_version": version, "labelled_rows": fit.labelled_rows,
        "scored_candidates": int(scored["fold"].ge(0).sum()), "folds": len(fit.folds),
        "train_seconds": round(res.train_seconds, 1), "data_range": f"{data_start} .. {data_end}",
        "oos_scores": md_table(pd.DataFrame([{"set": "raw", **r4(res.scores_raw)}, {"set": "calibrated", **r4(res.scores_cal)}])),
        "scores_by_timeframe": md_table(by_tf.round(4)), "reliability_table": md_table(rel_cal.round(4)),
        "reliability": png_md(png, "reliability")})


ml_setup_meta_evaluation, ml_setup_meta_champion = promotion_assets(
    SETUP_META, SETUP_META_EVALUATION, SETUP_META_CHAMPION, GROUP_SETUPS, lambda: settings().setup_scanner.meta.name,
    lambda: settings().setup_scanner.meta.promotion, "setup meta-model", CODE_VERSION, priority=10)
