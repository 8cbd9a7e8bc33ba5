"""``trader run | ingest | status | ui`` — the pipeline itself. ``run`` and ``ingest`` run ``main_job`` /
``ingest_job`` in-process against the project's Dagster instance (``DAGSTER_HOME``, default
``<repo>/.dagster_home``), so every CLI run shows up in the Dagster UI with lineage, checks and metadata.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import duckdb
import typer
from rich.table import Table

from pipeline.cli import common
from pipeline.cli.common import console
from pipeline.config import REPO_ROOT
from warehouse.io import fetch_one, table_exists

app = typer.Typer()


def print_warehouse_summary(path: str) -> None:
    """Rows, time range and gaps per table and timeframe of the warehouse at ``path`` (reads the serving snapshot if
    the writer is busy)."""
    with common.open_readonly(path) as con:
        t = Table(title=f"Warehouse {path}")
        for c in ("table", "timeframe", "partitions", "rows", "first", "last", "flagged/incomplete"):
            t.add_column(c, justify="right" if c in ("rows", "partitions") else "left")
        for table in ("raw.ohlcv", "market.ohlcv", "features.technical", "regimes.market"):
            if not table_exists(con, table):
                continue
            extra = "count(*) FILTER (WHERE bar_count < expected_bars)" if table == "market.ohlcv" else "NULL"
            for row in con.execute(f"""SELECT timeframe, count(DISTINCT symbol), count(*), min(open_time), max(open_time), {extra}
                    FROM {table} GROUP BY 1 ORDER BY CASE timeframe WHEN '1m' THEN 1 WHEN '5m' THEN 2 WHEN '15m' THEN 3
                    WHEN '1h' THEN 4 WHEN '4h' THEN 5 ELSE 6 END""").fetchall():
                t.add_row(
                    table,
                    row[0],
                    str(row[1]),
                    f"{row[2]:,}",
                    str(row[3]),
                    str(row[4]),
                    "" if row[5] is None else str(row[5]),
                )
        for table, col in (
            ("market.onchain_daily", "date"),
            ("market.sentiment_daily", "date"),
            ("raw.onchain_metrics", "date"),
        ):
            if table_exists(con, table):
                n, a, b = fetch_one(con.execute(f"SELECT count(*), min({col}), max({col}) FROM {table}"))
                t.add_row(table, "1d", "-", f"{n:,}", str(a), str(b), "")
        console.print(t)
        if table_exists(con, "market.ohlcv"):
            g = con.execute("""SELECT timeframe, count(*) AS gaps, sum(m) AS missing_bars, max(m) AS largest FROM (
                SELECT symbol, timeframe, (lead(ts) OVER w - ts) // (CASE timeframe WHEN '1m' THEN 60000 WHEN '5m' THEN 300000
                  WHEN '15m' THEN 900000 WHEN '1h' THEN 3600000 WHEN '4h' THEN 14400000 ELSE 86400000 END) - 1 AS m
                FROM market.ohlcv WINDOW w AS (PARTITION BY symbol, timeframe ORDER BY ts)) WHERE m > 0 GROUP BY 1 ORDER BY 1""").fetchall()
            gt = Table(title="Gaps in market.ohlcv (reported, never filled)")
            for c in ("timeframe", "gaps", "missing bars", "largest gap (bars)"):
                gt.add_column(c)
            for row in g:
                gt.add_row(*[str(x) for x in row])
            console.print(gt)


def report_end(job: str, results: list, ok: bool, t0: float, inst=None) -> None:
    """The end of ``trader run`` / ``ingest``: the runs' warnings, then per failed run the failing step, its error
    (file, row, rule), what to do and the log file (:func:`pipeline.cli.common.print_failures`), and a last line
    naming the failed step(s). Exits 1 unless ``ok``."""
    failed_steps, logs = [], []
    for r in results:
        common.print_run_warnings(r, inst)
        if not r.success:
            logs.append(common.print_failures(r, inst))
            failed_steps += [f["step"] for f in common.failure_summary(r)]
    ids = ", ".join(r.run_id[:8] for r in results)
    if ok:
        console.print(f"[green]{job} succeeded[/] in {time.time() - t0:.1f}s (run ids: {ids})")
        return
    if failed_steps:
        why = f": step {', '.join(dict.fromkeys(failed_steps))} failed"
    else:
        bad, log = common.print_rejected_inputs(results, inst)
        logs.append(log)
        first = bad.iloc[0] if len(bad) else None
        why = (
            f": input {first['partition_key']} rejected (rule '{first['rule']}')"
            + (f" and {len(bad) - 1} more" if len(bad) > 1 else "")
            if first is not None
            else ": an ERROR check failed"
        )
    where = f"; log {logs[0]}" if logs and logs[0] else ""
    console.print(f"[red]{job} FAILED[/]{why} ({time.time() - t0:.1f}s, run ids: {ids}){where}", soft_wrap=True)
    raise typer.Exit(1)


@app.command()
def run(
    symbol: list[str] = typer.Option(None, "--symbol", "-s", help="Limit to these symbols (BASE/QUOTE)."),
    timeframe: list[str] = typer.Option(None, "--timeframe", "-t", help="Limit to these timeframes."),
    full_refresh: bool = typer.Option(False, help="Recompute the selected candle partitions from scratch."),
) -> None:
    """Materialise everything (ingest, market, features, regimes, serving snapshot) and print a summary."""
    t0 = time.time()
    inst = common.instance()
    results = common.execute("main_job", symbol, timeframe, full_refresh, inst=inst)
    ok = all(r.success for r in results)
    checks_ok = common.print_checks(results)
    if ok:
        print_warehouse_summary(common.settings().warehouse.path)
    report_end("main_job", results, ok and checks_ok, t0, inst)


@app.command()
def ingest(
    symbol: list[str] = typer.Option(None, "--symbol", "-s"),
    timeframe: list[str] = typer.Option(None, "--timeframe", "-t"),
) -> None:
    """Sources only: raw.ohlcv, raw.onchain_metrics, market.sentiment_daily."""
    t0 = time.time()
    inst = common.instance()
    results = common.execute("ingest_job", symbol, timeframe, inst=inst)
    ok = all(r.success for r in results) & common.print_checks(results)
    report_end("ingest_job", results, ok, t0, inst)


@app.command()
def status() -> None:
    """What is in the warehouse, last candle per partition, and the latest failed checks."""
    print_warehouse_summary(common.settings().warehouse.path)
    try:
        with common.open_readonly() as con:
            last = con.execute("""SELECT symbol, timeframe, max(open_time) AS last_candle, count(*) AS rows
                                  FROM market.ohlcv GROUP BY ALL ORDER BY symbol, min(CASE timeframe WHEN '1m' THEN 1 WHEN '5m' THEN 2 WHEN '15m' THEN 3 WHEN '1h' THEN 4 WHEN '4h' THEN 5 ELSE 6 END)""").fetchall()
    except (duckdb.IOException, duckdb.CatalogException):
        last = []
    t = Table(title="Last candle per partition (market.ohlcv)")
    for c in ("symbol", "timeframe", "last candle (open, UTC)", "rows"):
        t.add_column(c)
    for r in last:
        t.add_row(r[0], r[1], str(r[2]), f"{r[3]:,}")
    console.print(t)
    ft = Table(title="Latest asset-check results that did not pass")
    for c in ("asset", "check", "status", "run"):
        ft.add_column(c)
    failed = common.failed_checks()
    for row in failed:
        ft.add_row(*row)
    console.print(ft if failed else "[green]All latest asset checks passed.[/]")


@app.command()
def ui(port: int = typer.Option(3000, help="Dagster webserver port.")) -> None:
    """Start the Dagster UI (``dagster dev -w workspace.yaml``) on this project's instance."""
    common.instance()
    raise typer.Exit(
        subprocess.call(
            [sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml", "-p", str(port)],
            cwd=REPO_ROOT,
            env=os.environ.copy(),
        )
    )
