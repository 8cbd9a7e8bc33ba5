"""Group ``paper``: the append-only signal log and the setup scanner's paper book (issue 16).

* ``signals/log`` — the gated signals of ``signals.setups`` whose candle is among the newest ``paper.log_recent_candles``
  of its series, appended once per signal id (:func:`warehouse.paper.log_signals`; history is never rewritten).
* ``paper/setup_book`` — one paper step: resume the stored engine state on the closed bars after it and the
  logged signals on them (:func:`pipeline.core.paper.advance`), written in one transaction
  (:func:`warehouse.paper.write_step`). Work is proportional to the new bars.
* check ``paper_matches_backtest`` (blocking, on ``paper/setup_book``; a job may select it apart, e.g. daily) — the
  paper window re-simulated in one engine run from the stored candles and the logged signals equals the paper book.
* op ``paper_reset`` (``paper_reset_job``, ``trader paper reset --desk``).

Both assets run through ``paper_job`` and the live job, not ``main_job`` (:data:`pipeline.jobs.ON_DEMAND`).
"""

import dagster as dg

from assets.common import POOL, md_table, rounded
from assets.keys import GROUP_PAPER, PAPER_MATCHES_BACKTEST, PAPER_SETUPS, SETUPS, SIGNALS_LOG
from assets.paper.common import DESK, BookConfigError, log_new_signals, resimulate, step_book
from pipeline.config import settings
from resources.warehouse import WarehouseResource
from warehouse import io
from warehouse import paper as store


@dg.asset(
    key=SIGNALS_LOG,
    group_name=GROUP_PAPER,
    pool=POOL,
    deps=[SETUPS],
    kinds={"duckdb"},
    code_version="1",
    description="Append-only log of what each desk signalled when: desk, signal id, candle ts, first-seen time, "
    "plan payload (side, entry, SL, TP1/TP2, leverage, size, p(win), EV, threshold, why), model version, configuration "
    "hash. A signal id already logged is never rewritten; only candles among the newest paper.log_recent_candles "
    "of their series are logged.",
)
def signals_log(warehouse: WarehouseResource) -> dg.MaterializeResult:
    with warehouse.connect() as con:
        out = log_new_signals(con, settings())
        total = io.fetch_one(con.execute("SELECT count(*) FROM signals.log"))[0]
    return dg.MaterializeResult(metadata=rounded({**out, "dagster/row_count": int(total)}))


@dg.asset(
    key=PAPER_SETUPS,
    group_name=GROUP_PAPER,
    pool=POOL,
    deps=[SIGNALS_LOG],
    kinds={"numba", "duckdb"},
    code_version="1",
    description="The setup scanner's paper book: the engine resumed from its stored state on the closed bars after "
    "it and the logged signals, one transaction per step (paper.orders / trades / positions / equity / state).",
)
def paper_setup_scanner(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    cfg = settings()
    with warehouse.connect() as con:
        try:
            out = step_book(con, cfg, context.run_id)
        except BookConfigError as e:
            raise dg.Failure(str(e)) from None
        b = store.book(con, DESK)
    eq = b["equity"]
    meta = {**out, "equity": float(eq["equity"].iloc[0]) if len(eq) else cfg.paper.initial_cash}
    return dg.MaterializeResult(metadata=rounded({**meta, "positions": md_table(b["positions"].drop(columns="desk"))}))


@dg.asset_check(
    asset=PAPER_SETUPS,
    name=PAPER_MATCHES_BACKTEST,
    blocking=True,
    description="The paper window re-simulated in one engine run from stored candles and logged signals: 0 differing "
    "trades and equity within 1e-9 of the paper book.",
)
def paper_matches_backtest(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.connect(read_only=True) as con:
        r = resimulate(con, settings())
    if r is None:
        return dg.AssetCheckResult(passed=True, metadata={"note": "no paper step yet"})
    return dg.AssetCheckResult(passed=bool(r["passed"]), severity=dg.AssetCheckSeverity.ERROR, metadata=rounded(r))


class PaperResetConfig(dg.Config):
    """Run config of ``paper_reset_job``."""

    desk: str = DESK


@dg.op(description="Delete a desk's paper book (paper.* rows; signals.log is kept): the next step starts fresh.")
def paper_reset(config: PaperResetConfig, warehouse: WarehouseResource) -> dict:
    with warehouse.connect() as con:
        return store.reset(con, config.desk)
