"""Content hashes of the warehouse tables, to prove that a refactor did not change behaviour.

Usage::

    python bench/table_hashes.py snapshot warehouse/data/warehouse.duckdb > before.json
    # ... change the code, run `trader run` on a fresh clone ...
    python bench/table_hashes.py snapshot /fresh/warehouse/data/warehouse.duckdb > after.json
    python bench/table_hashes.py compare before.json after.json     # exit 1 when a table differs

Every table of the schemas ``market``, ``features``, ``regimes``, ``ml``, ``signals`` and ``backtest`` is hashed
row by row (order-independent: an md5 of each row's text, then an md5 over the sorted row hashes). Columns that
identify a run or record a wall-clock time (or a duration) are left out, because they differ between any two runs:
``IGNORED_COLUMNS``. Backtest rows are keyed by ``desk|strategy`` instead of their ``run_id`` (which contains a
hash of the configuration), and model rows by ``model_name`` (``mlflow_run_id`` differs per run).
"""

from __future__ import annotations

import argparse
import json
import sys

import duckdb

SCHEMAS = ("market", "features", "regimes", "ml", "signals", "backtest")
IGNORED_COLUMNS = {
    "mlflow_run_id",
    "dagster_run_id",
    "run_id",
    "model_run_id",
    "trained_at",
    "created_at",
    "tuned_at",
    "scanned_at",
    "retro_at",
    "ingested_at",
    "updated_at",
    "checked_at",
    "published_at",
    "fit_seconds",
    "train_seconds",
}


def snapshot(path: str) -> dict[str, dict]:
    """``{schema.table: {"rows": n, "md5": hex, "columns": [...]}}`` of the warehouse at ``path`` (read-only)."""
    con = duckdb.connect(path, read_only=True)
    out = {}
    tables = con.execute(
        "SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema IN "
        f"({', '.join(repr(s) for s in SCHEMAS)}) ORDER BY 1, 2"
    ).fetchall()
    for schema, table in tables:
        name = f"{schema}.{table}"
        cols = [
            r[0]
            for r in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ? "
                "ORDER BY ordinal_position",
                [schema, table],
            ).fetchall()
        ]
        keep = [c for c in cols if c not in IGNORED_COLUMNS]
        src = f"{name} t"
        if schema == "backtest" and "run_id" in cols and table != "runs":
            # backtest rows keyed by desk|strategy, not by a run id that hashes the configuration
            src = (
                f"{name} t JOIN (SELECT run_id, desk || '|' || strategy AS run_key FROM backtest.runs) k USING (run_id)"
            )
            keep = ["run_key", *keep]
        row = "md5(concat_ws('\x1f', " + ", ".join(f"coalesce(CAST(\"{c}\" AS VARCHAR), '<null>')" for c in keep) + "))"
        n, digest = con.execute(
            f"SELECT count(*), md5(coalesce(string_agg(h, ',' ORDER BY h), '')) FROM (SELECT {row} AS h FROM {src})"
        ).fetchone()
        per_col = {}
        if digest:
            exprs = ", ".join(
                f"md5(coalesce(string_agg(coalesce(CAST(\"{c}\" AS VARCHAR), '<null>'), ',' ORDER BY "
                f"coalesce(CAST(\"{c}\" AS VARCHAR), '<null>')), ''))"
                for c in keep
            )
            per_col = dict(zip(keep, con.execute(f"SELECT {exprs} FROM {src}").fetchone()))
        out[name] = {"rows": int(n), "md5": digest, "columns": keep, "column_md5": per_col}
    con.close()
    return out


def compare(before: dict, after: dict) -> list[str]:
    """Human-readable differences (empty when every table is the same)."""
    diffs = []
    for name in sorted(set(before) | set(after)):
        a, b = before.get(name), after.get(name)
        if a is None or b is None:
            diffs.append(f"{name}: only in {'after' if a is None else 'before'}")
        elif a["columns"] != b["columns"]:
            diffs.append(f"{name}: columns differ: {sorted(set(a['columns']) ^ set(b['columns']))}")
        elif a["md5"] != b["md5"]:
            cols = [c for c in a["columns"] if a.get("column_md5", {}).get(c) != b.get("column_md5", {}).get(c)]
            diffs.append(f"{name}: content differs ({a['rows']} rows before, {b['rows']} after; columns: {cols})")
    return diffs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("snapshot", help="print the table hashes of a warehouse file as JSON")
    s.add_argument("warehouse")
    c = sub.add_parser("compare", help="compare two snapshots; exit 1 when a table differs")
    c.add_argument("before")
    c.add_argument("after")
    args = p.parse_args(argv)
    if args.cmd == "snapshot":
        json.dump(snapshot(args.warehouse), sys.stdout, indent=1, sort_keys=True)
        print()
        return 0
    before, after = (json.load(open(f)) for f in (args.before, args.after))
    diffs = compare(before, after)
    for name in sorted(before):
        print(
            f"{'DIFF' if any(d.startswith(name + ':') for d in diffs) else 'same'}  {name:40s} {before[name]['rows']:>12,} rows"
        )
    for d in diffs:
        print(d)
    print(f"{len(before)} tables, {len(diffs)} differ")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
