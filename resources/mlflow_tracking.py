"""MLflow tracking + model registry as a small Dagster resource (dagster-notes §1.12, §4.2).

Absolute URIs only: the default store is ``sqlite:///<repo>/warehouse/data/mlflow/mlflow.db`` with artifacts
under ``warehouse/data/mlflow/artifacts`` (``MLFLOW_TRACKING_URI`` overrides). Experiments are created
with an explicit absolute ``artifact_location`` so the UI finds artifacts whichever directory it runs in.
One MLflow run per model materialisation, tagged with the Dagster run id, asset key, partition and code
version. The serving version of a registered model is its ``@champion`` alias (stages are deprecated).
"""

from __future__ import annotations

import contextlib
import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import dagster as dg
import pandas as pd
from pydantic import Field

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
CHAMPION = "champion"


FOLD_METRICS = ("auc_raw", "brier_raw", "auc_cal", "brier_cal", "ece_cal")


@dataclass
class TrainingRecord:
    """Everything one training run logs (the single MLflow training record of every model).

    ``scores_raw`` / ``scores_cal``: out-of-sample scores (logged as ``oos_<k>_raw`` / ``oos_<k>_cal``, finite values
    only); ``fold_scores``: per-fold table whose :data:`FOLD_METRICS` columns are logged as ``fold_<k>`` steps when
    given; ``images``: PNG bytes by artifact name; ``dicts`` / ``texts``: JSON and text artifacts by name; ``model`` is
    logged (cloudpickle) and registered as ``registered_name``.
    """

    experiment: str
    run_name: str
    tags: dict
    params: dict
    scores_raw: dict
    scores_cal: dict
    model: object
    registered_name: str
    input_example: pd.DataFrame | None = None
    fold_scores: pd.DataFrame | None = None
    images: dict[str, bytes] = field(default_factory=dict)
    dicts: dict[str, object] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LoggedRun:
    """Where a logged run lives: ids, the registered version (None for unregistered runs) and its UI address."""

    run_id: str
    experiment_id: str
    version: str | None
    url: str


def _finite(d: dict, prefix: str = "", suffix: str = "") -> dict[str, float]:
    return {
        f"{prefix}{k}{suffix}": float(v)
        for k, v in d.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))
    }


def _png_array(png: bytes):
    import matplotlib.image as mpimg

    return mpimg.imread(io.BytesIO(png), format="png")


class MlflowTracking(dg.ConfigurableResource):
    """Tracking URI, artifact folder and helpers for runs, the registry and the ``@champion`` alias."""

    tracking_uri: str = Field(
        description="Absolute MLflow tracking URI (sqlite:////abs/mlflow.db or http://host:port)."
    )
    artifact_location: str = Field(description="Absolute folder for experiment artifacts.")
    ui_url: str = Field(
        "http://127.0.0.1:5000", description="MLflow UI address the run links point at (config mlflow.ui_url)."
    )

    def _mlflow(self):
        import mlflow

        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)
        if self.tracking_uri.startswith("sqlite:///"):
            Path(self.tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        return mlflow

    def client(self):
        from mlflow.tracking import MlflowClient

        self._mlflow()
        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    def ensure_experiment(self, name: str) -> str:
        """Experiment id of ``name``; created with ``<artifact_location>/<name>`` when missing (race-safe)."""
        mlflow = self._mlflow()
        exp = mlflow.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        loc = Path(self.artifact_location) / name
        loc.mkdir(parents=True, exist_ok=True)
        try:
            return mlflow.create_experiment(name, artifact_location=loc.resolve().as_uri())
        except mlflow.exceptions.MlflowException:
            return mlflow.get_experiment_by_name(name).experiment_id  # created concurrently

    @contextlib.contextmanager
    def start_run(self, experiment: str, run_name: str, tags: dict[str, str]) -> Iterator[object]:
        """An active MLflow run in ``experiment`` with ``tags`` (Dagster run id, asset key, partition, ...)."""
        mlflow = self._mlflow()
        exp_id = self.ensure_experiment(experiment)
        with mlflow.start_run(
            experiment_id=exp_id, run_name=run_name, tags={k: str(v) for k, v in tags.items()}
        ) as run:
            yield run

    def log_sklearn_model(self, model, registered_name: str, input_example=None) -> str:
        """Log ``model`` (cloudpickle) in the active run and register it; returns the new version number."""
        mlflow = self._mlflow()
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            registered_model_name=registered_name,
            serialization_format="cloudpickle",
            input_example=input_example,
        )
        return str(info.registered_model_version)

    def log_training(self, rec: TrainingRecord) -> LoggedRun:
        """One MLflow run for one training: tags, params, OOS and per-fold metrics, artifacts, and the registered model.

        Raises:
            mlflow.exceptions.MlflowException: the store is unreachable or rejects the run.
        """
        mlflow = self._mlflow()
        with self.start_run(rec.experiment, rec.run_name, rec.tags) as run:
            mlflow.log_params(rec.params)
            mlflow.log_metrics(_finite(rec.scores_raw, "oos_", "_raw"))
            mlflow.log_metrics(_finite(rec.scores_cal, "oos_", "_cal"))
            if rec.fold_scores is not None:
                for r in rec.fold_scores.itertuples():
                    for k in FOLD_METRICS:
                        v = getattr(r, k)
                        if math.isfinite(v):
                            mlflow.log_metric(f"fold_{k}", float(v), step=int(r.fold))
            for name, png in rec.images.items():
                mlflow.log_image(_png_array(png), name)
            for name, obj in rec.dicts.items():
                mlflow.log_dict(obj, name)
            for name, text in rec.texts.items():
                mlflow.log_text(text, name)
            version = self.log_sklearn_model(rec.model, rec.registered_name, input_example=rec.input_example)
            return LoggedRun(
                run.info.run_id, run.info.experiment_id, version, self.run_url(run.info.experiment_id, run.info.run_id)
            )

    def log_backtest(
        self, run_name: str, tags: dict, params: dict, metrics: dict, benchmark: dict, images: dict[str, bytes]
    ) -> LoggedRun:
        """One run in experiment ``backtests``: params, metrics, buy-and-hold metrics as ``bh_<k>``, plots."""
        mlflow = self._mlflow()
        with self.start_run("backtests", run_name, tags) as run:
            mlflow.log_params(params)
            mlflow.log_metrics({k: float(v) for k, v in metrics.items() if isinstance(v, float)})
            mlflow.log_metrics({f"bh_{k}": float(v) for k, v in benchmark.items() if isinstance(v, float)})
            for name, png in images.items():
                mlflow.log_image(_png_array(png), name)
            return LoggedRun(
                run.info.run_id, run.info.experiment_id, None, self.run_url(run.info.experiment_id, run.info.run_id)
            )

    def load_champion(self, name: str):
        """The model behind ``models:/<name>@champion`` in THIS store (never the process's ambient tracking URI).

        Raises:
            mlflow.exceptions.MlflowException: ``name`` has no ``@champion`` alias in this store.
        """
        mlflow = self._mlflow()
        return mlflow.sklearn.load_model(f"models:/{name}@{CHAMPION}")

    def set_tag(self, run_id: str, key: str, value: str) -> None:
        """Set one tag on an existing run."""
        self.client().set_tag(run_id, key, value)

    def champion(self, name: str):
        """The ``ModelVersion`` behind ``name@champion``, or None."""
        import mlflow

        try:
            return self.client().get_model_version_by_alias(name, CHAMPION)
        except mlflow.exceptions.MlflowException:
            return None

    def champion_scores(self, name: str, unless_version: str | None = None) -> dict[str, float] | None:
        """The champion's logged OOS calibrated Brier as ``{"brier": ...}`` (the input of
        :func:`models.evaluation.decide`), or None without a champion or when it is ``unless_version`` itself."""
        champ = self.champion(name)
        if champ is None or (unless_version is not None and str(champ.version) == str(unless_version)):
            return None
        m = self.client().get_run(champ.run_id).data.metrics
        return {"brier": m.get("oos_brier_cal", float("nan"))}

    def promote(self, name: str, version: str) -> None:
        """Point ``name@champion`` at ``version``."""
        self.client().set_registered_model_alias(name, CHAMPION, str(version))

    def run_url(self, experiment_id: str, run_id: str) -> str:
        """Where to open the run in the MLflow UI at ``ui_url`` (``mlflow.ui_url``; ``mlflow ui`` listens on 5000)."""
        return f"{self.ui_url.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"
