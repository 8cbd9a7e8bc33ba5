"""Group ``options_desk``, models: ``p_long`` / ``p_short`` (walk-forward, calibrated, MLflow) and their promotion.

``ml/options_direction`` fits both models (:mod:`models.options_direction`) when its inputs change, logs one
MLflow run and registered version per model, stores every day's walk-forward score in ``ml.options_scores`` and
applies the promotion criteria of ``options_desk.models.promotion`` (OOS calibrated scores and no regression
against the current champion). Its checks ``p_long_gate`` / ``p_short_gate`` show the verdicts.
``ml/options_champion`` then moves ``@champion`` for each model that passed and leaves the other alone.

Unlike the baseline (whose gate is a blocking check), these checks do not block: the daily signal depends on
the champion step, and a model that fails its gate must not stop the desk's daily signal. The gate still decides
which scores the signal uses: only a champion's scores ever reach a decision.
"""

import json

import dagster as dg
import numpy as np
import pandas as pd

from assets.common import POOL, UNCHANGED, TrainConfig, carried_forward, md_table, png_md, retrain_decision, rounded
from assets.keys import GROUP_OPTIONS, ONCHAIN_DAILY, ONCHAIN_FEATURES, OPTIONS_CHAMPION, OPTIONS_MODELS, model_gate
from assets.promotion import reconcile_champion
from models.calibration import reliability_plot, reliability_table
from models.evaluation import decide
from models.options_direction import (
    OPTIONS_MODEL_FEATURES,
    TARGETS,
    direction_dataset,
    fit_direction,
    labelled_rows,
)
from models.retrain import TrainingState, config_hash
from pipeline.config import settings
from resources.mlflow_tracking import MlflowTracking, TrainingRecord
from resources.warehouse import WarehouseResource
from warehouse import io, readers, runs

CODE_VERSION = "1"
DAY_MS = 86_400_000


def load_dataset(con, cfg) -> pd.DataFrame:
    """:func:`direction_dataset` from ``features.onchain`` and ``market.onchain_daily`` prices."""
    m = cfg.options_desk.models
    return direction_dataset(
        readers.table(con, "features.onchain", order_by="date"),
        readers.btc_price(con),
        horizon_days=m.horizon_days,
        long_min_return=m.long_min_return,
        short_min_return=m.short_min_return,
        start=m.start_date,
    )


def fit_all(data: pd.DataFrame, cfg) -> dict:
    """Both targets' :class:`models.options_direction.DirectionFit`, keyed ``p_long`` / ``p_short``."""
    m = cfg.options_desk.models
    w = m.walk_forward
    spec, win = m.spec(), w.to_ms(DAY_MS)
    return {
        t: fit_direction(
            data,
            t,
            spec,
            train_ms=win.train_ms,
            test_ms=win.test_ms,
            purge_ms=win.purge_ms,
            embargo_ms=win.embargo_ms,
            expanding=win.expanding,
            calibration=m.calibration,
            min_calibration_rows=w.min_calibration_rows,
        )
        for t in TARGETS
    }


def _unchanged_results(context, con, m, status: str = "inputs unchanged; models not retrained", extra=None):
    """Metadata and checks of the versions already trained (shown when the asset skips; the figures of the training
    run are carried forward). ``status`` / ``extra``: why it skipped (e.g. the retrain decision)."""
    latest = readers.latest_runs(con, list(m.names.values()))
    yield dg.MaterializeResult(
        metadata=rounded(
            carried_forward(
                context,
                {
                    "status": status,
                    **(extra or {}),
                    "versions": md_table(latest[["model_name", "model_version", "promotion_passed"]]),
                },
            )
        )
    )
    for t, name in m.names.items():
        r = latest[latest["model_name"] == name]
        ok = bool(len(r)) and bool(r["promotion_passed"].iloc[0])
        reasons = (
            json.loads(r["promotion_reasons"].iloc[0])
            if len(r) and r["promotion_reasons"].iloc[0]
            else ["no trained version"]
        )
        yield dg.AssetCheckResult(
            check_name=model_gate(t),
            passed=ok,
            severity=dg.AssetCheckSeverity.WARN,
            metadata=rounded({"reasons": "\n".join(reasons), "status": "unchanged since the last training"}),
        )


def _record(
    t: str, fit, data: pd.DataFrame, m, name: str, passed: bool, reasons: list[str], png: bytes, context, chash: str
) -> TrainingRecord:
    res = fit.result
    return TrainingRecord(
        experiment="options_desk",
        run_name=f"{name}-{context.run_id[:8]}",
        tags={
            "dagster_run_id": context.run_id,
            "dagster_asset_key": OPTIONS_MODELS.to_user_string(),
            "code_version": CODE_VERSION,
            "config_hash": chash,
            "labelled_rows": str(fit.labelled_rows),
            "data_start": str(data["date"].min().date()),
            "data_end": str(data["date"].max().date()),
            "promotion_passed": str(passed),
        },
        params={
            "target": t,
            "horizon_days": m.horizon_days,
            "long_min_return": m.long_min_return,
            "short_min_return": m.short_min_return,
            "kind": m.kind,
            "calibration": m.calibration,
            "seed": m.seed,
            "n_features": len(OPTIONS_MODEL_FEATURES),
            **{f"wf_{k}": v for k, v in m.walk_forward.model_dump().items()},
            **{f"param_{k}": v for k, v in m.params.items()},
        },
        scores_raw=res.scores_raw,
        scores_cal=res.scores_cal,
        fold_scores=res.folds,
        model=fit.served,
        registered_name=name,
        model_description=_model_description(t, m),
        input_example=data[OPTIONS_MODEL_FEATURES].tail(3),
        images={"reliability.png": png},
        dicts={
            "features.json": {"features": OPTIONS_MODEL_FEATURES},
            "promotion.json": {"reasons": reasons, "passed": passed},
        },
        texts={"folds.csv": res.folds.to_csv(index=False)},
    )


def _model_description(t: str, m) -> str:
    """What the registered model ``options_<t>`` predicts, its label, features and where its figures come from."""
    side = (
        f"BTC's {m.horizon_days}-day forward return >= +{m.long_min_return:.0%}"
        if t == "p_long"
        else f"BTC's {m.horizon_days}-day forward return <= -{m.short_min_return:.0%}"
    )
    return (
        f"Options desk `{t}`: calibrated P({side}) for each day (label y = 1 when it happens; labels end "
        f"{m.horizon_days} days after the decision and are purged). {m.kind} on {len(OPTIONS_MODEL_FEATURES)} daily "
        f"on-chain / sentiment / BTC momentum features (models.options_direction.OPTIONS_MODEL_FEATURES), {m.calibration} "
        "calibration on earlier out-of-fold scores. Figures: out-of-sample over the purged walk-forward refits "
        "(experiment options_desk; every day's point-in-time score in ml.options_scores). Only the @champion's "
        "scores reach the desk's decisions (options_desk.models.promotion)."
    )


def daily_scores(fit, name: str, version: str, run_id: str) -> pd.DataFrame:
    """``ml.options_scores`` rows: every day's point-in-time score of one version."""
    d = fit.daily
    return pd.DataFrame(
        {
            "model_name": name,
            "model_version": str(version),
            "mlflow_run_id": run_id,
            "date": d["date"].dt.date,
            "fold": d["fold"].astype(int),
            "p_raw": d["p_raw"],
            "p_cal": d["p_cal"],
            "y": d["y"],
            "fwd_ret": d["fwd_ret"],
            "label_end_date": pd.to_datetime(d["label_end_ts"].where(d["label_end_ts"] >= 0), unit="ms").dt.date,
        }
    )


def train_and_record(
    t: str, fit, data: pd.DataFrame, m, mlflow: MlflowTracking, warehouse: WarehouseResource, context, chash: str
):
    """Gate, log, register and record one target's version: ``(summary row, check result, reliability table)``."""
    name, res = m.names[t], fit.result
    passed, reasons = decide(res.scores_cal, m.promotion, mlflow.champion_scores(name))
    oof = fit.daily[fit.daily["p_cal"].notna() & fit.daily["y"].notna()]
    rel = reliability_table(oof["p_cal"], oof["y"])
    png = reliability_plot(
        {"raw": reliability_table(oof["p_raw"], oof["y"]), "calibrated": rel}, f"{name}: out-of-sample reliability"
    )
    logged = mlflow.log_training(_record(t, fit, data, m, name, passed, reasons, png, context, chash))
    mlflow.set_verdict(name, logged.version, logged.run_id, passed, reasons)
    row = runs.model_run_row(
        mlflow_run_id=logged.run_id,
        model_name=name,
        model_version=logged.version,
        data_start=data["date"].min(),
        data_end=data["date"].max(),
        n_rows=fit.labelled_rows,
        n_folds=len(fit.folds),
        scores_raw=res.scores_raw,
        scores_cal=res.scores_cal,
        dagster_run_id=context.run_id,
        code_version=CODE_VERSION,
        promotion_passed=passed,
        promotion_reasons=reasons,
        config_hash=chash,
    )
    with warehouse.connect() as con:
        runs.record_model_run(
            con, row, scores=daily_scores(fit, name, logged.version, logged.run_id), scores_table="ml.options_scores"
        )
    summary = {
        "model": name,
        "version": str(logged.version),
        "verdict": "PASS" if passed else "FAIL",
        **{
            k: rounded(float(v))
            for k, v in res.scores_cal.items()
            if k in ("n", "base_rate", "auc", "brier", "brier_base", "ece")
        },
        "mlflow_run": logged.url,
    }
    check = dg.AssetCheckResult(
        check_name=model_gate(t),
        passed=passed,
        severity=dg.AssetCheckSeverity.WARN,
        metadata=rounded(
            {
                "reasons": "\n".join(reasons),
                "model_version": str(logged.version),
                "reliability": png_md(png, "reliability"),
            }
        ),
    )
    return summary, check, rel


RETRAIN_SKIPPED = (
    "too few newly labelled days since the last training; models not retrained (options_desk.models.retrain)"
)


def training_state(data: pd.DataFrame, m) -> TrainingState:
    """What a training of ``options_desk.models`` (``m``) on ``data`` would record (:mod:`models.retrain`)."""
    return TrainingState(CODE_VERSION, config_hash(m.model_dump_json(exclude={"retrain"})), labelled_rows(data))


@dg.asset(
    key=OPTIONS_MODELS,
    group_name=GROUP_OPTIONS,
    pool=POOL,
    deps=[ONCHAIN_FEATURES, ONCHAIN_DAILY],
    kinds={"lightgbm", "mlflow", "duckdb"},
    code_version=CODE_VERSION,
    check_specs=[
        dg.AssetCheckSpec(
            model_gate(t),
            asset=OPTIONS_MODELS,
            description=f"{t}: OOS calibrated AUC / ECE / rows, Brier below the base rate, and no "
            "Brier regression against the current @champion (options_desk.models.promotion). "
            "Not blocking: the champion step promotes only models that passed.",
        )
        for t in TARGETS
    ],
    description="p_long = P(BTC 30d return >= +5 %), p_short = P(<= -5 %) from daily on-chain regime features: purged "
    "walk-forward refit every 90 days, Platt calibration on earlier out-of-fold scores, one MLflow run and "
    "registered version per model; every day's point-in-time score in ml.options_scores.",
)
def ml_options_direction(
    context: dg.AssetExecutionContext, config: TrainConfig, warehouse: WarehouseResource, mlflow: MlflowTracking
):
    cfg = settings()
    m = cfg.options_desk.models
    with warehouse.connect() as con:
        fp = io.inputs_fingerprint(
            con,
            readers.asset_fingerprints(["features.onchain", "market.onchain_daily"]),
            extra=m.model_dump_json(exclude={"retrain"}) + CODE_VERSION,
        )
        if not config.force and io.inputs_unchanged(con, "ml.options_direction", fp):
            yield from _unchanged_results(context, con, m, extra={"retrain": UNCHANGED})
            return
        data = load_dataset(con, cfg)
        now = training_state(data, m)
        retrain, why = retrain_decision(con, list(m.names.values()), now, m.retrain, config.force)
        if not retrain:  # new days but too few new labels: the versions in force stay (models.retrain)
            yield from _unchanged_results(context, con, m, RETRAIN_SKIPPED, {"retrain": why})
            return
    fits = fit_all(data, cfg)
    out = {t: train_and_record(t, fit, data, m, mlflow, warehouse, context, now.config_hash) for t, fit in fits.items()}
    with warehouse.connect() as con:
        io.record_inputs(con, "ml.options_direction", fp)
    last = {t: float(f.daily["p_cal"].iloc[-1]) if len(f.daily) else None for t, f in fits.items()}
    yield dg.MaterializeResult(
        metadata=rounded(
            {
                "retrain": why,
                "models": md_table(pd.DataFrame([o[0] for o in out.values()])),
                "rows": len(data),
                "refits": len(fits["p_long"].folds),
                "latest_day": str(data["date"].max().date()),
                "latest_scores": json.dumps(
                    {k: None if v is None or np.isnan(v) else rounded(v) for k, v in last.items()}
                ),
                "p_long_reliability": md_table(out["p_long"][2]),
                "p_short_reliability": md_table(out["p_short"][2]),
            }
        )
    )
    yield from (o[1] for o in out.values())


@dg.asset(
    key=OPTIONS_CHAMPION,
    group_name=GROUP_OPTIONS,
    pool=POOL,
    deps=[OPTIONS_MODELS],
    kinds={"mlflow"},
    code_version=CODE_VERSION,
    description="Moves @champion of options_p_long / options_p_short to the version just trained when its gate passed; "
    "a model that failed keeps its previous champion (or none).",
)
def ml_options_direction_champion(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, mlflow: MlflowTracking
) -> dg.MaterializeResult:
    m = settings().options_desk.models
    rows = []
    with warehouse.connect() as con:
        for t, name in m.names.items():
            r = readers.latest_run(con, name)
            current = reconcile_champion(con, mlflow, name)
            cur = None if current is None else str(current.version)
            if r is None:
                rows.append({"model": name, "champion": cur, "action": "no trained version"})
                continue
            if not bool(r.promotion_passed):
                rows.append(
                    {
                        "model": name,
                        "champion": cur,
                        "action": f"v{r.model_version} failed its gate; champion unchanged",
                    }
                )
                continue
            if cur != str(r.model_version):
                mlflow.promote(name, r.model_version)  # alias first; a crash here is repaired by reconcile_champion
                runs.sync_promoted(con, name, str(r.model_version))
            rows.append(
                {
                    "model": name,
                    "champion": str(r.model_version),
                    "action": "already champion" if cur == str(r.model_version) else f"promoted (was {cur})",
                }
            )
    return dg.MaterializeResult(metadata=rounded({"champions": md_table(pd.DataFrame(rows))}))
