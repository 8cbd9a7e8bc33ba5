"""On-chain and sentiment normalisation (pure).

Vendors in ``shared/data/onchain`` overlap, disagree in methodology and have holes (see that
folder's README). This module turns their long-format rows (``date, source, metric, value``) into
one row per UTC day with documented columns, following three rules:

1. **One definition per column.** A column only draws from sources that measure the *same* thing
   with the same methodology (e.g. Coin Metrics MVRV from the community CSV and from the CM API).
   Other vendors get their own column (``mvrv_cryptoquant``, ``mvrv_glassnode``); exchange metrics
   of different Coin Metrics label vintages are never mixed (``exchange_supply_btc`` is the
   2026-08 vintage; ``exchange_*_v2026_03`` the 2026-03 vintage with its flows).
2. **Documented priority.** Candidates are listed in priority order; for each day the first with a
   value wins, and ``<column>_source`` records which one (for multi-source columns).
3. **Checked splices.** Where a lower-priority candidate extends a column, it must agree with the
   higher-priority ones on every overlapping day within ``rtol``; otherwise
   :class:`OnchainSpliceError` is raised naming column, sources, day and difference.

Point-in-time: the row for day ``D`` (Coin Metrics: ``D 00:00 -> D+1 00:00 UTC``) is usable from
``available_at = D + 1 day + publication_lag`` (UTC, naive timestamps).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class SourceFile:
    """One vendor file of ``data_dir/onchain`` (``source`` is the id stored in ``raw.onchain_metrics``)."""

    source: str
    filename: str
    date_column: str
    vendor: str
    # the vendor's explicit "no value" spellings (checked on the real files: every one of them uses only the empty
    # cell); any other non-numeric cell of a numeric column is garbage and rejects the file
    missing_markers: tuple[str, ...] = ("",)


ONCHAIN_SOURCES: list[SourceFile] = [
    SourceFile("cm_2026_03", "btc_daily.csv.gz", "time", "Coin Metrics community CSV (Mar-2026 snapshot)"),
    SourceFile(
        "cm_rich_2025_08",
        "btc_daily_cm_rich_2023-08_2025-08.csv.gz",
        "time",
        "Coin Metrics full community set (Aug-2025)",
    ),
    SourceFile(
        "cm_api_2026_08", "btc_daily_cm_api_mvrv_2010_2026-08.csv.gz", "date", "Coin Metrics community API extract"
    ),
    SourceFile("cm_subset_2026_06", "btc_daily_cm_subset_2020_2026-06.csv.gz", "time", "Coin Metrics API subset"),
    SourceFile(
        "cm_exsupply_2026_08",
        "btc_exchange_supply_SplyExNtv_cm_2014_2026-08.csv.gz",
        "date",
        "Coin Metrics SplyExNtv (Aug-2026 label vintage)",
    ),
    SourceFile(
        "cryptoquant_2026_08", "btc_mvrv_nupl_realized_price_cryptoquant_2009_2026-08.csv.gz", "date", "CryptoQuant"
    ),
    SourceFile("glassnode_2020", "glassnode_btc_daily_2010_2020.csv.gz", "date", "Glassnode"),
    SourceFile(
        "stackstats_2020",
        "stackstats_btc_hodl_waves_realcap_2009_2020.csv.gz",
        "date",
        "Stack Stats (BigQuery UTXO set)",
    ),
]

Getter = Callable[[pd.DataFrame], pd.Series]


def _col(name: str) -> Getter:
    def get(w: pd.DataFrame) -> pd.Series:
        return w[name] if name in w.columns else pd.Series(np.nan, index=w.index)

    get.__doc__ = name
    return get


def _ratio(num: str, den: str) -> Getter:
    def get(w: pd.DataFrame) -> pd.Series:
        if num not in w.columns or den not in w.columns:
            return pd.Series(np.nan, index=w.index)
        d = w[den].where(w[den] != 0)
        return w[num] / d

    get.__doc__ = f"{num} / {den}"
    return get


def _share(parts: list[str], total: str | None = None, scale: float = 1.0) -> Getter:
    def get(w: pd.DataFrame) -> pd.Series:
        if any(p not in w.columns for p in parts):
            return pd.Series(np.nan, index=w.index)
        s = w[parts].sum(axis=1, min_count=len(parts))
        if total is None:
            return s * scale
        t = w[total].where(w[total] != 0)
        return s / t

    get.__doc__ = f"sum({', '.join(parts)})" + (f" / {total}" if total else "")
    return get


@dataclass(frozen=True)
class Candidate:
    source: str
    get: Getter


@dataclass(frozen=True)
class ColumnSpec:
    """A normalised column: name, unit, meaning and its candidates in priority order."""

    name: str
    unit: str
    description: str
    candidates: list[Candidate]
    rtol: float = 1e-6
    core: bool = False  # checked for coverage by the on-chain asset check
    tags: tuple[str, ...] = field(default_factory=tuple)


def C(source: str, metric: str) -> Candidate:
    return Candidate(source, _col(metric))


_GN_GT1Y = [
    "hodl_waves__1y_2y",
    "hodl_waves__2y_3y",
    "hodl_waves__3y_5y",
    "hodl_waves__5y_7y",
    "hodl_waves__7y_10y",
    "hodl_waves__more_10y",
]
_SS_GT1Y = ["12m_18m", "18m_24m", "2y_3y", "3y_5y", "5y_8y", "greater_8y"]

ONCHAIN_COLUMNS: list[ColumnSpec] = [
    ColumnSpec(
        "price_usd",
        "USD",
        "BTC reference close at D+1 00:00 UTC (Coin Metrics PriceUSD)",
        [C("cm_2026_03", "PriceUSD"), C("cm_api_2026_08", "price_usd"), C("cm_subset_2026_06", "PriceUSD")],
        1e-4,
        True,
    ),
    ColumnSpec(
        "market_cap_usd",
        "USD",
        "Market cap = supply x price (Coin Metrics CapMrktCurUSD)",
        [
            C("cm_2026_03", "CapMrktCurUSD"),
            C("cm_api_2026_08", "market_cap_usd"),
            C("cm_subset_2026_06", "CapMrktCurUSD"),
        ],
        1e-4,
        True,
    ),
    ColumnSpec(
        "mvrv",
        "ratio",
        "MVRV = market cap / realized cap (Coin Metrics CapMVRVCur)",
        [C("cm_2026_03", "CapMVRVCur"), C("cm_api_2026_08", "mvrv"), C("cm_subset_2026_06", "CapMVRVCur")],
        1e-6,
        True,
    ),
    ColumnSpec(
        "realized_cap_usd",
        "USD",
        "Realized cap (Coin Metrics): CapMrktCurUSD / CapMVRVCur, or CapRealUSD",
        [
            Candidate("cm_2026_03", _ratio("CapMrktCurUSD", "CapMVRVCur")),
            Candidate("cm_api_2026_08", _ratio("market_cap_usd", "mvrv")),
            C("cm_rich_2025_08", "CapRealUSD"),
        ],
        1e-4,
        True,
    ),
    ColumnSpec(
        "supply_btc",
        "BTC",
        "Current supply (Coin Metrics SplyCur)",
        [C("cm_2026_03", "SplyCur"), C("cm_api_2026_08", "supply")],
        1e-4,
        True,
    ),
    ColumnSpec(
        "realized_price_usd",
        "USD",
        "Realized cap / supply (Coin Metrics)",
        [
            Candidate("cm_2026_03", lambda w: _ratio("CapMrktCurUSD", "CapMVRVCur")(w) / w.get("SplyCur", np.nan)),
            C("cm_api_2026_08", "realized_price_usd"),
        ],
        1e-4,
    ),
    ColumnSpec(
        "active_addresses",
        "count",
        "Addresses active as sender or receiver (AdrActCnt)",
        [C("cm_2026_03", "AdrActCnt"), C("cm_subset_2026_06", "AdrActCnt")],
        1e-9,
        True,
    ),
    ColumnSpec(
        "addresses_nonzero", "count", "Addresses with a non-zero balance (AdrBalCnt)", [C("cm_2026_03", "AdrBalCnt")]
    ),
    ColumnSpec(
        "tx_count", "count", "Transactions (TxCnt)", [C("cm_2026_03", "TxCnt"), C("cm_subset_2026_06", "TxCnt")], 1e-9
    ),
    ColumnSpec(
        "hash_rate",
        "TH/s",
        "Mean hash rate (HashRate)",
        [C("cm_2026_03", "HashRate"), C("cm_subset_2026_06", "HashRate")],
        1e-6,
    ),
    ColumnSpec(
        "fees_btc",
        "BTC",
        "Total fees (FeeTotNtv)",
        [C("cm_2026_03", "FeeTotNtv"), C("cm_subset_2026_06", "FeeTotNtv")],
        1e-6,
    ),
    ColumnSpec("issuance_btc", "BTC", "New coins issued (IssTotNtv)", [C("cm_2026_03", "IssTotNtv")]),
    ColumnSpec(
        "exchange_supply_btc",
        "BTC",
        "BTC on Coin-Metrics-labelled exchanges, Aug-2026 label vintage only",
        [C("cm_exsupply_2026_08", "SplyExNtv")],
        core=True,
    ),
    ColumnSpec(
        "exchange_supply_btc_v2026_03",
        "BTC",
        "BTC on exchanges, Mar-2026 label vintage (consistent with the flows below)",
        [C("cm_2026_03", "SplyExNtv")],
    ),
    ColumnSpec(
        "exchange_inflow_btc_v2026_03",
        "BTC",
        "BTC sent to exchanges (FlowInExNtv), Mar-2026 vintage",
        [C("cm_2026_03", "FlowInExNtv")],
    ),
    ColumnSpec(
        "exchange_outflow_btc_v2026_03",
        "BTC",
        "BTC withdrawn from exchanges (FlowOutExNtv), Mar-2026 vintage",
        [C("cm_2026_03", "FlowOutExNtv")],
    ),
    ColumnSpec(
        "mvrv_cryptoquant",
        "ratio",
        "CryptoQuant MVRV (own realized-cap method; ~0.3% from CM)",
        [C("cryptoquant_2026_08", "MVRV Ratio")],
    ),
    ColumnSpec(
        "nupl_cryptoquant",
        "fraction",
        "CryptoQuant net unrealized profit/loss",
        [C("cryptoquant_2026_08", "Net Unrealized Profit/Loss (NUPL)")],
    ),
    ColumnSpec(
        "realized_price_cryptoquant", "USD", "CryptoQuant realized price", [C("cryptoquant_2026_08", "Realized Price")]
    ),
    ColumnSpec("mvrv_glassnode", "ratio", "Glassnode MVRV", [C("glassnode_2020", "market_mvrv")]),
    ColumnSpec("mvrv_z_glassnode", "z", "Glassnode MVRV z-score", [C("glassnode_2020", "market_mvrv_z_score")]),
    ColumnSpec(
        "lth_mvrv_glassnode",
        "ratio",
        "Glassnode long-term-holder MVRV (coins older than 155 days)",
        [C("glassnode_2020", "market_mvrv_more_155")],
    ),
    ColumnSpec(
        "sth_mvrv_glassnode",
        "ratio",
        "Glassnode short-term-holder MVRV (coins younger than 155 days)",
        [C("glassnode_2020", "market_mvrv_less_155")],
    ),
    ColumnSpec(
        "whale_addr_1k_cm",
        "count",
        "Addresses holding >= 1k BTC (Coin Metrics AdrBalNtv1KCnt)",
        [C("cm_rich_2025_08", "AdrBalNtv1KCnt")],
        tags=("whale",),
    ),
    ColumnSpec(
        "whale_addr_10k_cm",
        "count",
        "Addresses holding >= 10k BTC (AdrBalNtv10KCnt)",
        [C("cm_rich_2025_08", "AdrBalNtv10KCnt")],
        tags=("whale",),
    ),
    ColumnSpec(
        "whale_supply_1k_cm_btc",
        "BTC",
        "BTC held by >= 1k BTC addresses (SplyAdrBalNtv1K)",
        [C("cm_rich_2025_08", "SplyAdrBalNtv1K")],
        tags=("whale",),
    ),
    ColumnSpec(
        "whale_supply_10k_cm_btc",
        "BTC",
        "BTC held by >= 10k BTC addresses (SplyAdrBalNtv10K)",
        [C("cm_rich_2025_08", "SplyAdrBalNtv10K")],
        tags=("whale",),
    ),
    ColumnSpec(
        "supply_top1pct_cm_btc",
        "BTC",
        "BTC held by the richest 1% of addresses (SplyAdrTop1Pct)",
        [C("cm_rich_2025_08", "SplyAdrTop1Pct")],
        tags=("whale",),
    ),
    ColumnSpec(
        "supply_top100_cm_btc",
        "BTC",
        "BTC held by the richest 100 addresses (SplyAdrTop100)",
        [C("cm_rich_2025_08", "SplyAdrTop100")],
        tags=("whale",),
    ),
    ColumnSpec(
        "whale_addr_1k_glassnode",
        "count",
        "Addresses holding >= 1k BTC (Glassnode addresses_min_1k_count)",
        [C("glassnode_2020", "addresses_min_1k_count")],
        tags=("whale",),
    ),
    ColumnSpec(
        "whale_addr_10k_glassnode",
        "count",
        "Addresses holding >= 10k BTC (Glassnode)",
        [C("glassnode_2020", "addresses_min_10k_count")],
        tags=("whale",),
    ),
    ColumnSpec(
        "whale_entities_1k_glassnode",
        "count",
        "Entities holding >= 1k BTC (Glassnode, ends 2019-11)",
        [C("glassnode_2020", "entities_min_1k_count")],
        tags=("whale",),
    ),
    ColumnSpec(
        "supply_top1pct_share_glassnode",
        "fraction",
        "Share of supply held by the top 1% of addresses (Glassnode)",
        [C("glassnode_2020", "distribution_balance_1pct_holders")],
        tags=("whale",),
    ),
    ColumnSpec(
        "supply_active_1yr_cm_btc",
        "BTC",
        "BTC moved at least once in the last year (SplyAct1yr)",
        [C("cm_rich_2025_08", "SplyAct1yr")],
        tags=("age",),
    ),
    ColumnSpec(
        "supply_active_180d_cm_btc",
        "BTC",
        "BTC moved in the last 180 days (SplyAct180d; short-term supply)",
        [C("cm_rich_2025_08", "SplyAct180d")],
        tags=("age",),
    ),
    ColumnSpec(
        "supply_active_1yr_pct_cm",
        "percent",
        "Share of supply active in the last year (SplyActPct1yr)",
        [C("cm_rich_2025_08", "SplyActPct1yr")],
        tags=("age",),
    ),
    ColumnSpec(
        "hodl_share_gt1y_glassnode",
        "fraction",
        "Share of supply last moved > 1 year ago (Glassnode HODL waves)",
        [Candidate("glassnode_2020", _share(_GN_GT1Y))],
        tags=("age",),
    ),
    ColumnSpec(
        "rcap_share_gt1y_glassnode",
        "fraction",
        "Realized-cap share of coins older than 1 year (Glassnode RCap HODL waves)",
        [Candidate("glassnode_2020", _share(["rcap_" + c for c in _GN_GT1Y]))],
        tags=("age",),
    ),
    ColumnSpec(
        "liveliness_glassnode",
        "fraction",
        "Liveliness = cumulative coin-days destroyed / created (Glassnode)",
        [C("glassnode_2020", "indicators_liveliness")],
        tags=("age",),
    ),
    ColumnSpec(
        "supply_active_more_1y_pct_glassnode",
        "fraction",
        "Share of supply not moved for > 1 year (Glassnode)",
        [C("glassnode_2020", "supply_active_more_1y_percent")],
        tags=("age",),
    ),
    ColumnSpec(
        "realized_cap_stackstats_usd",
        "USD",
        "Realized cap from the UTXO set (Stack Stats)",
        [C("stackstats_2020", "realized_cap")],
        tags=("age",),
    ),
    ColumnSpec(
        "utxo_share_gt1y_stackstats",
        "fraction",
        "Share of UTXO value older than 1 year (Stack Stats)",
        [Candidate("stackstats_2020", _share([f"utxo_value_{b}" for b in _SS_GT1Y], "total_utxo_value"))],
        tags=("age",),
    ),
    ColumnSpec(
        "rcap_share_gt1y_stackstats",
        "fraction",
        "Realized-cap share of UTXOs older than 1 year (Stack Stats)",
        [Candidate("stackstats_2020", _share([f"utxo_realcap_{b}" for b in _SS_GT1Y], "realized_cap"))],
        tags=("age",),
    ),
]


class OnchainSpliceError(ValueError):
    """Two candidates of one column disagree on an overlapping day beyond the column's tolerance."""


class OnchainValueError(ValueError):
    """A vendor file holds a non-numeric value that is not one of the vendor's documented missing markers."""


def parse_vendor_values(
    wide: pd.DataFrame, source: str, date_column: str, missing_markers: tuple[str, ...] = ("",)
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Numeric columns of a vendor wide table read as text (``dtype=str``, no NA conversion).

    A cell equal to one of ``missing_markers`` (after stripping blanks) is missing (NaN) and counted; a column
    without a single numeric value (e.g. ``asset``, ``block_ts``) is text and skipped; any other non-numeric cell
    of a numeric column is garbage. Cells already numeric (Parquet, or a frame read with type inference) pass.

    Returns:
        ``(numeric, markers)``: float64 columns (``date_column`` excluded, same index as ``wide``) and the number of
        marker cells per marker (``{"": 35003}``).

    Raises:
        OnchainValueError: naming ``source``, row (1 = first data row), column and value of the first garbage cell.
    """
    markers = {m.strip() for m in missing_markers}
    out, counts = {}, {}
    for c in wide.columns:
        if c == date_column:
            continue
        s = wide[c]
        if pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
            out[c] = s.astype("float64")
            continue
        txt = s.astype("string").str.strip()
        is_marker = txt.isna() | txt.isin(markers)
        num = pd.to_numeric(txt.where(~is_marker), errors="coerce")
        if num.notna().sum() == 0:
            continue  # a text column (identifiers, time stamps): not a metric
        bad = ~is_marker & num.isna()
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise OnchainValueError(
                f"{source}: row {i + 1}, column {c!r}: rule 'numeric' violated: value {s.iloc[i]!r} is not a number "
                f"nor a missing marker of this vendor ({sorted(markers)}); {int(bad.sum())} such cell(s) in this "
                "column; fix the file (or add the spelling to the vendor's missing_markers if it means 'no value')"
            )
        for m, n in txt[is_marker].fillna("").value_counts().items():
            counts[m] = counts.get(m, 0) + int(n)
        out[c] = num.astype("float64")
    return pd.DataFrame(out, index=wide.index), counts


def wide_to_long(
    wide: pd.DataFrame, source: str, date_column: str, missing_markers: tuple[str, ...] = ("",)
) -> pd.DataFrame:
    """Vendor wide table -> long rows ``date (datetime64[us]), source, metric, value (float64)``.

    Values are parsed by :func:`parse_vendor_values` (text columns skipped, missing markers dropped, garbage
    rejected); the marker counts are in ``long.attrs["missing_markers"]``. NaN values are dropped.

    Raises:
        ValueError: ``date_column`` is missing or holds an unparsable or duplicated date.
        OnchainValueError: a non-numeric value that is not a missing marker (file, row, column, value).
    """
    if date_column not in wide.columns:
        raise ValueError(f"{source}: missing date column {date_column!r}")
    dates = pd.to_datetime(wide[date_column], format="%Y-%m-%d", errors="coerce")
    if dates.isna().any():
        i = int(np.flatnonzero(dates.isna().to_numpy())[0])
        raise ValueError(f"{source}: row {i + 1}: unparsable date {wide[date_column].iloc[i]!r}")
    if dates.duplicated().any():
        i = int(np.flatnonzero(dates.duplicated().to_numpy())[0])
        raise ValueError(f"{source}: row {i + 1}: duplicate date {dates.iloc[i].date()}")
    m, counts = parse_vendor_values(wide, source, date_column, missing_markers)
    m.index = dates.dt.as_unit("us").to_numpy()
    long = m.stack().rename("value").reset_index()
    long.columns = ["date", "metric", "value"]
    long.insert(1, "source", source)
    long["value"] = long["value"].astype("float64")
    long = long[np.isfinite(long["value"].to_numpy())].reset_index(drop=True)
    long.attrs["missing_markers"] = counts
    return long


def withdrawn_values(stored: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """Values a vendor file withdrew: ``(date, metric)`` pairs of one source that ``stored`` holds with a finite
    value and ``new`` (the re-read file, same source) no longer has (a missing marker, a removed row or column).

    Both frames are long rows (``date, source, metric, value``). Returns the withdrawn ``stored`` rows (same
    columns), sorted by date and metric; empty when nothing was withdrawn.
    """
    cols = ["date", "source", "metric", "value"]
    if stored.empty:
        return stored.reindex(columns=cols)
    s = stored[cols].assign(date=pd.to_datetime(stored["date"]).dt.as_unit("us"))
    s = s[np.isfinite(s["value"].to_numpy(dtype="float64"))]
    n = new[["date", "metric"]].assign(date=pd.to_datetime(new["date"]).dt.as_unit("us"), _new=True)
    gone = s.merge(n, on=["date", "metric"], how="left")
    gone = gone[gone["_new"].isna()].drop(columns="_new")
    return gone.sort_values(["date", "metric"]).reset_index(drop=True)


def normalise_onchain(
    long: pd.DataFrame, publication_lag_hours: float = 0.0, specs: list[ColumnSpec] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Build ``market.onchain_daily`` and its column report from long rows.

    Args:
        long: ``date, source, metric, value`` as produced by :func:`wide_to_long`.
        publication_lag_hours: extra delay after ``D+1 00:00 UTC``.
        specs: columns to build (default :data:`ONCHAIN_COLUMNS`).

    Returns:
        ``(daily, report)``: ``daily`` has one row per calendar day between the first and last
        date of any source, ``date``, ``available_at``, every spec column (float64, NaN where no
        source has it) and ``<name>_source`` for multi-candidate columns. ``report`` has one row per
        column: unit, description, candidates, first/last date, rows, coverage (share of days with a
        value between its first and last date), coverage_since_2011, overlap agreement.

    Raises:
        OnchainSpliceError: candidates disagree on an overlapping day beyond ``rtol``.
    """
    specs = ONCHAIN_COLUMNS if specs is None else specs
    if long.empty:
        raise ValueError("no on-chain rows to normalise")
    dates = pd.date_range(long["date"].min(), long["date"].max(), freq="D", unit="us")
    wides = {
        src: g.pivot(index="date", columns="metric", values="value").reindex(dates)
        for src, g in long.groupby("source", sort=False)
    }
    empty = pd.DataFrame(index=dates)
    out: dict[str, object] = {"date": dates}
    report = []
    for spec in specs:
        val = pd.Series(np.nan, index=dates)
        src = pd.Series(None, index=dates, dtype=object)
        worst = 0.0
        for cand in spec.candidates:
            s = cand.get(wides.get(cand.source, empty)).astype("float64")
            s = s.where(np.isfinite(s))
            both = val.notna() & s.notna()
            if both.any():
                rel = (s[both] - val[both]).abs() / val[both].abs().clip(lower=1e-12)
                worst = max(worst, float(rel.max()))
                if rel.max() > spec.rtol:
                    d = rel.idxmax()
                    raise OnchainSpliceError(
                        f"column {spec.name!r}: source {cand.source!r} disagrees with {src[d]!r} on {d.date()} "
                        f"({s[d]!r} vs {val[d]!r}, rel. diff {rel.max():.2e} > rtol {spec.rtol:.0e}); refusing to splice"
                    )
            fill = val.isna() & s.notna()
            val[fill] = s[fill]
            src[fill] = cand.source
        out[spec.name] = val.to_numpy()
        if len(spec.candidates) > 1:
            out[f"{spec.name}_source"] = src.to_numpy()
        have = val.dropna()
        first, last = (have.index.min(), have.index.max()) if len(have) else (pd.NaT, pd.NaT)
        span = val.loc[first:last] if len(have) else val.iloc[:0]
        since = val.loc[max(first, pd.Timestamp("2011-01-01")) : last] if len(have) else val.iloc[:0]
        report.append(
            {
                "column": spec.name,
                "unit": spec.unit,
                "description": spec.description,
                "candidates": " > ".join(f"{c.source}:{c.get.__doc__}" for c in spec.candidates),
                "first_date": first,
                "last_date": last,
                "rows": int(len(have)),
                "coverage": float(span.notna().mean()) if len(span) else 0.0,
                "coverage_since_2011": float(since.notna().mean()) if len(since) else 0.0,
                "max_overlap_rel_diff": worst,
                "core": spec.core,
                "tags": ",".join(spec.tags),
            }
        )
    daily = pd.DataFrame(out)
    daily.insert(1, "available_at", available_at(daily["date"], publication_lag_hours))
    return daily, pd.DataFrame(report)


def available_at(dates: pd.Series, publication_lag_hours: float = 0.0) -> pd.Series:
    """``D + 1 day + lag``: when a daily value for UTC day ``D`` may first be used (naive UTC)."""
    return pd.to_datetime(dates) + pd.Timedelta(days=1) + pd.Timedelta(hours=publication_lag_hours)


FNG_CLASSES = ["Extreme Fear", "Fear", "Neutral", "Greed", "Extreme Greed"]


def normalise_fear_greed(df: pd.DataFrame, source: str, publication_lag_hours: float = 0.0) -> pd.DataFrame:
    """Validate alternative.me Fear & Greed rows into ``market.sentiment_daily``.

    Input columns ``date`` (YYYY-MM-DD), ``value`` (int 0–100), ``classification``. Missing days stay
    missing (never filled). Output: ``date, available_at, fng_value (int), fng_class, source``.

    Raises:
        ValueError: naming ``source``, row and rule (columns, date, range, class, duplicates, order).
    """
    for c in ("date", "value", "classification"):
        if c not in df.columns:
            raise ValueError(f"{source}: missing column {c!r}; have {list(df.columns)}")
    d = pd.to_datetime(df["date"], format="%Y-%m-%d", errors="coerce")
    v = pd.to_numeric(df["value"], errors="coerce")
    rules = [
        ("date", d.isna(), "unparsable date"),
        ("value_range", v.isna() | (v < 0) | (v > 100) | (v != v.round()), "value must be an integer 0-100"),
        ("classification", ~df["classification"].isin(FNG_CLASSES), f"class must be one of {FNG_CLASSES}"),
        ("duplicate_date", d.duplicated(), "duplicate date"),
        ("ordering", d.diff().dt.days.fillna(1) <= 0, "dates must increase"),
    ]
    for rule, mask, msg in rules:
        if mask.any():
            i = int(np.flatnonzero(mask.to_numpy())[0])
            raise ValueError(f"{source}, row {i + 1}: rule '{rule}' violated: {msg}; got {df.iloc[i].to_dict()}")
    out = pd.DataFrame(
        {
            "date": d.dt.as_unit("us"),
            "fng_value": v.astype("int64"),
            "fng_class": df["classification"].astype(str),
            "source": source,
        }
    )
    out.insert(1, "available_at", available_at(out["date"], publication_lag_hours))
    return out
