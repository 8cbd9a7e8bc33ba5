"""MLflow tracking + model registry as a small Dagster resource (dagster-notes §1.12, §4.2).

Absolute URIs only: the default store is ``sqlite:///<repo>/warehouse/data/mlflow/mlflow.db`` with artifacts
under ``warehouse/data/mlflow/artifacts`` (``MLFLOW_TRACKING_URI`` overrides). Experiments are created
with an explicit absolute ``artifact_location`` so the UI finds artifacts whichever directory it runs in.
One MLflow run per model materialisation, tagged with the Dagster run id, asset key, partition and code
version. The serving version of a registered model is its ``@champion`` alias (stages are deprecated).
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

import dagster as dg
from pydantic import Field

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
CHAMPION = "champion"


class MlflowTracking(dg.ConfigurableResource):
    """Tracking URI, artifact folder and helpers for runs, the registry and the ``@champion`` alias."""

    tracking_uri: str = Field(description="Absolute MLflow tracking URI (sqlite:////abs/mlflow.db or http://host:port).")
    artifact_location: str = Field(description="Absolute folder for experiment artifacts.")

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
        with mlflow.start_run(experiment_id=exp_id, run_name=run_name, tags={k: str(v) for k, v in tags.items()}) as run:
            yield run

    def log_sklearn_model(self, model, registered_name: str, input_example=None) -> str:
        """Log ``model`` (cloudpickle) in the active run and register it; returns the new version number."""
        mlflow = self._mlflow()
        info = mlflow.sklearn.log_model(model, name="model", registered_model_name=registered_name,
                                        serialization_format="cloudpickle", input_example=input_example)
        return str(info.registered_model_version)

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
        """Where to open the run in ``mlflow ui`` (default port 5000)."""
        return f"http://127.0.0.1:5000/#/experiments/{experiment_id}/runs/{run_id}"
