"""Group ``research``: the baseline direction model (walk-forward, calibrated, MLflow) and its ``@champion`` promotion.

``ml/baseline_direction`` trains and registers a version every time its inputs change and stores its
out-of-sample predictions (the backtest uses them whatever the verdict). ``ml/baseline_direction_evaluation``
carries the blocking check ``promotion_gate``: the promotion criteria of ``trader.yaml`` applied to the
out-of-sample calibrated scores and compared with the current champion. ``ml/baseline_direction_champion``
moves the alias and only runs when the gate passed, so a worse model is logged and registered but never served.
"""

import json
from typing import Callable

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import Field

from assets.common import POOL, TrainConfig, md_table, png_array, png_md
from assets.keys import BASELINE, BASELINE_CHAMPION, BASELINE_EVALUATION, FEATURES, GROUP_RESEARCH, REGIMES
from assets.promotion import promotion_assets
from models.calibration import reliability_plot, reliability_table
from models.datasets import MODEL_FEATURES
from models.evaluation import PromotionCriteria, decide, scores_by
from pipeline import research
from pipeline.config import settings
from resources.mlflow_tracking import MlflowTracking
from resources.warehouse import WarehouseResource
from warehouse import io

CODE_VERSION = "2"


def _round(d: dict, n: int = 5) -> dict:
    return {k: (round(float(v), n) if isinstance(v, (float, np.floating)) else v) for k, v in d.items()}


def _fingerprint(con, cfg) -> str:
    b = cfg.research.baseline
    # row counts and last bar per symbol, plus when each slice was last rebuilt by a formula change
    return io.inputs_fingerprint(
        con, f"""SELECT symbol, max(ts)::VARCHAR, count(*) FROM features.technical WHERE timeframe = '{b.timeframe}' GROUP BY ALL
                 UNION ALL SELECT asset, fingerprint, epoch_ms(updated_at) FROM ops.asset_inputs
                 WHERE asset LIKE 'code:%:{b.timeframe}' ORDER BY ALL""",
        extra=b.model_dump_json() + json.dumps(cfg.universe.symbols) + CODE_VERSION)


@dg.asset(
    key=BASELINE, group_name=GROUP_RESEARCH, pool=POOL, deps=[FEATURES, REGIMES], kinds={"lightgbm", "mlflow", "duckdb"},
    code_version=CODE_VERSION,
    description="LightGBM p(TP before SL) for a long entry on BTC/ETH 1h: triple-barrier labels, purged walk-forward, "
                "isotonic calibration on out-of-fold predictions; MLflow run + registered version; out-of-sample "
                "probabilities for every universe symbol in ml.predictions.",
)
def ml_baseline_direction(context: dg.AssetExecutionContext, config: TrainConfig, warehouse: WarehouseResource,
                          mlflow: MlflowTracking) -> dg.MaterializeResult:
    cfg = settings()
    b, ex = cfg.research.baseline, cfg.exchange.id
    with warehouse.connect() as con:
        fp = _fingerprint(con, cfg)
        if not config.force and io.inputs_unchanged(con, "ml.baseline_direction", fp):
            last = io.read_df(con, "SELECT * FROM ml.model_runs WHERE model_name = ? ORDER BY trained_at DESC LIMIT 1", [b.name])
            if len(last):
                r = last.iloc[0]
                sc = json.loads(r.metrics)
                tbl = pd.DataFrame([{"set": k, **_round({m: (np.nan if v is None else v) for m, v in sc[k].items()})} for k in ("raw", "cal")])
                return dg.MaterializeResult(metadata={"status": "features and configuration unchanged; model not retrained",
                                                      "mlflow_run_id": r.mlflow_run_id, "model_version": r.model_version,
                                                      "oos_scores": md_table(tbl)})
        run = research.train_baseline(con, ex, b, research.window_spec(b))
        preds = research.predictions_for(con, ex, cfg.universe.symbols, b, run)
    res = run.result
    oof = res.oof.merge(run.data[["symbol", "ts", "trend_code", "vol_code"]], left_on="row", right_index=True)
    oof = oof[oof["p_cal"].notna()]
    by_regime = scores_by(oof.assign(trend=oof["trend_code"].map({-1.0: "bear", 0.0: "sideways", 1.0: "bull"}),
                                     vol=oof["vol_code"].map({0.0: "low", 1.0: "normal", 2.0: "high"})), ["trend", "vol"])
    by_symbol = scores_by(oof, "symbol")
    rel_raw, rel_cal = reliability_table(oof["p_raw"], oof["y"]), reliability_table(oof["p_cal"], oof["y"])
    png = reliability_plot({"raw": rel_raw, "calibrated": rel_cal}, f"{b.name}: out-of-fold reliability")
    data_start = pd.Timestamp(int(run.data["ts"].min()), unit="ms")
    data_end = pd.Timestamp(int(run.data["ts"].max()), unit="ms")
    tags = {"dagster_run_id": context.run_id, "dagster_asset_key": BASELINE.to_user_string(), "partition": "",
            "code_version": CODE_VERSION, "data_start": data_start.isoformat(), "data_end": data_end.isoformat()}
    with mlflow.start_run("baseline_direction", f"{b.name}-{context.run_id[:8]}", tags) as mrun:
        import mlflow as mlf
        mlf.log_params({"kind": b.kind, "calibration": b.calibration, "seed": b.seed, "timeframe": b.timeframe,
                        "train_symbols": ",".join(b.train_symbols), "n_features": len(MODEL_FEATURES),
                        **{f"label_{k}": v for k, v in b.label.model_dump().items()},
                        **{f"wf_{k}": v for k, v in b.walk_forward.model_dump().items()},
                        **{f"param_{k}": v for k, v in b.params.items()}})
        mlf.log_metrics({f"oos_{k}_raw": float(v) for k, v in res.scores_raw.items() if np.isfinite(v)})
        mlf.log_metrics({f"oos_{k}_cal": float(v) for k, v in res.scores_cal.items() if np.isfinite(v)})
        for r in res.folds.itertuples():
            for k in ("auc_raw", "brier_raw", "auc_cal", "brier_cal", "ece_cal"):
                v = getattr(r, k)
                if np.isfinite(v):
                    mlf.log_metric(f"fold_{k}", float(v), step=int(r.fold))
        mlf.log_image(png_array(png), "reliability.png")
        mlf.log_dict({"features": MODEL_FEATURES}, "features.json")
        mlf.log_dict(res.importance, "feature_importance.json")
        mlf.log_text(res.folds.to_csv(index=False), "folds.csv")
        mlf.log_text(by_regime.to_csv(index=False), "scores_by_regime.csv")
        version = mlflow.log_sklearn_model(res.final, b.name, input_example=run.data[MODEL_FEATURES].head(5))
        exp_id, run_id = mrun.info.experiment_id, mrun.info.run_id
    trained_at = io.now_utc()
    with warehouse.connect() as con, io.transaction(con):
        p = preds.assign(model_name=b.name, mlflow_run_id=run_id, exchange=ex, timeframe=b.timeframe,
                         in_training_universe=preds["symbol"].isin(b.train_symbols))
        con.execute("DELETE FROM ml.predictions WHERE model_name = ?", [b.name])
        io.upsert(con, "ml.predictions", p, ["model_name", "exchange", "symbol", "timeframe", "ts"])
        io.upsert(con, "ml.folds", res.folds.assign(model_name=b.name, mlflow_run_id=run_id), ["model_name", "mlflow_run_id", "fold"])
        io.upsert(con, "ml.model_runs", pd.DataFrame([{
            "mlflow_run_id": run_id, "model_name": b.name, "model_version": version, "trained_at": trained_at,
            "data_start": data_start, "data_end": data_end, "n_rows": len(run.data), "n_folds": len(run.folds),
            "metrics": json.dumps({"raw": _clean(res.scores_raw), "cal": _clean(res.scores_cal)}),
            "promotion_passed": None, "promotion_reasons": None, "promoted": False,
            "dagster_run_id": context.run_id, "code_version": CODE_VERSION}]), ["mlflow_run_id"])
        io.record_inputs(con, "ml.baseline_direction", fp)  # the inputs this version was trained on
    scores_tbl = pd.DataFrame([{"set": "raw", **_round(res.scores_raw)}, {"set": "calibrated", **_round(res.scores_cal)}])
    return dg.MaterializeResult(
        metadata={"mlflow_run": dg.MetadataValue.url(mlflow.run_url(exp_id, run_id)), "mlflow_run_id": run_id,
                  "model_uri": f"models:/{b.name}/{version}", "model_version": version,
                  "rows": len(run.data), "folds": len(run.folds), "train_seconds": round(res.train_seconds, 1),
                  "data_range": f"{data_start} .. {data_end}", "oos_scores": md_table(scores_tbl),
                  "folds_table": md_table(res.folds.round({c: 4 for c in res.folds.select_dtypes("float").columns}), 100), "scores_by_regime": md_table(by_regime.round(4)),
                  "scores_by_symbol": md_table(by_symbol.round(4)), "reliability": png_md(png, "reliability"),
                  "prediction_rows": len(preds)})


def _clean(d: dict) -> dict:
    return research.clean_metrics(d)


ml_baseline_direction_evaluation, ml_baseline_direction_champion = promotion_assets(
    BASELINE, BASELINE_EVALUATION, BASELINE_CHAMPION, GROUP_RESEARCH, lambda: settings().research.baseline.name,
    lambda: settings().research.baseline.promotion, "baseline model", CODE_VERSION)
