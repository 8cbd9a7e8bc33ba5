"""Group ``setup_scanner``: ``signals/setup_retro`` — historical signals backfilled with the same gating as live and
simulated at once (seed 002 ``retro_scan``).

On demand only (``setup_retro_job``, ``trader setups retro-scan``; never in ``main_job``): the window, stride and
per-pair limit come from :class:`RetroScanConfig` (run config / Launchpad). Each run replaces the table.
"""

from typing import Optional

import dagster as dg
import pandas as pd
from pydantic import Field

from assets.common import POOL, md_table, rounded
from assets.keys import GROUP_SETUPS, SETUP_CANDIDATES, SETUP_RETRO, SETUPS
from assets.setup_scanner.common import execute, gated_candidates
from pipeline.config import settings
from pipeline.core.setup_signals import CLOSED_STATUSES, every_nth_bar, executed_by_series, first_per_series
from pipeline.core.timeframes import timeframe_ms
from resources.mlflow_tracking import MlflowTracking
from resources.warehouse import WarehouseResource
from warehouse import io

DAY_MS = 86_400_000
SIGNAL_COLUMNS = [
    "candidate_id",
    "symbol",
    "timeframe",
    "ts",
    "side",
    "entry",
    "sl",
    "tp1",
    "tp2",
    "p_win",
    "ev_pct",
    "threshold",
    "threshold_source",
]


class RetroScanConfig(dg.Config):
    """Launchpad options of the retro-scan."""

    start: Optional[str] = Field(None, description="First signal day (YYYY-MM-DD, UTC); null = the first candidate.")
    end: Optional[str] = Field(
        None, description="Last signal day (YYYY-MM-DD, UTC, inclusive); null = the last candidate."
    )
    stride: int = Field(1, ge=1, description="Test every N-th bar only (speed); 1 = every bar.")
    limit_per_pair: int = Field(0, ge=0, description="At most N gated signals per symbol x timeframe (0 = all).")


def day_ms(day: str | None) -> int | None:
    """Epoch ms of ``day`` 00:00 UTC (None stays None)."""
    return None if day is None else int(pd.Timestamp(day, tz="UTC").timestamp() * 1000)


def retro_selection(c: pd.DataFrame, stride: int, limit_per_pair: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(candidates on every stride-th bar, their passing signals sorted by ts, at most limit_per_pair per pair)``."""
    c = every_nth_bar(c, stride, c["timeframe"].map(timeframe_ms).astype("int64"))
    return c, first_per_series(c[c["passed"]], limit_per_pair)


@dg.asset(
    key=SETUP_RETRO,
    group_name=GROUP_SETUPS,
    pool=POOL,
    deps=[SETUP_CANDIDATES, SETUPS],
    kinds={"duckdb", "numba"},
    description="Retro-scan: the valid candidates of a window gated exactly as live (champion scores, thresholds in force), "
    "every stride-th bar, at most limit_per_pair signals per symbol x timeframe, simulated at once; plan, "
    "p(win), EV, threshold, execution status and outcome, gate_mode, retro_at. On demand (setup_retro_job).",
)
def signals_setup_retro(
    context: dg.AssetExecutionContext, config: RetroScanConfig, warehouse: WarehouseResource, mlflow: MlflowTracking
) -> dg.MaterializeResult:
    cfg = settings()
    sc, ex, end = cfg.setup_scanner, cfg.exchange.id, day_ms(config.end)
    with warehouse.connect() as con:
        window = (day_ms(config.start), None if end is None else end + DAY_MS - 1)
        c, mode, _ = gated_candidates(con, mlflow, sc, ex, *window)
        c, sig = retro_selection(c, config.stride, config.limit_per_pair)
        if sig.empty:
            status = "no gated signals in that window; table not replaced"
            return dg.MaterializeResult(
                metadata=rounded({"status": status, "candidates": len(c), "signals": 0, "gate_mode": mode})
            )
        each = sc.init_cash / max(1, c.groupby(["symbol", "timeframe"]).ngroups)
        st, _, _ = execute(con, sc, ex, sig, "p_win" if mode == "p_win" else "ev_pct", each, int(sig["ts"].min()))
        res = pd.concat([sig[SIGNAL_COLUMNS], st], axis=1).assign(gate_mode=mode, retro_at=io.now_utc())
        io.replace_table(con, "signals.setup_retro", res.reset_index(drop=True))
    return dg.MaterializeResult(metadata=rounded(_report(res, c, sig, mode, config)))


def _report(res: pd.DataFrame, c: pd.DataFrame, sig: pd.DataFrame, mode: str, config: RetroScanConfig) -> dict:
    return {
        "dagster/row_count": len(res),
        "window": f"{config.start or 'start'} .. {config.end or 'end'}",
        "stride": config.stride,
        "limit_per_pair": config.limit_per_pair,
        "candidates": len(c),
        "signals": len(sig),
        "closed_trades": int(res["status"].isin(CLOSED_STATUSES).sum()),
        "gate_mode": mode,
        "statuses": md_table(res["status"].value_counts().rename_axis("status").reset_index()),
        "per_pair": md_table(executed_by_series(res)),
    }
