"""``trader paper …`` — the paper books of the desks (issue 16): ``status`` reads the warehouse (or the serving
snapshot while a run writes); ``reset`` runs ``paper_reset_job`` (visible in the Dagster UI)."""

from __future__ import annotations

import time

import pandas as pd
import typer

from pipeline.cli.common import console, open_readonly, run_job, table

app = typer.Typer(help="Paper trading: the engine resumed on live candles and logged signals.", no_args_is_help=True)

DESKS = ("setup_scanner",)


def _times(df: pd.DataFrame, cols: tuple[str, ...]) -> pd.DataFrame:
    return df.assign(**{c: pd.to_datetime(df[c], unit="ms") for c in cols if c in df})


@app.command("status")
def status(desk: str = typer.Option(None, "--desk", help="One desk (default: every desk with a paper book).")) -> None:
    """Each paper book: engine state (version, first and last bar, cash), equity, realised and open PnL, exposure,
    open positions and the order log's counts. Runs no job: reads the warehouse (or the serving snapshot while a
    run writes); paper_job and the live job advance the books."""
    from warehouse.paper import book

    with open_readonly() as con:
        b = book(con, desk)
    if b["state"].empty:
        console.print(f"no paper book{f' for {desk}' if desk else ''} yet: run paper_job (or the live job)")
        return
    summary = b["state"].merge(b["equity"], on="desk", how="left", suffixes=("", "_eq"))
    summary = summary.merge(b["trades"], on="desk", how="left")
    open_pnl = b["positions"].groupby("desk")["open_pnl"].sum().rename("open_pnl") if len(b["positions"]) else None
    summary = summary.join(open_pnl, on="desk") if open_pnl is not None else summary.assign(open_pnl=0.0)
    cols = [
        "desk",
        "version",
        "start_ts",
        "last_ts",
        "bars",
        "engine_state",
        "equity",
        "cash",
        "realised_pnl",
        "open_pnl",
        "fees",
        "trades",
        "win_rate",
        "gross_exposure",
        "n_positions",
    ]
    table(_times(summary.reindex(columns=cols), ("start_ts", "last_ts")), "paper books")
    if len(b["positions"]):
        p = b["positions"][
            [
                "desk",
                "asset",
                "direction",
                "entry_ts",
                "entry_price",
                "mark",
                "units",
                "notional",
                "open_pnl",
                "tp1_hit",
                "leverage",
                "signal_id",
            ]
        ]
        table(_times(p, ("entry_ts",)), "open positions")
    if len(b["orders"]):
        table(b["orders"], "order log")


@app.command("reset")
def reset(
    desk: str = typer.Option(..., "--desk", help=f"The desk whose paper book is deleted ({', '.join(DESKS)})."),
) -> None:
    """Run paper_reset_job: delete the desk's paper book (paper.* rows; signals.log is kept); the next paper step
    starts a fresh book from paper.start (or the oldest logged signal)."""
    if desk not in DESKS:
        console.print(f"[red]unknown desk {desk!r}[/] (known: {', '.join(DESKS)})")
        raise typer.Exit(2)
    t0 = time.time()
    r = run_job("paper_reset_job", {"ops": {"paper_reset": {"config": {"desk": desk}}}})
    if not r.success:
        console.print(f"[red]paper_reset_job FAILED[/] in {time.time() - t0:.1f}s")
        raise typer.Exit(1)
    deleted = r.output_for_node("paper_reset")
    console.print(f"[green]paper book {desk} reset[/]: " + ", ".join(f"{k} {v}" for k, v in deleted.items()))
