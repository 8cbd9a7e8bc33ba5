"""The code location loads; asset keys and partitions are stable (renaming orphans history)."""

import dagster as dg

from pipeline.definitions import defs
from pipeline.partitions import SYMBOL_TIMEFRAME, full_range_tags, parse_key, partition_key


def test_definitions_load():
    dg.Definitions.validate_loadable(defs)
    for job in (
        "main_job",
        "ingest_job",
        "train_job",
        "backtest_job",
        "options_desk_job",
        "options_models_job",
        "setup_scan_job",
        "setup_train_job",
        "setup_calibrate_job",
        "setup_tune_job",
        "setup_retro_job",
        "live_candle_job",
        "options_daily_job",
        "health_job",
        "db_maintenance_job",
        "notify_alert_job",
        "paper_job",
        "paper_reset_job",
    ):
        assert defs.resolve_job_def(job)
    # issue 16: one closed-candle sensor per scanned timeframe, off unless live.enabled (trader live)
    sens = {s.name: s for s in defs.sensors}
    assert set(sens) == {"closed_candles_15m", "closed_candles_1h", "run_failure_alert", "closed_candle_lag"}
    assert all(sens[f"closed_candles_{tf}"].job_name == "live_candle_job" for tf in ("15m", "1h"))
    assert all(s.default_status == dg.DefaultSensorStatus.STOPPED for s in sens.values())
    # the health alerts request notify_alert_job (a sensor never opens the warehouse)
    assert sens["closed_candle_lag"].job_name == "notify_alert_job"
    assert [j.name for j in sens["run_failure_alert"].jobs] == ["notify_alert_job"]
    # seed 002 "auto": weekly UTC train -> calibrate -> tune, stopped unless setup_scanner.auto.enabled
    sched = {s.name: s for s in defs.schedules}
    # issue 16: the options desk's day, the health checks and the warehouse maintenance, stopped unless live.enabled
    assert {n: sched[n].job_name for n in ("options_daily", "health", "db_maintenance")} == {
        "options_daily": "options_daily_job",
        "health": "health_job",
        "db_maintenance": "db_maintenance_job",
    }
    assert [sched[n].cron_schedule for n in ("setup_train_weekly", "setup_calibrate_weekly", "setup_tune_weekly")] == [
        "0 1 * * 1",
        "30 1 * * 1",
        "0 2 * * 1",
    ]
    assert all(
        s.execution_timezone == "UTC" and s.default_status == dg.DefaultScheduleStatus.STOPPED for s in sched.values()
    )
    from pipeline.config import settings
    from pipeline.schedules import setup_schedules

    on = settings().model_copy(deep=True)
    on.setup_scanner.auto.enabled = True
    assert all(s.default_status == dg.DefaultScheduleStatus.RUNNING for s in setup_schedules(on))
    # app.timezone (seed: "used for scheduling and display") is the schedules' execution_timezone
    tokyo = settings().model_copy(deep=True)
    tokyo.app.timezone = "Asia/Tokyo"
    assert {s.execution_timezone for s in setup_schedules(tokyo)} == {"Asia/Tokyo"}


def test_asset_keys_snapshot():
    keys = {"/".join(k.path) for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert keys == {
        "external/data_folder",
        "external/exchange",
        "external/onchain_sheet",
        "raw/ingested_ohlcv",
        "raw/onchain_metrics",
        "market/ohlcv",
        "market/onchain_daily",
        "market/sentiment_daily",
        "features/technical",
        "regimes/market",
        "ml/baseline_direction",
        "ml/baseline_gate",
        "ml/baseline_champion",
        "backtest/baseline",
        "features/onchain",
        "signals/options_daily",
        "signals/options_trades",
        "backtest/options_desk",
        "ml/options_direction",
        "ml/options_champion",
        "signals/setup_candidates",
        "ml/setup_meta",
        "ml/setup_meta_gate",
        "ml/setup_champion",
        "signals/setup_thresholds",
        "signals/setups",
        "signals/log",
        "paper/setup_book",
        "ops/setup_notices",
        "backtest/setup_scanner",
        "signals/setup_retro",
        "ops/serving_snapshot",
        "ops/options_notice",
        "ops/health",
        # alpha portfolio (issue 18): signal part
        "features/alpha",
        "regimes/alpha_market",
        "ml/alpha_6h",
        "ml/alpha_6h_gate",
        "ml/alpha_6h_champion",
        "ml/alpha_24h",
        "ml/alpha_24h_gate",
        "ml/alpha_24h_champion",
        "signals/alpha_scores",
        "signals/alpha_targets",
        "backtest/alpha_portfolio",
    }
    graph = defs.resolve_asset_graph()
    # groups are owners (a shared layer or one desk), key prefixes are layers (docs/decisions.md "Groups")
    assert graph.get(dg.AssetKey(["ml", "baseline_direction"])).group_name == "research"
    assert graph.get(dg.AssetKey(["backtest", "baseline"])).group_name == "research"
    assert graph.get(dg.AssetKey(["signals", "options_trades"])).group_name == "options_desk"
    assert graph.get(dg.AssetKey(["ml", "options_direction"])).group_name == "options_desk"
    # the daily signal waits for the champion step, so it always reads the current champions' scores
    assert dg.AssetKey(["ml", "options_champion"]) in graph.get(dg.AssetKey(["signals", "options_daily"])).parent_keys
    # setup signals do not depend on the champion step (a failed weekly gate must not stop live scans); the gate and
    # the promotion run first inside a run through their higher Dagster priority
    setups = graph.get(dg.AssetKey(["signals", "setups"]))
    assert dg.AssetKey(["ml", "setup_champion"]) not in setups.parent_keys and setups.group_name == "setup_scanner"
    for k in (["ml", "setup_meta_gate"], ["ml", "setup_champion"]):
        assert defs.get_assets_def(dg.AssetKey(k)).op.tags["dagster/priority"] == "10"


def test_partition_keys():
    keys = SYMBOL_TIMEFRAME.get_partition_keys()
    assert "BTC-USDT|1h" in keys and len(keys) == 12  # test universe: 2 symbols x 6 timeframes
    assert parse_key(partition_key("ETH/USDT", "4h")) == ("ETH/USDT", "4h")
    tags = full_range_tags()
    assert tags["dagster/asset_partition_range_start"] == "BTC-USDT|1m"
    assert tags["dagster/asset_partition_range_end"] == "ETH-USDT|1d"


def test_workspace_and_instance_files():
    from pathlib import Path

    import yaml

    repo = Path(__file__).resolve().parent.parent
    ws = yaml.safe_load((repo / "workspace.yaml").read_text())
    assert ws["load_from"][0]["python_module"]["module_name"] == "pipeline.definitions"
    inst = yaml.safe_load((repo / ".dagster_home" / "dagster.yaml").read_text())
    assert inst["concurrency"]["pools"]["default_limit"] == 1 and inst["telemetry"]["enabled"] is False
    assert "[tool.dagster]" not in (repo / "pyproject.toml").read_text()


def test_every_job_that_changes_signals_or_models_republishes_the_snapshot():
    """The REST API and SQL users read serving.duckdb: a command that changes what they read must republish it."""
    snapshot = dg.AssetKey(["ops", "serving_snapshot"])
    for job in (
        "main_job",
        "train_job",
        "backtest_job",
        "options_desk_job",
        "options_models_job",
        "options_daily_job",
        "setup_scan_job",
        "setup_train_job",
        "setup_calibrate_job",
        "setup_tune_job",
    ):
        assert snapshot in defs.resolve_job_def(job).asset_layer.selected_asset_keys, job
    # notifications and the health report run only in their scheduled jobs, never in a batch run
    notice, health = dg.AssetKey(["ops", "options_notice"]), dg.AssetKey(["ops", "health"])
    for job in ("main_job", "options_desk_job", "live_candle_job"):
        assert not {notice, health} & set(defs.resolve_job_def(job).asset_layer.selected_asset_keys), job
    # the live job notifies before it publishes (issue 16, speed: Telegram does not wait for the snapshot, and the
    # snapshot holds this step's signal log and paper book)
    live = defs.resolve_asset_graph()
    assert {dg.AssetKey(["ops", "setup_notices"]), dg.AssetKey(["paper", "setup_book"])} <= live.get(
        snapshot
    ).parent_keys
    daily = defs.resolve_job_def("options_daily_job").asset_layer.selected_asset_keys
    assert notice in daily and dg.AssetKey(["ml", "options_direction"]) not in daily  # the daily path never trains


def test_every_asset_and_check_is_described_and_reads_uniquely_in_the_graph():
    """Issue 14 item 4: the lineage graph is readable on its own."""
    graph = defs.resolve_asset_graph()
    keys = graph.get_all_asset_keys()
    missing = [k.to_user_string() for k in keys if not (graph.get(k).description or "").strip()]
    assert not missing, f"assets without a description: {missing}"
    checks = [spec for ad in defs.resolve_asset_graph().assets_defs for spec in ad.check_specs]
    assert len(checks) > 20
    bare = [f"{c.asset_key.to_user_string()}:{c.name}" for c in checks if not (c.description or "").strip()]
    assert not bare, f"asset checks without a description: {bare}"
    last = [k.path[-1] for k in keys]
    assert len(set(last)) == len(last), sorted(n for n in last if last.count(n) > 1)
    # the zoomed-out graph cuts names longer than 18 characters in the middle (Dagster UI AssetNode minimal view)
    assert not [n for n in last if len(n) > 18]


def test_every_schedule_says_what_it_runs_and_when():
    """Issue 14 item 5: the Automation page explains each schedule (job, cron in words, time zone, how to enable)."""
    from pipeline.config import settings
    from pipeline.schedules import schedules

    for on, tz in ((False, "UTC"), (True, "Asia/Tokyo")):
        cfg = settings().model_copy(deep=True)
        cfg.setup_scanner.auto.enabled, cfg.app.timezone = on, tz
        everything = {s.job_name: s.description or "" for s in schedules(cfg)}
        assert len(everything) == 7
        weekly = ("setup_train_job", "setup_calibrate_job", "setup_tune_job")
        descriptions = {j: everything[j] for j in weekly}
        for job in ("options_daily_job", "health_job", "db_maintenance_job", "alpha_train_job"):  # on with live.enabled
            d = everything[job]
            assert d.startswith(f"Runs {job} every ") and f"{tz}" in d and "live.enabled" in d, d
        for job, d in descriptions.items():
            assert d.startswith(f"Runs {job} every Monday at ") and f" {tz} (cron '" in d, d
            assert "setup_scanner.auto.enabled" in d and ("ON by default" if on else "OFF by default") in d, d
        assert "every Monday at 01:30 " in descriptions["setup_calibrate_job"]
