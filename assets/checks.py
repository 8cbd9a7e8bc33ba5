"""Turn data-quality query results into Dagster ``AssetCheckResult`` s (rules documented per check)."""

from __future__ import annotations

import dagster as dg
import pandas as pd

from assets.common import md_table, rounded, ts_iso
from assets.keys import ACCOUNTING_RECONCILES, FRESH, GAPS_WITHIN_BUDGET, INPUTS_VALID
from pipeline.core.backtest import reconcile


def candle_integrity_result(integ: pd.DataFrame, name: str, asset: dg.AssetKey) -> dg.AssetCheckResult:
    """Fails (ERROR) when any slice has duplicate ``ts``, an OHLC/price/volume violation or off-grid ``ts``."""
    cols = ["symbol", "timeframe", "duplicates", "bad_ohlc", "off_grid"]
    if integ.empty:  # every slice of the run was rejected before it was written (issue 13 item 9)
        integ = pd.DataFrame(columns=cols + ["rows"])
    bad = integ[(integ["duplicates"] > 0) | (integ["bad_ohlc"] > 0) | (integ["off_grid"] > 0)]
    return dg.AssetCheckResult(
        check_name=name,
        asset_key=asset,
        passed=bool(bad.empty),
        severity=dg.AssetCheckSeverity.ERROR,
        metadata=rounded(
            {
                "slices": len(integ),
                "failing": md_table(bad[cols]),
                "duplicates": int(integ["duplicates"].sum()) if len(integ) else 0,
                "bad_ohlc": int(integ["bad_ohlc"].sum()) if len(integ) else 0,
            }
        ),
        description="duplicates, OHLC sanity (low <= open,close <= high, prices > 0), monotonic grid-aligned ts",
    )


def inputs_valid_result(errors: pd.DataFrame, asset: dg.AssetKey) -> dg.AssetCheckResult:
    """ERROR (non-blocking) when any partition's input was rejected this run; ``errors`` has ``partition_key,
    locator, rule, message`` (the rows written to ``ops.input_errors``)."""
    return dg.AssetCheckResult(
        check_name=INPUTS_VALID,
        asset_key=asset,
        passed=bool(errors.empty),
        severity=dg.AssetCheckSeverity.ERROR,
        metadata=rounded(
            {
                "failed_partitions": len(errors),
                "errors": md_table(errors[["partition_key", "rule", "message"]]),
            }
        ),
        description="; ".join(errors["message"].head(5)) if len(errors) else "every input passed validation",
    )


def gap_budget_result(
    integ: pd.DataFrame, gaps: pd.DataFrame, max_gap_bars: int, max_missing_fraction: float, asset: dg.AssetKey
) -> dg.AssetCheckResult:
    """WARN when a slice has a gap longer than ``max_gap_bars`` or misses more than ``max_missing_fraction``.

    Gaps are real exchange outages or coverage holes between data windows; they are reported, never filled.
    """
    if integ.empty:
        return dg.AssetCheckResult(
            check_name=GAPS_WITHIN_BUDGET, asset_key=asset, passed=True, metadata=rounded({"slices": 0})
        )
    expected = (integ["last_ts"] - integ["first_ts"]) // integ["step"] + 1
    frac = integ["missing_bars"] / expected.where(expected > 0, 1)
    over = integ.assign(missing_fraction=frac)[(integ["max_gap_bars"] > max_gap_bars) | (frac > max_missing_fraction)]
    g = gaps.copy()
    return dg.AssetCheckResult(
        check_name=GAPS_WITHIN_BUDGET,
        asset_key=asset,
        passed=bool(over.empty),
        severity=dg.AssetCheckSeverity.WARN,
        metadata=rounded(
            {
                "gaps_total": int(integ["n_gaps"].sum()),
                "missing_bars_total": int(integ["missing_bars"].sum()),
                "over_budget": md_table(
                    over[["symbol", "timeframe", "n_gaps", "missing_bars", "max_gap_bars", "missing_fraction"]]
                ),
                "largest_gaps": md_table(g, 40),
                "budget": f"max_gap_bars={max_gap_bars}, max_missing_fraction={max_missing_fraction}",
            }
        ),
    )


def staleness_result(fresh: pd.DataFrame, max_bars: int, asset: dg.AssetKey) -> dg.AssetCheckResult:
    """WARN when a slice's last candle trails the expected last closed candle by more than ``max_bars``.

    ``fresh`` columns: symbol, timeframe, last_ts, expected_ts, lag_bars, age_hours.
    """
    over = fresh[fresh["lag_bars"] > max_bars] if len(fresh) else fresh
    view = (
        fresh.assign(last=fresh["last_ts"].map(ts_iso), expected=fresh["expected_ts"].map(ts_iso))
        if len(fresh)
        else fresh
    )
    cols = [c for c in ["symbol", "timeframe", "last", "expected", "lag_bars", "age_hours"] if c in view.columns]
    return dg.AssetCheckResult(
        check_name=FRESH,
        asset_key=asset,
        passed=bool(over.empty),
        severity=dg.AssetCheckSeverity.WARN,
        metadata=rounded(
            {
                "stale_slices": len(over),
                "max_lag_bars": int(fresh["lag_bars"].max()) if len(fresh) else 0,
                "slices": md_table(view[cols]),
            }
        ),
    )


def reconcile_result(
    final_equity: float, init_cash: float, trades: pd.DataFrame | None, name: str = ACCOUNTING_RECONCILES
) -> dg.AssetCheckResult:
    """ERROR unless final equity = initial cash + Σ trade PnL (to 1e-6 of the capital) and no trade exits before it
    enters (:func:`pipeline.core.backtest.reconcile`)."""
    err, bad = reconcile(final_equity, init_cash, trades)
    return dg.AssetCheckResult(
        check_name=name,
        passed=err < 1e-6 * init_cash and bad == 0,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata=rounded({"abs_error": err, "trades_exit_before_entry": bad}),
    )


def books_reconcile_result(
    books: dict[str, tuple[float, pd.DataFrame | None]], init_cash: float, name: str = ACCOUNTING_RECONCILES
) -> dg.AssetCheckResult:
    """:func:`reconcile_result` over several books sharing one capital (``{book: (final equity, trades)}``)."""
    errs = {k: reconcile(eq, init_cash, t) for k, (eq, t) in books.items()}
    ok = all(e < 1e-6 * init_cash and bad == 0 for e, bad in errs.values())
    return dg.AssetCheckResult(
        check_name=name,
        passed=ok,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata=rounded({k: float(e) for k, (e, _) in errs.items()}),
    )


def count_result(name: str, bad: int, what: str = "bad_rows", asset: dg.AssetKey | None = None) -> dg.AssetCheckResult:
    """ERROR when a validity predicate (:mod:`pipeline.core.validity`) counts offending rows."""
    return dg.AssetCheckResult(
        check_name=name,
        asset_key=asset,
        passed=bad == 0,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata=rounded({what: bad}),
    )
