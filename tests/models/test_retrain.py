"""When a model retrains (issue 16, models.retrain): the decision by hand, and on the small warehouse a new candle
no longer registers a new model version while ``--retrain`` (``force``) and a configuration change do."""

import dagster as dg
import duckdb
import pandas as pd
import pytest

from models.retrain import RetrainPolicy, TrainingState, config_hash, should_retrain
from pipeline.cli.common import TRAINING_OPS

LAST = TrainingState("2", "abc", 10_000)
POLICY = RetrainPolicy(min_new_labels=336)


@pytest.mark.parametrize(
    "last, now, policy, force, expected, reason",
    [
        (None, LAST, POLICY, False, True, "no_model: no trained version recorded"),
        (LAST, TrainingState("3", "abc", 10_000), POLICY, False, True, "code_changed: code version 2 -> 3"),
        (LAST, TrainingState("2", "def", 10_000), POLICY, False, True, "config_changed: configuration abc -> def"),
        # a version recorded by code older than the rule has no hash: retrained once
        (TrainingState("2", None, 10_000), LAST, POLICY, False, True, "config_changed: configuration not recorded -> abc"),
        (LAST, TrainingState("2", "abc", 10_336), POLICY, False, True, "new_labels: 336 new labelled rows >= 336"),
        (LAST, TrainingState("2", "abc", 10_335), POLICY, False, False, "skipped: 335 new labelled rows < 336"),
        # fewer rows than trained on (history trimmed): 0 new
        (LAST, TrainingState("2", "abc", 9_000), POLICY, False, False, "skipped: 0 new labelled rows < 336"),
        # the fraction: 1 % of 10,000 = 100; the smaller of both thresholds applies
        (LAST, TrainingState("2", "abc", 10_100), RetrainPolicy(min_new_fraction=0.01), False, True, "new_labels: 100 "),
        (LAST, TrainingState("2", "abc", 10_099), RetrainPolicy(min_new_labels=500, min_new_fraction=0.01), False,
         False, "skipped: 99 new labelled rows < 100"),
        (LAST, TrainingState("2", "abc", 10_500), RetrainPolicy(), False, False, "skipped: 500 new labelled rows (no "),
        # forced beats everything, even unchanged data
        (LAST, LAST, POLICY, True, True, "forced: retrain requested"),
    ],
)  # fmt: skip
def test_should_retrain_by_hand(last, now, policy, force, expected, reason):
    retrain, why = should_retrain(last, now, policy, force)
    assert retrain is expected and why.startswith(reason), why


def test_config_hash_and_policy_outside_it():
    from pipeline.config import settings

    b = settings().research.baseline
    other = b.model_copy(update={"retrain": RetrainPolicy(min_new_labels=1)})
    assert config_hash(b.model_dump_json(exclude={"retrain"})) == config_hash(
        other.model_dump_json(exclude={"retrain"})
    )
    changed = b.model_copy(update={"seed": b.seed + 1})
    assert config_hash(b.model_dump_json(exclude={"retrain"})) != config_hash(
        changed.model_dump_json(exclude={"retrain"})
    )
    assert len(config_hash("x")) == 16
    # defaults: about a week of new labels per family (trader.yaml documents them)
    s = settings()
    assert (s.research.baseline.retrain.min_new_labels, s.options_desk.models.retrain.min_new_labels) == (336, 7)
    assert s.setup_scanner.meta.retrain.min_new_labels == 300


def test_live_job_trains_nothing_and_retrain_forces_every_training_step():
    from pipeline.definitions import defs

    live = {n.name for n in defs.resolve_job_def("live_candle_job").graph.node_defs}
    main = {n.name for n in defs.resolve_job_def("main_job").graph.node_defs}
    assert TRAINING_OPS <= main and not (TRAINING_OPS & live)
    assert not any(n.startswith("ml__") for n in live), live


def _baseline_runs(trk) -> int:
    exp = trk.client().get_experiment_by_name("baseline_direction")
    return 0 if exp is None else len(trk.client().search_runs([exp.experiment_id]))


def _append_1h(data_dir, hours: int) -> None:
    """``hours`` more real 1h candles of each symbol after the slice's end."""
    from tests.conftest import SHARED

    for sym in ("BTC_USDT", "ETH_USDT"):
        f = data_dir / "ohlcv" / "binance" / f"{sym}-1h.csv.gz"
        have, real = pd.read_csv(f), pd.read_csv(SHARED / "ohlcv" / "binance" / f.name)
        last = int(have["timestamp"].max())
        more = real[(real["timestamp"] > last) & (real["timestamp"] <= last + hours * 3_600_000)]
        pd.concat([have, more]).to_csv(f, index=False)


@pytest.mark.integration
def test_new_candles_do_not_retrain_but_force_and_config_do(
    resources, instance, data_dir, built_warehouse, monkeypatch
):
    import assets.research.model as ml_assets
    from assets.keys import BASELINE
    from pipeline.config import settings
    from pipeline.definitions import ALL_ASSETS
    from pipeline.partitions import full_range_tags

    trk = resources["mlflow"]

    def train(run_config=None):
        r = dg.materialize(
            ALL_ASSETS,
            selection=dg.AssetSelection.keys(BASELINE),
            resources=resources,
            instance=instance,
            run_config=run_config or {},
        )
        assert r.success
        return r.get_asset_materialization_events()[-1].materialization.metadata["retrain"].value

    assert train().startswith("no_model") and _baseline_runs(trk) == 1  # a cold run trains
    with duckdb.connect(resources["warehouse"].path, read_only=True) as con:
        first = con.execute("SELECT n_rows, config_hash FROM ml.model_runs").fetchall()
    assert len(first) == 1 and first[0][1] is not None

    _append_1h(data_dir, 12)  # half a day of new candles: 2 x 12 new labelled bars
    candles = dg.AssetSelection.keys(
        ["raw", "ingested_ohlcv"], ["market", "ohlcv"], ["features", "technical"], ["regimes", "market"]
    )
    assert dg.materialize(
        ALL_ASSETS, resources=resources, instance=instance, tags=full_range_tags(), selection=candles
    ).success
    assert train() == "skipped: 24 new labelled rows < 336"
    assert _baseline_runs(trk) == 1  # no new MLflow run, no new version
    with duckdb.connect(resources["warehouse"].path, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM ml.model_runs").fetchone()[0] == 1

    # `trader run --retrain` sets force on every training step (pipeline.cli.common.TRAINING_OPS)
    assert train({"ops": {"ml__baseline_direction": {"config": {"force": True}}}}).startswith("forced")
    assert _baseline_runs(trk) == 2

    # a model parameter changed: retrained; the retrain policy alone is not part of the configuration
    cfg = settings().model_copy(deep=True)
    cfg.research.baseline.retrain.min_new_labels = 1
    monkeypatch.setattr(ml_assets, "settings", lambda: cfg)
    assert train().startswith("skipped: inputs unchanged") and _baseline_runs(trk) == 2
    cfg.research.baseline.params = {**cfg.research.baseline.params, "n_estimators": 30}
    assert train().startswith("config_changed") and _baseline_runs(trk) == 3
