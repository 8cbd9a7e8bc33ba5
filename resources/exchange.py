"""The exchange source: candles through ccxt (default Binance spot).

``sync_ohlcv`` pages ``fetch_ohlcv(symbol, timeframe, since, limit)`` forward from a checkpoint at
the exchange's candle limit, with ccxt's rate limiter on and tenacity retries (exponential backoff)
on ccxt's recoverable branch ``ccxt.OperationFailed``: ``NetworkError`` (``RequestTimeout``,
``ExchangeNotAvailable``, ``DDoSProtection``, ``RateLimitExceeded``) and ``BadResponse``; Binance's
``-1000 unknown error`` (HTTP 500) maps there too. ``ExchangeError`` (bad symbol, auth) is not retried. The still-forming last candle is dropped. Each page
is validated and handed to ``write_page`` (the caller upserts it and moves the checkpoint in one
transaction), so an interrupted sync resumes where it stopped with no gap and no duplicate.

``market_type`` picks the market (issue 16): ``spot`` (ccxt ``BTC/USDT``, Binance ``/api/v3``) or ``swap`` (the USDT-M
perpetual, ccxt ``BTC/USDT:USDT``, Binance ``/fapi/v1``: ccxt ``defaultType: swap`` and ``fetchMarkets.types:
[linear]``). Callers keep the warehouse's ``BASE/QUOTE`` names; :meth:`ExchangeSource.market_symbol` maps them and
:attr:`ExchangeSource.locator` (``ccxt`` / ``ccxt:swap``) records the market type in ``raw.ohlcv.locator`` and the
checkpoint. ``api_base_url`` rebases every ccxt API host (spot, fapi, dapi, sapi...) onto one URL, e.g. the replay
exchange of :mod:`resources.replay_exchange`; the exchange clock is then asked after every page, since a replay clock
runs faster than real time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal

import ccxt
import dagster as dg
import pandas as pd
from pydantic import Field, PrivateAttr
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from pipeline.core.candles import OHLCV_COLUMNS, drop_forming, reject_future, validate_ohlcv
from pipeline.core.timeframes import timeframe_ms


@dataclass
class SyncReport:
    """What one ``sync_ohlcv`` call did."""

    pages: int = 0
    rows: int = 0
    retries: int = 0
    first_ts: int | None = None
    last_ts: int | None = None
    errors: list[str] = field(default_factory=list)


class ExchangeSource(dg.ConfigurableResource):
    """ccxt exchange client configuration (public market data only; no keys needed)."""

    exchange_id: str = Field("binance", description="ccxt exchange id.")
    rate_limit_ms: int | None = Field(None, description="Minimum ms between requests; None = ccxt default.")
    max_retries: int = Field(5, description="Retries per request on network / rate-limit / DDoS errors.")
    retry_wait_s: float = Field(1.0, description="First backoff wait in seconds (doubles each retry, max 30 s).")
    page_limit: int | None = Field(None, description="Candles per request; None = exchange limit (Binance 1000).")
    timeout_ms: int = Field(10_000, description="HTTP timeout per request.")
    market_type: Literal["spot", "swap"] = Field(
        "spot", description="spot, or swap = USDT-M perpetuals (ccxt BTC/USDT:USDT); warehouse names stay BTC/USDT."
    )
    api_base_url: str | None = Field(
        None, description="Replace every API host of the exchange, spot and futures (testnets, the replay exchange)."
    )
    frozen_now_ms: int | None = Field(None, description="Fixed 'now' for replay; None = the exchange clock.")
    _client: ccxt.Exchange | None = PrivateAttr(default=None)

    def client(self) -> ccxt.Exchange:
        if self._client is None:
            cls = getattr(ccxt, self.exchange_id)
            opts: dict = {
                "enableRateLimit": True,
                "timeout": self.timeout_ms,
                "options": {
                    "defaultType": self.market_type,
                    "fetchMarkets": {"types": ["spot"] if self.market_type == "spot" else ["linear"]},
                },
            }
            if self.rate_limit_ms is not None:
                opts["rateLimit"] = self.rate_limit_ms
            ex = cls(opts)
            if self.api_base_url:
                ex.urls["api"] = _rebase(ex.urls["api"], self.api_base_url)
            self._client = ex
        return self._client

    @property
    def locator(self) -> str:
        """What ``raw.ohlcv.locator`` and the checkpoint record for this source: ``ccxt`` (spot, as before issue 16)
        or ``ccxt:swap``."""
        return "ccxt" if self.market_type == "spot" else f"ccxt:{self.market_type}"

    def market_symbol(self, symbol: str) -> str:
        """The warehouse's ``BASE/QUOTE`` -> ccxt's symbol of the market type: ``BTC/USDT`` (spot) or
        ``BTC/USDT:USDT`` (swap: the perpetual settled in the quote currency). A symbol with ``:`` is kept."""
        if self.market_type == "spot" or ":" in symbol:
            return symbol
        return f"{symbol}:{symbol.split('/')[-1]}"

    def candle_limit(self) -> int:
        """Candles per request: configured, else ccxt's documented ``fetchOHLCV`` limit of the market type (Binance:
        spot 1000, USDT-M swap 500), else 1000."""
        if self.page_limit:
            return self.page_limit
        ex = self.client()
        feats = (ex.features or {}) if hasattr(ex, "features") else {}
        feats = feats.get("spot", {}) if self.market_type == "spot" else feats.get("swap", {}).get("linear") or {}
        lim = (feats.get("fetchOHLCV") or {}).get("limit")
        return int(lim or 1000)

    _clock_offset_ms: int | None = PrivateAttr(default=None)

    def now_ms(self) -> int:
        """The exchange's clock (epoch ms): ``frozen_now_ms``, else with ``api_base_url`` the server's time asked now
        (a replay clock runs ``speed`` times faster than the local one), else the local clock corrected by the
        server-time offset measured once per resource (ccxt ``fetch_time``; 0 where the exchange has no time endpoint).
        """
        if self.frozen_now_ms is not None:
            return int(self.frozen_now_ms)
        ex = self.client()
        if self.api_base_url and ex.has.get("fetchTime"):
            return int(ex.fetch_time())
        if self._clock_offset_ms is None:
            try:
                self._clock_offset_ms = int(ex.fetch_time()) - int(ex.milliseconds()) if ex.has.get("fetchTime") else 0
            except ccxt.BaseError:
                self._clock_offset_ms = 0
        return int(ex.milliseconds()) + self._clock_offset_ms

    def _call(self, fn: Callable, report: SyncReport, *args, **kwargs):
        def before_sleep(rs):
            report.retries += 1
            report.errors.append(f"{type(rs.outcome.exception()).__name__}: {str(rs.outcome.exception())[:200]}")

        for attempt in Retrying(
            retry=retry_if_exception_type(ccxt.OperationFailed),
            wait=wait_exponential(multiplier=self.retry_wait_s, max=30),
            stop=stop_after_attempt(self.max_retries + 1),
            reraise=True,
            before_sleep=before_sleep,
        ):
            with attempt:
                return fn(*args, **kwargs)

    def _listed(self, symbol: str) -> str:
        """The ccxt market of ``symbol`` (markets loaded); raises ccxt.BadSymbol naming the market type when the
        exchange does not list it."""
        ex = self.client()
        market = self.market_symbol(symbol)
        if ex.markets is not None and market not in ex.markets:
            some = ", ".join(sorted(ex.markets)[:5])
            raise ccxt.BadSymbol(
                f"{self.exchange_id} {self.market_type} has no market {market} (universe symbol {symbol!r}, "
                f"exchange.market_type {self.market_type!r}); it lists {len(ex.markets)} markets, e.g. {some}"
            )
        return market

    def order_limits(self, symbols: list[str]) -> pd.DataFrame:
        """The exchange's order limits of ``symbols`` (``BASE/QUOTE``) from its market data through ccxt
        (``load_markets``): one row per symbol with ``min_notional`` (quote currency, ccxt ``limits.cost.min``; 0 when
        the exchange states none), ``lot_step`` (base units, ccxt ``precision.amount``: Binance's ``LOT_SIZE``
        stepSize, ccxt's TICK_SIZE precision mode) and ``min_qty`` (``limits.amount.min``). Used by the alpha
        portfolio to round orders and skip those below the minimum (seed 004 "minimum order size", "precision").

        Raises:
            ccxt.BadSymbol: a symbol the market type does not list; ccxt.OperationFailed after the retries.
        """
        ex = self.client()
        report = SyncReport()
        if not ex.markets:
            self._call(ex.load_markets, report)
        rows = []
        for s in symbols:
            m = ex.markets[self._listed(s)]
            lim = m.get("limits") or {}
            rows.append(
                {
                    "symbol": s,
                    "min_notional": float((lim.get("cost") or {}).get("min") or 0.0),
                    "lot_step": float((m.get("precision") or {}).get("amount") or 0.0),
                    "min_qty": float((lim.get("amount") or {}).get("min") or 0.0),
                }
            )
        return pd.DataFrame(rows, columns=["symbol", "min_notional", "lot_step", "min_qty"])

    def newest_candles(self, symbol: str, timeframe: str, since_ms: int | None, limit: int = 50) -> list[int]:
        """Open times (epoch ms) of the newest candles of ``symbol`` (the forming one included): from ``since_ms``
        when given (at most ``limit``), else the last ``limit``. One ``fetch_ohlcv`` request (after the markets are
        loaded once), retried like :meth:`sync_ohlcv`; what a live sensor asks every tick.

        Raises:
            ccxt.OperationFailed after ``max_retries`` retries; ccxt.BadSymbol for an unknown market.
        """
        ex = self.client()
        report = SyncReport()
        if not ex.markets:
            self._call(ex.load_markets, report)
        market = self._listed(symbol)
        rows = self._call(ex.fetch_ohlcv, report, market, timeframe, since=since_ms, limit=limit)
        return [int(r[0]) for r in rows]

    def sync_ohlcv(
        self,
        symbol: str,
        timeframe: str,
        since_ms: int,
        write_page: Callable[[pd.DataFrame], None],
        until_ms: int | None = None,
    ) -> SyncReport:
        """Fetch closed candles from ``since_ms`` (inclusive) up to now and pass each page to ``write_page``.

        Args:
            symbol: ``BASE/QUOTE`` (the market type's ccxt symbol is derived: :meth:`market_symbol`).
            timeframe: e.g. ``1h``. since_ms: epoch ms UTC.
            write_page: receives a validated frame (``ts`` + OHLCV) per page; must persist it.
            until_ms: stop before this open time (default: the last closed candle).

        Raises:
            ccxt.OperationFailed (NetworkError, BadResponse, …) after ``max_retries`` retries; ccxt.BadSymbol for an
            unknown market; CandleValidationError for an invalid exchange response. Pages already
            written stay written.
        """
        ex = self.client()
        report = SyncReport()
        self._call(ex.load_markets, report)
        step, limit, market = timeframe_ms(timeframe), self.candle_limit(), self._listed(symbol)
        cursor, now = since_ms, self.now_ms()
        while True:
            if cursor + step > now or (until_ms is not None and cursor >= until_ms):
                break
            rows = self._call(ex.fetch_ohlcv, report, market, timeframe, since=cursor, limit=limit)
            now = self.now_ms()  # read after the answer: every candle in it opened before this clock
            if not rows:
                break
            df = pd.DataFrame(rows, columns=OHLCV_COLUMNS)
            src = f"ccxt:{self.exchange_id}:{market}:{timeframe} page since {cursor}"
            df = validate_ohlcv(df, src, timeframe)
            reject_future(df, src, timeframe, now, allow_forming=True)  # the forming candle is dropped below
            df = df[df["ts"] >= cursor]
            df = drop_forming(df, timeframe, now)
            if until_ms is not None:
                df = df[df["ts"] < until_ms]
            if df.empty:
                break
            write_page(df.reset_index(drop=True))
            report.pages += 1
            report.rows += len(df)
            report.first_ts = report.first_ts if report.first_ts is not None else int(df["ts"].iloc[0])
            report.last_ts = int(df["ts"].iloc[-1])
            cursor = report.last_ts + step
            if len(rows) < limit:
                break
        return report


def _rebase(urls, base: str):
    """Point every API URL of a ccxt exchange at ``base`` (keeping each URL's path)."""
    from urllib.parse import urlsplit

    if isinstance(urls, dict):
        return {k: _rebase(v, base) for k, v in urls.items()}
    if isinstance(urls, str) and urls.startswith("http"):
        parts = urlsplit(urls)
        return base.rstrip("/") + parts.path
    return urls


def utc_ms(date: str) -> int:
    """``YYYY-MM-DD`` (UTC) -> epoch ms."""
    return int(pd.Timestamp(date, tz="UTC").timestamp() * 1000)
