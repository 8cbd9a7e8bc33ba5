"""The pipeline status the snapshot publishes (``pipeline.status``): newest run per job and newest check results, read
from a real Dagster instance after real runs (one passing and one failing check)."""

import dagster as dg

from pipeline.status import CHECK_COLUMNS, RUN_COLUMNS, check_results, last_runs


@dg.asset(check_specs=[dg.AssetCheckSpec("positive", asset="numbers"), dg.AssetCheckSpec("small", asset="numbers")])
def numbers():
    return dg.MaterializeResult(
        check_results=[
            dg.AssetCheckResult(check_name="positive", passed=True),
            dg.AssetCheckResult(check_name="small", passed=False, description="42 > 10"),
        ]
    )


@dg.asset
def broken():
    raise RuntimeError("boom")


def test_last_runs_and_check_results_from_a_real_instance():
    defs = dg.Definitions(
        assets=[numbers, broken],
        jobs=[
            dg.define_asset_job("numbers_job", selection=[numbers]),
            dg.define_asset_job("broken_job", selection=[broken]),
            dg.define_asset_job("never_run_job", selection=[numbers]),
        ],
    )
    with dg.instance_for_test() as instance:
        assert defs.resolve_job_def("numbers_job").execute_in_process(instance=instance).success
        assert defs.resolve_job_def("numbers_job").execute_in_process(instance=instance).success
        assert (
            not defs.resolve_job_def("broken_job").execute_in_process(instance=instance, raise_on_error=False).success
        )
        repo = defs.get_repository_def()
        runs = last_runs(instance)
        assert list(runs.columns) == RUN_COLUMNS
        assert dict(zip(runs["job_name"], runs["status"])) == {"broken_job": "FAILURE", "numbers_job": "SUCCESS"}
        newest = instance.get_run_records(filters=dg.RunsFilter(job_name="numbers_job"), limit=1)[0]
        assert runs.set_index("job_name").loc["numbers_job", "run_id"] == newest.dagster_run.run_id
        assert (runs["end_time"] >= runs["start_time"]).all()
        checks = check_results(instance, list(repo.asset_graph.asset_check_keys))
        assert list(checks.columns) == CHECK_COLUMNS
        got = checks.set_index("check_name")
        assert bool(got.loc["positive", "passed"]) and not bool(got.loc["small", "passed"])
        assert got.loc["small", "description"] == "42 > 10" and got.loc["small", "severity"] == "ERROR"
        assert set(got["run_id"]) == {newest.dagster_run.run_id}
