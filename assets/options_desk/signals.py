"""Group ``options_desk``: daily on-chain regime features, the fusion engine's daily signal and trade decisions.

Pure code: :mod:`pipeline.core.onchain_signals` (features, indicator regimes, sources) and
:mod:`pipeline.core.options_fusion` (the seed's score / state / overlay / tactical-put / structure / cooldown
tables). These assets only read the warehouse, call them and write ``features.onchain``,
``signals.options_daily`` and ``signals.options_trades``. Each is recomputed over the whole history when its
inputs change (about 6,400 days: under a second), and skipped otherwise.
"""

import dagster as dg
import numpy as np
import pandas as pd

from assets.checks import count_result
from assets.common import POOL, if_unchanged, md_table, rounded
from assets.keys import (
    GROUP_OPTIONS,
    ONCHAIN_DAILY,
    ONCHAIN_FEATURES,
    ONE_ROW_PER_DAY,
    OPTIONS_CHAMPION,
    OPTIONS_DAILY,
    OPTIONS_TRADES,
    RECENT_DAYS_AVAILABLE,
    SENTIMENT_DAILY,
    STATES_VALID,
)
from models.options_direction import option_signals
from pipeline.config import settings
from pipeline.core.onchain_signals import FEATURE_COLUMNS, source_agreement
from pipeline.core.onchain_signals import onchain_features as build_onchain_features
from pipeline.core.options_explain import recent_availability
from pipeline.core.options_fusion import STATES, decide_days
from pipeline.core.validity import calendar_defects, invalid_states
from resources.warehouse import WarehouseResource
from warehouse import io, readers

CODE_VERSION = "4"


@dg.asset(
    key=ONCHAIN_FEATURES,
    group_name=GROUP_OPTIONS,
    pool=POOL,
    kinds={"duckdb", "python"},
    code_version=CODE_VERSION,
    deps=[ONCHAIN_DAILY, SENTIMENT_DAILY],
    check_specs=[
        dg.AssetCheckSpec(
            ONE_ROW_PER_DAY,
            asset=ONCHAIN_FEATURES,
            blocking=True,
            description="A full daily calendar without duplicate dates.",
        )
    ],
    description=f"{len(FEATURE_COLUMNS)} daily regime features (MDIA, MVRV composite and 60d view, MVRV-LS, whales, "
    "sentiment) and the three indicator regimes with the source used each day (primary, proxy or unavailable); "
    "features.onchain_source_agreement: how often primary and proxy regimes agree where both exist.",
)
def features_onchain(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    cfg = settings()
    with warehouse.connect() as con:
        inputs = readers.asset_fingerprints(["market.onchain_daily", "market.sentiment_daily"])
        fp = io.inputs_fingerprint(con, inputs, extra=cfg.options_desk.regimes.model_dump_json() + CODE_VERSION)
        if skip := if_unchanged(
            context, con, "features.onchain", fp, "inputs unchanged; not recomputed", checks=(ONE_ROW_PER_DAY,)
        ):
            return skip
        onchain = readers.table(con, "market.onchain_daily", order_by="date")
        fng = io.read_df(con, "SELECT date, fng_value FROM market.sentiment_daily ORDER BY date")
        f = build_onchain_features(onchain, fng, cfg.options_desk.regimes)
        f["available_at"] = f["date"] + pd.Timedelta(days=1) + pd.Timedelta(hours=cfg.onchain.publication_lag_hours)
        agree = source_agreement(f)
        with io.transaction(con):
            io.replace_table(con, "features.onchain", f, date_columns=("date",))
            io.replace_table(con, "features.onchain_source_agreement", agree)
            io.record_inputs(con, "features.onchain", fp)
    dup, daily = calendar_defects(f["date"])
    check = count_result(ONE_ROW_PER_DAY, dup + (0 if daily else 1), "duplicates_or_gaps")
    return dg.MaterializeResult(metadata=rounded(_features_metadata(f, agree)), check_results=[check])


def _features_metadata(f: pd.DataFrame, agree: pd.DataFrame) -> dict:
    sources = pd.concat(
        [f[c].value_counts().rename(c) for c in ("mdia_source", "whale_source", "mvrv_ls_source")], axis=1
    )
    return {
        "dagster/row_count": len(f),
        "first_date": str(f["date"].min().date()),
        "last_date": str(f["date"].max().date()),
        "features": len(FEATURE_COLUMNS),
        "sources_days": md_table(sources.fillna(0).astype(int).reset_index()),
        "primary_vs_proxy_agreement": md_table(agree),
    }


def champion_scores(con, names: dict[str, str]) -> pd.DataFrame:
    """Per day the champions' scores: ``date``, ``p_long``, ``p_short``, ``p_long_version``, ``p_short_version``.

    ``names``: registered model per score (``options_desk.models.names``). The champion of each model is its latest
    ``ml.model_runs`` row with ``promoted``; empty columns if none.
    """
    out = None
    for t, name in names.items():
        s = readers.options_champion_scores(con, name).rename(columns={"p": t, "model_version": f"{t}_version"})
        s[f"{t}_version"] = s[f"{t}_version"].map(lambda v: f"{name} v{v}" if isinstance(v, str) else None)
        out = s if out is None else out.merge(s, on="date", how="outer")
    return out


def daily_decisions(f: pd.DataFrame, price: pd.Series, scores: pd.DataFrame, p, m) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(signals.options_daily, signals.options_trades)`` from the on-chain features, BTC price and champion scores:
    :func:`pipeline.core.options_fusion.decide_days` plus the champions' scores, option signals and versions."""
    f = f.assign(date=pd.to_datetime(f["date"]))
    sc = f[["date"]].merge(scores.assign(date=pd.to_datetime(scores["date"])), on="date", how="left").set_index(f.index)
    daily, trades = decide_days(f, f["date"].map(price), p, sc[["p_long", "p_short"]])
    daily["available_at"] = f["available_at"].to_numpy()
    daily = pd.concat(
        [
            daily,
            sc[["p_long", "p_short"]],
            option_signals(sc["p_long"], sc["p_short"], m.call_threshold, m.put_threshold),
            sc[["p_long_version", "p_short_version"]],
        ],
        axis=1,
    ).assign(model_gate_mode=p.model_gate.mode)
    vers, day = sc.set_index("date"), pd.to_datetime(trades["date"])
    trades["model_version"] = np.where(
        trades["direction"].astype(int) > 0, day.map(vers["p_long_version"]), day.map(vers["p_short_version"])
    )
    return daily, trades


def _results(daily: pd.DataFrame, trades: pd.DataFrame, unchanged: bool):
    """The two materialisations and the two checks of ``options_signals``."""
    share, reasons, window = recent_availability(daily, 90)
    status = {"status": "inputs unchanged; not recomputed"} if unchanged else {}
    taken = trades[trades["cooldown_status"] == "taken"]
    yield dg.MaterializeResult(
        asset_key=OPTIONS_DAILY,
        metadata=rounded(
            {
                **status,
                "dagster/row_count": len(daily),
                "last_day": str(pd.Timestamp(daily["date"].iloc[-1]).date()),
                "states_by_year": md_table(
                    daily.assign(year=pd.to_datetime(daily["date"]).dt.year)
                    .groupby(["year", "state"])
                    .size()
                    .unstack(fill_value=0)
                    .reset_index(),
                    40,
                ),
                "latest": md_table(
                    daily.tail(5)[["date", "state", "score", "confidence", "overlay", "size", "state_reason"]]
                ),
            }
        ),
    )
    yield dg.MaterializeResult(
        asset_key=OPTIONS_TRADES,
        metadata=rounded(
            {
                **status,
                "dagster/row_count": len(trades),
                "taken": len(taken),
                "taken_by_type": md_table(taken["trade_type"].value_counts().rename_axis("trade_type").reset_index()),
                "latest_taken": md_table(
                    taken.tail(10)[
                        [
                            "date",
                            "trade_type",
                            "structure",
                            "strike_long",
                            "strike_short",
                            "expiry",
                            "size",
                            "confidence",
                        ]
                    ]
                ),
            }
        ),
    )
    yield count_result(STATES_VALID, invalid_states(daily, STATES), asset=OPTIONS_DAILY)
    yield dg.AssetCheckResult(
        check_name=RECENT_DAYS_AVAILABLE,
        asset_key=OPTIONS_DAILY,
        passed=bool(share < 0.5),
        severity=dg.AssetCheckSeverity.WARN,
        metadata=rounded({"unavailable_share_90d": share, **window, "reasons": md_table(reasons)}),
    )


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            OPTIONS_DAILY,
            group_name=GROUP_OPTIONS,
            deps=[ONCHAIN_FEATURES, OPTIONS_CHAMPION],
            kinds={"duckdb"},
            description="One row per day: indicator regimes and sources, score, conflicts, confidence, state "
            "and reason, trade type, overlay (kind, size/DTE multipliers, reason), size, tactical put, "
            "champion p_long / p_short with signal_option_call / signal_option_put and model versions.",
        ),
        dg.AssetSpec(
            OPTIONS_TRADES,
            group_name=GROUP_OPTIONS,
            deps=[ONCHAIN_FEATURES, OPTIONS_CHAMPION],
            kinds={"duckdb"},
            description="The DailySignal record: one row per trade decision with structure, strikes, expiry/DTE, "
            "size, confidence, reason and cooldown status (taken / cooldown).",
        ),
    ],
    check_specs=[
        dg.AssetCheckSpec(
            STATES_VALID,
            asset=OPTIONS_DAILY,
            blocking=True,
            description="States in the seed's 8; no trade without a state; sizes >= 0.",
        ),
        dg.AssetCheckSpec(
            RECENT_DAYS_AVAILABLE,
            asset=OPTIONS_DAILY,
            description="WARN: share of the last 90 calendar days (ending at the latest stored day) where an "
            "indicator is unavailable or the day has no row; metadata: the window and the reasons.",
        ),
    ],
    pool=POOL,
    code_version=CODE_VERSION,
    can_subset=False,
)
def options_signals(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    cfg = settings()
    p, m = cfg.options_desk.decisions, cfg.options_desk.models
    with warehouse.connect() as con:
        champions = ", ".join(readers.champion_run_ids(con, list(m.names.values())))
        fp = io.inputs_fingerprint(
            con,
            readers.asset_fingerprints(["features.onchain"]),
            extra=champions + p.model_dump_json() + m.model_dump_json() + CODE_VERSION,
        )
        unchanged = io.inputs_unchanged(con, "signals.options", fp)
        if not unchanged:
            daily, trades = daily_decisions(
                readers.table(con, "features.onchain", order_by="date"),
                readers.btc_price(con),
                champion_scores(con, m.names),
                p,
                m,
            )
            with io.transaction(con):
                io.replace_table(con, "signals.options_daily", daily, date_columns=("date",))
                io.replace_table(con, "signals.options_trades", trades, date_columns=("date", "expiry"))
                io.record_inputs(con, "signals.options", fp)
        daily = readers.table(con, "signals.options_daily", order_by="date")
        trades = readers.table(con, "signals.options_trades", order_by="date")
    yield from _results(daily, trades, unchanged)
