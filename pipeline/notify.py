"""The notification jobs: ``notify_deliver_job`` drains the outbox ``ops.notifications``; ``notify_test_job``
enqueues one test message and delivers it (``trader notify test``); ``notify_alert_job`` enqueues one message built
by a sensor (run config: the :class:`pipeline.core.messages.Message` fields) and delivers it, so that sensors (the
run-failure and sensor-lag alerts, which run in the daemon) never open the warehouse themselves. The ops are reusable: a live job ends with
:func:`deliver_notifications` after the steps that enqueue (``resources.notifier.enqueue``).

Both run in the ``duckdb_warehouse`` pool (they write the warehouse); delivery holds the writer's connection for the
pass (at most ``notify.outbox.max_wait_s`` of waiting, plus the requests).

No ``from __future__ import annotations`` here: Dagster reads the ops' config and resource annotations at definition.
"""

import datetime as dt
import json

import dagster as dg

from assets.common import POOL
from pipeline.config import settings
from pipeline.core.messages import Message, hello
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


class AlertConfig(dg.Config):
    kind: str  # a key of pipeline.core.messages.DELIVERY
    dedup_key: str
    markdown: str
    plain: str
    payload_json: str = "{}"


def alert_run_config(msg: Message) -> dict:
    """The run config of ``notify_alert_job`` that enqueues ``msg``."""
    fields = {"kind": msg.kind, "dedup_key": msg.dedup_key, "markdown": msg.markdown, "plain": msg.plain}
    return {"ops": {"enqueue_alert": {"config": {**fields, "payload_json": msg.payload_json()}}}}


@dg.op(pool=POOL, description="Store the message of the run config in ops.notifications (idempotent by dedup key).")
def enqueue_alert(context: dg.OpExecutionContext, config: AlertConfig, warehouse: WarehouseResource) -> str:
    msg = Message(config.kind, config.dedup_key, config.markdown, config.plain, json.loads(config.payload_json))
    with warehouse.connect() as con:
        new = enqueue(con, msg, settings().notify.kinds)
    context.add_output_metadata({"dedup_key": msg.dedup_key, "kind": msg.kind, "new": bool(new)})
    return msg.dedup_key


@dg.job(description="Send the due messages of the notification outbox (ops.notifications).")
def notify_deliver_job():
    deliver_notifications()


@dg.job(description="Enqueue one test message and deliver it (trader notify test).")
def notify_test_job():
    deliver_notifications(enqueue_test_message())


@dg.job(
    description="Enqueue one alert built by a sensor (run_failure, sensor lag; run config: ops.enqueue_alert) and "
    "deliver it."
)
def notify_alert_job():
    deliver_notifications(enqueue_alert())


NOTIFY_JOBS = [notify_deliver_job, notify_test_job, notify_alert_job]
