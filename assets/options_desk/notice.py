"""The options desk's daily decision message (issue 16; seed 000 "Sample Output"): the last step of
``options_daily_job`` (the ``options_daily`` schedule). Reads the latest day's decision, builds the block
(:func:`pipeline.core.options_explain.latest_block`, the layout ``trader options score-latest`` prints), enqueues one
``options_decision`` message (dedup key ``options_decision:<day>``: one per decided day, however often the job runs)
and delivers the outbox. Not part of ``main_job`` / ``options_desk_job``: a batch run never notifies."""

import dagster as dg
import pandas as pd

from assets.common import POOL
from assets.keys import GROUP_OPTIONS, OPTIONS_DAILY, OPTIONS_NOTICE, OPTIONS_TRADES, SNAPSHOT
from pipeline.config import settings
from pipeline.core.messages import options_decision
from pipeline.core.options_explain import latest_block
from resources.notifier import Notifier, deliver, enqueue
from resources.warehouse import WarehouseResource
from warehouse import readers


@dg.asset(
    key=OPTIONS_NOTICE,
    group_name=GROUP_OPTIONS,
    pool=POOL,
    kinds={"duckdb", "telegram"},
    deps=[OPTIONS_DAILY, OPTIONS_TRADES, SNAPSHOT],
    description="Enqueue the latest day's options decision (kind options_decision, one per day) in ops.notifications "
    "and deliver the outbox; after the serving snapshot is published.",
)
def options_notice(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, notifier: Notifier
) -> dg.MaterializeResult:
    cfg = settings()
    m = cfg.options_desk.models
    today = pd.Timestamp.now(tz="UTC").tz_localize(None).normalize()
    with warehouse.connect() as con:
        inputs = readers.options_decision(con, m.names)
        if inputs is None:
            return dg.MaterializeResult(metadata={"status": "no decision stored; nothing sent"})
        block = latest_block(
            inputs, today, cfg.options_desk.max_data_age_days, m.names, (m.call_threshold, m.put_threshold)
        )
        r = inputs["row"]
        payload = {k: r.get(k) for k in ("state", "score", "confidence", "size", "trade_type") if k in r.index}
        msg = options_decision(inputs["last"], block, payload)
        new = enqueue(con, msg, cfg.notify.kinds)
        rep = deliver(con, notifier, cfg.notify.outbox)
    return dg.MaterializeResult(
        metadata={
            "day": inputs["last"],
            "dedup_key": msg.dedup_key,
            "new": bool(new),
            "delivered": rep.delivered,
            "failed": rep.failed,
            "off": rep.off,
            "message": dg.MetadataValue.md(f"```\n{msg.plain}\n```"),
        }
    )
