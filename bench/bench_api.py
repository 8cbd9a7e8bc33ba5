"""REST API load test (run by hand; issue 13 item 14): a bounded load on 127.0.0.1 against real uvicorn servers
over a real published snapshot, printing a table of the project's API against a named baseline measured in the
same run.

    python bench/bench_api.py [--warehouse PATH] [--requests 4000] [--concurrency 20] [--baseline-ref 7116bab]

* snapshot: ``signals.options_daily`` and ``signals.options_trades`` copied from ``--warehouse`` (read-only; default
  the configured warehouse) and published with :func:`warehouse.publish.publish_snapshot` into a temporary folder;
* ``project``: :func:`pipeline.api.create_app` served with :func:`pipeline.api.uvicorn_config` (one read-only
  connection per snapshot version, per-request cursors, cached health, h11 with a capped request head);
* ``baseline``: ``pipeline/api.py`` at git ``--baseline-ref`` (before issue 13: a new read-only connection for
  every query, three per signal request; health queried every call; uvicorn's defaults);
* load: ``--concurrency`` keep-alive connections from one asyncio client process, a fixed mix of the four GET
  endpoints (health, latest, one of 1,000 dates, one of 120 pages of 50; so a run mixes cache misses and hits) with a token, ``--requests`` requests in total after a
  warm-up of 200; latency from send to the end of the body. Non-200 answers are counted as errors.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from pipeline.api import TokenStore  # noqa: E402
from warehouse.publish import publish_snapshot  # noqa: E402

_SERVER = """
import sys, importlib.util
sys.path.insert(0, {repo!r})
import uvicorn
spec = importlib.util.spec_from_file_location("api_under_test", {module!r})
m = importlib.util.module_from_spec(spec); sys.modules[spec.name] = m; spec.loader.exec_module(m)
app = m.create_app({serving!r}, {tokens!r})
if hasattr(m, "uvicorn_config"):
    uvicorn.Server(m.uvicorn_config(app, port={port}, log_level="warning", access_log=False)).run()
else:
    uvicorn.run(app, host="127.0.0.1", port={port}, log_level="warning", access_log=False)
"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _get(reader, writer, path: str, token: str) -> int:
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Token {token}\r\n\r\n".encode())
    await writer.drain()
    status = int((await reader.readline()).split()[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        k, _, v = line.decode().partition(":")
        if k.lower() == "content-length":
            length = int(v)
    await reader.readexactly(length)
    return status


async def _load(port: int, token: str, paths: list[str], n: int, concurrency: int) -> tuple[list[float], int, float]:
    lat: list[float] = []
    errors = 0
    counter = iter(range(n))

    async def worker(i: int):
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for k in counter:
                t0 = time.perf_counter()
                status = await _get(reader, writer, paths[(k + i) % len(paths)], token)
                lat.append(time.perf_counter() - t0)
                errors += status != 200
        finally:
            writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return lat, errors, time.perf_counter() - t0


def measure(name: str, module: Path, serving: Path, tokens: Path, token: str, args, few: bool = False) -> dict:
    port = _port()
    script = _SERVER.format(repo=str(REPO), module=str(module), serving=str(serving), tokens=str(tokens), port=port)
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        for _ in range(1200):  # up to 60 s: the server's imports are slow on a loaded machine
            try:
                socket.create_connection(("127.0.0.1", port), 0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        else:
            raise SystemExit(f"{name}: the server did not listen on port {port} within 60 s")
        days = [
            str(d)
            for d in duckdb.connect(str(serving), read_only=True)
            .execute("SELECT date FROM signals.options_daily ORDER BY hash(date) LIMIT 1000")
            .fetchnumpy()["date"]
            .astype("datetime64[D]")
        ]
        paths = [
            p
            for i, d in enumerate(days)
            for p in (
                "/api/v1/health/",
                "/api/v1/signals/latest/",
                f"/api/v1/signals/{d}/",
                f"/api/v1/signals/?page={i % 120 + 1}",
            )
        ]
        if few:  # the same four URLs again and again: every answer after the warm-up is a cache hit
            paths = paths[:4]
        asyncio.run(_load(port, token, paths, 200, args.concurrency))  # warm-up
        lat, errors, wall = asyncio.run(_load(port, token, paths, args.requests, args.concurrency))
    finally:
        proc.terminate()
        proc.wait(10)
    q = statistics.quantiles(lat, n=100)
    return {
        "variant": name,
        "requests": len(lat),
        "errors": errors,
        "req/s": len(lat) / wall,
        "p50 ms": q[49] * 1e3,
        "p99 ms": q[98] * 1e3,
        "max ms": max(lat) * 1e3,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--warehouse", default=None, help="source DuckDB (opened read-only); default: the configured one")
    ap.add_argument("--requests", type=int, default=4000)
    ap.add_argument("--concurrency", type=int, default=20)
    ap.add_argument("--baseline-ref", default="7116bab", help="git revision whose pipeline/api.py is the baseline")
    args = ap.parse_args()
    if args.warehouse is None:
        from pipeline.config import settings

        args.warehouse = settings().warehouse.path
    with tempfile.TemporaryDirectory(prefix="bench_api_") as d:
        tmp = Path(d)
        with duckdb.connect(str(tmp / "wh.duckdb")) as con:
            con.execute(f"ATTACH '{args.warehouse}' AS src (READ_ONLY)")
            con.execute("CREATE SCHEMA signals")
            for t in ("signals.options_daily", "signals.options_trades"):
                con.execute(f"CREATE TABLE {t} AS SELECT * FROM src.{t}")
            con.execute("DETACH src")
            rows = publish_snapshot(
                con,
                ["signals.options_daily", "signals.options_trades"],
                str(tmp / "serving.duckdb"),
                str(tmp / "exports"),
            )
        tokens = tmp / "tokens.sqlite"
        token = TokenStore(tokens).create("bench")
        baseline = tmp / "api_baseline.py"
        baseline.write_bytes(
            subprocess.check_output(["git", "-C", str(REPO), "show", f"{args.baseline_ref}:pipeline/api.py"])
        )
        print(
            f"snapshot: {rows}; {args.requests} requests, concurrency {args.concurrency}, 127.0.0.1; cpus={os.cpu_count()}, load average {os.getloadavg()[0]:.1f}"
        )
        results = [
            measure(
                f"baseline (pipeline/api.py at {args.baseline_ref})",
                baseline,
                tmp / "serving.duckdb",
                tokens,
                token,
                args,
            ),
            measure(
                "project (connection per version)",
                REPO / "pipeline" / "api.py",
                tmp / "serving.duckdb",
                tokens,
                token,
                args,
            ),
            measure(
                "project, 4 URLs only (cache hits)",
                REPO / "pipeline" / "api.py",
                tmp / "serving.duckdb",
                tokens,
                token,
                args,
                few=True,
            ),
        ]
    cols = list(results[0])
    print(" | ".join(f"{c:>12}" if c != "variant" else f"{c:<42}" for c in cols))
    for r in results:
        print(
            " | ".join(
                f"{r[c]:<42}" if c == "variant" else f"{r[c]:>12.1f}" if isinstance(r[c], float) else f"{r[c]:>12}"
                for c in cols
            )
        )


if __name__ == "__main__":
    main()
