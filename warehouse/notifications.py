"""SQL of the notification outbox ``ops.notifications`` and its request log ``ops.notification_attempts``.

Statuses: ``pending`` (waiting for its ``next_attempt_at``), ``sending`` (claimed by a sender with ``attempt_id``
before the HTTP request: a row left ``sending`` means its sender died before recording the answer), ``sent`` /
``silent`` (delivered with / without sound; ``telegram_message_id`` kept), ``failed`` (given up; ``last_error``
kept), ``off`` (its kind is off, or Telegram is disabled: stored, never sent). Rows are never deleted.

Times are naive UTC ``TIMESTAMP``; the functions take and return epoch seconds (float) so that the caller's clock
can be injected. Each write is one transaction (:func:`warehouse.io.transaction`): the claim is committed before
the request leaves, the outcome in one transaction after it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import duckdb

from warehouse import io

_UTC = dt.timezone.utc


def ts(t: float | None) -> dt.datetime | None:
    """Epoch seconds → naive UTC datetime (None stays None)."""
    return None if t is None else dt.datetime.fromtimestamp(t, _UTC).replace(tzinfo=None)


def epoch(d) -> float | None:
    """Naive UTC datetime (or pandas Timestamp) → epoch seconds."""
    return None if d is None else d.replace(tzinfo=_UTC).timestamp()


@dataclass(frozen=True)
class Row:
    """The fields of one ``ops.notifications`` row that delivery needs."""

    dedup_key: str
    kind: str
    mode: str
    text: str
    plain_text: str
    attempts: int
    failures: int
    maybe_sent: bool


_ROW = "dedup_key, kind, mode, text, plain_text, attempts, failures, maybe_sent"


def enqueue(
    con: duckdb.DuckDBPyConnection,
    *,
    dedup_key: str,
    kind: str,
    mode: str,
    payload_json: str,
    text: str,
    plain_text: str,
    now: float,
) -> bool:
    """Store one message, idempotently: a second call with the same ``dedup_key`` changes nothing.

    ``mode`` ``off`` stores it with status ``off`` (never sent); ``on`` / ``silent`` store it ``pending``, due now.
    Returns True when the row is new.
    """
    status = "off" if mode == "off" else "pending"
    with io.transaction(con):
        n = con.execute(
            """INSERT INTO ops.notifications (dedup_key, kind, mode, payload, text, plain_text, status, next_attempt_at,
                   created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING""",
            [dedup_key, kind, mode, payload_json, text, plain_text, status, ts(now), ts(now), ts(now)],
        ).fetchone()[0]
    return bool(n)


def next_due(con: duckdb.DuckDBPyConnection, now: float) -> Row | None:
    """The pending row due first (``next_attempt_at <= now``; oldest first), or None."""
    r = con.execute(
        f"""SELECT {_ROW} FROM ops.notifications WHERE status = 'pending' AND next_attempt_at <= ?
            ORDER BY next_attempt_at, seq LIMIT 1""",
        [ts(now)],
    ).fetchone()
    return None if r is None else Row(*r)


def earliest_pending(con: duckdb.DuckDBPyConnection) -> float | None:
    """Epoch seconds of the soonest ``next_attempt_at`` of a pending row, or None when none is pending."""
    return epoch(
        con.execute("SELECT min(next_attempt_at) FROM ops.notifications WHERE status = 'pending'").fetchone()[0]
    )


def claim(con: duckdb.DuckDBPyConnection, row: Row, *, attempt_id: str, chat_id: str, fmt: str, now: float) -> bool:
    """Mark ``row`` ``sending`` under ``attempt_id`` and log the request, in one committed transaction, before the
    request is made. False (nothing written) when another sender changed the row since it was read."""
    with io.transaction(con):
        n = con.execute(
            """UPDATE ops.notifications SET status = 'sending', attempt_id = ?, attempt_started_at = ?,
                   attempts = attempts + 1, chat_id = ?, format = ?, updated_at = ?
               WHERE dedup_key = ? AND status = 'pending' AND attempts = ?""",
            [attempt_id, ts(now), chat_id, fmt, ts(now), row.dedup_key, row.attempts],
        ).fetchone()[0]
        if n:
            con.execute(
                """INSERT INTO ops.notification_attempts (attempt_id, dedup_key, chat_id, started_at, format)
                   VALUES (?, ?, ?, ?, ?)""",
                [attempt_id, row.dedup_key, chat_id, ts(now), fmt],
            )
    return bool(n)


def record(
    con: duckdb.DuckDBPyConnection,
    dedup_key: str,
    attempt_id: str,
    *,
    status: str,
    outcome: str,
    now: float,
    failure: bool = False,
    next_at: float | None = None,
    maybe_sent: bool = False,
    error: str | None = None,
    http_status: int | None = None,
    retry_after: float | None = None,
    message_id: int | None = None,
) -> None:
    """Store an attempt's outcome on the row claimed under ``attempt_id`` and on its request-log row (one
    transaction). ``maybe_sent`` is sticky (once an attempt may have delivered, later ones say so)."""
    delivered = status in ("sent", "silent")
    retry_at = ts(now + retry_after) if outcome == "rate_limited" and retry_after is not None else None
    with io.transaction(con):
        con.execute(
            """UPDATE ops.notifications SET status = ?, failures = failures + ?, next_attempt_at = coalesce(?,
                   next_attempt_at), maybe_sent = maybe_sent OR ?, last_error = coalesce(?, last_error),
                   sent_at = CASE WHEN ? THEN ? ELSE sent_at END, telegram_message_id = coalesce(?, telegram_message_id),
                   updated_at = ?
               WHERE dedup_key = ? AND attempt_id = ?""",
            [
                status,
                int(failure),
                ts(next_at),
                maybe_sent,
                error,
                delivered,
                ts(now),
                message_id,
                ts(now),
                dedup_key,
                attempt_id,
            ],
        )
        con.execute(
            """UPDATE ops.notification_attempts SET finished_at = ?, outcome = ?, http_status = ?, retry_after = ?,
                   retry_at = ?, error = ?, telegram_message_id = ? WHERE attempt_id = ?""",
            [ts(now), outcome, http_status, retry_after, retry_at, error, message_id, attempt_id],
        )


def recover_orphans(
    con: duckdb.DuckDBPyConnection, *, older_than: float, now: float, at_most_once: list[str]
) -> tuple[int, int]:
    """Rows left ``sending`` by a sender that died (claimed before ``older_than``, epoch s): the request may or may not
    have reached Telegram. Kinds in ``at_most_once`` become ``failed`` (not resent); the others ``pending`` with
    ``maybe_sent`` (resent with a possible-repeat line). Their request-log rows get outcome ``unknown``.
    Returns ``(requeued, failed)``."""
    err = "outcome unknown: the sender stopped after the request left and before the answer was recorded"
    n = con.execute(
        "SELECT count(*) FROM ops.notifications WHERE status = 'sending' AND attempt_started_at < ?", [ts(older_than)]
    ).fetchone()[0]
    if not n:
        return 0, 0
    with io.transaction(con):
        con.execute(
            """UPDATE ops.notification_attempts SET outcome = 'unknown', error = ?, finished_at = ?
               WHERE outcome IS NULL AND attempt_id IN (SELECT attempt_id FROM ops.notifications
                   WHERE status = 'sending' AND attempt_started_at < ?)""",
            [err, ts(now), ts(older_than)],
        )
        failed = con.execute(
            """UPDATE ops.notifications SET status = 'failed', maybe_sent = true, failures = failures + 1,
                   last_error = ? || ' (at-most-once kind: not resent)', updated_at = ?
               WHERE status = 'sending' AND attempt_started_at < ? AND list_contains(?, kind)""",
            [err, ts(now), ts(older_than), at_most_once],
        ).fetchone()[0]
        requeued = con.execute(
            """UPDATE ops.notifications SET status = 'pending', maybe_sent = true, failures = failures + 1,
                   last_error = ? || ' (at-least-once kind: resent as a possible repeat)', next_attempt_at = ?,
                   updated_at = ?
               WHERE status = 'sending' AND attempt_started_at < ?""",
            [err, ts(now), ts(now), ts(older_than)],
        ).fetchone()[0]
    return int(requeued), int(failed)


def request_times(con: duckdb.DuckDBPyConnection, chat_id: str, since: float) -> list[float]:
    """Epoch seconds of the requests made to ``chat_id`` after ``since`` (the rate limit's spent tokens)."""
    rows = con.execute(
        "SELECT started_at FROM ops.notification_attempts WHERE chat_id = ? AND started_at > ?", [chat_id, ts(since)]
    ).fetchall()
    return [epoch(r[0]) for r in rows]


def chat_blocked_until(con: duckdb.DuckDBPyConnection, chat_id: str) -> float | None:
    """Epoch seconds until which Telegram asked (429 ``retry_after``) not to send to ``chat_id``, or None."""
    r = con.execute(
        "SELECT max(retry_at) FROM ops.notification_attempts WHERE chat_id = ? AND outcome = 'rate_limited'", [chat_id]
    ).fetchone()[0]
    return epoch(r)


def status_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """``{status: rows}`` of ``ops.notifications``."""
    return dict(con.execute("SELECT status, count(*) FROM ops.notifications GROUP BY status").fetchall())


def requeue_failed(con: duckdb.DuckDBPyConnection, *, now: float, kind: str | None = None) -> int:
    """Give ``failed`` rows (of ``kind``, or all) another round: ``pending`` with their failures reset, due now.
    ``maybe_sent`` stays, so a possibly delivered one is resent marked as a possible repeat. Returns the rows."""
    with io.transaction(con):
        return int(
            con.execute(
                """UPDATE ops.notifications SET status = 'pending', failures = 0, next_attempt_at = ?, updated_at = ?
                   WHERE status = 'failed' AND (? IS NULL OR kind = ?)""",
                [ts(now), ts(now), kind, kind],
            ).fetchone()[0]
        )
