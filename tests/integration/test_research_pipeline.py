"""Integration: baseline model, promotion gate, champion alias and backtest through Dagster, on slices of
real BTC/ETH candles, with a real MLflow store (sqlite + artifact folder) in a temporary directory."""

import contextlib
import json
import re

import dagster as dg
import duckdb
import mlflow
import numpy as np
import pandas as pd
import pytest

import assets.research.model as ml_assets
from models.datasets import MODEL_FEATURES
from pipeline.config import settings
from pipeline.core.metrics import daily_closes
from pipeline.definitions import ALL_ASSETS
from pipeline.jobs import ON_DEMAND
from pipeline.partitions import full_range_tags

pytestmark = pytest.mark.integration


def _run(resources, instance, run_config=None):
    return dg.materialize(
        ALL_ASSETS,
        selection=dg.AssetSelection.all() - ON_DEMAND,
        resources=resources,
        instance=instance,
        tags=full_range_tags(),
        raise_on_error=False,
        run_config=run_config or {},
    )


def _q(resources, sql, params=None):
    with duckdb.connect(resources["warehouse"].path, read_only=True) as con:
        return con.execute(sql, params or []).df()


def _meta(result, key):
    ev = [e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey(key)]
    return ev[-1].materialization.metadata if ev else None


#: assets that skip on a no-op run and must carry their figures forward
CARRIED = [
    ["ml", "baseline_direction"],
    ["backtest", "baseline"],
    ["ml", "options_direction"],
    ["backtest", "options_desk"],
    ["features", "onchain"],
    ["ml", "setup_meta"],
    ["signals", "setup_thresholds"],
    ["signals", "setups"],
    ["backtest", "setup_scanner"],
]


DECIMAL = re.compile(r"(?<![\d:.])\d+\.\d+")  # not the seconds of a timestamp (23:59:59.999000)


def _significant(token: str) -> int:
    """Significant digits of a printed decimal: ``0.0001627`` → 4, ``52.35`` → 4, ``0.123456789`` → 9."""
    return len(token.replace(".", "").lstrip("0"))


def _assert_rounded(result):
    """No metadata float of ``result``'s materialisations and checks shows more than 4 significant digits (integer
    parts kept), and no markdown table prints a float unrounded."""
    from assets.common import rounded

    events = [e.materialization.metadata for e in result.get_asset_materialization_events()]
    events += [e.metadata for e in result.get_asset_check_evaluations()]
    for md in events:
        for name, v in md.items():
            if isinstance(v, dg.FloatMetadataValue) and v.value is not None:
                assert v.value == rounded(v.value), (name, v.value)
            if isinstance(v, dg.MarkdownMetadataValue) and "data:image" not in v.value:
                long = [t for t in DECIMAL.findall(v.value) if _significant(t) > 6]  # price tables keep 6 digits
                assert not long, (name, long[:3])


def _check(result, name, asset=("ml", "baseline_gate")):
    """The evaluation of check ``name`` (``promotion_gate`` exists on several assets: ``asset`` disambiguates)."""
    hits = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
    return next((e for e in hits if e.asset_key == dg.AssetKey(list(asset))), hits[0])


#: stored fills of candle-priced desks outside their bar's [low, high] widened by the run's slippage (issue 12 item 11).
#: Only rows whose symbol (``SYM`` or ``SYM|tf``) is a candle series and whose prices are candle prices: the options
#: desk's rows are excluded (their prices are option premiums; the underlying's are ``underlying_*`` columns).
FILLS_OUTSIDE_BARS = """
WITH t AS (
    SELECT t.*, r.desk, split_part(t.symbol, '|', 1) AS sym,
           coalesce(nullif(split_part(t.symbol, '|', 2), ''), r.timeframe) AS tf,
           coalesce(json_extract(r.costs, '$.slippage_bps')::DOUBLE / 1e4,
                    json_extract(r.costs, '$.slippage_pct')::DOUBLE / 100, 0) AS slip
    FROM backtest.trades t JOIN backtest.runs r USING (run_id) WHERE r.desk <> 'options_desk'
), fills AS (
    SELECT desk, run_id, trade_id, sym, tf, slip, 'entry' AS fill, entry_ts AS ts, entry_price AS px FROM t
    UNION ALL SELECT desk, run_id, trade_id, sym, tf, slip, 'exit', exit_ts, exit_price FROM t
    UNION ALL SELECT desk, run_id, trade_id, sym, tf, slip, 'tp1', tp1_ts, tp1_price FROM t WHERE tp1_ts >= 0
)
SELECT f.desk, count(*) AS fills, count(o.ts) AS on_a_candle,
       count(*) FILTER (WHERE f.px < o.low * (1 - f.slip) * (1 - 1e-9) OR f.px > o.high * (1 + f.slip) * (1 + 1e-9))
           AS outside
FROM fills f LEFT JOIN market.ohlcv o ON o.symbol = f.sym AND o.timeframe = f.tf AND o.ts = f.ts
GROUP BY ALL ORDER BY ALL
"""


def _assert_mlflow_ui_records(trk, resources):
    """What the MLflow UI shows after a first run (issue 14, item 6), queried through ``MlflowClient``: every
    experiment opens as model development with a description; every registered model and version is described and
    tagged with its verdict; every model logs per-fold steps; every desk's backtest is a run with the equity plot."""
    from resources.mlflow_tracking import KIND_TAG, ML_KIND, NOTE_TAG, VIEW_TAG

    client = trk.client()
    exps = {e.name: e for e in client.search_experiments()}
    assert {"baseline_direction", "setup_scanner", "options_desk", "backtests"} <= set(exps)
    for name in ("baseline_direction", "setup_scanner", "options_desk", "backtests"):
        tags = exps[name].tags
        assert tags[KIND_TAG] == ML_KIND and tags[NOTE_TAG] and json.loads(tags[VIEW_TAG])["selectedColumns"], name
    for name in ("baseline_direction", "setup_meta", "options_p_long", "options_p_short"):
        assert "Figures: out-of-sample" in client.get_registered_model(name).description, name
        v = client.get_model_version(name, "1")
        assert v.tags["promotion_verdict"] == "PASS" and v.tags["promotion_reasons"].startswith("PASS"), name
        assert "OOS calibrated" in v.description and "**Promotion gate:** PASS" in v.description, name
        steps = [m.step for m in client.get_metric_history(v.run_id, "fold_auc_raw")]
        assert len(steps) >= 2 and steps == sorted(set(steps)), (name, steps)  # one value per fold, step = fold
    bts = client.search_runs([exps["backtests"].experiment_id])
    by_desk = {}
    for r in bts:
        by_desk.setdefault(r.data.tags["desk"], []).append(r)
    assert sorted(by_desk) == ["options_desk", "research", "setup_scanner"]
    assert sorted(r.info.run_name.split("-")[0] for r in by_desk["setup_scanner"]) == ["setup_gated", "setup_ungated"]
    for r in bts:
        assert {"total_return", "max_drawdown", "bh_total_return"} <= set(r.data.metrics), r.info.run_name
        assert "equity_drawdown.png" in {a.path for a in client.list_artifacts(r.info.run_id)}, r.info.run_name
    assert "always_on_calls_total_return" in by_desk["options_desk"][0].data.metrics
    stored = set(_q(resources, "SELECT mlflow_run_id FROM backtest.runs")["mlflow_run_id"])
    assert {r.info.run_id for r in bts} <= stored  # backtest.runs.mlflow_run_id points at each run


def _assert_alpha_cli(resources):
    """``trader alpha targets | report | status`` (issue 18) print what the alpha tables hold after a cold run."""
    from typer.testing import CliRunner

    from pipeline import cli

    last = _q(resources, "SELECT * FROM signals.alpha_targets WHERE ts = (SELECT max(ts) FROM signals.alpha_targets)")
    assert len(last) == 2 and set(last["reason"]) <= {
        "kept", "added", "dropped_rank", "capped_tier", "capped_risk", "capped_sleeve", "band_hold", "below_min_order",
        "no_positive_score",
    }  # fmt: skip
    out = CliRunner().invoke(cli.app, ["alpha", "targets"], env={"COLUMNS": "250"})
    assert out.exit_code == 0, out.output
    when = pd.Timestamp(int(last["ts"].iloc[0]), unit="ms")
    assert f"{when:%Y-%m-%d %H:%M} UTC bar (regime {last['regime'].iloc[0]})" in out.output, out.output
    for r in last.itertuples():
        assert r.symbol in out.output and r.reason in out.output, out.output
    early = _q(resources, "SELECT min(ts) AS ts FROM signals.alpha_targets")["ts"][0]
    out = CliRunner().invoke(cli.app, ["alpha", "targets", "--at", str(pd.Timestamp(int(early), unit="ms"))])
    assert out.exit_code == 0 and f"{pd.Timestamp(int(early), unit='ms'):%Y-%m-%d %H:%M} UTC bar" in out.output
    out = CliRunner().invoke(cli.app, ["alpha", "targets", "--at", "not a time"])
    assert out.exit_code != 0 and "is not a time" in out.output
    runs = _q(resources, "SELECT strategy, metrics FROM backtest.runs WHERE desk = 'alpha_portfolio' ORDER BY 1")
    assert runs["strategy"].tolist() == ["alpha_book", "alpha_book_no_dd"]
    out = CliRunner().invoke(cli.app, ["alpha", "report"], env={"COLUMNS": "250"})
    assert out.exit_code == 0 and "buy_and_hold_btc" in out.output and "alpha_book_no_dd" in out.output, out.output
    from pipeline.cli.common import pct

    assert pct(json.loads(runs["metrics"][0])["total_return"]) in out.output
    out = CliRunner().invoke(cli.app, ["alpha", "status"], env={"COLUMNS": "250"})
    assert out.exit_code == 0 and "regime now:" in out.output and "signals.alpha_scores by source" in out.output


def test_train_gate_promote_backtest_then_refuse_a_failing_model(resources, monkeypatch, built_warehouse):
    # the data chain is the session's (copied into `resources`): r1 trains, gates, promotes and backtests on it
    with contextlib.nullcontext(dg.DagsterInstance.ephemeral()) as instance:  # in memory: see conftest `instance`
        r1 = _run(resources, instance)
        assert r1.success
        assert _check(r1, "promotion_gate").passed and _check(r1, "accounting_reconciles").passed
        # every float the UI shows is rounded by the one metadata helper (issue 14 item 4); MLflow links open the UI
        _assert_rounded(r1)
        assert _meta(r1, ["ml", "baseline_direction"])["mlflow_run"].value.startswith("http://127.0.0.1:5000/#/")
        # every stored fill of every candle-priced desk was traded in its bar (allowing slippage)
        fills = _q(resources, FILLS_OUTSIDE_BARS).set_index("desk")
        assert {"research", "setup_scanner"} <= set(fills.index) and (fills["fills"] > 0).all(), fills
        assert (fills["on_a_candle"] == fills["fills"]).all() and (fills["outside"] == 0).all(), fills
        runs = _q(resources, "SELECT * FROM ml.model_runs WHERE model_name = 'baseline_direction'")
        assert len(runs) == 1 and bool(runs.promotion_passed[0]) and bool(runs.promoted[0])

        # the promoted model loads by alias and matches the registry
        trk = resources["mlflow"]
        mlflow.set_tracking_uri(trk.tracking_uri)
        champ = trk.champion("baseline_direction")
        assert champ is not None and str(champ.version) == runs.model_version[0] == "1"
        model = mlflow.sklearn.load_model("models:/baseline_direction@champion")
        with duckdb.connect(resources["warehouse"].path, read_only=True) as con:
            from models.baseline import labelled_frame
            from warehouse.readers import series

            frame = labelled_frame(series(con, "binance", "BTC/USDT", "1h"), settings().research.baseline)
        p = model.predict_proba(frame[MODEL_FEATURES].tail(200))
        assert p.shape == (200, 2) and np.all((p >= 0) & (p <= 1)) and np.allclose(p.sum(axis=1), 1)
        mrun = mlflow.get_run(champ.run_id)
        assert mrun.data.tags["dagster_run_id"] == r1.run_id and "data_start" in mrun.data.tags
        assert {"oos_auc_cal", "oos_brier_cal", "oos_ece_cal", "oos_auc_raw"} <= set(mrun.data.metrics)
        arts = {a.path for a in mlflow.MlflowClient().list_artifacts(champ.run_id)}
        assert {"reliability.png", "features.json", "feature_importance.json", "folds.csv"} <= arts

        # predictions are out of sample: each row's fold trained only on labels ending before the fold's test start
        folds = _q(resources, "SELECT fold, test_start, train_end FROM ml.folds")
        assert (folds.train_end < folds.test_start).all()
        preds = _q(
            resources,
            "SELECT p.*, f.test_start, f.test_end FROM ml.predictions p JOIN ml.folds f USING (mlflow_run_id, fold)",
        )
        assert (
            len(preds) > 1000
            and (preds.open_time >= preds.test_start).all()
            and (preds.open_time <= preds.test_end).all()
        )

        # backtest tables: one run, trades reconcile with equity, buy-and-hold beside it
        bt = _q(resources, "SELECT * FROM backtest.runs WHERE desk = 'research'")
        assert len(bt) == 1 and bt["sample"][0] == "out_of_sample"
        m = json.loads(bt["metrics"][0])
        rid = bt["run_id"][0]
        trades = _q(resources, "SELECT * FROM backtest.trades WHERE run_id = ?", [rid])
        eq = _q(resources, "SELECT * FROM backtest.equity WHERE run_id = ? ORDER BY ts", [rid])
        assert m["n_trades"] == (trades.exit_reason != "open").sum() and len(trades) > 0
        assert eq.equity.iloc[-1] == pytest.approx(100_000 + trades.pnl.sum(), rel=1e-9)
        bh = daily_closes(eq.ts.to_numpy(), eq.benchmark_equity.to_numpy(), 3_600_000)  # the metrics' daily closes
        assert json.loads(bt["benchmark"][0])["total_return"] == pytest.approx(bh.iloc[-1] / 100_000 - 1, rel=1e-6)
        assert bt["n_trials"][0] == 1 and bt["psr"][0] == pytest.approx(m["psr"]) and bt["dsr"][0] == bt["psr"][0]
        assert set(json.loads(bt["costs"][0])) == {"fee_taker_bps", "fee_maker_bps", "slippage_bps", "latency_bars"}
        with duckdb.connect(resources["warehouse"].serving_path, read_only=True) as con:  # published for SQL users
            assert con.execute("SELECT count(*) FROM backtest.trades WHERE run_id = ?", [rid]).fetchone()[0] == len(
                trades
            )

        # the CLI's walk-forward (read-only) prints the per-fold table for other windows
        from typer.testing import CliRunner

        import pipeline.cli as cli
        import pipeline.cli.common as cli_common

        cfg = settings().model_copy(deep=True)
        cfg.warehouse.path = resources["warehouse"].path
        monkeypatch.setattr(cli_common, "settings", lambda: cfg)
        monkeypatch.setattr(cli_common, "instance", lambda: instance)  # CLI runs land in this test's instance
        out = CliRunner().invoke(
            cli.app,
            [
                "walk-forward",
                "--train-window",
                "45d",
                "--test-window",
                "15d",
                "--purge",
                "12",
                "--embargo",
                "6h",
                "--rolling",
            ],
            env={"COLUMNS": "200"},
        )
        assert out.exit_code == 0, out.output
        assert "rolling" in out.output and "train 45d, test 15d, purge 12h, embargo 6h" in out.output
        assert "OOS calibrated: AUC" in out.output
        bad = CliRunner().invoke(cli.app, ["walk-forward", "--train-window", "900d"])
        assert bad.exit_code == 1 and "no folds" in bad.output

        # options desk: one signal row per on-chain day, trades with structures, and its commands
        daily = _q(resources, "SELECT * FROM signals.options_daily ORDER BY date")
        days = _q(resources, "SELECT count(*) n FROM features.onchain")["n"][0]
        assert len(daily) == days > 6000 and daily["date"].is_unique
        tr = _q(resources, "SELECT * FROM signals.options_trades WHERE year(date) = 2024 AND cooldown_status = 'taken'")
        assert len(tr) > 5 and set(tr["structure"]) <= {
            "LONG_CALL",
            "CALL_SPREAD",
            "LONG_PUT",
            "PUT_SPREAD",
            "TACTICAL_PUT",
        }
        ob = _q(resources, "SELECT * FROM backtest.runs WHERE desk = 'options_desk'")
        assert len(ob) == 1 and "Black-Scholes" in ob["sample"][0]
        assert {"buy_and_hold", "always_on_calls", "always_on_puts"} == set(json.loads(ob["benchmark"][0]))
        # its backtest.trades rows mean what every desk's mean (issue 12 item 8): the structure's premium and value at
        # expiry, BTC's prices at those instants, within BTC/USDT's daily range up to the USDT/USD basis
        ot = _q(resources, "SELECT * FROM backtest.trades WHERE run_id = 'options_desk-fusion_options'")
        done = ot[ot["ret"].notna()]
        assert (
            len(done) > 50
            and ot["symbol"].eq("BTC/USD").all()
            and set(ot["instrument"])
            <= {
                "LONG_CALL",
                "CALL_SPREAD",
                "LONG_PUT",
                "PUT_SPREAD",
                "TACTICAL_PUT",
            }
        )
        assert (done["entry_price"] > 0).all() and (done["exit_price"] >= 0).all() and done["exit_price"].notna().all()
        assert (done[["underlying_entry_price", "underlying_exit_price"]] > 0).all().all()
        in_range = _q(
            resources,
            """SELECT t.trade_id, t.underlying_entry_price BETWEEN e.low * 0.95 AND e.high * 1.05 AS entry_ok,
                      t.underlying_exit_price BETWEEN x.low * 0.95 AND x.high * 1.05 AS exit_ok
               FROM backtest.trades t
               JOIN market.ohlcv e ON e.symbol = 'BTC/USDT' AND e.timeframe = '1d' AND e.ts = t.entry_ts - 86400000
               JOIN market.ohlcv x ON x.symbol = 'BTC/USDT' AND x.timeframe = '1d' AND x.ts = t.exit_ts - 86400000
               WHERE t.run_id = 'options_desk-fusion_options' AND t.ret IS NOT NULL""",
        )
        assert len(in_range) > 3 and in_range["entry_ok"].all() and in_range["exit_ok"].all(), in_range
        base = _q(resources, "SELECT * FROM backtest.trades WHERE run_id = ?", [rid])
        assert (base["underlying_entry_price"] == base["entry_price"]).all() and base["instrument"].isna().all()
        import pipeline.cli.options as cli_options

        monkeypatch.setattr(cli_options, "settings", lambda: cfg)
        out = CliRunner().invoke(cli.app, ["options", "list-trades", "--year", "2024"], env={"COLUMNS": "250"})
        assert out.exit_code == 0 and f"Options trades 2024 ({len(tr)})" in out.output, out.output
        day = str(pd.Timestamp(tr["date"].iloc[0]).date())
        out = CliRunner().invoke(
            cli.app, ["options", "score-latest", "--date", day, "--verbose"], env={"COLUMNS": "250"}
        )
        assert out.exit_code == 0 and f"SIGNAL ANALYSIS: {day}" in out.output and "TRADE DECISIONS" in out.output, (
            out.output
        )
        out = CliRunner().invoke(cli.app, ["options", "diagnose-notrade", "--year", "2024"], env={"COLUMNS": "250"})
        assert out.exit_code == 0 and "NO_TRADE days by reason" in out.output

        # options models: both trained, gated (lenient test criteria), promoted, and their scores beside the fusion
        assert _check(r1, "p_long_gate").passed and _check(r1, "p_short_gate").passed
        for name in ("options_p_long", "options_p_short"):
            assert str(trk.champion(name).version) == "1"
        opt = mlflow.sklearn.load_model("models:/options_p_short@champion")
        sc = _q(resources, "SELECT * FROM ml.options_scores WHERE model_name = 'options_p_short' ORDER BY date")
        assert len(sc) > 3000 and sc["date"].is_unique and sc["p_cal"].notna().sum() > 2000
        with duckdb.connect(resources["warehouse"].path, read_only=True) as con:
            from assets.options_desk.models import load_dataset

            data = load_dataset(con, settings())
        assert opt.predict(data.tail(1))[0] == pytest.approx(sc["p_cal"].iloc[-1])  # the champion scored the last day
        last = daily.iloc[-1]
        assert (
            last["p_short"] == pytest.approx(sc["p_cal"].iloc[-1]) and last["p_short_version"] == "options_p_short v1"
        )
        assert last["signal_option_put"] == float(last["p_short"] >= 0.5) and last["model_gate_mode"] == "display"
        assert tr["model_version"].str.startswith("options_p_").all()
        out = CliRunner().invoke(cli.app, ["options", "score-latest", "--verbose"], env={"COLUMNS": "250"})
        assert (
            out.exit_code == 0 and f"p_short = {last['p_short']:.3f}   (options_p_short v1 @champion)" in out.output
        ), out.output
        assert "signal_option_put" in out.output
        out = CliRunner().invoke(cli.app, ["options", "report"], env={"COLUMNS": "250"})
        assert out.exit_code == 0 and "Taken trades by fusion state" in out.output and "by year" in out.output
        assert "tactical_hedge" in out.output and " %" in out.output
        assert _q(resources, "SELECT count(*) n FROM features.onchain_source_agreement")["n"][0] == 2

        # setup scanner: candidates -> p(win) meta-model (gate passed under the test criteria, champion v1) -> tuned
        # thresholds -> gated signals executed by the simulator -> gated vs ungated vs buy-and-hold
        from models.setup_meta import META_FEATURES
        from pipeline.core.setups import SIGNAL_STATUSES

        assert _check(r1, "promotion_gate", ("ml", "setup_meta_gate")).passed
        assert str(trk.champion("setup_meta").version) == "1"
        _assert_mlflow_ui_records(trk, resources)
        setups = _q(resources, "SELECT * FROM signals.setups")
        assert len(setups) > 20 and setups["passed"].all() and setups["gate_mode"].eq("ev").all()
        assert set(setups["status"]) <= set(SIGNAL_STATUSES) and setups["model_version"].eq("setup_meta v1").all()
        unexecuted = setups["status"].isin(["NEW", "SKIPPED", "EXPIRED", "REJECTED"])
        assert setups.loc[unexecuted, "status_reason"].notna().all()  # e.g. "position open since ..." (item 12)
        assert (setups["ev_pct"] >= setups["threshold"] - 1e-12).all() and setups["why"].str.contains(" >= ").all()
        assert {"global", "tuned"} >= set(setups["threshold_source"].str.split(":").str[0])
        champ_run = _q(
            resources, "SELECT mlflow_run_id FROM ml.model_runs WHERE model_name = 'setup_meta' AND promoted"
        )
        sc_ = _q(
            resources, "SELECT * FROM ml.setup_meta_scores WHERE mlflow_run_id = ?", [champ_run["mlflow_run_id"][0]]
        )
        j = setups.merge(sc_, on="candidate_id")
        assert len(j) == len(setups) and np.allclose(j["p_win"], j["p_cal"])  # the champion's point-in-time scores
        # the served champion is the latest fold's model: it reproduces the stored score of the newest candidate
        meta_model = mlflow.sklearn.load_model("models:/setup_meta@champion")
        with duckdb.connect(resources["warehouse"].path, read_only=True) as con:
            from assets.setup_scanner.meta import load_dataset

            ds = load_dataset(con, "binance")
        newest = ds.iloc[[-1]]
        stored = sc_.set_index("candidate_id").loc[newest["candidate_id"].iloc[0], "p_cal"]
        assert meta_model.predict(newest[META_FEATURES])[0] == pytest.approx(stored)
        thr = _q(resources, "SELECT * FROM signals.setup_thresholds")
        assert len(thr) > 0 and thr["model_version"].eq("1").all() and thr["mode"].eq("ev").all()
        bt = _q(resources, "SELECT * FROM backtest.runs WHERE desk = 'setup_scanner' ORDER BY strategy")
        assert bt["strategy"].tolist() == ["setup_gated", "setup_ungated"] and bt["sample"].eq("out_of_sample").all()
        assert json.loads(bt["metrics"][0])["n_trades"] < json.loads(bt["metrics"][1])["n_trades"]
        assert "total_return" in json.loads(bt["benchmark"][0])
        import pipeline.cli.setups as cli_setups

        cfg_s = cfg.model_copy(deep=True)
        cfg_s.mlflow.tracking_uri = trk.tracking_uri
        monkeypatch.setattr(cli_setups, "settings", lambda: cfg_s)
        monkeypatch.setattr(cli_common, "settings", lambda: cfg_s)
        out = CliRunner().invoke(
            cli.app,
            [
                "setups",
                "retro-scan",
                "--start",
                "2023-03-01",
                "--end",
                "2023-04-10",
                "--stride",
                "2",
                "--limit-per-pair",
                "5",
            ],
            env={"COLUMNS": "250"},
        )
        assert out.exit_code == 0 and "retro-scan" in out.output and "Signal statuses" in out.output, out.output
        retro = _q(resources, "SELECT * FROM signals.setup_retro")
        assert 0 < len(retro) <= 5 * 4 and retro.groupby(["symbol", "timeframe"]).size().max() <= 5
        assert (pd.to_datetime(retro["ts"], unit="ms") >= "2023-03-01").all()
        out = CliRunner().invoke(cli.app, ["setups", "db-inspect"], env={"COLUMNS": "250"})
        assert out.exit_code == 0 and "Setup scanner tables" in out.output and "TP1_TRAIL" in out.output, out.output
        eq_csv = resources["warehouse"].path + ".equity.csv"
        out = CliRunner().invoke(cli.app, ["setups", "analyze-results", "--equity-csv", eq_csv], env={"COLUMNS": "250"})
        assert out.exit_code == 0 and "setup_gated" in out.output and "buy_and_hold" in out.output, out.output
        assert len(pd.read_csv(eq_csv)) > 100
        _assert_alpha_cli(resources)

        # no new data: nothing retrained, no new backtest run
        r2 = _run(resources, instance)
        assert r2.success
        assert "not retrained" in _meta(r2, ["ml", "baseline_direction"])["status"].value
        assert "unchanged" in _meta(r2, ["backtest", "baseline"])["status"].value
        assert "unchanged" in _meta(r2, ["backtest", "options_desk"])["status"].value
        assert "not retrained" in _meta(r2, ["ml", "options_direction"])["status"].value
        assert "not retrained" in _meta(r2, ["ml", "setup_meta"])["status"].value
        for k in (["signals", "setup_thresholds"], ["signals", "setups"], ["backtest", "setup_scanner"]):
            assert "unchanged" in _meta(r2, k)["status"].value
        # baseline + p_long + p_short + setup_meta + alpha_6h + alpha_24h
        assert len(_q(resources, "SELECT * FROM ml.model_runs")) == 6
        # ... and the latest materialisation of every skipped asset still shows the figures, tables and plots of the
        # run that computed them (issue 14 item 1), pointing at that run
        for k in CARRIED:
            first, latest = _meta(r1, k), instance.get_latest_materialization_event(dg.AssetKey(k))
            shown = latest.asset_materialization.metadata
            assert latest.run_id == r2.run_id and "status" in shown, k
            assert set(first) <= set(shown), (k, set(first) - set(shown))
            if k == ["features", "onchain"]:  # computed by the session's data-chain build in another Dagster instance:
                assert set(shown) == set(first), k  # r1 found it unchanged too, so there is nothing to carry forward
                continue
            assert shown["computed_in_run"].value == r1.run_id, k
        assert "data:image/png;base64" in _meta(r2, ["ml", "setup_meta"])["reliability"].value
        assert "data:image/png;base64" in _meta(r2, ["backtest", "setup_scanner"])["equity"].value

        # one run retrains the three models with criteria none can meet (one run, not three: each full-graph run costs
        # a minute of the suite). A retrained model that fails the criteria is registered but never promoted, and
        # the rest still runs.
        import assets.options_desk.models as om
        import assets.promotion as promotion
        import assets.setup_scanner.meta as sm

        strict = settings().model_copy(deep=True)
        strict.research.baseline.promotion.min_auc = 0.99
        strict.options_desk.models.promotion.min_auc = 0.99
        strict.setup_scanner.meta.promotion.min_auc = 0.99
        for mod in (ml_assets, promotion, om, sm):  # the gates read their section at the top of their body
            monkeypatch.setattr(mod, "settings", lambda: strict)
        forced = {"config": {"force": True}}
        r3 = _run(
            resources,
            instance,
            {"ops": {"ml__baseline_direction": forced, "ml__options_direction": forced, "ml__setup_meta": forced}},
        )
        gate = _check(r3, "promotion_gate")
        assert not gate.passed and "FAIL auc" in gate.metadata["reasons"].value
        assert not r3.success  # the failed blocking check is visible as a failed step
        assert _meta(r3, ["ml", "baseline_champion"]) is None  # skipped
        assert _meta(r3, ["ops", "serving_snapshot"]) is not None  # data publishing is not held hostage
        assert str(trk.champion("baseline_direction").version) == "1"
        runs = _q(
            resources,
            "SELECT model_version, promotion_passed, promoted FROM ml.model_runs "
            "WHERE model_name = 'baseline_direction' ORDER BY trained_at",
        )
        assert runs.model_version.tolist() == ["1", "2"] and runs.promotion_passed.tolist() == [True, False]
        assert runs.promoted.tolist() == [True, False]

        # the options model failed its (non-blocking) gate: registered as v2, champion and daily scores stay on v1
        assert not _check(r3, "p_long_gate").passed and _check(r3, "p_long_gate").severity == dg.AssetCheckSeverity.WARN
        assert "v2 failed its gate" in _meta(r3, ["ml", "options_champion"])["champions"].value
        assert str(trk.champion("options_p_long").version) == "1"
        assert (
            _q(resources, "SELECT p_long_version FROM signals.options_daily ORDER BY date DESC LIMIT 1")[
                "p_long_version"
            ][0]
            == "options_p_long v1"
        )
        kept = _q(
            resources,
            "SELECT DISTINCT model_version FROM ml.options_scores WHERE model_name = 'options_p_long' ORDER BY 1",
        )
        assert kept["model_version"].tolist() == ["1", "2"]  # champion's and the candidate's scores
        refused = trk.client().get_model_version("options_p_long", "2")
        assert refused.tags["promotion_verdict"] == "FAIL" and "FAIL auc" in refused.tags["promotion_reasons"]

        # the setup meta-model retrain failed its blocking gate: v2 registered, champion stays v1, and the gated
        # signals are still refreshed (they do not depend on the champion step) with v1's scores
        gate_s = _check(r3, "promotion_gate", ("ml", "setup_meta_gate"))
        assert not gate_s.passed and "FAIL auc" in gate_s.metadata["reasons"].value
        assert _meta(r3, ["ml", "setup_champion"]) is None and str(trk.champion("setup_meta").version) == "1"
        assert _meta(r3, ["signals", "setups"]) is not None
        after = _q(resources, "SELECT DISTINCT model_version FROM signals.setups")
        assert after["model_version"].tolist() == ["setup_meta v1"]
        kept = _q(resources, "SELECT DISTINCT model_version FROM ml.setup_meta_scores ORDER BY 1")
        assert kept["model_version"].tolist() == ["1", "2"]
        refused = trk.client().get_model_version("setup_meta", "2")
        assert refused.tags["promotion_verdict"] == "FAIL" and "**Promotion gate:** FAIL" in refused.description

        # live scoring in a fresh process: new candles arrive, `setup_scan_job` runs alone in a new Python process
        # (nothing there has set an MLflow tracking URI), and every candidate newer than the champion's data is scored by
        # the champion of the project's own store
        _live_scan_in_fresh_process(resources, instance, trk)


def _live_scan_in_fresh_process(resources, instance, trk):
    """New candles, then ``setup_scan_job`` alone in a new Python process: live scores equal the champion's predictions."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    from assets.setup_scanner.common import series_by_key
    from models.setup_meta import META_FEATURES, meta_dataset, signal_bar_features
    from tests.conftest import SHARED

    data_dir = Path(resources["files"].data_dir)
    for sym in ("BTC_USDT", "ETH_USDT"):  # two more weeks of real 15m candles after the slice's end
        f = data_dir / "ohlcv" / "binance" / f"{sym}-15m.csv.gz"
        have, real = pd.read_csv(f), pd.read_csv(SHARED / "ohlcv" / "binance" / f.name)
        last = int(have["timestamp"].max())
        more = real[(real["timestamp"] > last) & (real["timestamp"] <= last + 14 * 86_400_000)]
        pd.concat([have, more]).to_csv(f, index=False)
    candles = dg.AssetSelection.keys(
        ["raw", "ingested_ohlcv"], ["market", "ohlcv"], ["features", "technical"], ["regimes", "market"]
    )
    assert dg.materialize(
        ALL_ASSETS, resources=resources, instance=instance, tags=full_range_tags(), selection=candles
    ).success
    champ_end = _q(
        resources, "SELECT max(data_end) AS e FROM ml.model_runs WHERE model_name = 'setup_meta' AND promoted"
    )["e"][0]

    cfg = settings().model_dump(
        mode="json"
    )  # the same configuration, pointing at this test's warehouse and MLflow store
    cfg["data_dir"] = str(data_dir)
    cfg["warehouse"] = {
        "path": resources["warehouse"].path,
        "serving_path": resources["warehouse"].serving_path,
        "exports_dir": resources["warehouse"].exports_dir,
    }
    cfg["mlflow"] = {"tracking_uri": trk.tracking_uri, "artifact_location": trk.artifact_location}
    regimes = [f"{t}|{v}" for t in ("trend", "range") for v in ("low", "normal", "high")]
    cfg["setup_scanner"]["gating"]["per_regime"] = {k: -1000.0 for k in regimes}  # every scored candidate passes
    cfg_path = Path(resources["warehouse"].path).parent / "live.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    code = (
        "import sys, dagster as dg\n"
        "from pipeline.definitions import defs\n"
        "r = defs.resolve_job_def('setup_scan_job').execute_in_process(instance=dg.DagsterInstance.ephemeral(), "
        "raise_on_error=False)\n"
        "sys.exit(0 if r.success else 1)\n"
    )
    # like a new shell: no MLflow or TRADER_* variable of this process (mlflow.set_tracking_uri/set_registry_uri export
    # MLFLOW_TRACKING_URI/MLFLOW_REGISTRY_URI to children), started in another folder
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MLFLOW_", "TRADER_")) or k == "MLFLOW_DISABLE_TELEMETRY"
    }
    repo = Path(__file__).resolve().parents[2]
    env.update(TRADER_CONFIG=str(cfg_path), PYTHONPATH=str(repo))
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600, cwd=cfg_path.parent
    )
    assert done.returncode == 0, done.stderr[-3000:]

    live = _q(resources, "SELECT * FROM signals.setups WHERE scored_by = 'live' ORDER BY candidate_id")
    assert len(live) > 0 and (pd.to_datetime(live["ts"], unit="ms") > pd.Timestamp(champ_end)).all()
    with duckdb.connect(resources["warehouse"].path, read_only=True) as con:
        cands = con.execute(
            "SELECT * FROM signals.setup_candidates WHERE candidate_id IN (SELECT unnest(?::VARCHAR[]))",
            [live["candidate_id"].tolist()],
        ).df()
        x = meta_dataset(cands, signal_bar_features(series_by_key(con, "binance", cands), cands))
    p = pd.Series(trk.load_champion("setup_meta").predict(x[META_FEATURES]), index=x["candidate_id"])
    np.testing.assert_allclose(live["p_win"].to_numpy(), p.loc[live["candidate_id"]].to_numpy(), rtol=0, atol=1e-12)
