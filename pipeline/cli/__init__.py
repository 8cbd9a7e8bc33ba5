"""``trader`` — the command line (``trader = "pipeline.cli:app"``): one module per topic, helpers in
:mod:`pipeline.cli.common`. State-changing commands run the jobs of :mod:`pipeline.jobs` in-process on the project's
Dagster instance, so every CLI run shows up in the Dagster UI."""

import inspect
import sys
import warnings

import typer

from pipeline.cli import alpha, api, common, main, notify, options, paper, research, setups
from pipeline.config import ConfigError

# Library warnings (Dagster's BetaWarning / PreviewWarning on every start, deprecations of its dependencies) are
# noise for a user of the CLI: none is printed, unless asked for with python -W or PYTHONWARNINGS
if not sys.warnoptions:
    warnings.simplefilter("ignore")

app = typer.Typer(
    help="Crypto trading-signal pipeline (Dagster + DuckDB). Commands that change data run a named Dagster job "
    "(shown in the Dagster UI); the others only read the warehouse.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def _load_config() -> None:
    """Load the configuration before any command: a bad ``trader.yaml`` (unknown key, wrong type, bad YAML) is
    reported with its file and field in a few lines, exit code 2, no traceback."""
    try:
        common.settings()
    except ConfigError as e:
        common.print_config_error(e)
        raise typer.Exit(2) from None


app.add_typer(main.app)
app.add_typer(research.app)
app.add_typer(options.app, name="options")
app.add_typer(setups.app, name="setups")
app.add_typer(alpha.app, name="alpha")
app.add_typer(api.app, name="api")
app.add_typer(notify.app, name="notify")

app.add_typer(paper.app, name="paper")


def _reflow_help(typer_app: typer.Typer) -> None:
    """Use each command's docstring as its help with every paragraph on one line: typer's rich help keeps the
    docstring's line breaks, which cut the command list's sentences mid-way."""
    for info in typer_app.registered_commands:
        if info.help is None and info.callback is not None and info.callback.__doc__:
            paragraphs = inspect.cleandoc(info.callback.__doc__).split("\n\n")
            info.help = "\n\n".join(" ".join(p.split()) for p in paragraphs)
    for group in typer_app.registered_groups:
        _reflow_help(group.typer_instance)


_reflow_help(app)
