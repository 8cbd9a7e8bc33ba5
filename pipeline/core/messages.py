"""What the notifications say (pure): one formatting function per message kind, Telegram MarkdownV2 escaping, and
the per-kind settings (``notify.kinds.<kind>: on | silent | off``).

Every formatter returns a :class:`Message`: its ``dedup_key`` (the outbox's unique key: enqueueing the same event
twice stores one row), ``kind``, a JSON-safe ``payload`` (what the message was made from), the MarkdownV2 ``markdown``
text and a ``plain`` text (sent instead when Telegram cannot parse the MarkdownV2, or when it is too long). Both end
with ``ref <8 hex>``, a short hash of the dedup key, so a message resent after an interruption whose outcome is
unknown can be recognised in the chat (:func:`repeat_notice`; docs/decisions.md, "Notifications and the outbox").

Kinds follow seed 002 "Notifications" (new signals, closed trades TP / SL / TP1_TRAIL) and issue 16 (the options
desk's daily decision, seed 000 "Sample Output"; data staleness; run failure; risk-engine state change).
MarkdownV2 rules: https://core.telegram.org/bots/api#markdownv2-style.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Sequence

from pydantic import Field, field_validator

from pipeline.core.params import Params
from pipeline.core.setups import seed_status
from pipeline.core.timeframes import TIMEFRAME_MS

Mode = Literal["on", "silent", "off"]
Delivery = Literal["at_least_once", "at_most_once"]

#: how each kind is delivered when an attempt's outcome is unknown (the sender died after the request, or the
#: response timed out): at-least-once kinds are resent marked as a possible repeat; at-most-once kinds are not
#: resent (the row becomes ``failed`` with the reason). See docs/decisions.md.
DELIVERY: dict[str, Delivery] = {
    "signal": "at_least_once",
    "trade_closed": "at_least_once",
    "options_decision": "at_least_once",
    "risk_state": "at_least_once",
    "run_failure": "at_least_once",
    "data_stale": "at_most_once",
    "test": "at_most_once",
}

#: Telegram's limit on a message's text, characters after entity parsing
MAX_TEXT = 4096

_MD_SPECIAL = set("_*[]()~`>#+-=|{}.!\\")


class NotifyKinds(Params):
    """``notify.kinds``: per message kind, ``on`` (sent with sound), ``silent`` (sent with Telegram's
    ``disable_notification``: no sound) or ``off`` (stored in ``ops.notifications`` with status ``off``, never sent)."""

    signal: Mode = Field("on", description="A new gated setup-scanner signal (seed 002: push on new signals).")
    trade_closed: Mode = Field(
        "on", description="A signal's trade closed or expired: TP / SL / TP1_TRAIL / TIMEOUT / EXPIRED with its PnL."
    )
    options_decision: Mode = Field("on", description="The options desk's daily decision block (seed 000).")
    data_stale: Mode = Field("on", description="An input (candles, on-chain, sentiment, a signal table) is too old.")
    run_failure: Mode = Field("on", description="A Dagster run failed.")
    risk_state: Mode = Field("on", description="A desk's risk engine changed state (ACTIVE / REDUCING / HALTED).")

    @field_validator("*", mode="before")
    @classmethod
    def _yaml_bool(cls, v):
        # YAML 1.1 reads a bare on / off as true / false: take them as the words the user wrote
        return {True: "on", False: "off"}.get(v, v) if isinstance(v, bool) else v

    def mode(self, kind: str) -> Mode:
        """The configured mode of ``kind`` (``test`` is always ``on``). Raises KeyError for an unknown kind."""
        if kind == "test":
            return "on"
        if kind not in type(self).model_fields:
            raise KeyError(f"unknown notification kind {kind!r}; kinds: {sorted(type(self).model_fields)}")
        return getattr(self, kind)


@dataclass(frozen=True)
class Message:
    """One notification, ready for the outbox (``kind`` is a key of :data:`DELIVERY`)."""

    kind: str
    dedup_key: str
    markdown: str
    plain: str
    payload: dict[str, Any] = field(default_factory=dict)

    def payload_json(self) -> str:
        return json.dumps(self.payload, sort_keys=True, default=str)


# --------------------------------------------------------------------------- escaping


def escape_md(text: str) -> str:
    """Escape ``text`` for Telegram MarkdownV2 outside entities: a backslash before each of
    ``_ * [ ] ( ) ~ ` > # + - = | { } . !`` and before ``\\`` itself (Bot API "MarkdownV2 style")."""
    return "".join("\\" + c if c in _MD_SPECIAL else c for c in str(text))


def escape_code(text: str) -> str:
    """Escape ``text`` for a MarkdownV2 ``pre`` / ``code`` entity: only ``\\`` and ``` ` ``` are escaped there."""
    return str(text).replace("\\", "\\\\").replace("`", "\\`")


def ref(dedup_key: str) -> str:
    """The message's visible reference: the first 8 hex digits of the SHA-1 of its dedup key."""
    return hashlib.sha1(dedup_key.encode()).hexdigest()[:8]


def repeat_notice(markdown: str, plain: str, dedup_key: str) -> tuple[str, str]:
    """``(markdown, plain)`` prefixed with a line saying this may repeat an earlier message (same ``ref``): used when
    an earlier attempt's outcome is unknown and an at-least-once kind is sent again."""
    line = f"♻ possible repeat of ref {ref(dedup_key)} (an earlier send's outcome is unknown)"
    return _fit(f"_{escape_md(line)}_\n{markdown}", f"{line}\n{plain}")


def _fit(markdown: str, plain: str) -> tuple[str, str]:
    """Plain text cut to :data:`MAX_TEXT`; a MarkdownV2 text over the limit becomes ``""`` (send the plain one)."""
    if len(plain) > MAX_TEXT:
        plain = plain[: MAX_TEXT - 2] + " …"
    return ("" if len(markdown) > MAX_TEXT else markdown), plain


def _message(
    kind: str, key: str, title: str, rows: Sequence[tuple[str, str]], payload: dict, tail: str = ""
) -> Message:
    """Title in bold, then ``label: value`` rows (label bold), an optional free line and the ref line."""
    r = ref(key)
    md = [f"*{escape_md(title)}*", *(f"*{escape_md(k)}:* {escape_md(v)}" for k, v in rows)]
    pl = [title, *(f"{k}: {v}" for k, v in rows)]
    if tail:
        md.append(escape_md(tail))
        pl.append(tail)
    md.append(f"ref `{r}`")
    pl.append(f"ref {r}")
    markdown, plain = _fit("\n".join(md), "\n".join(pl))
    return Message(kind, key, markdown, plain, _json_safe(payload))


def _json_safe(v):
    if isinstance(v, Mapping):
        return {str(k): _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):  # numpy scalars
        return _json_safe(v.item())
    if v is None or isinstance(v, (str, int, float, bool)):
        return v
    return str(v)


# --------------------------------------------------------------------------- number formats


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def price(v) -> str:
    """A price without rounding it away: 8 significant digits, thousands separated (``77,696.043``, ``1.334796``)."""
    return "n/a" if _missing(v) else f"{float(v):,.8g}"


def _pct(v, digits: int = 2, sign: bool = True) -> str:
    return "n/a" if _missing(v) else f"{float(v):{'+' if sign else ''}.{digits}f} %"


def utc(ts_ms) -> str:
    """Epoch ms → ``YYYY-MM-DD HH:MM UTC``."""
    import datetime as dt

    if _missing(ts_ms):
        return "n/a"
    return dt.datetime.fromtimestamp(int(ts_ms) / 1000, dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _candle(timeframe, ts_ms) -> str:
    """``1h closed 2026-04-23 04:00 UTC`` (the signal's candle: open time ``ts_ms`` + its timeframe)."""
    if timeframe in TIMEFRAME_MS and not _missing(ts_ms):
        return f"{timeframe} closed {utc(int(ts_ms) + TIMEFRAME_MS[timeframe])}"
    return f"{timeframe} opened {utc(ts_ms)}"


def _side(side) -> str:
    return "LONG" if int(side) > 0 else "SHORT"


# --------------------------------------------------------------------------- kinds


def new_signal(s: Mapping[str, Any]) -> Message:
    """A new gated setup-scanner signal (one ``signals.setups`` row as a mapping).

    Reads ``candidate_id, symbol, timeframe, ts`` (candle open, epoch ms), ``side`` (+1 / -1), ``entry_type, entry,
    sl, sl_pct, tp1, tp2, tp1_net_pct, rr_tp1, leverage, qty, notional, liq_price, validity_candles, p_win`` (0..1),
    ``ev_pct`` (percent), ``threshold, threshold_source, gate_mode, why, trend_regime, volatility_level,
    model_version``; a missing key shows ``n/a``. Dedup key ``signal:<candidate_id>``.
    """
    g = s.get
    base = str(g("symbol", "?")).split("/")[0]
    gate = "EV" if g("gate_mode") == "ev" else "p(win)"
    thr = g("threshold")
    thr_txt = "n/a" if _missing(thr) else (f"{float(thr):.4g} %" if gate == "EV" else f"{100 * float(thr):.1f} %")
    rows = [
        ("Entry", f"{price(g('entry'))} ({g('entry_type', 'limit')}, valid {g('validity_candles', 'n/a')} candles)"),
        ("SL", f"{price(g('sl'))} ({_pct(g('sl_pct'), sign=False)} away)"),
        (
            "TP1 / TP2",
            f"{price(g('tp1'))} / {price(g('tp2'))} (TP1 net {_pct(g('tp1_net_pct'))}, R:R {_num(g('rr_tp1'))})",
        ),
        ("Leverage", f"{_num(g('leverage'))}x (liquidation {price(g('liq_price'))})"),
        ("Size", f"{_num(g('qty'), '.6g')} {base} = {_num(g('notional'), ',.2f')} notional"),
        ("p(win)", "n/a" if _missing(g("p_win")) else f"{100 * float(g('p_win')):.1f} %"),
        ("EV", _pct(g("ev_pct"), 3)),
        ("Gate", f"{gate} threshold {thr_txt} ({g('threshold_source', 'n/a')})"),
        ("Why", str(g("why", "n/a"))),
        ("Regime", f"{g('trend_regime', 'n/a')} trend, {g('volatility_level', 'n/a')} volatility"),
        ("Candle", _candle(g("timeframe"), g("ts"))),
        ("Model", str(g("model_version", "n/a"))),
    ]
    title = f"New signal: {_side(g('side', 1))} {g('symbol', '?')} {g('timeframe', '?')}"
    return _message("signal", f"signal:{g('candidate_id')}", title, rows, dict(s))


#: what each closing status means (``signals.setups.status``, seed 002 execution)
CLOSE_REASONS = {
    "TP": "take profit (TP2) hit",
    "SL": "stop loss hit",
    "TP1_TRAIL": "TP1 taken, the rest closed by the trailing stop",
    "TIMEOUT": "closed at the maximum holding time",
    "EXPIRED": "the limit entry was not filled within its validity; no position was opened",
}


def trade_closed(t: Mapping[str, Any]) -> Message:
    """A signal's trade closed (``TP / SL / TP1_TRAIL / TIMEOUT``) or expired unfilled (``EXPIRED``).

    Reads ``candidate_id, symbol, timeframe, side, status, entry_price, exit_price, entry_ts, exit_ts`` (epoch ms),
    ``pnl`` (quote currency), ``net_pct`` (percent, net of costs), ``tp1_hit``. Dedup key
    ``trade_closed:<candidate_id>:<status>``.
    """
    g = t.get
    status = str(g("status", "?"))
    icon = {"TP": "✅", "TP1_TRAIL": "✅", "SL": "❌", "EXPIRED": "⌛", "TIMEOUT": "⏱"}.get(status, "•")
    title = f"{icon} {status}: {_side(g('side', 1))} {g('symbol', '?')} {g('timeframe', '?')}"
    if status == "EXPIRED":
        rows = [("Entry", f"{price(g('entry', g('entry_price')))} not filled"), ("Signal", utc(g("ts")))]
    else:
        pnl = g("pnl")
        rows = [
            ("PnL", f"{'n/a' if _missing(pnl) else f'{float(pnl):+,.2f}'} ({_pct(g('net_pct'))} net)"),
            ("Entry", f"{price(g('entry_price'))} at {utc(g('entry_ts'))}"),
            ("Exit", f"{price(g('exit_price'))} at {utc(g('exit_ts'))}"),
            ("TP1 hit", "yes" if g("tp1_hit") else "no"),
        ]
    return _message(
        "trade_closed",
        f"trade_closed:{g('candidate_id')}:{status}",
        title,
        rows,
        dict(t),
        CLOSE_REASONS.get(status, ""),
    )


def options_decision(day: str, block: Sequence[str], payload: Mapping[str, Any] | None = None) -> Message:
    """The options desk's daily decision: ``block`` is the seed 000 sample block as printed by ``trader options
    score-latest`` (:func:`pipeline.core.options_explain.decision_block`), sent as a monospace ``pre`` entity.
    Dedup key ``options_decision:<day>``."""
    key = f"options_decision:{day}"
    r = ref(key)
    text = "\n".join(block)
    md = f"*{escape_md(f'Options desk decision {day}')}*\n```\n{escape_code(text)}\n```\nref `{r}`"
    plain = f"Options desk decision {day}\n{text}\nref {r}"
    markdown, plain = _fit(md, plain)
    return Message("options_decision", key, markdown, plain, _json_safe({"day": day, **(payload or {})}))


def data_stale(source: str, newest: str, age_hours: float, max_age_hours: float) -> Message:
    """An input is older than its bound: ``source`` (e.g. ``candles BTC/USDT 15m``, ``onchain``), ``newest`` (when its
    newest row ends, text), ``age_hours`` and the configured bound. Dedup key ``data_stale:<source>:<newest>``: one
    message per staleness episode (fresh data followed by a new gap raises a new one)."""
    rows = [("Newest data", newest), ("Age", f"{age_hours:,.1f} h (limit {max_age_hours:,.1f} h)")]
    payload = {"source": source, "newest": newest, "age_hours": age_hours, "max_age_hours": max_age_hours}
    return _message("data_stale", f"data_stale:{source}:{newest}", f"⚠ Stale data: {source}", rows, payload)


def run_failure(job: str, run_id: str, error: str, when: str = "", url: str = "") -> Message:
    """A Dagster run failed: job name, run id, the error (first 600 characters), optional time and UI link.
    Dedup key ``run_failure:<run_id>``."""
    err = error if len(error) <= 600 else error[:597] + "..."
    rows = [("Run", run_id), ("Error", err)] + ([("When", when)] if when else []) + ([("Open", url)] if url else [])
    payload = {"job": job, "run_id": run_id, "error": error, "when": when, "url": url}
    return _message("run_failure", f"run_failure:{run_id}", f"🛑 Run failed: {job}", rows, payload)


#: the risk engine's states, most permissive first
RISK_STATES = ("ACTIVE", "REDUCING", "HALTED")


def risk_state(desk: str, previous: str, state: str, ts_ms: int, reason: str = "", **figures: float) -> Message:
    """A desk's risk engine moved from ``previous`` to ``state`` (``ACTIVE / REDUCING / HALTED``) at ``ts_ms`` (epoch
    ms) for ``reason``; ``figures`` (e.g. ``drawdown_pct=-12.5``) are listed. Dedup key
    ``risk_state:<desk>:<ts_ms>:<state>``."""
    icon = {"ACTIVE": "🟢", "REDUCING": "🟠", "HALTED": "🔴"}.get(state, "•")
    rows = [("From", previous), ("At", utc(ts_ms))] + ([("Why", reason)] if reason else [])
    rows += [(k, _num(v, ",.4g")) for k, v in figures.items()]
    payload = {"desk": desk, "previous": previous, "state": state, "ts": ts_ms, "reason": reason, **figures}
    return _message("risk_state", f"risk_state:{desk}:{ts_ms}:{state}", f"{icon} {desk} risk: {state}", rows, payload)


def hello(stamp: str) -> Message:
    """``trader notify test``: one message proving the chat is reachable (dedup key ``test:<stamp>``)."""
    return _message("test", f"test:{stamp}", "Trader notifications work", [("Sent", stamp)], {"stamp": stamp})


def _num(v, spec: str = ".4g") -> str:
    return "n/a" if _missing(v) else format(float(v), spec)


def setup_messages(log_rows, trades) -> list[Message]:
    """The setup scanner's messages of one live step: a :func:`new_signal` per ``signals.log`` row (its ``payload``
    JSON plan plus ``signal_id → candidate_id, symbol, timeframe, ts, model_version``) and a :func:`trade_closed`
    per closed ``paper.trades`` row (status from the engine's exit reason: :func:`pipeline.core.setups.seed_status`;
    ``net_pct`` = net PnL / entry notional in percent)."""
    out = []
    for r in log_rows.to_dict("records"):
        plan = json.loads(r["payload"]) if isinstance(r.get("payload"), str) else dict(r.get("payload") or {})
        keys = ("symbol", "timeframe", "ts", "model_version")
        out.append(new_signal({**plan, "candidate_id": r["signal_id"], **{k: r.get(k) for k in keys}}))
    if len(trades):
        status = seed_status(trades["exit_reason"].to_numpy(object), trades["tp1_hit"].fillna(False).to_numpy(bool))
        for st, r in zip(status, trades.to_dict("records"), strict=True):
            net = 100.0 * r["pnl"] / r["notional"] if r.get("notional") else None
            out.append(
                trade_closed(
                    {**r, "candidate_id": r["signal_id"], "side": r["direction"], "status": st, "net_pct": net}
                )
            )
    return out
