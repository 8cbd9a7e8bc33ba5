"""The MLflow touchpoint on a real sqlite file store: experiment kind / description / saved view (an old store's
experiments included), registered model and version descriptions, verdict tags, per-fold steps, backtest metrics."""

import json

import pytest
from mlflow.tracking import MlflowClient

from resources.mlflow_tracking import (
    EXPERIMENTS,
    KIND_TAG,
    ML_KIND,
    NOTE_TAG,
    TRAINING_COLUMNS,
    VIEW_TAG,
    MlflowTracking,
)


@pytest.fixture(scope="module")
def trk(tmp_path_factory) -> MlflowTracking:
    """One file store for the module (creating a sqlite store runs MLflow's migrations: seconds)."""
    d = tmp_path_factory.mktemp("mlflow")
    return MlflowTracking(tracking_uri=f"sqlite:///{d / 'mlflow.db'}", artifact_location=str(d / "artifacts"))


def test_old_store_experiments_get_the_model_development_kind_description_and_view(trk):
    # an experiment of an old store: created without any tag (as the code before issue 14 did)
    client = trk.client()
    old = client.create_experiment("baseline_direction")
    other = client.create_experiment("someone_elses")
    assert KIND_TAG not in client.get_experiment(old).tags
    assert trk.describe_experiments() >= 2
    tags = client.get_experiment(old).tags
    assert tags[KIND_TAG] == ML_KIND == "custom_model_development"
    assert tags[NOTE_TAG] == EXPERIMENTS["baseline_direction"][0] and "oos_auc_cal" in tags[NOTE_TAG]
    view = json.loads(tags[VIEW_TAG])
    assert [c for c in view["selectedColumns"] if c.startswith("metrics.")] == [
        f"metrics.`{m}`" for m in TRAINING_COLUMNS
    ]
    assert client.get_experiment(other).tags[KIND_TAG] == ML_KIND  # any experiment of the store opens as ML
    assert "workflowType=machine_learning" in trk.run_url(old, "r") and "viewStateShareKey=oos" in trk.experiment_url(
        old
    )


def test_a_refused_version_is_tagged_with_its_verdict_and_reasons(trk):
    client = trk.client()
    with trk.start_run("setup_scanner", "setup_meta-test", {}) as run:
        pass
    client.create_registered_model("setup_meta")
    version = client.create_model_version("setup_meta", "file:///nowhere", run.info.run_id, description="v1.").version
    reasons = ["PASS oos rows 5000 >= 5000", "FAIL auc 0.5310 >= 0.99"]
    trk.set_verdict("setup_meta", version, run.info.run_id, False, reasons)
    trk.set_verdict("setup_meta", version, run.info.run_id, False, reasons)  # the description holds one verdict
    v = client.get_model_version("setup_meta", version)
    assert v.tags["promotion_verdict"] == "FAIL" and v.tags["promotion_reasons"] == "; ".join(reasons)
    assert v.description.count("**Promotion gate:** FAIL") == 1 and "- FAIL auc 0.5310 >= 0.99" in v.description
    assert v.description.startswith("v1.")
    assert client.get_run(run.info.run_id).data.tags["promotion_passed"] == "False"
    old = client.create_model_version("setup_meta", "file:///nowhere", run.info.run_id).version  # an old store's
    for passed in (False, True):  # re-evaluated: the verdict is replaced, not appended
        trk.set_verdict("setup_meta", old, run.info.run_id, passed, ["PASS auc 0.5315 >= 0.51"])
    v = client.get_model_version("setup_meta", old)
    assert (
        v.description == "**Promotion gate:** PASS\n\n- PASS auc 0.5315 >= 0.51"
        and v.tags["promotion_verdict"] == "PASS"
    )
    assert client.get_experiment(run.info.experiment_id).tags[KIND_TAG] == ML_KIND  # a new experiment too


def test_backtest_logs_every_number_and_each_benchmark(trk):
    m = {"total_return": -0.013, "sharpe": -0.2, "n_trades": 453, "max_drawdown": None, "flag": True}
    bench = {"buy_and_hold": {"total_return": 8.95}, "always_on_calls": {"total_return": 3.0, "n_trades": 600.0}}
    logged = trk.log_backtest("setup_gated-x", {"desk": "setup_scanner"}, {"strategy": "setup_gated"}, m, bench, {})
    run = trk.client().get_run(logged.run_id)
    assert run.data.metrics == {
        "total_return": -0.013,
        "sharpe": -0.2,
        "n_trades": 453.0,
        "bh_total_return": 8.95,
        "always_on_calls_total_return": 3.0,
        "always_on_calls_n_trades": 600.0,
    }
    assert "buy-and-hold total return 8.95" in run.data.tags[NOTE_TAG]
    flat = trk.log_backtest("baseline-x", {}, {}, {"sharpe": 0.1}, {"sharpe": 0.87}, {})
    assert MlflowClient(trk.tracking_uri).get_run(flat.run_id).data.metrics == {"sharpe": 0.1, "bh_sharpe": 0.87}
