"""The notification jobs: ``notify_deliver_job`` drains the outbox ``ops.notifications``; ``notify_test_job``
enqueues one test message and delivers it (``trader notify test``). The ops are reusable: a live job ends with
:func:`deliver_notifications` after the steps that enqueue (``resources.notifier.enqueue``).

Both run in the ``duckdb_warehouse`` pool (they write the warehouse); delivery holds the writer's connection for the
pass (at most ``notify.outbox.max_wait_s`` of waiting, plus the requests).

No ``from __future__ import annotations`` here: Dagster reads the ops' config and resource annotations at definition.
"""

import datetime as dt

import dagster as dg

from assets.common import POOL
from pipeline.config import settings
from pipeline.core.messages import hello
from resources.notifier import Notifier, deliver, enqueue
from resources.warehouse import WarehouseResource
from warehouse.notifications import status_counts


class DeliverConfig(dg.Config):
    max_wait_s: float | None = None  # seconds a pass may wait for retries / rate-limit slots; None = notify.outbox


@dg.op(pool=POOL, ins={"after": dg.In(dg.Nothing)}, description="Send the due messages of ops.notifications.")
def deliver_notifications(
    context: dg.OpExecutionContext, config: DeliverConfig, warehouse: WarehouseResource, notifier: Notifier
) -> dict:
    with warehouse.connect() as con:
        rep = deliver(con, notifier, settings().notify.outbox, max_wait_s=config.max_wait_s)
        counts = status_counts(con)
    summary = {
        "requests": rep.requests,
        "delivered": rep.delivered,
        "failed": rep.failed,
        "off": rep.off,
        "orphans_requeued": rep.requeued_orphans,
        "orphans_failed": rep.failed_orphans,
        "next_due": None
        if rep.next_due is None
        else dt.datetime.fromtimestamp(rep.next_due, dt.timezone.utc).isoformat(),
        **{f"status_{k}": v for k, v in sorted(counts.items())},
    }
    context.add_output_metadata(summary)
    return summary


@dg.op(pool=POOL, description="Store one test message in ops.notifications (kind test, always on).")
def enqueue_test_message(context: dg.OpExecutionContext, warehouse: WarehouseResource) -> str:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f UTC")
    msg = hello(stamp)
    with warehouse.connect() as con:
        enqueue(con, msg, settings().notify.kinds)
    context.add_output_metadata({"dedup_key": msg.dedup_key})
    return msg.dedup_key


@dg.job(description="Send the due messages of the notification outbox (ops.notifications).")
def notify_deliver_job():
    deliver_notifications()


@dg.job(description="Enqueue one test message and deliver it (trader notify test).")
def notify_test_job():
    deliver_notifications(enqueue_test_message())


NOTIFY_JOBS = [notify_deliver_job, notify_test_job]
