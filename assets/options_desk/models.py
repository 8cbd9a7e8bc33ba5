"""Group ``options_desk``, models: ``p_long`` / ``p_short`` (walk-forward, calibrated, MLflow) and their promotion.

``ml/options_direction`` fits both models (:mod:`models.options_direction`) when its inputs change, logs one
MLflow run and registered version per model, stores every day's walk-forward score in ``ml.options_scores`` and
applies the promotion criteria of ``options_desk.models.promotion`` (OOS calibrated scores and no regression
against the current champion). Its checks ``p_long_gate`` / ``p_short_gate`` show the verdicts.
``ml/options_direction_champion`` then moves ``@champion`` for each model that passed and leaves the other alone.

Unlike the baseline (whose gate is a blocking check), these checks do not block: the daily signal depends on
the champion step, and a model that fails its gate must not stop the desk's daily signal. The gate still decides
which scores the signal uses: only a champion's scores ever reach a decision.
"""

import json

import dagster as dg
import numpy as np
import pandas as pd

from assets.common import POOL, md_table, png_array, png_md
from assets.keys import GROUP_OPTIONS, ONCHAIN_DAILY, ONCHAIN_FEATURES, OPTIONS_CHAMPION, OPTIONS_MODELS, model_gate
from models.calibration import reliability_plot, reliability_table
from models.evaluation import decide
from models.options_direction import OPTIONS_MODEL_FEATURES, TARGETS, direction_dataset, fit_direction
from models.splits import parse_window
from models.trainers import ModelSpec
from pipeline.config import settings
from pipeline.research import clean_metrics
from resources.mlflow_tracking import MlflowTracking
from resources.warehouse import WarehouseResource
from warehouse import io

CODE_VERSION = "1"
DAY_MS = 86_400_000


class OptionsTrainConfig(dg.Config):
    force: bool = False


def load_dataset(con, cfg) -> pd.DataFrame:
    """:func:`direction_dataset` from ``features.onchain`` and ``market.onchain_daily`` prices."""
    m = cfg.options_desk.models
    f = io.read_df(con, "SELECT * FROM features.onchain ORDER BY date")
    px = io.read_df(con, "SELECT date, price_usd FROM market.onchain_daily ORDER BY date")
    price = px.assign(date=pd.to_datetime(px["date"])).set_index("date")["price_usd"]
    return direction_dataset(f, price, horizon_days=m.horizon_days, long_min_return=m.long_min_return,
                             short_min_return=m.short_min_return, start=m.start_date)


def fit_all(data: pd.DataFrame, cfg) -> dict:
    """Both targets' :class:`models.options_direction.DirectionFit`, keyed ``p_long`` / ``p_short``."""
    m = cfg.options_desk.models
    w = m.walk_forward
    spec = ModelSpec(kind=m.kind, params=m.params, seed=m.seed)
    win = {k: parse_window(getattr(w, k), DAY_MS) for k in ("train_window", "test_window", "purge", "embargo")}
    return {t: fit_direction(data, t, spec, train_ms=win["train_window"], test_ms=win["test_window"], purge_ms=win["purge"],
                             embargo_ms=win["embargo"], expanding=w.expanding, calibration=m.calibration,
                             min_calibration_rows=w.min_calibration_rows) for t in TARGETS}


@dg.asset(
    key=OPTIONS_MODELS, group_name=GROUP_OPTIONS, pool=POOL, deps=[ONCHAIN_FEATURES, ONCHAIN_DAILY],
    kinds={"lightgbm", "mlflow", "duckdb"}, code_version=CODE_VERSION,
    check_specs=[dg.AssetCheckSpec(model_gate(t), asset=OPTIONS_MODELS,
                                   description=f"{t}: OOS calibrated AUC / ECE / rows, Brier below the base rate, and no "
                                               "Brier regression against the current @champion (options_desk.models.promotion). "
                                               "Not blocking: the champion step promotes only models that passed.")
                 for t in TARGETS],
    description="p_long = P(BTC 30d return >= +5 %), p_short = P(<= -5 %) from daily on-chain regime features: purged "
                "walk-forward refit every 90 days, Platt calibration on earlier out-of-fold scores, one MLflow run and "
                "registered version per model; every day's point-in-time score in ml.options_scores.",
)
def ml_options_direction(context: dg.AssetExecutionContext, config: OptionsTrainConfig, warehouse: WarehouseResource,
                         mlflow: MlflowTracking):
    cfg = settings()
    m = cfg.options_desk.models
    with warehouse.connect() as con:
        fp = io.inputs_fingerprint(con, "SELECT asset, fingerprint FROM ops.asset_inputs WHERE asset IN "
                                        "('features.onchain', 'market.onchain_daily') ORDER BY 1",
                                   extra=m.model_dump_json() + CODE_VERSION)
        if not config.force and io.inputs_unchanged(con, "ml.options_direction", fp):
            runs = io.read_df(con, """SELECT * FROM ml.model_runs WHERE model_name IN (SELECT unnest(?::VARCHAR[]))
                QUALIFY row_number() OVER (PARTITION BY model_name ORDER BY trained_at DESC) = 1""", [list(m.names.values())])
            yield dg.MaterializeResult(metadata={"status": "inputs unchanged; models not retrained",
                                                 "versions": md_table(runs[["model_name", "model_version", "promotion_passed"]])})
            for t, name in m.names.items():
                r = runs[runs["model_name"] == name]
                ok = bool(len(r)) and bool(r["promotion_passed"].iloc[0])
                yield dg.AssetCheckResult(check_name=model_gate(t), passed=ok, severity=dg.AssetCheckSeverity.WARN,
                                          metadata={"reasons": "\n".join(json.loads(r["promotion_reasons"].iloc[0]) if len(r) and
                                                                         r["promotion_reasons"].iloc[0] else ["no trained version"]),
                                                    "status": "unchanged since the last training"})
            return
        data = load_dataset(con, cfg)
    fits = fit_all(data, cfg)
    summary, checks, rels = [], [], {}
    for t, fit in fits.items():
        name, res = m.names[t], fit.result
        passed, reasons = decide(res.scores_cal, m.promotion, mlflow.champion_scores(name))
        oof = fit.daily[fit.daily["p_cal"].notna() & fit.daily["y"].notna()]
        rel = reliability_table(oof["p_cal"], oof["y"])
        rels[t] = rel
        png = reliability_plot({"raw": reliability_table(oof["p_raw"], oof["y"]), "calibrated": rel}, f"{name}: out-of-sample reliability")
        tags = {"dagster_run_id": context.run_id, "dagster_asset_key": OPTIONS_MODELS.to_user_string(), "code_version": CODE_VERSION,
                "data_start": str(data["date"].min().date()), "data_end": str(data["date"].max().date()),
                "promotion_passed": str(passed)}
        with mlflow.start_run("options_desk", f"{name}-{context.run_id[:8]}", tags) as mrun:
            import mlflow as mlf
            mlf.log_params({"target": t, "horizon_days": m.horizon_days, "long_min_return": m.long_min_return,
                            "short_min_return": m.short_min_return, "kind": m.kind, "calibration": m.calibration,
                            "seed": m.seed, "n_features": len(OPTIONS_MODEL_FEATURES),
                            **{f"wf_{k}": v for k, v in m.walk_forward.model_dump().items()},
                            **{f"param_{k}": v for k, v in m.params.items()}})
            mlf.log_metrics({f"oos_{k}_raw": float(v) for k, v in res.scores_raw.items() if np.isfinite(v)})
            mlf.log_metrics({f"oos_{k}_cal": float(v) for k, v in res.scores_cal.items() if np.isfinite(v)})
            mlf.log_image(png_array(png), "reliability.png")
            mlf.log_dict({"features": OPTIONS_MODEL_FEATURES}, "features.json")
            mlf.log_text(res.folds.to_csv(index=False), "folds.csv")
            mlf.log_dict({"reasons": reasons, "passed": passed}, "promotion.json")
            version = mlflow.log_sklearn_model(fit.served, name, input_example=data[OPTIONS_MODEL_FEATURES].tail(3))
            run_id = mrun.info.run_id
            url = mlflow.run_url(mrun.info.experiment_id, run_id)
        d = fit.daily
        scores = pd.DataFrame({"model_name": name, "model_version": str(version), "mlflow_run_id": run_id,
                               "date": d["date"].dt.date, "fold": d["fold"].astype(int), "p_raw": d["p_raw"],
                               "p_cal": d["p_cal"], "y": d["y"], "fwd_ret": d["fwd_ret"],
                               "label_end_date": pd.to_datetime(d["label_end_ts"].where(d["label_end_ts"] >= 0), unit="ms").dt.date})
        with warehouse.connect() as con, io.transaction(con):
            # keep the scores of the new version and of the current champion only
            con.execute("""DELETE FROM ml.options_scores WHERE model_name = ? AND mlflow_run_id NOT IN (SELECT mlflow_run_id
                           FROM ml.model_runs WHERE model_name = ? AND promoted ORDER BY trained_at DESC LIMIT 1)""", [name, name])
            io.upsert(con, "ml.options_scores", scores, ["model_name", "mlflow_run_id", "date"])
            io.upsert(con, "ml.model_runs", pd.DataFrame([{
                "mlflow_run_id": run_id, "model_name": name, "model_version": str(version), "trained_at": io.now_utc(),
                "data_start": data["date"].min(), "data_end": data["date"].max(), "n_rows": fit.labelled_rows,
                "n_folds": len(fit.folds), "metrics": json.dumps({"raw": clean_metrics(res.scores_raw), "cal": clean_metrics(res.scores_cal)}),
                "promotion_passed": passed, "promotion_reasons": json.dumps(reasons), "promoted": False,
                "dagster_run_id": context.run_id, "code_version": CODE_VERSION}]), ["mlflow_run_id"])
        summary.append({"model": name, "version": str(version), "verdict": "PASS" if passed else "FAIL",
                        **{k: round(float(v), 4) for k, v in res.scores_cal.items() if k in ("n", "base_rate", "auc", "brier", "brier_base", "ece")},
                        "mlflow_run": url})
        checks.append(dg.AssetCheckResult(check_name=model_gate(t), passed=passed, severity=dg.AssetCheckSeverity.WARN,
                                          metadata={"reasons": "\n".join(reasons), "model_version": str(version),
                                                    "reliability": png_md(png, "reliability")}))
    with warehouse.connect() as con:
        io.record_inputs(con, "ml.options_direction", fp)
    last = {t: float(f.daily["p_cal"].iloc[-1]) if len(f.daily) else None for t, f in fits.items()}
    yield dg.MaterializeResult(metadata={
        "models": md_table(pd.DataFrame(summary)), "rows": len(data), "refits": len(fits["p_long"].folds),
        "latest_day": str(data["date"].max().date()), "latest_scores": json.dumps({k: None if v is None or np.isnan(v) else round(v, 4)
                                                                                   for k, v in last.items()}),
        "p_long_reliability": md_table(rels["p_long"].round(4)), "p_short_reliability": md_table(rels["p_short"].round(4))})
    yield from checks


@dg.asset(
    key=OPTIONS_CHAMPION, group_name=GROUP_OPTIONS, pool=POOL, deps=[OPTIONS_MODELS], kinds={"mlflow"}, code_version=CODE_VERSION,
    description="Moves @champion of options_p_long / options_p_short to the version just trained when its gate passed; "
                "a model that failed keeps its previous champion (or none).",
)
def ml_options_direction_champion(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                                  mlflow: MlflowTracking) -> dg.MaterializeResult:
    m = settings().options_desk.models
    rows = []
    with warehouse.connect() as con:
        for t, name in m.names.items():
            r = io.read_df(con, "SELECT * FROM ml.model_runs WHERE model_name = ? ORDER BY trained_at DESC LIMIT 1", [name])
            current = mlflow.champion(name)
            cur = None if current is None else str(current.version)
            if r.empty:
                rows.append({"model": name, "champion": cur, "action": "no trained version"})
                continue
            r = r.iloc[0]
            if not bool(r.promotion_passed):
                rows.append({"model": name, "champion": cur, "action": f"v{r.model_version} failed its gate; champion unchanged"})
                continue
            if cur != str(r.model_version):
                mlflow.promote(name, r.model_version)
                con.execute("UPDATE ml.model_runs SET promoted = true WHERE mlflow_run_id = ?", [r.mlflow_run_id])
            rows.append({"model": name, "champion": str(r.model_version),
                         "action": "already champion" if cur == str(r.model_version) else f"promoted (was {cur})"})
    return dg.MaterializeResult(metadata={"champions": md_table(pd.DataFrame(rows))})
