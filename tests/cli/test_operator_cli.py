"""Issue 14, items 2 and 9-13: the CLI as a newcomer meets it.

Help texts (11) and ``trader sql`` (13) run in-process with typer's CliRunner; the run display, the runs' code-location
origin, ``trader status`` without warnings (2, 9, 10) run real ``trader`` subprocesses on one small partition of the
test slice; ``trader ui`` (12) is started for real and stopped with SIGINT.
"""

from __future__ import annotations

import inspect
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from tests.conftest import REPO, SLICE_ROOT


def _leaf_commands(cmd, path=()):
    """``(path, click command)`` of every command of the ``trader`` app (groups descended)."""
    subs = getattr(cmd, "commands", None)
    if subs is None:
        yield path, cmd
        return
    for name, sub in subs.items():
        yield from _leaf_commands(sub, (*path, name))


def test_help_has_no_rst_backticks_and_says_what_each_command_runs():
    from assets.keys import GROUP_OPTIONS, GROUP_RESEARCH, GROUP_SETUPS
    from pipeline.cli import app

    top = typer.main.get_command(app)
    runner = CliRunner()
    leaves = list(_leaf_commands(top))
    assert len(leaves) > 20
    bad, empty, unnamed = [], [], []
    for path, cmd in [((), top), *[(p, top) for p in {p[:1] for p, _ in leaves if len(p) > 1}], *leaves]:
        out = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "120"})
        assert out.exit_code == 0, (path, out.output)
        if "`" in out.output:
            bad.append(" ".join(path) or "trader")
    for path, cmd in leaves:
        if not (cmd.help or "").strip():
            empty.append(" ".join(path))
        # a command names the job it runs (every job it names literally), or says it runs none
        jobs = set(re.findall(r'"(\w+_job)"', inspect.getsource(cmd.callback)))
        named = set(re.findall(r"\w+_job", cmd.help or ""))
        if jobs - named or not (named or "runs no job" in (cmd.help or "").lower()):
            unnamed.append((" ".join(path), sorted(jobs)))
    assert not bad, f"help with RST backticks: {bad}"
    assert not empty, f"commands without help: {empty}"
    assert not unnamed, f"commands whose help does not name the job they run: {unnamed}"
    run_help = runner.invoke(app, ["run", "--help"], env={"COLUMNS": "200"}).output.lower()
    for desk in (GROUP_RESEARCH, GROUP_OPTIONS, GROUP_SETUPS):
        assert desk.replace("_", " ") in run_help, desk
    assert "main_job" in run_help and "serving snapshot" in run_help


# --------------------------------------------------------------------------- trader sql (item 13)


@pytest.fixture
def snapshot(tmp_path, monkeypatch):
    """A serving snapshot and a writer warehouse with one small table each, the CLI pointed at them."""
    import pipeline.cli.common as common
    from pipeline.config import settings
    from warehouse import io

    cfg = settings().model_copy(deep=True)
    cfg.warehouse.path, cfg.warehouse.serving_path = str(tmp_path / "wh.duckdb"), str(tmp_path / "serving.duckdb")
    df = pd.DataFrame({"symbol": ["BTC/USDT", "ETH/USDT", "[a, b]"], "close": [42000.5, 2500.25, 1.0]})
    for path, frame in ((cfg.warehouse.serving_path, df), (cfg.warehouse.path, df.head(1))):
        with io.connect(path) as con:
            io.replace_table(con, "market.prices", frame)
    monkeypatch.setattr(common, "settings", lambda: cfg)
    return cfg


def _sql(*args, input=None):
    from pipeline.cli import app

    return CliRunner().invoke(app, ["sql", *args], input=input, env={"COLUMNS": "200"})


def test_sql_queries_the_snapshot_read_only(snapshot):
    out = _sql("SELECT symbol, close FROM market.prices ORDER BY close DESC")
    assert out.exit_code == 0, out.output
    assert "42,000.50" in out.output and "ETH/USDT" in out.output and "[a, b]" in out.output and "3 rows" in out.output
    out = _sql("SELECT symbol, close FROM market.prices ORDER BY close DESC", "--csv")
    assert out.exit_code == 0 and out.output == "symbol,close\nBTC/USDT,42000.5\nETH/USDT,2500.25\n\"[a, b]\",1.0\n"
    out = _sql("SELECT count(*) AS n FROM market.prices", "--warehouse", "--csv")
    assert out.output == "n\n1\n", out.output
    out = _sql("DELETE FROM market.prices")  # read-only: refused, one line, exit 1
    assert out.exit_code == 1 and "read-only" in out.output.lower() and "Traceback" not in out.output
    out = _sql("SELEC 1")
    assert out.exit_code == 1 and "ParserException" in out.output


def test_sql_prompt(snapshot):
    out = _sql(input=".tables\nSELECT max(close)\n  AS top FROM market.prices;\n.quit\n")
    assert out.exit_code == 0, out.output
    assert "market.prices" in out.output and "42,000.50" in out.output and "1 row" in out.output
    out = _sql(input="SELECT 1 AS x;\n")  # Ctrl-D (end of input) leaves
    assert out.exit_code == 0 and "1 row" in out.output


def test_sql_without_a_snapshot_says_what_to_do(snapshot):
    Path(snapshot.warehouse.serving_path).unlink()
    out = _sql("SELECT 1")
    assert out.exit_code == 1 and "run trader run first" in out.output
