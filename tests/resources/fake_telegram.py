"""A fake Telegram Bot API on 127.0.0.1 for the notifier tests: a real HTTP server (threaded) that records every
``sendMessage`` request and answers from a script.

Script entries (consumed one per request; when empty every request succeeds): ``"ok"``, ``("429", retry_after)``,
``"500"``, ``("timeout", seconds)`` (records the request, then answers only after ``seconds``: longer than the
client's read timeout, so the client sees a timeout although the request arrived), ``"parse"`` (400 "can't parse
entities"). Besides the script, a MarkdownV2 request whose text breaks the escaping rules (:func:`markdown_v2_error`)
is answered 400 "can't parse entities", as Telegram does.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_RESERVED = set("_*[]()~`>#+-=|{}.!")


def markdown_v2_error(text: str) -> str | None:
    """A simplified MarkdownV2 checker (Bot API "MarkdownV2 style"): outside entities every reserved character must
    be escaped; ``*bold*``, ``_italic_``, inline `` `code` `` and ```` ```pre``` ```` blocks must be closed; inside
    code only ``\\`` and `` ` `` are escaped. Returns the problem, or None when the text parses."""
    i, n, open_marks = 0, len(text), []
    while i < n:
        c = text[i]
        if text.startswith("```", i):
            j = i + 3
            while j < n and not text.startswith("```", j):
                if text[j] == "\\":
                    if j + 1 >= n or text[j + 1] not in "\\`":
                        return f"bad escape in pre at {j}"
                    j += 2
                    continue
                j += 1
            if j >= n:
                return f"unclosed pre at {i}"
            i = j + 3
            continue
        if c == "\\":
            if i + 1 >= n or not (text[i + 1] in _RESERVED or text[i + 1] == "\\"):
                return f"bad escape at {i}"
            i += 2
            continue
        if c == "`":
            j = text.find("`", i + 1)
            if j < 0:
                return f"unclosed code at {i}"
            i = j + 1
            continue
        if c in "*_":
            if open_marks and open_marks[-1] == c:
                open_marks.pop()
            else:
                open_marks.append(c)
            i += 1
            continue
        if c in _RESERVED:
            return f"character '{c}' is reserved and must be escaped with the preceding '\\' (at {i})"
        i += 1
    return f"unclosed entity {open_marks[-1]}" if open_marks else None


class FakeTelegram:
    """Start with ``FakeTelegram()``, ``.url`` is its ``api_base``; ``.requests`` the recorded bodies (dicts with
    ``path`` and ``at``, the server's wall time); ``.stop()`` / ``.start()`` simulate an outage on the same port."""

    def __init__(self, port: int = 0):
        self.requests: list[dict] = []
        self.script: list = []
        self._lock = threading.Lock()
        self._next_id = 1000
        self._port = port
        self._server: ThreadingHTTPServer | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def start(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # quiet
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with fake._lock:
                    fake.requests.append({**body, "path": self.path, "at": time.time()})
                    step = fake.script.pop(0) if fake.script else "ok"
                    fake._next_id += 1
                    mid = fake._next_id
                try:
                    fake._answer(self, step, body, mid)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self._port), Handler)
        self._server.daemon_threads = True
        self._port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _answer(self, h: BaseHTTPRequestHandler, step, body: dict, mid: int) -> None:
        def reply(status: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            h.send_response(status)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data)

        kind, arg = (step, None) if isinstance(step, str) else step
        if kind == "timeout":
            time.sleep(arg)
            kind = "ok"
        if kind == "429":
            return reply(
                429,
                {
                    "ok": False,
                    "error_code": 429,
                    "description": f"Too Many Requests: retry after {arg}",
                    "parameters": {"retry_after": arg},
                },
            )
        if kind == "500":
            return reply(500, {"ok": False, "error_code": 500, "description": "Internal Server Error"})
        problem = markdown_v2_error(body.get("text", "")) if body.get("parse_mode") == "MarkdownV2" else None
        if kind == "parse" or problem:
            desc = f"Bad Request: can't parse entities: {problem or 'scripted'}"
            return reply(400, {"ok": False, "error_code": 400, "description": desc})
        reply(
            200, {"ok": True, "result": {"message_id": mid, "chat": {"id": body.get("chat_id")}, "text": body["text"]}}
        )
