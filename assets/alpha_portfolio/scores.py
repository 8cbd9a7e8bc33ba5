"""Group ``alpha_portfolio``: ``signals.alpha_scores``, the cost-adjusted expected return per asset and hour that the
portfolio ranks.

With a usable version for both horizons (the latest one if it passes the promotion rule, else the ``@champion``),
each hour gets that training run's point-in-time predictions
(out of sample: the fold model refit at the latest scheduled refit before the hour, scaled by that fold's
expected-return scale), and the hours after the last training get that version's model's predictions (loaded from
MLflow); ``source = 'model'``. Hours without both (no champion, or before the first walk-forward test window or its
scale) get the seed's simple fallback (:func:`pipeline.core.alpha_features.fallback_predictions`), ``source =
'fallback'``. The predictions are combined with the regime's weights and the planned round trip's cost
(:func:`pipeline.core.alpha_features.combine_scores`).
"""

import json

import dagster as dg
import numpy as np
import pandas as pd

from assets.alpha_portfolio.common import TIMEFRAME, planned_cost
from assets.common import POOL, md_table, rounded
from assets.keys import ALPHA_6H, ALPHA_24H, ALPHA_FEATURES, ALPHA_REGIME, ALPHA_SCORES, GROUP_ALPHA
from assets.promotion import reconcile_champion
from models.alpha import gate
from pipeline.config import settings
from pipeline.core.alpha_features import FEATURES, SCORE_COLUMNS, score_rows
from resources.mlflow_tracking import MlflowTracking
from resources.warehouse import WarehouseResource
from warehouse import io, readers

CODE_VERSION = "1"


def _usable_run(con, mlflow: MlflowTracking, m) -> pd.Series | None:
    """The version whose predictions score: the latest one when it passes the promotion rule on its stored OOS figures
    (:func:`models.alpha.gate`, the blocking gate's rule: in one run the scores need not wait for the alias), else the
    ``@champion`` (an older version that passed), else None."""
    r = readers.latest_run(con, m.name)
    if r is not None:
        figures = {k: (float("nan") if v is None else v) for k, v in json.loads(r.metrics)["cal"].items()}
        if gate(figures, m.promotion)[0]:
            return r
    reconcile_champion(con, mlflow, m.name)
    return readers.champion_run(con, m.name)


def _champion_predictions(con, mlflow: MlflowTracking, m, feats: pd.DataFrame) -> tuple[np.ndarray, str] | None:
    """The usable version's (:func:`_usable_run`) scaled predictions aligned with ``feats`` (NaN where none) and its
    version, or None. Hours after its stored predictions are predicted by that version's model (MLflow)."""
    run = _usable_run(con, mlflow, m)
    if run is None:
        return None
    stored = readers.alpha_predictions(con, m.name, run.mlflow_run_id)
    aligned = feats[["symbol", "ts"]].merge(stored[["symbol", "ts", "pred_cal"]], on=["symbol", "ts"], how="left")
    pred = aligned["pred_cal"].to_numpy(np.float64, copy=True)
    last = int(stored["ts"].max()) if not stored.empty else -1
    new = (feats["ts"].to_numpy() > last) & feats["rvol_24h"].notna().to_numpy()
    if new.any():
        model = mlflow.load_version(m.name, str(run.model_version))
        pred[new] = np.asarray(model.predict(feats.loc[new, FEATURES]), np.float64)
    return pred, str(run.model_version)


@dg.asset(
    key=ALPHA_SCORES,
    group_name=GROUP_ALPHA,
    pool=POOL,
    deps=[ALPHA_FEATURES, ALPHA_REGIME, ALPHA_6H, ALPHA_24H],
    kinds={"duckdb"},
    code_version=CODE_VERSION,
    description="Expected return per asset and hour: the 6h and 24h champions' out-of-sample predictions blended with "
    "regime weights (alpha_portfolio.score), minus the planned round trip's cost (pipeline/core/costs.py); the "
    "seed's simple fallback where no champion scores the hour (source = fallback).",
)
def signals_alpha_scores(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, mlflow: MlflowTracking
) -> dg.MaterializeResult:
    cfg = settings()
    ap, ex = cfg.alpha_portfolio, cfg.exchange.id
    with warehouse.connect() as con:
        feats = readers.alpha_features(con, ex, TIMEFRAME)
        feats = feats[feats["rvol_24h"].notna()].reset_index(drop=True)
        reg = readers.alpha_regime(con)
        champs = {h: _champion_predictions(con, mlflow, m, feats) for h, m in ap.model.horizons().items()}
    regime = feats[["ts"]].merge(reg[["ts", "regime"]], on="ts", how="left")["regime"].to_numpy(dtype=object)
    both = all(c is not None for c in champs.values())
    version = f"alpha_6h:{champs['6h'][1]},alpha_24h:{champs['24h'][1]}" if both else None
    out = score_rows(
        feats,
        regime,
        champs["6h"][0] if both else None,
        champs["24h"][0] if both else None,
        planned_cost(cfg),
        ap.score,
        version,
    ).assign(exchange=ex)[SCORE_COLUMNS]
    with warehouse.connect() as con, io.transaction(con):
        con.execute("DELETE FROM signals.alpha_scores WHERE exchange = ?", [ex])
        io.upsert(con, "signals.alpha_scores", out, ["exchange", "symbol", "ts"])
    last = out[out["ts"] == out["ts"].max()].sort_values("exp_ret_net", ascending=False)
    share = out.groupby("source").size() / max(len(out), 1)
    return dg.MaterializeResult(
        metadata=rounded(
            {
                "rows": len(out),
                "model_share": float(share.get("model", 0.0)),
                "fallback_share": float(share.get("fallback", 0.0)),
                "model_version": version,
                "round_trip_cost": float(out["cost"].iloc[0]) if len(out) else None,
                "positive_net_share": float((out["exp_ret_net"] > 0).mean()) if len(out) else 0.0,
                "latest_scores": md_table(last[["symbol", "regime", "exp_ret", "exp_ret_net", "source"]]),
            }
        )
    )
