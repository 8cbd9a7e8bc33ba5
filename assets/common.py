"""Shared wiring for assets: pool, partitions of a run, config, metadata helpers."""

from __future__ import annotations

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import Field

from models.retrain import RetrainPolicy, TrainingState, should_retrain
from pipeline.partitions import parse_key
from warehouse import io, readers

POOL = "duckdb_warehouse"
SINGLE_RUN = dg.BackfillPolicy.single_run()


class IncrementalConfig(dg.Config):
    """Launchpad options of the incremental candle assets."""

    full_refresh: bool = Field(
        False, description="Recompute the selected partitions from scratch instead of only new rows."
    )


class TrainConfig(dg.Config):
    """Launchpad options of a model-training asset (``trader run --retrain`` sets ``force`` on every one)."""

    force: bool = Field(
        False,
        description="Retrain even if the code, the configuration and the labelled data did not change enough "
        "(models.retrain.should_retrain).",
    )


#: the ``retrain`` metadata of a training asset whose inputs did not change at all (no decision needed)
UNCHANGED = "skipped: inputs unchanged since the last training"


def last_training(con, model_name: str) -> TrainingState | None:
    """What the latest recorded version of ``model_name`` was trained on (``ml.model_runs``: ``code_version``,
    ``config_hash``, ``n_rows`` = labelled rows), or None without one."""
    r = readers.latest_run(con, model_name)
    if r is None:
        return None
    h = r.get("config_hash")
    return TrainingState(str(r["code_version"]), None if pd.isna(h) else str(h), int(r["n_rows"]))


def retrain_decision(con, names: list[str], now: TrainingState, policy: RetrainPolicy, force: bool) -> tuple[bool, str]:
    """:func:`models.retrain.should_retrain` against the latest version of each of ``names`` (the models one asset
    trains together): retrain when any of them must (its reason), else the first one's ``skipped`` reason."""
    decisions = [should_retrain(last_training(con, n), now, policy, force) for n in names]
    return next((d for d in decisions if d[0]), decisions[0])


def run_slices(context: dg.AssetExecutionContext) -> list[tuple[str, str]]:
    """``(BASE/QUOTE, timeframe)`` for every partition of this run (single-run ranges included)."""
    if not context.has_partition_key and not context.has_partition_key_range:
        return []
    return [parse_key(k) for k in context.partition_keys]


def if_unchanged(
    context: dg.AssetExecutionContext,
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

    Returns the ``MaterializeResult`` to return when ``asset``'s recorded input fingerprint equals ``fingerprint``
    (and, with ``require_table``, the table ``asset`` exists), else None. ``force`` never skips. The result carries
    the latest materialisation's metadata forward (:func:`carried_forward`: figures, tables, plots) under
    ``status`` and ``metadata``; each of ``checks`` passes with a note.
    """
    if force or (require_table and not io.table_exists(con, asset)) or not io.inputs_unchanged(con, asset, fingerprint):
        return None
    return dg.MaterializeResult(
        metadata=rounded(carried_forward(context, {"status": status, **(metadata or {})})),
        check_results=[dg.AssetCheckResult(check_name=c, passed=True, metadata={"note": "unchanged"}) for c in checks],
    )


#: metadata keys of a carried-forward materialisation: the run and time that computed the figures shown
COMPUTED_IN_RUN, COMPUTED_AT = "computed_in_run", "computed_at"


def carried_forward(context: dg.AssetExecutionContext, metadata: dict, asset_key: dg.AssetKey | None = None) -> dict:
    """Metadata of a materialisation that recomputed nothing (issue 14 item 1): ``metadata`` (its ``status``) first,
    then the run and time that computed the figures (``computed_in_run``, ``computed_at``), then every entry of the
    asset's latest materialisation that shows figures (tables, scores, reliability diagram, equity plot), unless
    ``metadata`` overrides it.

    The events are read from ``context.instance`` (unpartitioned assets): the newest of the last
    :data:`LOOK_BACK` that has an entry besides ``metadata``'s own keys, so a status-only event of an older no-op run
    (code before this rule) is passed over. Without one (a new Dagster home over an existing warehouse, or a renamed
    key) only ``metadata`` is returned. A chain of no-op runs keeps pointing at the run that computed the figures.
    ``asset_key``: the asset of a multi-output step (default ``context.asset_key``).
    """
    key = asset_key or context.asset_key
    records = context.instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=key), limit=LOOK_BACK).records
    for record in records:  # newest first
        event = record.event_log_entry
        previous = dict(event.asset_materialization.metadata) if event.asset_materialization else {}
        if set(previous) - set(metadata):
            computed = {
                COMPUTED_IN_RUN: previous.pop(COMPUTED_IN_RUN, None) or dg.MetadataValue.dagster_run(event.run_id),
                COMPUTED_AT: previous.pop(COMPUTED_AT, None) or dg.MetadataValue.timestamp(event.timestamp),
            }
            return {**metadata, **computed, **{k: v for k, v in previous.items() if k not in metadata}}
    return dict(metadata)


#: how many past materialisations :func:`carried_forward` looks through for the last one with figures
LOOK_BACK = 20


def with_integrity(per_slice: pd.DataFrame, integ: pd.DataFrame) -> pd.DataFrame:
    """``per_slice`` (one row per ``symbol, timeframe``) left-joined with :func:`warehouse.quality.candle_integrity`'s
    figures; unchanged when ``integ`` has no columns (no slice of the run has a stored row, e.g. every one rejected)."""
    if not {"symbol", "timeframe"} <= set(integ.columns):
        return per_slice
    return per_slice.merge(integ, how="left", on=["symbol", "timeframe"])


def partition_metadata(context: dg.AssetExecutionContext, per_slice: pd.DataFrame, empty_status: str) -> None:
    """Attach to each partition of this run its OWN figures (issue 14 item 3); the run-wide ``MaterializeResult``
    metadata is shared by every partition's event.

    ``per_slice``: one row per ``(symbol, timeframe)`` with ``rows``, ``first_ts``, ``last_ts`` (ms) and optionally
    ``new_rows``, ``origin``, ``n_gaps``, ``missing_bars``, ``max_gap_bars`` (e.g. :func:`warehouse.quality.
    candle_integrity` merged with the run's report). A partition absent from it, or with 0 rows, gets
    ``rows: 0`` and ``status: <empty_status>`` (e.g. "no source data").
    """
    by = (
        per_slice.drop_duplicates(["symbol", "timeframe"]).set_index(["symbol", "timeframe"])
        if len(per_slice)
        else None
    )
    for key, sl in zip(context.partition_keys, run_slices(context)):
        r = by.loc[sl] if by is not None and sl in by.index else pd.Series(dtype=object)
        context.add_asset_metadata(slice_metadata(r, empty_status), partition_key=key)


def slice_metadata(r: pd.Series, empty_status: str) -> dict:
    """The metadata of one partition from its row of :func:`partition_metadata`'s table (see there)."""
    rows = int(r["rows"]) if pd.notna(r.get("rows")) else 0
    meta: dict = {"dagster/row_count": rows, "rows": rows}
    if rows == 0:
        meta["status"] = empty_status
    else:
        meta.update({"first": ts_iso(r["first_ts"]), "last": ts_iso(r["last_ts"])})
    for col, name in (("n_gaps", "gaps"), ("missing_bars", "missing_bars"), ("max_gap_bars", "largest_gap_bars")):
        if rows and pd.notna(r.get(col)):
            meta[name] = int(r[col])
    if pd.notna(r.get("new_rows")):
        meta["new_rows"] = int(r["new_rows"])
    if isinstance(r.get("origin"), str):
        meta["origin"] = r["origin"]
    return meta


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
        "train_seconds": rounded(train_seconds),
        "data_range": f"{row['data_start']} .. {row['data_end']}",
        "oos_scores": md_table(scores),
    }


def md_table(df: pd.DataFrame, max_rows: int = 60, digits: int = 4) -> dg.MetadataValue:
    """A markdown preview table (first ``max_rows`` rows), floats :func:`rounded` to ``digits`` significant digits
    (6 for price levels) and printed as rounded (``floatfmt=".10g"``: 0.1235, 1234568)."""
    if df is None or df.empty:
        return dg.MetadataValue.md("_(empty)_")
    return dg.MetadataValue.md(rounded(df.head(max_rows), digits).to_markdown(index=False, floatfmt=".10g"))


#: significant digits of every float shown in metadata (integer parts are never cut: 123456.7 -> 123457)
SIGNIFICANT = 4


def rounded(x, digits: int = SIGNIFICANT):
    """``x`` with every float rounded to ``digits`` significant digits, the integer part kept below 10 million — the
    one rounding of metadata (issue 14 item 4): 0.0123456 → 0.01235, 52.3456 → 52.35, 123456.78 → 123457,
    1.215966923e13 → 1.216e13.

    ``x``: a float (``numpy`` floats included; NaN/inf unchanged), a dict (values rounded, e.g. scores), a list, a
    ``FloatMetadataValue``, or a ``DataFrame`` / ``Series`` (float columns rounded); anything else is returned as is.
    """
    if isinstance(x, pd.DataFrame):
        cols = x.select_dtypes(["float", "object"]).columns  # object: mixed columns (numbers beside text)
        return x.assign(**{c: x[c].map(lambda v: rounded(v, digits)) for c in cols})
    if isinstance(x, pd.Series):
        return x.map(lambda v: rounded(v, digits)) if pd.api.types.is_float_dtype(x) else x
    if isinstance(x, dict):
        return {k: rounded(v, digits) for k, v in x.items()}
    if isinstance(x, dg.FloatMetadataValue):  # e.g. figures carried forward from an event of older code
        return dg.MetadataValue.float(rounded(x.value, digits)) if x.value is not None else x
    if isinstance(x, list):
        return [rounded(v, digits) for v in x]
    if isinstance(x, (float, np.floating)) and not isinstance(x, bool):
        v = float(x)
        if not np.isfinite(v) or v == 0:
            return v
        decimals = digits - 1 - int(np.floor(np.log10(abs(v))))
        return float(round(v, decimals if abs(v) >= 1e7 else max(0, decimals)))  # 1.215966923e13 -> 1.216e13
    return x


def ts_iso(ts: int | None) -> str | None:
    return None if ts is None or pd.isna(ts) else pd.Timestamp(int(ts), unit="ms").isoformat()


def png_md(png: bytes, alt: str) -> dg.MetadataValue:
    """A small PNG embedded as markdown (Dagster has no image metadata type; dagster-notes §1.11)."""
    import base64

    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})")
