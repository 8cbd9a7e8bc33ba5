"""``python -m pipeline.cli …`` (used by ``bench/``), the same as ``trader …``."""

from pipeline.cli import app

app()
