"""The one base class of every rule-parameter and configuration section (pure).

:class:`Params` is a pydantic model that **forbids unknown fields**: a misspelt key in ``trader.yaml`` (or a
misspelt keyword in code, ``SetupParams(pivot_widow=3)``) is a validation error naming the field, never a
silently ignored value that leaves the default in force. Every parameter class of ``pipeline/core``, ``models``
and the sections assembled by ``pipeline/config.py`` derive from it, so the rule is stated once here.

Subclasses declare their fields with ``pydantic.Field`` (default, constraints such as ``ge``/``le``, and a
``description`` that documents the unit). A subclass that narrows a parent's default redeclares the field.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Params(BaseModel):
    """Strict pydantic base: unknown fields are errors (``extra="forbid"``); validation as in ``BaseModel``."""

    model_config = ConfigDict(extra="forbid")
