"""Estimators for every desk: LightGBM, XGBoost and a logistic-regression baseline (pure).

CPU only, single seed, deterministic: LightGBM with ``deterministic=True, force_row_wise=True``,
XGBoost ``tree_method="hist"`` with a fixed ``random_state``; ``n_jobs`` defaults to 2 (the CI machine).
Missing values are handled natively by the tree models and imputed with the training median for the
logistic baseline.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field

from models.evaluation import PromotionCriteria
from models.labels import LabelConfig
from models.retrain import RetrainPolicy
from models.splits import WalkForwardConfig
from pipeline.core.params import Params

Kind = Literal["lightgbm", "xgboost", "logreg"]
Task = Literal["classifier", "regressor"]
Calibration = Literal["isotonic", "sigmoid"]

DEFAULTS: dict[str, dict[str, Any]] = {
    "lightgbm": {
        "n_estimators": 200,
        "learning_rate": 0.03,
        "num_leaves": 15,
        "min_child_samples": 200,
        "subsample": 0.8,
        "subsample_freq": 1,
        "colsample_bytree": 0.8,
        "reg_lambda": 1.0,
    },
    "xgboost": {
        "n_estimators": 200,
        "learning_rate": 0.03,
        "max_depth": 4,
        "min_child_weight": 50,
        "subsample": 0.8,
        "colsample_bytree": 0.8,
        "reg_lambda": 1.0,
    },
    "logreg": {"C": 0.1, "max_iter": 2000},
}


class ModelSpec(Params):
    """What to train: estimator ``kind``, ``task``, hyper-parameters (merged over ``DEFAULTS``), seed, threads."""

    kind: Kind = "lightgbm"
    task: Task = "classifier"
    params: dict[str, Any] = Field(default_factory=dict)
    seed: int = 42
    n_jobs: int = 2

    def resolved_params(self) -> dict[str, Any]:
        return {**DEFAULTS[self.kind], **self.params}


class ModelConfig(Params):
    """The fields every desk's model section shares (``research.baseline``, ``options_desk.models``,
    ``setup_scanner.meta``): estimator, calibration, walk-forward and promotion. Subclasses add their own fields and
    redeclare a field to change its default."""

    kind: Kind = Field("lightgbm", description="Estimator: lightgbm, xgboost or logreg.")
    params: dict = Field(default_factory=dict, description="Hyper-parameters over models/trainers.py DEFAULTS[kind].")
    seed: int = Field(42, description="Random seed of the estimator.")
    calibration: Calibration = Field(
        "isotonic", description="isotonic or sigmoid (Platt), fit on earlier out-of-fold predictions only."
    )
    walk_forward: WalkForwardConfig = Field(
        default_factory=WalkForwardConfig, description="Purged walk-forward windows."
    )
    promotion: PromotionCriteria = Field(
        default_factory=PromotionCriteria, description="Criteria on out-of-sample calibrated scores for @champion."
    )
    retrain: RetrainPolicy = Field(
        default_factory=RetrainPolicy,
        description="When new labelled data retrain the model (models.retrain; not part of the configuration hash).",
    )

    def spec(self) -> ModelSpec:
        """The estimator to train (:class:`ModelSpec` with this section's ``kind``, ``params`` and ``seed``)."""
        return ModelSpec(kind=self.kind, params=self.params, seed=self.seed)


class BaselineModelConfig(ModelConfig):
    """``research.baseline``: the reference direction model every desk must beat (triple-barrier label, 1h)."""

    name: str = Field("baseline_direction", description="Registered MLflow model name.")
    train_symbols: list[str] = Field(
        default_factory=lambda: ["BTC/USDT", "ETH/USDT"], description="Symbols pooled for training."
    )
    timeframe: str = Field("1h", description="Candle timeframe of the model and its backtest.")
    label: LabelConfig = Field(default_factory=LabelConfig)
    retrain: RetrainPolicy = Field(
        default_factory=lambda: RetrainPolicy(min_new_labels=336),
        description="336 = one week of 1h bars of the two training symbols.",
    )


def make_estimator(spec: ModelSpec):
    """A fresh, unfitted scikit-learn compatible estimator for ``spec``.

    Raises:
        ValueError: logistic regression asked for a regressor (use a tree model).
    """
    p = spec.resolved_params()
    if spec.kind == "lightgbm":
        import lightgbm as lgb

        cls = lgb.LGBMClassifier if spec.task == "classifier" else lgb.LGBMRegressor
        return cls(**p, random_state=spec.seed, n_jobs=spec.n_jobs, deterministic=True, force_row_wise=True, verbose=-1)
    if spec.kind == "xgboost":
        import xgboost as xgb

        cls = xgb.XGBClassifier if spec.task == "classifier" else xgb.XGBRegressor
        return cls(**p, random_state=spec.seed, n_jobs=spec.n_jobs, tree_method="hist", verbosity=0)
    if spec.task != "classifier":
        raise ValueError("logreg is a classifier baseline; use lightgbm or xgboost for regression")
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(
        SimpleImputer(strategy="median"), StandardScaler(), LogisticRegression(**p, random_state=spec.seed)
    )


def predict_score(est, X) -> np.ndarray:
    """Positive-class probability for classifiers, the prediction for regressors; float64 (n,)."""
    if hasattr(est, "predict_proba"):
        return np.asarray(est.predict_proba(X)[:, 1], np.float64)
    return np.asarray(est.predict(X), np.float64)


def feature_importance(est, features: list[str]) -> dict[str, float]:
    """Normalised importance per feature (gain-based for trees, |coefficient| for the logistic baseline)."""
    if hasattr(est, "feature_importances_"):
        v = np.asarray(est.feature_importances_, np.float64)
    else:
        v = np.abs(np.asarray(est[-1].coef_, np.float64).ravel())
    s = v.sum()
    return {f: float(x / s) if s > 0 else 0.0 for f, x in zip(features, v)}
