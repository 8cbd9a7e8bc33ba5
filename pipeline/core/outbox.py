"""The notification outbox's delivery rules (pure): what happens to a message after each send attempt, the retry
backoff, and the per-chat rate limit (docs/decisions.md, "Notifications and the outbox (issue 16)").

Attempt outcomes (``resources.notifier.SendResult.outcome``):

======================  ===============================================================================
``sent``                Telegram accepted it (``message_id``) → ``sent`` (or ``silent``: sent without sound)
``rate_limited``        HTTP 429 → pending again at ``now + retry_after``; the whole chat waits that long
``parse_error``         HTTP 400 "can't parse entities" → sent again at once as plain text
``unreachable``         nothing reached Telegram (connect error, no token) → pending, backoff, not a failure
``error``               Telegram answered an error (5xx, 401, 403, 404) → pending, backoff, one failure
``ambiguous``           the request left but no answer came (read timeout, dropped connection) → one failure;
                        at-least-once kinds pending and marked ``maybe_sent``, at-most-once kinds ``failed``
``rejected``            HTTP 400 for another reason (the message itself is bad) → ``failed`` at once
``disabled``            the null notifier (Telegram off) → ``off``
======================  ===============================================================================

A message whose failures reach ``max_attempts`` becomes ``failed`` with its last error; nothing is deleted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from pydantic import Field

from pipeline.core.messages import DELIVERY
from pipeline.core.params import Params


class OutboxParams(Params):
    """``notify.outbox``: retries, backoff and rate limit of the delivery of ``ops.notifications``."""

    max_attempts: int = Field(
        8,
        ge=1,
        description="Failures (5xx, timeouts, auth errors) before a message is given up as failed; "
        "unreachable-server attempts are not counted (an outage keeps messages pending).",
    )
    backoff_s: float = Field(5.0, gt=0, description="Wait after the first failure, seconds; doubles after each one.")
    backoff_cap_s: float = Field(600.0, gt=0, description="Longest wait between two attempts of one message, seconds.")
    per_chat_per_minute: int = Field(
        20, ge=1, description="Most sendMessage requests to one chat in any 60 s (Telegram: 20 a minute per group)."
    )
    sending_lease_s: float = Field(
        120.0,
        gt=0,
        description="A row left 'sending' this long (its sender died mid-request) is recovered by the next delivery.",
    )
    max_wait_s: float = Field(
        60.0,
        ge=0,
        description="How long one delivery pass may sleep for a due retry or a rate-limit slot before it returns "
        "(the rest waits for the next pass).",
    )


def backoff(failures: int, p: OutboxParams) -> float:
    """Seconds before the next attempt after ``failures`` (≥ 1) failures: ``backoff_s × 2^(failures-1)``, capped."""
    return min(p.backoff_cap_s, p.backoff_s * 2.0 ** max(0, failures - 1))


def rate_wait(request_times: Sequence[float], now: float, limit: int, window_s: float = 60.0) -> float:
    """Seconds until one more request fits in the chat's budget: a bucket of ``limit`` tokens where each spent token
    comes back ``window_s`` after it was spent, so no ``window_s`` window ever holds more than ``limit`` requests.

    ``request_times``: epoch seconds of the chat's earlier requests (any order; those older than the window are
    ignored). 0.0 when a token is free now.
    """
    recent = sorted(t for t in request_times if t > now - window_s)
    if len(recent) < limit:
        return 0.0
    return recent[len(recent) - limit] + window_s - now


@dataclass(frozen=True)
class Verdict:
    """What to store after an attempt: the new ``status``, whether it counts as a failure, when to try again (epoch
    s, pending only), whether the message may have been delivered already, and whether to resend as plain text now."""

    status: str
    failure: bool = False
    next_at: float | None = None
    maybe_sent: bool = False
    plain_now: bool = False


def verdict(
    outcome: str,
    *,
    kind: str,
    silent: bool,
    failures: int,
    now: float,
    p: OutboxParams,
    retry_after: float | None = None,
    plain_sent: bool = False,
) -> Verdict:
    """The outbox's rule for one attempt's ``outcome`` (table in the module docstring).

    ``failures``: failures of the message before this attempt; ``plain_sent``: this attempt already was the plain-text
    fallback (a parse error then is a rejection). Raises ValueError for an unknown outcome.
    """
    if outcome == "sent":
        return Verdict("silent" if silent else "sent")
    if outcome == "disabled":
        return Verdict("off")
    if outcome == "rate_limited":
        return Verdict("pending", next_at=now + max(1.0, float(retry_after or 1.0)))
    if outcome == "parse_error":
        return Verdict("failed", failure=True) if plain_sent else Verdict("pending", plain_now=True)
    if outcome == "rejected":
        return Verdict("failed", failure=True)
    if outcome == "unreachable":
        return Verdict("pending", next_at=now + backoff(failures + 1, p))
    if outcome in ("error", "ambiguous"):
        n = failures + 1
        maybe = outcome == "ambiguous"
        if maybe and DELIVERY.get(kind, "at_least_once") == "at_most_once":
            return Verdict("failed", failure=True, maybe_sent=True)
        if n >= p.max_attempts:
            return Verdict("failed", failure=True, maybe_sent=maybe)
        return Verdict("pending", failure=True, next_at=now + backoff(n, p), maybe_sent=maybe)
    raise ValueError(f"unknown send outcome {outcome!r}")
