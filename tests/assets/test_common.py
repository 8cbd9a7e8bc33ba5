"""The shared asset wiring: the one skip prologue and the check wrappers, on a real DuckDB file."""

import dagster as dg
import pandas as pd

from assets.checks import books_reconcile_result, count_result, reconcile_result
from assets.common import if_unchanged
from assets.keys import ACCOUNTING_RECONCILES, STATUSES_VALID, table_key
from warehouse import io


def test_if_unchanged_skips_only_on_the_recorded_fingerprint(tmp_path):
    from types import SimpleNamespace

    ctx = SimpleNamespace(asset_key=table_key("signals.setups"), instance=dg.DagsterInstance.ephemeral())
    with io.connect(str(tmp_path / "w.duckdb")) as con:
        assert if_unchanged(ctx, con, "signals.setups", "fp1", "same") is None  # never recorded
        io.record_inputs(con, "signals.setups", "fp1")
        skip = if_unchanged(ctx, con, "signals.setups", "fp1", "same", checks=(STATUSES_VALID,), metadata={"n": 1})
        assert isinstance(skip, dg.MaterializeResult) and skip.metadata["status"] == "same" and skip.metadata["n"] == 1
        assert [c.check_name for c in skip.check_results] == [STATUSES_VALID] and skip.check_results[0].passed
        assert if_unchanged(ctx, con, "signals.setups", "fp2", "same") is None  # inputs changed
        assert if_unchanged(ctx, con, "signals.setups", "fp1", "same", force=True) is None
        assert (
            if_unchanged(ctx, con, "signals.setups", "fp1", "same", require_table=True) is None
        )  # the table does not exist


def test_check_wrappers():
    trades = pd.DataFrame({"pnl": [10.0, -5.0], "entry_ts": [1, 2], "exit_ts": [2, 3]})
    assert reconcile_result(105.0, 100.0, trades).passed
    bad = reconcile_result(106.0, 100.0, trades)
    assert not bad.passed and bad.metadata["abs_error"].value == 1.0 and bad.check_name == ACCOUNTING_RECONCILES
    books = books_reconcile_result({"a": (105.0, trades), "b": (100.0, None)}, 100.0)
    assert books.passed and set(books.metadata) == {"a", "b"}
    assert not books_reconcile_result({"a": (90.0, trades)}, 100.0).passed
    assert count_result(STATUSES_VALID, 0).passed and not count_result(STATUSES_VALID, 2).passed
    assert table_key("signals.setups") == dg.AssetKey(["signals", "setups"])


def test_a_noop_materialisation_carries_the_figures_of_the_run_that_computed_them():
    """Issue 14 item 1: ``carried_forward`` re-emits the last figures, passing over a status-only event (an old no-op
    run) and pointing at the run that computed them through a chain of no-op runs."""
    import dagster as dg

    from assets.common import carried_forward

    mode = {"v": "compute"}

    @dg.asset
    def thing(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        if mode["v"] == "compute":
            return dg.MaterializeResult(metadata={"auc": 0.61, "plot": dg.MetadataValue.md("![p](data:x)")})
        if mode["v"] == "old_skip":
            return dg.MaterializeResult(metadata={"status": "unchanged"})
        return dg.MaterializeResult(metadata=carried_forward(context, {"status": "unchanged"}))

    with dg.instance_for_test() as inst:
        first = dg.materialize([thing], instance=inst)
        mode["v"] = "old_skip"
        dg.materialize([thing], instance=inst)
        mode["v"] = "carry"
        for _ in range(2):
            r = dg.materialize([thing], instance=inst)
            md = r.asset_materializations_for_node("thing")[0].metadata
            assert md["status"].value == "unchanged" and md["auc"].value == 0.61 and "data:x" in md["plot"].value
            assert md["computed_in_run"].value == first.run_id and list(md)[:3] == [
                "status",
                "computed_in_run",
                "computed_at",
            ]


def test_rounded_keeps_four_significant_digits_and_the_integer_part():
    """Issue 14 item 4: the one rounding of metadata, hand-computed."""
    import numpy as np

    from assets.common import md_table, rounded

    assert [rounded(v) for v in (0.0123456, 52.3456, 123456.78, -0.25846153846, np.float32(1 / 3), 0.0, 7)] == [
        0.01235,
        52.35,
        123457.0,
        -0.2585,
        0.3333,
        0.0,
        7,
    ]
    assert rounded(1.215966923e13) == 1.216e13 and rounded(-12345678.9) == -12350000.0  # huge: 4 digits too
    assert np.isnan(rounded(float("nan"))) and rounded(True) is True and rounded("0.123456") == "0.123456"
    assert rounded({"auc": 0.512345, "n": 12, "nested": [0.987654]}) == {"auc": 0.5123, "n": 12, "nested": [0.9877]}
    assert rounded(dg.MetadataValue.float(0.005156945527970263)).value == 0.005157  # carried-forward old figure
    table = md_table(pd.DataFrame({"p": [0.123456789, 1234567.891], "s": ["a", "b"]})).value
    assert "0.1235" in table and "1234568" in table and "e+06" not in table and "0.123456" not in table
    assert "67234.5" in md_table(pd.DataFrame({"entry": [67234.51]}), digits=6).value  # price levels keep 6 digits
