"""Issue 13, item 2: a crash between moving ``@champion`` (the MLflow registry, the truth) and writing
``ml.model_runs.promoted`` is repaired by the next run, whichever write happened first, and the setup gate then uses
the champion instead of silently falling back to rules only."""

from __future__ import annotations

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from assets.keys import SETUP_META_CHAMPION
from assets.setup_scanner.common import model_in_force
from pipeline.config import settings
from pipeline.definitions import ALL_ASSETS
from tests.reliability.ingest_helpers import memory_instance
from warehouse import io, readers, runs


def _record(con, name: str, version: str, minute: int, *, passed: bool = True, promoted: bool = False) -> None:
    row = runs.model_run_row(
        mlflow_run_id=f"r{version}",
        model_name=name,
        model_version=version,
        data_start=pd.Timestamp("2023-03-01"),
        data_end=pd.Timestamp("2023-04-10"),
        n_rows=500,
        n_folds=2,
        scores_raw={"auc": 0.6},
        scores_cal={"auc": np.float64(0.61), "ece": 0.02, "brier": 0.2},
        dagster_run_id="d",
        code_version="1",
        promotion_passed=passed,
        promotion_reasons=[],
    )
    row["trained_at"] = pd.Timestamp("2026-01-01") + pd.Timedelta(minutes=minute)
    row["promoted"] = promoted
    runs.record_model_run(con, row)


def _registry(mlflow, name: str, versions: int, tmp_path) -> None:
    """``versions`` real registered versions of ``name`` in the test's MLflow store (sources are empty folders)."""
    client = mlflow.client()
    client.create_registered_model(name)
    for v in range(1, versions + 1):
        src = tmp_path / f"model_v{v}"
        src.mkdir()
        client.create_model_version(name, source=src.as_uri())


def _champion_step(resources):
    with memory_instance() as inst:
        res = dg.materialize(
            ALL_ASSETS,
            selection=dg.AssetSelection.keys(SETUP_META_CHAMPION),
            resources=resources,
            instance=inst,
            raise_on_error=False,
        )
    assert res.success
    return res


# previous_champion=True (the gate kept serving the old champion) is the same path; one case keeps the suite short
@pytest.mark.parametrize("previous_champion", [False])
def test_alias_moved_then_crash_before_flag_is_repaired_by_rerun(resources, tmp_path, previous_champion):
    sc = settings().setup_scanner
    name, wh, mlflow = sc.meta.name, resources["warehouse"], resources["mlflow"]
    _registry(mlflow, name, 2, tmp_path)
    with wh.connect() as con:
        if previous_champion:
            _record(con, name, "1", 0, promoted=True)
            mlflow.promote(name, "1")
        _record(con, name, "2", 10)
        # the crash window: the champion step moved the alias (real MLflow client) and died before the flag
        mlflow.promote(name, "2")
        before = model_in_force(con, sc)
        # the symptom of the issue: the flag lags the alias (no champion at all = rules-only gating)
        assert (before is None) if not previous_champion else (before.model_version == "1")

    res = _champion_step(resources)  # a plain re-run of the champion step

    with wh.connect() as con:
        champ = readers.champion_run(con, name)
        assert champ is not None and champ.model_version == "2" and bool(champ.promoted)
        assert model_in_force(con, sc).model_version == "2"  # the gate uses the champion, not rules only
        flags = dict(con.execute("SELECT model_version, promoted FROM ml.model_runs").fetchall())
    assert flags == ({"1": True, "2": True} if previous_champion else {"2": True})  # history of champions kept
    assert str(mlflow.champion(name).version) == "2"
    meta = res.get_asset_materialization_events()[0].materialization.metadata
    assert meta["status"].value == "already champion"


def test_flag_written_but_alias_never_moved_is_repaired_from_the_alias(resources, tmp_path):
    """The reverse order: ``promoted`` set for v2 while the alias still points at v1 (e.g. an old binary, or a manual
    fix). The alias is the truth: the live scan's model lookup clears v2's flag and serves v1."""
    sc = settings().setup_scanner
    name, wh, mlflow = sc.meta.name, resources["warehouse"], resources["mlflow"]
    _registry(mlflow, name, 2, tmp_path)
    with wh.connect() as con:
        _record(con, name, "1", 0, promoted=True)
        mlflow.promote(name, "1")
        _record(con, name, "2", 10, passed=False, promoted=True)  # the champion step never runs for v2 (gate failed)
        assert model_in_force(con, sc).model_version == "2"  # the flag alone would serve a model never promoted

        assert model_in_force(con, sc, mlflow).model_version == "1"
        assert readers.champion_run(con, name).model_version == "1"
        assert dict(con.execute("SELECT model_version, promoted FROM ml.model_runs").fetchall()) == {
            "1": True,
            "2": False,
        }
        # no alias at all: every flag is cleared (rules only, as the registry says)
        mlflow.client().delete_registered_model_alias(name, "champion")
        assert model_in_force(con, sc, mlflow) is None
        assert not io.read_df(con, "SELECT promoted FROM ml.model_runs")["promoted"].any()


def test_sync_promoted_hand_computed(tmp_path):
    with io.connect(str(tmp_path / "w.duckdb")) as con:
        _record(con, "m", "1", 0, promoted=True)
        _record(con, "m", "2", 5, promoted=True)
        _record(con, "m", "3", 9)
        assert runs.sync_promoted(con, "m", "3") == 1  # v3 flagged; v1, v2 are earlier champions (kept)
        assert runs.sync_promoted(con, "m", "3") == 0  # idempotent
        assert runs.sync_promoted(con, "m", "1") == 2  # alias moved back to v1: v2 and v3 cleared
        assert readers.champion_run(con, "m").model_version == "1"
        assert runs.sync_promoted(con, "other", None) == 0


def test_a_warehouse_without_the_champions_training_row_serves_the_registrys_champion(resources, tmp_path):
    """``trader live --replay`` builds its own warehouse and shares ``trader run``'s MLflow store: the gate's model is
    the registry's ``@champion`` (not rules only), scoring live only after its data end unless ``score_in_sample``."""
    sc = settings().setup_scanner.model_copy(deep=True)
    name, wh, mlflow = sc.meta.name, resources["warehouse"], resources["mlflow"]
    with wh.connect() as con:
        assert model_in_force(con, sc, mlflow) is None  # no alias: rules only
    client = mlflow.client()
    exp = client.create_experiment("setup_scanner_test")
    run = client.create_run(exp, tags={"data_start": "2019-01-01T00:00:00", "data_end": "2026-04-30T03:00:00"})
    client.create_registered_model(name)
    (tmp_path / "m").mkdir()
    client.create_model_version(name, source=(tmp_path / "m").as_uri(), run_id=run.info.run_id)
    mlflow.promote(name, "1")
    with wh.connect() as con:
        assert readers.champion_run(con, name) is None  # the warehouse has no row of it
        champ = model_in_force(con, sc, mlflow)
        assert champ.mlflow_run_id == run.info.run_id and champ.model_version == "1"
        assert champ.data_end == pd.Timestamp("2026-04-30 03:00")  # older candidates stay unscored (in sample)
        sc.meta.score_in_sample = True  # what the replay's configuration says
        assert model_in_force(con, sc, mlflow).data_end == pd.Timestamp(0)
        assert model_in_force(con, sc) is None  # without the registry there is nothing to serve
