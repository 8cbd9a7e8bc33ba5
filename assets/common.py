"""Shared wiring for assets: pool, partitions of a run, config, metadata helpers."""

from __future__ import annotations

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import Field

from pipeline.partitions import parse_key
from warehouse import io

POOL = "duckdb_warehouse"
SINGLE_RUN = dg.BackfillPolicy.single_run()


class IncrementalConfig(dg.Config):
    """Launchpad options of the incremental candle assets."""

    full_refresh: bool = Field(
        False, description="Recompute the selected partitions from scratch instead of only new rows."
    )


class TrainConfig(dg.Config):
    """Launchpad options of a model-training asset."""

    force: bool = Field(False, description="Retrain even if the inputs and the configuration are unchanged.")


def run_slices(context: dg.AssetExecutionContext) -> list[tuple[str, str]]:
    """``(BASE/QUOTE, timeframe)`` for every partition of this run (single-run ranges included)."""
    if not context.has_partition_key and not context.has_partition_key_range:
        return []
    return [parse_key(k) for k in context.partition_keys]


def if_unchanged(
    con,
    asset: str,
    fingerprint: str,
    status: str,
    *,
    checks: tuple[str, ...] = (),
    metadata: dict | None = None,
    force: bool = False,
    require_table: bool = False,
) -> dg.MaterializeResult | None:
    """The "skip if inputs unchanged" prologue of every fingerprinted asset, written once.

    Returns the ``MaterializeResult`` to return (``status`` and ``metadata``, each of ``checks`` passed with a note)
    when ``asset``'s recorded input fingerprint equals ``fingerprint`` (and, with ``require_table``, the table
    ``asset`` exists), else None. ``force`` never skips.
    """
    if force or (require_table and not io.table_exists(con, asset)) or not io.inputs_unchanged(con, asset, fingerprint):
        return None
    return dg.MaterializeResult(
        metadata={"status": status, **(metadata or {})},
        check_results=[dg.AssetCheckResult(check_name=c, passed=True, metadata={"note": "unchanged"}) for c in checks],
    )


def version_metadata(logged, name: str, scores_raw: dict, scores_cal: dict, train_seconds: float, row: dict) -> dict:
    """Metadata every training asset shows: the MLflow run, the registered version, OOS scores and the data range.

    ``logged``: :class:`resources.mlflow_tracking.LoggedRun`; ``row``: the ``ml.model_runs`` row recorded.
    """
    scores = pd.DataFrame([{"set": "raw", **rounded(scores_raw)}, {"set": "calibrated", **rounded(scores_cal)}])
    return {
        "mlflow_run": dg.MetadataValue.url(logged.url),
        "mlflow_experiment": dg.MetadataValue.url(logged.experiment_url),
        "mlflow_run_id": logged.run_id,
        "model_uri": f"models:/{name}/{logged.version}",
        "model_version": logged.version,
        "train_seconds": round(train_seconds, 1),
        "data_range": f"{row['data_start']} .. {row['data_end']}",
        "oos_scores": md_table(scores),
    }


def md_table(df: pd.DataFrame, max_rows: int = 60) -> dg.MetadataValue:
    """A markdown preview table (first ``max_rows`` rows)."""
    if df is None or df.empty:
        return dg.MetadataValue.md("_(empty)_")
    return dg.MetadataValue.md(df.head(max_rows).to_markdown(index=False))


def rounded(d: dict, n: int = 5) -> dict:
    """``d`` with float values rounded to ``n`` decimals (for metadata tables)."""
    return {k: (round(float(v), n) if isinstance(v, (float, np.floating)) else v) for k, v in d.items()}


def ts_iso(ts: int | None) -> str | None:
    return None if ts is None or pd.isna(ts) else pd.Timestamp(int(ts), unit="ms").isoformat()


def png_md(png: bytes, alt: str) -> dg.MetadataValue:
    """A small PNG embedded as markdown (Dagster has no image metadata type; dagster-notes §1.11)."""
    import base64

    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})")
