"""MLflow tracking + model registry as a small Dagster resource (dagster-notes §1.12, §4.2).

Absolute URIs only: the default store is ``sqlite:///<repo>/warehouse/data/mlflow/mlflow.db`` with artifacts
under ``warehouse/data/mlflow/artifacts`` (``MLFLOW_TRACKING_URI`` overrides). Experiments are created
with an explicit absolute ``artifact_location`` so the UI finds artifacts whichever directory it runs in.
One MLflow run per model materialisation, tagged with the Dagster run id, asset key, partition and code
version. The serving version of a registered model is its ``@champion`` alias (stages are deprecated).

The UI (docs/decisions.md, "MLflow UI"): every project experiment carries ``mlflow.experimentKind =
custom_model_development`` (the tag MLflow's own experiment-type selector writes for "Machine learning"), a
description (``mlflow.note.content``) and a saved view of the README's out-of-sample columns
(``mlflow.sharedViewState.oos``, opened by :meth:`MlflowTracking.experiment_url`). MLflow 3.17 chooses GenAI or
model-training pages from the sidebar toggle (``workflowType``, per browser), so every link this module makes
carries ``workflowType=machine_learning``. Registered models and versions get descriptions; each version is tagged
with its promotion verdict and reasons (:meth:`MlflowTracking.set_verdict`).
"""

from __future__ import annotations

import contextlib
import io
import json
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

#: experiment tag read by MLflow's experiment-type selector; ``custom_model_development`` = "Machine learning"
KIND_TAG, ML_KIND = "mlflow.experimentKind", "custom_model_development"
#: description of an experiment / a run in the MLflow UI
NOTE_TAG = "mlflow.note.content"
#: the experiment tag holding the saved run-table view (columns, sort) that :meth:`MlflowTracking.experiment_url` opens
VIEW_KEY = "oos"
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_KEY}"
#: query that opens MLflow 3.x pages in model-training mode (the sidebar's GenAI / Model training toggle)
UI_QUERY = "workflowType=machine_learning"
#: verdict tags on a model version (and its run)
VERDICT_TAG, REASONS_TAG = "promotion_verdict", "promotion_reasons"
_VERDICT_HEADING = "**Promotion gate:**"

#: the README's out-of-sample comparison figures: calibrated OOS AUC, ECE, Brier against the base-rate Brier, rows
TRAINING_COLUMNS = ("oos_auc_cal", "oos_ece_cal", "oos_brier_cal", "oos_brier_base_cal", "oos_n_cal")
#: the README's backtest figures (out of sample) and buy-and-hold beside them
BACKTEST_COLUMNS = (
    "total_return",
    "annual_return",
    "sharpe",
    "max_drawdown",
    "n_trades",
    "win_rate",
    "profit_factor",
    "option_hit_rate",
    "bh_total_return",
    "bh_sharpe",
    "bh_max_drawdown",
)
_FIGURES = (
    "Compare runs on the columns of the saved view `oos` (opened by the project's links): out-of-sample calibrated "
    "AUC (`oos_auc_cal`), ECE (`oos_ece_cal`) and Brier (`oos_brier_cal`) against the base-rate Brier "
    "(`oos_brier_base_cal`) over `oos_n_cal` rows, pooled over the purged walk-forward folds (per fold: `fold_*` "
    "metrics by step = fold and `folds.csv`). Tag `promotion_passed` and the version tags `promotion_verdict` / "
    "`promotion_reasons` give the gate's verdict; the `@champion` alias is the served version."
)
#: description and saved-view columns of every experiment the project creates
EXPERIMENTS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "baseline_direction": (
        "Baseline direction model (research desk, asset ml/baseline_direction): LightGBM p(TP 2xATR before SL "
        "1.5xATR within 24 h) for a long entry, BTC/ETH 1h, technical and regime features (models.datasets."
        "MODEL_FEATURES), isotonic calibration. " + _FIGURES,
        TRAINING_COLUMNS,
        ("promotion_passed",),
    ),
    "setup_scanner": (
        "Setup scanner meta-model (asset ml/setup_meta): XGBoost p(win) of a Fibonacci/AVWAP setup candidate, "
        "win = TP1 reached before the stop; plan geometry, session and technical/regime features of the signal bar "
        "(models.setup_meta.META_FEATURES), isotonic calibration. " + _FIGURES,
        TRAINING_COLUMNS,
        ("promotion_passed",),
    ),
    "options_desk": (
        "Options desk direction models (asset ml/options_direction): options_p_long = P(BTC 30-day return >= +5 %), "
        "options_p_short = P(<= -5 %), LightGBM on daily on-chain/sentiment features (models.options_direction."
        "OPTIONS_MODEL_FEATURES), Platt calibration. " + _FIGURES,
        TRAINING_COLUMNS,
        ("promotion_passed",),
    ),
    "alpha_portfolio": (
        "Alpha portfolio models (seed 004; assets ml/alpha_6h, ml/alpha_24h): LightGBM regressors of the forward 6h / "
        "24h vol-normalised return on the 13 seed features, pooled over the universe's 1h bars, purged walk-forward. "
        "Figures: out-of-sample rank IC (Spearman across assets per hour) `oos_ic_mean_cal`, its t-statistic "
        "`oos_ic_t_cal` over `oos_n_hours_cal` hours, IC per regime (`oos_ic_<regime>_cal`) and the expected-return "
        "scale `oos_calibration_slope_cal`; artifacts `ic_by_regime.csv`, `calibration_deciles.json`, `folds.csv`.",
        ("oos_ic_mean_cal", "oos_ic_t_cal", "oos_n_hours_cal", "oos_calibration_slope_cal"),
        ("promotion_passed",),
    ),
    "backtests": (
        "Every desk's backtest, one run per stored backtest.runs row (tag `desk`, run name = run_id): the baseline "
        "long/flat strategy (backtest/baseline), the setup scanner's gated and ungated books (backtest/setup_scanner) "
        "and the options desk's model-based evaluation (backtest/options_desk). Figures are out of sample except the "
        "options desk's (rules fixed a priori over the full history): total and annual return, Sharpe, max drawdown, "
        "trades, win rate, profit factor, and the benchmark as `bh_*` (equal-weight buy-and-hold; the options desk "
        "also logs `always_on_calls_*` / `always_on_puts_*`). Plot: `equity_drawdown.png`.",
        BACKTEST_COLUMNS,
        ("desk",),
    ),
}
_VIEW_ATTRIBUTES = ("attributes.`Description`", "attributes.`Models`")


def view_state(metrics: tuple[str, ...], tags: tuple[str, ...] = ()) -> dict:
    """The saved run-table view of an experiment (MLflow's shared-view JSON: search facets + UI state): the run
    description, the model column, ``tags`` and ``metrics`` as columns, newest run first."""
    return {
        "selectedColumns": [*_VIEW_ATTRIBUTES, *(f"tags.`{t}`" for t in tags), *(f"metrics.`{m}`" for m in metrics)],
        "orderByKey": "attributes.start_time",
        "orderByAsc": False,
        "runsHiddenMode": "SHOW_ALL",
    }


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
    model_description: str = ""


def _fmt(v) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.4g}"


def training_headline(scores_cal: dict) -> str:
    """One line of the README's OOS figures (the run's and the version's description)."""
    g = scores_cal.get
    return (
        f"OOS calibrated ({_fmt(g('n'))} rows): AUC {_fmt(g('auc'))}, ECE {_fmt(g('ece'))}, "
        f"Brier {_fmt(g('brier'))} vs base rate {_fmt(g('brier_base'))}"
    )


def backtest_headline(metrics: dict, benchmark: dict) -> str:
    """One line of the README's backtest figures, buy-and-hold beside them (the run's description)."""
    g = metrics.get
    text = (
        f"total return {_fmt(g('total_return'))}, Sharpe {_fmt(g('sharpe'))}, max drawdown "
        f"{_fmt(g('max_drawdown'))}, {_fmt(g('n_trades'))} trades"
    )
    bh = benchmark.get("buy_and_hold", benchmark)
    if isinstance(bh, dict) and "total_return" in bh:
        text += (
            f"; buy-and-hold total return {_fmt(bh.get('total_return'))}, max drawdown {_fmt(bh.get('max_drawdown'))}"
        )
    return text


def benchmark_metrics(benchmark: dict) -> dict[str, float]:
    """Benchmark figures as metrics: a flat dict as ``bh_<k>``; a dict of benchmarks (``{name: figures}``) as
    ``<name>_<k>``, with ``buy_and_hold`` as ``bh_<k>``."""
    if benchmark and all(isinstance(v, dict) for v in benchmark.values()):
        out = {}
        for name, figs in benchmark.items():
            out |= _finite(figs, "bh_" if name == "buy_and_hold" else f"{name}_")
        return out
    return _finite(benchmark, "bh_")


@dataclass(frozen=True)
class LoggedRun:
    """Where a logged run lives: ids, the registered version (None for unregistered runs), its UI address and its
    experiment's run table with the saved OOS view."""

    run_id: str
    experiment_id: str
    version: str | None
    url: str
    experiment_url: str = ""


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
        """Experiment id of ``name``; created with ``<artifact_location>/<name>`` when missing (race-safe); its UI tags
        (:meth:`describe_experiment`) are set either way."""
        mlflow = self._mlflow()
        exp = mlflow.get_experiment_by_name(name)
        if exp is None:
            loc = Path(self.artifact_location) / name
            loc.mkdir(parents=True, exist_ok=True)
            try:
                mlflow.create_experiment(name, artifact_location=loc.resolve().as_uri())
            except mlflow.exceptions.MlflowException:
                pass  # created concurrently
            exp = mlflow.get_experiment_by_name(name)
        self.describe_experiment(exp)
        return exp.experiment_id

    def describe_experiment(self, exp) -> None:
        """Set the model-development kind on ``exp`` (an ``mlflow.entities.Experiment``) and, for a project experiment
        (:data:`EXPERIMENTS`), its description and saved view; only tags that differ are written."""
        want = {KIND_TAG: ML_KIND}
        if exp.name in EXPERIMENTS:
            note, metrics, tags = EXPERIMENTS[exp.name]
            want |= {NOTE_TAG: note, VIEW_TAG: json.dumps(view_state(metrics, tags))}
        client = self.client()
        for k, v in want.items():
            if exp.tags.get(k) != v:
                client.set_experiment_tag(exp.experiment_id, k, v)

    def describe_experiments(self) -> int:
        """:meth:`describe_experiment` on every active experiment of the store (an old store's included);
        returns how many there are."""
        exps = self.client().search_experiments()
        for exp in exps:
            self.describe_experiment(exp)
        return len(exps)

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
        headline = training_headline(rec.scores_cal)
        with self.start_run(rec.experiment, rec.run_name, {NOTE_TAG: headline, **rec.tags}) as run:
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
            self._describe_version(rec, version, headline)
            return LoggedRun(
                run.info.run_id,
                run.info.experiment_id,
                version,
                self.run_url(run.info.experiment_id, run.info.run_id),
                self.experiment_url(run.info.experiment_id),
            )

    def _describe_version(self, rec: TrainingRecord, version: str, headline: str) -> None:
        client = self.client()
        if rec.model_description:
            client.update_registered_model(rec.registered_name, description=rec.model_description)
        span = f"{rec.tags.get('data_start', '?')} .. {rec.tags.get('data_end', '?')}"
        client.update_model_version(
            rec.registered_name,
            version,
            description=f"Run `{rec.run_name}`, data {span}. {headline} (out-of-fold walk-forward predictions; "
            f"per fold in the run's `folds.csv` and `fold_*` metrics).",
        )

    def set_verdict(self, name: str, version: str, run_id: str, passed: bool, reasons: list[str]) -> None:
        """Tag version ``version`` of ``name`` and its run with the promotion verdict (``PASS`` / ``FAIL``) and the
        reasons (``; ``-separated rules), and append them (one rule a line) to the version's description; a refused version is tagged too."""
        client = self.client()
        verdict, why = "PASS" if passed else "FAIL", "; ".join(reasons)
        for k, v in {VERDICT_TAG: verdict, REASONS_TAG: why}.items():
            client.set_model_version_tag(name, str(version), k, v)
            client.set_tag(run_id, k, v)
        client.set_tag(run_id, "promotion_passed", str(passed))
        base = (client.get_model_version(name, str(version)).description or "").split(_VERDICT_HEADING)[0].rstrip()
        lines = "\n".join(f"- {r}" for r in reasons)
        text = (f"{base}\n\n" if base else "") + f"{_VERDICT_HEADING} {verdict}\n\n{lines}"
        client.update_model_version(name, str(version), description=text)

    def log_backtest(
        self,
        run_name: str,
        tags: dict,
        params: dict,
        metrics: dict,
        benchmark: dict,
        images: dict[str, bytes],
        experiment: str = "backtests",
    ) -> LoggedRun:
        """One run in ``experiment``: params, finite numeric metrics, the benchmark's (:func:`benchmark_metrics`: a
        flat dict as ``bh_<k>``, ``{name: figures}`` as ``<name>_<k>``), plots; the description is
        :func:`backtest_headline`."""
        mlflow = self._mlflow()
        with self.start_run(experiment, run_name, {NOTE_TAG: backtest_headline(metrics, benchmark), **tags}) as run:
            mlflow.log_params(params)
            mlflow.log_metrics(_finite(metrics))
            mlflow.log_metrics(benchmark_metrics(benchmark))
            for name, png in images.items():
                mlflow.log_image(_png_array(png), name)
            return LoggedRun(
                run.info.run_id,
                run.info.experiment_id,
                None,
                self.run_url(run.info.experiment_id, run.info.run_id),
                self.experiment_url(run.info.experiment_id),
            )

    def load_champion(self, name: str):
        """The model behind ``models:/<name>@champion`` in THIS store (never the process's ambient tracking URI).

        Raises:
            mlflow.exceptions.MlflowException: ``name`` has no ``@champion`` alias in this store.
        """
        mlflow = self._mlflow()
        return mlflow.sklearn.load_model(f"models:/{name}@{CHAMPION}")

    def load_version(self, name: str, version: str):
        """The model behind ``models:/<name>/<version>`` in THIS store.

        Raises:
            mlflow.exceptions.MlflowException: no such version.
        """
        mlflow = self._mlflow()
        return mlflow.sklearn.load_model(f"models:/{name}/{version}")

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

    def champion_record(self, name: str) -> dict | None:
        """``name@champion`` as the fields of an ``ml.model_runs`` row the scorers read (``mlflow_run_id``,
        ``model_name``, ``model_version``, ``data_start`` / ``data_end`` from the training run's tags, ``trained_at``,
        ``promoted``), or None without the alias: the model in force for a warehouse that does not hold its training's
        row (``trader live --replay``'s own warehouse)."""
        v = self.champion(name)
        if v is None:
            return None
        tags = self.client().get_run(v.run_id).data.tags
        return {
            "mlflow_run_id": v.run_id,
            "model_name": name,
            "model_version": str(v.version),
            "data_start": pd.Timestamp(tags["data_start"]) if tags.get("data_start") else pd.NaT,
            "data_end": pd.Timestamp(tags["data_end"]) if tags.get("data_end") else pd.NaT,
            "trained_at": pd.Timestamp(v.creation_timestamp, unit="ms"),
            "promoted": True,
        }

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
        """Where to open the run in the MLflow UI at ``ui_url`` (``mlflow.ui_url``; ``mlflow ui`` listens on 5000), in
        model-training mode."""
        return f"{self.ui_url.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}?{UI_QUERY}"

    def experiment_url(self, experiment_id: str) -> str:
        """The experiment's run table in the MLflow UI at ``ui_url`` with the saved view of the OOS columns, in
        model-training mode."""
        return f"{self.ui_url.rstrip('/')}/#/experiments/{experiment_id}/runs?{UI_QUERY}&viewStateShareKey={VIEW_KEY}"
