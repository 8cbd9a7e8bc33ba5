"""Notifications: the ``Notifier`` resource (Telegram Bot API, memory, null) and the outbox's delivery.

:class:`TelegramNotifier` posts ``sendMessage`` over httpx (``{api_base}/bot<token>/sendMessage``; the token is read
from the environment variable named by ``bot_token_env`` at send time, never stored in the configuration) and
classifies the answer into a :class:`SendResult` outcome (:mod:`pipeline.core.outbox` table). Connection failures
are retried by httpx's transport (``connect_retries``: they are safe, nothing reached Telegram); every other retry
is durable, scheduled in ``ops.notifications`` by :func:`deliver`, so a restart loses no retry.

:func:`deliver` drains the due messages of the outbox: claim (``sending`` + attempt id, committed) → request →
record, honouring a 429's ``retry_after`` for the whole chat, at most ``per_chat_per_minute`` requests in any 60 s
(counted from ``ops.notification_attempts``, so a restart remembers them), MarkdownV2 first and plain text on a
400 "can't parse entities". Rows a dead sender left ``sending`` are recovered per kind (at-least-once: resent with a
"possible repeat of ref …" line; at-most-once: failed). docs/decisions.md "Notifications and the outbox (issue 16)".
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable

import dagster as dg
import duckdb
import httpx
from pydantic import Field, PrivateAttr

from pipeline.core.messages import DELIVERY, Message, NotifyKinds, repeat_notice
from pipeline.core.outbox import OutboxParams, rate_wait, verdict
from warehouse import notifications as outbox


@dataclass(frozen=True)
class SendResult:
    """One request's outcome (``sent / rate_limited / parse_error / unreachable / error / ambiguous / rejected /
    disabled``), Telegram's ``message_id`` when sent, ``retry_after`` seconds on a 429, the HTTP status and error."""

    outcome: str
    message_id: int | None = None
    retry_after: float | None = None
    http_status: int | None = None
    error: str | None = None


class Notifier(dg.ConfigurableResource):
    """Base of the notifiers: ``send`` one text to ``chat_id``. Subclasses: Telegram, memory, null."""

    chat_id: str = Field("", description="The chat the messages go to (Telegram chat id or @channel).")

    def send(self, text: str, *, parse_mode: str | None, disable_notification: bool) -> SendResult:
        raise NotImplementedError


class NullNotifier(Notifier):
    """Telegram disabled: nothing is sent; :func:`deliver` stores the messages as ``off``."""

    def send(self, text: str, *, parse_mode: str | None, disable_notification: bool) -> SendResult:
        return SendResult("disabled", error="notify.telegram.enabled is false")


class MemoryNotifier(Notifier):
    """Keeps every message in ``sent`` (a list of dicts with ``text, parse_mode, disable_notification``), for tests."""

    _sent: list = PrivateAttr(default_factory=list)

    @property
    def sent(self) -> list[dict]:
        return self._sent

    def send(self, text: str, *, parse_mode: str | None, disable_notification: bool) -> SendResult:
        self._sent.append({"text": text, "parse_mode": parse_mode, "disable_notification": disable_notification})
        return SendResult("sent", message_id=len(self._sent))


class TelegramNotifier(Notifier):
    """Telegram Bot API ``sendMessage`` over httpx (https://core.telegram.org/bots/api#sendmessage)."""

    bot_token_env: str = Field("TELEGRAM_BOT_TOKEN", description="Environment variable holding the bot token.")
    api_base: str = Field("https://api.telegram.org", description="Bot API address (tests: a local fake server).")
    connect_timeout_s: float = Field(5.0, description="Seconds to connect (a connect failure is safe to retry).")
    read_timeout_s: float = Field(10.0, description="Seconds to wait for the answer once the request left.")
    connect_retries: int = Field(2, description="httpx transport retries of a failed connection, per request.")

    _http: httpx.Client | None = PrivateAttr(default=None)

    def _client(self) -> httpx.Client:
        """One client per resource instance (connection reuse; building one costs ~50 ms of TLS setup)."""
        if self._http is None:
            timeout = httpx.Timeout(self.read_timeout_s, connect=self.connect_timeout_s)
            self._http = httpx.Client(timeout=timeout, transport=httpx.HTTPTransport(retries=self.connect_retries))
        return self._http

    def send(self, text: str, *, parse_mode: str | None, disable_notification: bool) -> SendResult:
        """POST one message; never raises on network or HTTP errors (they are outcomes)."""
        token = os.environ.get(self.bot_token_env, "")
        if not token:
            return SendResult("unreachable", error=f"environment variable {self.bot_token_env} is not set")
        body: dict = {"chat_id": self.chat_id, "text": text, "disable_notification": disable_notification}
        if parse_mode:
            body["parse_mode"] = parse_mode
        url = f"{self.api_base.rstrip('/')}/bot{token}/sendMessage"
        try:
            r = self._client().post(url, json=body)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as e:
            return SendResult("unreachable", error=f"{type(e).__name__}: {e}")
        except httpx.TransportError as e:  # read/write timeout, dropped connection: the request may have arrived
            return SendResult("ambiguous", error=f"{type(e).__name__}: {e}")
        return classify(r.status_code, _json(r), r.headers.get("Retry-After"))


def _json(r: httpx.Response) -> dict:
    try:
        v = r.json()
        return v if isinstance(v, dict) else {}
    except ValueError:
        return {"description": r.text[:300]}


def classify(status: int, body: dict, retry_after_header: str | None = None) -> SendResult:
    """A Bot API answer → :class:`SendResult` (429: ``parameters.retry_after``, else the Retry-After header, else 1 s;
    400 "can't parse entities": ``parse_error``; other 400: ``rejected``; 5xx/401/403/404/other: ``error``)."""
    desc = str(body.get("description", ""))
    if status == 200 and body.get("ok"):
        return SendResult("sent", message_id=(body.get("result") or {}).get("message_id"), http_status=200)
    if status == 429:
        ra = (body.get("parameters") or {}).get("retry_after")
        if ra is None and retry_after_header:
            try:
                ra = float(retry_after_header)
            except ValueError:
                ra = None
        return SendResult("rate_limited", retry_after=float(ra or 1.0), http_status=429, error=f"429 {desc}")
    if status == 400 and "can't parse entities" in desc.lower():
        return SendResult("parse_error", http_status=400, error=f"400 {desc}")
    if status == 400:
        return SendResult("rejected", http_status=400, error=f"400 {desc}")
    return SendResult("error", http_status=status, error=f"{status} {desc}".strip())


def build_notifier(telegram) -> Notifier:
    """The notifier of the ``notify.telegram`` configuration section (Telegram when enabled, else null)."""
    if not telegram.enabled:
        return NullNotifier(chat_id=telegram.chat_id or "")
    return TelegramNotifier(
        chat_id=telegram.chat_id or "",
        bot_token_env=telegram.bot_token_env,
        api_base=telegram.api_base,
        connect_timeout_s=telegram.connect_timeout_s,
        read_timeout_s=telegram.read_timeout_s,
        connect_retries=telegram.connect_retries,
    )


# --------------------------------------------------------------------------- the outbox


def enqueue(con: duckdb.DuckDBPyConnection, message: Message, kinds: NotifyKinds, *, now: float | None = None) -> bool:
    """Store ``message`` in ``ops.notifications`` with its kind's configured mode; idempotent by its dedup key.
    Returns True when it is new."""
    return outbox.enqueue(
        con,
        dedup_key=message.dedup_key,
        kind=message.kind,
        mode=kinds.mode(message.kind),
        payload_json=message.payload_json(),
        text=message.markdown,
        plain_text=message.plain,
        now=time.time() if now is None else now,
    )


@dataclass
class DeliveryReport:
    """What one :func:`deliver` pass did: requests made, messages delivered / failed / off, orphans recovered, and
    when the next pending message is due (epoch s, None = nothing pending)."""

    requests: int = 0
    delivered: int = 0
    failed: int = 0
    off: int = 0
    requeued_orphans: int = 0
    failed_orphans: int = 0
    next_due: float | None = None
    outcomes: list[str] = field(default_factory=list)


def deliver(
    con: duckdb.DuckDBPyConnection,
    notifier: Notifier,
    params: OutboxParams,
    *,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
    max_wait_s: float | None = None,
) -> DeliveryReport:
    """Send every due message of the outbox, oldest first; sleep (``sleep``) for a due retry or a rate-limit slot
    while that fits in ``max_wait_s`` (default ``params.max_wait_s``), then return.

    Exactly one request per claim: the row is committed ``sending`` with a fresh attempt id before the request and
    the outcome recorded after it; if the process dies in between, the row stays ``sending`` and a later pass (after
    ``sending_lease_s``) recovers it per kind (:data:`pipeline.core.messages.DELIVERY`). Never raises on Telegram
    errors; DuckDB errors propagate (the outbox is then unchanged past the last commit).
    """
    rep = DeliveryReport()
    deadline = clock() + (params.max_wait_s if max_wait_s is None else max_wait_s)
    chat = notifier.chat_id
    at_most_once = [k for k, d in DELIVERY.items() if d == "at_most_once"]
    while True:
        now = clock()
        req, fail = outbox.recover_orphans(
            con, older_than=now - params.sending_lease_s, now=now, at_most_once=at_most_once
        )
        rep.requeued_orphans += req
        rep.failed_orphans += fail
        row = outbox.next_due(con, now)
        wake = outbox.earliest_pending(con) if row is None else now
        if wake is not None and not isinstance(notifier, NullNotifier):  # the chat's 429 pause and token bucket
            blocked = outbox.chat_blocked_until(con, chat) or 0.0
            slot = rate_wait(outbox.request_times(con, chat, now - 60.0), now, params.per_chat_per_minute)
            wake = max(wake, blocked, now + slot)
        if row is None or wake > now:
            rep.next_due = wake
            if wake is None or wake > deadline:
                return rep
            sleep(max(0.0, wake - now))
            continue
        _attempt(con, notifier, params, row, rep, clock)


def _attempt(con, notifier: Notifier, params: OutboxParams, row: outbox.Row, rep: DeliveryReport, clock) -> None:
    """One claim → request → record of ``row`` (and, on a parse error, one more as plain text)."""
    md, plain = row.text, row.plain_text
    if row.maybe_sent and DELIVERY.get(row.kind, "at_least_once") == "at_least_once":
        md, plain = repeat_notice(md, plain, row.dedup_key)
    use_plain = not md
    failures = row.failures
    while True:
        attempt_id = uuid.uuid4().hex
        if not outbox.claim(
            con,
            row,
            attempt_id=attempt_id,
            chat_id=notifier.chat_id,
            fmt=("plain" if use_plain else "MarkdownV2"),
            now=clock(),
        ):
            return
        res = notifier.send(
            plain if use_plain else md,
            parse_mode=None if use_plain else "MarkdownV2",
            disable_notification=row.mode == "silent",
        )
        rep.requests += int(res.outcome != "disabled")
        rep.outcomes.append(res.outcome)
        now = clock()
        v = verdict(
            res.outcome,
            kind=row.kind,
            silent=row.mode == "silent",
            failures=failures,
            now=now,
            p=params,
            retry_after=res.retry_after,
            plain_sent=use_plain,
        )
        outbox.record(
            con,
            row.dedup_key,
            attempt_id,
            status=v.status,
            outcome=res.outcome,
            now=now,
            failure=v.failure,
            next_at=v.next_at,
            maybe_sent=v.maybe_sent,
            error=res.error,
            http_status=res.http_status,
            retry_after=res.retry_after,
            message_id=res.message_id,
        )
        rep.delivered += v.status in ("sent", "silent")
        rep.failed += v.status == "failed"
        rep.off += v.status == "off"
        if not v.plain_now:
            return
        use_plain, failures = True, failures + int(v.failure)
        row = outbox.Row(
            row.dedup_key, row.kind, row.mode, row.text, row.plain_text, row.attempts + 1, failures, row.maybe_sent
        )
