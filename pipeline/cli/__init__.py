"""``trader`` — the command line (``trader = "pipeline.cli:app"``): one module per topic, helpers in
:mod:`pipeline.cli.common`. State-changing commands run the jobs of :mod:`pipeline.jobs` in-process on the project's
Dagster instance, so every CLI run shows up in the Dagster UI."""

import typer

from pipeline.cli import api, main, options, research, setups

app = typer.Typer(help="Crypto trading-signal pipeline (Dagster + DuckDB).", no_args_is_help=True, add_completion=False)
app.add_typer(main.app)
app.add_typer(research.app)
app.add_typer(options.app, name="options")
app.add_typer(setups.app, name="setups")
app.add_typer(api.app, name="api")
