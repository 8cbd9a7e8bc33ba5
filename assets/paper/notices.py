"""The setup scanner's live notifications (issue 16): the last step of ``live_candle_job``. Enqueues a ``signal``
message for every ``signals.log`` row and a ``trade_closed`` message for every closed paper trade that has none yet
(:func:`warehouse.paper.unnotified`; dedup keys make it idempotent, so a crashed or repeated run sends nothing
twice), then delivers the outbox. Not part of ``main_job``: a batch run never notifies."""

import dagster as dg

from assets.common import POOL
from assets.keys import GROUP_PAPER, PAPER_SETUPS, SETUP_NOTICES, SIGNALS_LOG
from assets.paper.common import DESK
from pipeline.config import settings
from pipeline.core.messages import setup_messages
from resources.notifier import Notifier, deliver, enqueue
from resources.warehouse import WarehouseResource
from warehouse import paper as store


@dg.asset(
    key=SETUP_NOTICES,
    group_name=GROUP_PAPER,
    pool=POOL,
    kinds={"duckdb", "telegram"},
    deps=[SIGNALS_LOG, PAPER_SETUPS],
    description="Enqueue a signal message per new signals.log row and a trade_closed message per newly closed paper "
    "trade of the setup scanner (ops.notifications, idempotent by dedup key) and deliver the outbox.",
)
def setup_notices(warehouse: WarehouseResource, notifier: Notifier) -> dg.MaterializeResult:
    cfg = settings()
    with warehouse.connect() as con:
        signals, trades = store.unnotified(con, DESK)
        msgs = setup_messages(signals, trades)
        new = sum(enqueue(con, m, cfg.notify.kinds) for m in msgs)
        rep = deliver(con, notifier, cfg.notify.outbox)
    return dg.MaterializeResult(
        metadata={
            "signals": len(signals),
            "closed_trades": len(trades),
            "enqueued": new,
            "delivered": rep.delivered,
            "failed": rep.failed,
            "off": rep.off,
        }
    )
