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
    assert (s.research.baseline.retrain.min_new_labels, s.options_desk.models.retrain.min_new_labels) == (336, 1)
    assert s.setup_scanner.meta.retrain.min_new_labels == 300


def test_live_job_trains_nothing_and_retrain_forces_every_training_step():
    from pipeline.definitions import defs

    live = {n.name for n in defs.resolve_job_def("live_candle_job").graph.node_defs}
    main = {n.name for n in defs.resolve_job_def("main_job").graph.node_defs}
    assert TRAINING_OPS <= main and not (TRAINING_OPS & live)
    assert not any(n.startswith("ml__") for n in live), live


def _runs(trk, experiment: str) -> int:
    exp = trk.client().get_experiment_by_name(experiment)
    return 0 if exp is None else len(trk.client().search_runs([exp.experiment_id]))


HELD = ("market.onchain_daily", "features.onchain")


def _hold_back(con, days: int) -> None:
    """Keep the last ``days`` days of the on-chain tables aside (as if not published yet)."""
    cut = con.execute("SELECT max(date) FROM market.onchain_daily").fetchone()[0] - pd.Timedelta(days=days)
    for t in HELD:
        con.execute(f"CREATE TABLE {t}_held AS SELECT * FROM {t} WHERE date > ?", [cut])
        con.execute(f"DELETE FROM {t} WHERE date > ?", [cut])
        con.execute("UPDATE ops.asset_inputs SET fingerprint = 'held' WHERE asset = ?", [t])


def _publish(con, days: int) -> None:
    """The next ``days`` held-back days arrive, as the on-chain ingest and features would write them."""
    for t in HELD:
        nxt = con.execute(f"SELECT max(date) FROM {t}").fetchone()[0] + pd.Timedelta(days=days)
        con.execute(f"INSERT INTO {t} SELECT * FROM {t}_held WHERE date <= ?", [nxt])
        con.execute(f"DELETE FROM {t}_held WHERE date <= ?", [nxt])
        con.execute("UPDATE ops.asset_inputs SET fingerprint = fingerprint || '+' WHERE asset = ?", [t])


@pytest.mark.integration
def test_new_days_do_not_retrain_but_force_and_config_do(resources, instance, built_warehouse, monkeypatch):
    """The options desk's p_long/p_short (the model the small warehouse trains fastest): a cold run trains, a few new
    days do not (no MLflow run, no version), ``force`` (``trader run --retrain``) and a model parameter do."""
    import assets.options_desk.models as om
    from assets.keys import OPTIONS_MODELS
    from pipeline.config import settings
    from pipeline.definitions import ALL_ASSETS

    trk, wh = resources["mlflow"], resources["warehouse"].path
    cfg = settings().model_copy(deep=True)
    m = cfg.options_desk.models
    m.retrain.min_new_labels = 7  # a week of newly labelled days
    m.walk_forward.test_window = "2000d"  # 2 refits and 5 trees: ~3 s a training instead of ~30
    m.params = {**m.params, "n_estimators": 5}
    monkeypatch.setattr(om, "settings", lambda: cfg)

    def train(run_config=None):
        r = dg.materialize(
            ALL_ASSETS,
            selection=dg.AssetSelection.keys(OPTIONS_MODELS),
            resources=resources,
            instance=instance,
            run_config=run_config or {},
        )
        assert r.success
        return r.get_asset_materialization_events()[-1].materialization.metadata["retrain"].value

    with duckdb.connect(wh) as con:
        _hold_back(con, 40)
    assert train().startswith("no_model") and _runs(trk, "options_desk") == 2  # a cold run trains both models
    with duckdb.connect(wh, read_only=True) as con:
        first = con.execute("SELECT n_rows, config_hash FROM ml.model_runs ORDER BY model_name").fetchall()
    assert len(first) == 2 and first[0][1] is not None and first[0] == first[1]

    with duckdb.connect(wh) as con:
        _publish(con, 3)  # three new days: three 30-day labels resolve
    assert train() == "skipped: 3 new labelled rows < 7"
    assert _runs(trk, "options_desk") == 2  # no new MLflow run, no new version
    with duckdb.connect(wh, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM ml.model_runs").fetchone()[0] == 2
    # counted against the last TRAINING (its inputs stay recorded), not the last run: the same answer again
    assert train() == "skipped: 3 new labelled rows < 7"

    # `trader run --retrain` sets force on every training step (pipeline.cli.common.TRAINING_OPS)
    assert train({"ops": {"ml__options_direction": {"config": {"force": True}}}}).startswith("forced")
    assert _runs(trk, "options_desk") == 4

    # the asset's decision against what that training recorded (no further training: MLflow logging is most of a
    # training's time): more labels, or a changed model parameter, retrain; the retrain policy alone does not
    from assets.common import retrain_decision

    def decision(c):
        with duckdb.connect(wh, read_only=True) as con:
            now = om.training_state(om.load_dataset(con, c), c.options_desk.models)
            return retrain_decision(con, list(m.names.values()), now, c.options_desk.models.retrain, False)

    assert decision(cfg) == (False, "skipped: 0 new labelled rows < 7")
    with duckdb.connect(wh) as con:
        _publish(con, 8)
    assert decision(cfg) == (True, "new_labels: 8 new labelled rows >= 7")
    other = cfg.model_copy(deep=True)
    other.options_desk.models.retrain.min_new_labels = 9
    assert decision(other) == (False, "skipped: 8 new labelled rows < 9")
    other.options_desk.models.params = {**m.params, "n_estimators": 6}
    assert decision(other)[1].startswith("config_changed")


def test_trader_run_retrain_sets_force_on_the_training_steps(monkeypatch):
    import pipeline.cli.common as common

    seen = []
    monkeypatch.setattr(common, "_execute_in_process", lambda job, rc, tags, inst, progress: seen.append(rc) or rc)
    common.execute("main_job", inst=object(), retrain=True)
    common.execute("main_job", inst=object(), full_refresh=True)
    forced = {k for k, v in seen[0]["ops"].items() if v == {"config": {"force": True}}}
    assert forced == TRAINING_OPS
    assert not any("force" in v.get("config", {}) for v in seen[1].get("ops", {}).values())
