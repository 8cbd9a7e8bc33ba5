"""Group ``alpha_portfolio``, models: ``ml/alpha_6h`` and ``ml/alpha_24h`` (LightGBM regressors of the forward 6h / 24h
vol-normalised return, purged walk-forward, :mod:`models.alpha`), one MLflow run and registered version each, their
point-in-time predictions in ``ml.predictions`` (``p_raw`` = prediction, ``p_cal`` = scaled prediction, ``win`` =
realised label), and the promotion pair of each (:func:`assets.promotion.promotion_assets` with the rank-IC rule
:func:`models.alpha.gate`: a blocking ``promotion_gate`` check, then ``@champion``)."""

import json

import dagster as dg
import numpy as np
import pandas as pd

from assets.alpha_portfolio.common import TIMEFRAME
from assets.common import (
    POOL,
    UNCHANGED,
    TrainConfig,
    carried_forward,
    if_unchanged,
    md_table,
    retrain_decision,
    rounded,
    version_metadata,
)
from assets.keys import (
    ALPHA_6H,
    ALPHA_6H_CHAMPION,
    ALPHA_6H_GATE,
    ALPHA_24H,
    ALPHA_24H_CHAMPION,
    ALPHA_24H_GATE,
    ALPHA_FEATURES,
    ALPHA_REGIME,
    GROUP_ALPHA,
)
from assets.promotion import promotion_assets
from models.alpha import AlphaFit, fit_alpha, gate, ic_by, labelled_rows
from models.retrain import TrainingState, config_hash
from pipeline.config import settings
from pipeline.core.alpha_features import FEATURES
from pipeline.core.timeframes import timeframe_ms
from resources.mlflow_tracking import MlflowTracking, TrainingRecord
from resources.warehouse import WarehouseResource
from warehouse import io, readers, runs

CODE_VERSION = "1"
EXPERIMENT = "alpha_portfolio"
SKIPPED = "features, regime and configuration unchanged; model not retrained"
RETRAIN_SKIPPED = (
    "too few newly labelled hours since the last training; model not retrained (alpha_portfolio.model.h*.retrain)"
)


def _section(cfg, horizon: str):
    return cfg.alpha_portfolio.model.horizons()[horizon]


def _report(fit: AlphaFit, regimes: pd.DataFrame, m) -> dict:
    by_regime = ic_by(fit.oof, regimes.set_index("ts")["regime"], m.horizon_bars, m.min_assets)
    by_symbol = (
        fit.oof.groupby("symbol")
        .apply(lambda g: pd.Series({"rows": len(g), "corr": g["pred"].corr(g["y"], method="spearman")}))
        .reset_index()
    )
    return {"by_regime": by_regime, "by_symbol": by_symbol}


def _scores(fit: AlphaFit, by_regime: pd.DataFrame) -> dict:
    """The figures stored as the version's ``cal`` scores (what the gate reads) and logged as ``oos_<k>_cal``."""
    s = dict(fit.ic_summary)
    s["n"] = int(len(fit.oof))
    s["calibration_slope"] = float(fit.calibration["slope"].iloc[0]) if len(fit.calibration) else float("nan")
    for r in by_regime.itertuples():
        s[f"ic_{r.group}"], s[f"ic_t_{r.group}"] = float(r.ic_mean), float(r.ic_t)
    return s


def _fingerprint(con, extra: str) -> str:
    return io.inputs_fingerprint(
        con,
        f"""SELECT symbol, max(ts)::VARCHAR, count(*) FROM features.alpha WHERE timeframe = '{TIMEFRAME}'
            GROUP BY ALL UNION ALL SELECT 'regime', max(ts)::VARCHAR, count(*) FROM regimes.alpha_market
            ORDER BY ALL""",
        extra=extra,
    )


def _span(feats: pd.DataFrame) -> tuple[pd.Timestamp, pd.Timestamp]:
    return pd.Timestamp(int(feats["ts"].min()), unit="ms"), pd.Timestamp(int(feats["ts"].max()), unit="ms")


def _record(context, key, m, fit: AlphaFit, feats: pd.DataFrame, rep: dict, scores: dict, chash: str):
    """The MLflow training record of one alpha version."""
    start, end = _span(feats)
    return TrainingRecord(
        experiment=EXPERIMENT,
        run_name=f"{m.name}-{context.run_id[:8]}",
        tags={
            "dagster_run_id": context.run_id,
            "dagster_asset_key": key.to_user_string(),
            "partition": "",
            "code_version": CODE_VERSION,
            "config_hash": chash,
            "labelled_rows": str(fit.fit.labelled_rows),
            "data_start": start.isoformat(),
            "data_end": end.isoformat(),
        },
        params={
            "kind": m.kind,
            "horizon_bars": m.horizon_bars,
            "label_clip": m.label_clip,
            "train_stride": m.train_stride,
            "n_features": len(FEATURES),
            "seed": m.seed,
            **{f"wf_{k}": v for k, v in m.walk_forward.model_dump().items()},
            **{f"param_{k}": v for k, v in m.params.items()},
        },
        scores_raw={},
        scores_cal=scores,
        model=fit.fit.served,
        registered_name=m.name,
        model_description=f"Alpha model {m.name}: LightGBM regressor of ln(close[t+{m.horizon_bars}]/close[t]) "
        f"/ (rvol_24h sqrt({m.horizon_bars})) on the 13 seed features (pipeline.core.alpha_features.FEATURES), "
        "pooled over the universe's 1h bars; predict() returns the prediction times its fold's expected-return "
        "scale. Figures: out-of-sample rank IC over the purged walk-forward folds. Serve with "
        f"models:/{m.name}@champion.",
        input_example=feats[FEATURES].dropna().head(5),
        dicts={
            "features.json": {"features": FEATURES},
            "calibration_deciles.json": fit.calibration.to_dict(orient="records"),
        },
        texts={
            "folds.csv": fit.fit.result.folds.to_csv(index=False),
            "ic_by_regime.csv": rep["by_regime"].to_csv(index=False),
            "ic_by_symbol.csv": rep["by_symbol"].to_csv(index=False),
        },
    )


def _predictions(fit: AlphaFit, m, run_id: str, ex: str) -> pd.DataFrame:
    """Every row's point-in-time prediction as ``ml.predictions`` rows (``p_raw`` prediction, ``p_cal`` scaled,
    ``win`` the realised label)."""
    s = fit.scores
    return pd.DataFrame(
        {
            "model_name": m.name,
            "mlflow_run_id": run_id,
            "exchange": ex,
            "symbol": s["symbol"].to_numpy(),
            "timeframe": TIMEFRAME,
            "ts": s["ts"].to_numpy(np.int64),
            "fold": s["fold"].to_numpy(),
            "p_raw": s["pred"].to_numpy(),
            "p_cal": s["pred_cal"].to_numpy(),
            "win": s["y"].to_numpy(),
            "label_end_ts": s["label_end_ts"].to_numpy(np.int64),
            "in_training_universe": True,
        }
    )


def _store(con, fit: AlphaFit, m, logged, feats, scores: dict, context, chash: str, ex: str, inputs) -> dict:
    """Record the version (``ml.model_runs`` row, folds, predictions) in one transaction; returns the row."""
    start, end = _span(feats)
    row = runs.model_run_row(
        mlflow_run_id=logged.run_id,
        model_name=m.name,
        model_version=logged.version,
        data_start=start,
        data_end=end,
        n_rows=fit.fit.labelled_rows,
        n_folds=len(fit.fit.folds),
        scores_raw={},
        scores_cal=scores,
        dagster_run_id=context.run_id,
        code_version=CODE_VERSION,
        config_hash=chash,
    )
    folds = fit.fit.result.folds
    runs.record_model_run(
        con,
        row,
        scores=_predictions(fit, m, logged.run_id, ex),
        scores_table="ml.predictions",
        keep_champion_scores=True,
        folds=folds[[c for c in folds.columns if c in _FOLD_COLUMNS]],
        inputs=inputs,
    )
    return row


def _metadata(fit: AlphaFit, m, logged, scores: dict, rep: dict, row: dict) -> dict:
    res = fit.fit.result
    return rounded(
        {
            **version_metadata(logged, m.name, {}, scores, res.train_seconds, row),
            "rows": len(fit.scores),
            "labelled_rows": fit.fit.labelled_rows,
            "folds": len(fit.fit.folds),
            "folds_table": md_table(res.folds, 100),
            "ic_mean": scores["ic_mean"],
            "ic_t": scores["ic_t"],
            "ic_by_regime": md_table(rep["by_regime"]),
            "ic_by_symbol": md_table(rep["by_symbol"]),
            "calibration_deciles": md_table(fit.calibration),
            "fold_scales": json.dumps(
                {int(k): rounded(v) for k, v in fit.scores.groupby("fold")["scale"].first().dropna().items()}
            ),
        }
    )


def _training_asset(horizon: str, key: dg.AssetKey):
    @dg.asset(
        key=key,
        group_name=GROUP_ALPHA,
        pool=POOL,
        deps=[ALPHA_FEATURES, ALPHA_REGIME],
        kinds={"lightgbm", "mlflow", "duckdb"},
        code_version=CODE_VERSION,
        description=f"LightGBM regressor of the forward {horizon} vol-normalised return, pooled over the universe's "
        "1h bars, purged and embargoed walk-forward (models/alpha.py); out-of-sample rank IC per hour, its "
        "t-statistic, IC per regime and calibration deciles; MLflow run + registered version; point-in-time "
        "predictions for every hour in ml.predictions.",
    )
    def _train(
        context: dg.AssetExecutionContext, config: TrainConfig, warehouse: WarehouseResource, mlflow: MlflowTracking
    ) -> dg.MaterializeResult:
        cfg = settings()
        m, ex = _section(cfg, horizon), cfg.exchange.id
        extra = m.model_dump_json(exclude={"retrain"}) + CODE_VERSION
        asset = f"ml.{m.name}"
        with warehouse.connect() as con:
            fp = _fingerprint(con, extra)
            if readers.latest_run(con, m.name) is not None and (
                skip := if_unchanged(
                    context, con, asset, fp, SKIPPED, metadata={"retrain": UNCHANGED}, force=config.force
                )
            ):
                return skip
            feats, regimes = readers.alpha_features(con, ex, TIMEFRAME), readers.alpha_regime(con)
            now = TrainingState(CODE_VERSION, config_hash(extra), labelled_rows(feats, m, timeframe_ms(TIMEFRAME)))
            retrain, why = retrain_decision(con, [m.name], now, m.retrain, config.force)
            if not retrain:  # new hours but too few new labels: the version in force stays (models.retrain)
                return dg.MaterializeResult(
                    metadata=rounded(carried_forward(context, {"status": RETRAIN_SKIPPED, "retrain": why}))
                )
        fit = fit_alpha(feats, m, timeframe_ms(TIMEFRAME))
        rep = _report(fit, regimes, m)
        scores, chash = _scores(fit, rep["by_regime"]), config_hash(extra)
        logged = mlflow.log_training(_record(context, key, m, fit, feats, rep, scores, chash))
        with warehouse.connect() as con:
            row = _store(con, fit, m, logged, feats, scores, context, chash, ex, (asset, fp))
        return dg.MaterializeResult(metadata={**_metadata(fit, m, logged, scores, rep, row), "retrain": why})

    return _train


_FOLD_COLUMNS = {
    "fold",
    "train_start",
    "train_end",
    "test_start",
    "test_end",
    "n_train",
    "n_test",
    "n_purged",
    "n_embargoed",
    "fit_seconds",
}

ml_alpha_6h = _training_asset("6h", ALPHA_6H)
ml_alpha_24h = _training_asset("24h", ALPHA_24H)

_GATE = (
    "OOS rank IC (Spearman across assets per hour, averaged) above alpha_portfolio.model.h*.promotion.min_ic, its "
    "t-statistic (non-overlapping blocks) above min_ic_t, over at least min_oos_hours hours."
)


def _rule(scores: dict, criteria, champion) -> tuple[bool, list[str]]:
    return gate(scores, criteria, champion)


ml_alpha_6h_gate, ml_alpha_6h_champion = promotion_assets(
    ALPHA_6H,
    ALPHA_6H_GATE,
    ALPHA_6H_CHAMPION,
    GROUP_ALPHA,
    lambda cfg: cfg.alpha_portfolio.model.h6,
    "6h alpha model",
    CODE_VERSION,
    rule=_rule,
    gate_description=_GATE,
)
ml_alpha_24h_gate, ml_alpha_24h_champion = promotion_assets(
    ALPHA_24H,
    ALPHA_24H_GATE,
    ALPHA_24H_CHAMPION,
    GROUP_ALPHA,
    lambda cfg: cfg.alpha_portfolio.model.h24,
    "24h alpha model",
    CODE_VERSION,
    rule=_rule,
    gate_description=_GATE,
)
