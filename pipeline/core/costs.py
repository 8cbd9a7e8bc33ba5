"""The one trading-cost model: maker / taker fees and slippage, in bps of notional per side (pure).

A **side** is one fill (the entry or the exit). A **maker** fill is a resting limit order that another order takes:
it pays ``maker_fee_bps`` and no slippage (it fills at its own price). A **taker** fill is a market order or a
triggered stop: it pays ``taker_fee_bps`` plus ``slippage_bps`` against the trade. ``1 bp = 0.01 %``.

Round trip (entry + exit) in percent of notional, :meth:`Costs.round_trip_pct`:

* ``maker`` — limit entry and limit exit: ``2 × maker``;
* ``taker`` — both sides taker: ``2 × (taker + slippage)``; the worst case of a limit plan whose entry is chased
  with a market order;
* ``auto`` — maker entry, taker exit (the setup scanner's limit entry, then a market / stop exit):
  ``maker + (taker + slippage)``.

Percentages are computed as ``bps / 100`` per component and then combined, so e.g. 2 / 6 / 2 bps give exactly the
floats of the former percent settings 0.02 / 0.06 / 0.02 (``6 / 100 == 0.06`` in IEEE double; ``(2·(6+2))/100``
would not have to be). :meth:`Costs.sim_kwargs` passes the same costs to :class:`pipeline.core.simulator.SimParams`,
which charges them fill by fill (maker fee on limit fills, taker fee + slippage on market and stop fills).

Two sections use it (``trader.yaml``): ``research.backtest.costs`` (Binance spot, 10 / 10 / 2 bps) and
``setup_scanner.costs`` (Bitget USDT-M futures, maker 2 / taker 6 / slippage 2 bps). Pure functions receive a
:class:`Costs` as an argument; nothing here reads the configuration.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from pipeline.core.params import Params

#: how a round trip is filled (see the module docstring)
CostMode = Literal["maker", "taker", "auto"]
#: how one side is filled
FillKind = Literal["maker", "taker"]


class Costs(Params):
    """Fees and slippage in bps of notional, per side (every field required: a cost is never implied)."""

    maker_fee_bps: float = Field(
        ge=0, description="Fee of a maker fill (resting limit order), bps of notional per side."
    )
    taker_fee_bps: float = Field(
        ge=0, description="Fee of a taker fill (market order or triggered stop), bps of notional per side."
    )
    slippage_bps: float = Field(
        ge=0,
        description="Slippage against the trade on taker and stop fills, bps of notional "
        "per side (maker fills have none).",
    )

    @property
    def maker_fee_pct(self) -> float:
        """Maker fee in percent of notional (``maker_fee_bps / 100``)."""
        return self.maker_fee_bps / 100

    @property
    def taker_fee_pct(self) -> float:
        """Taker fee in percent of notional (``taker_fee_bps / 100``)."""
        return self.taker_fee_bps / 100

    @property
    def slippage_pct(self) -> float:
        """Slippage in percent of notional (``slippage_bps / 100``)."""
        return self.slippage_bps / 100

    def percent(self) -> dict[str, float]:
        """``{"maker_fee_pct", "taker_fee_pct", "slippage_pct"}``: the three costs in percent of notional."""
        return {
            "maker_fee_pct": self.maker_fee_pct,
            "taker_fee_pct": self.taker_fee_pct,
            "slippage_pct": self.slippage_pct,
        }

    def side_pct(self, kind: FillKind) -> float:
        """Cost of one fill in percent of notional: ``maker`` = maker fee; ``taker`` = taker fee + slippage.

        Raises:
            ValueError: ``kind`` is neither ``maker`` nor ``taker``.
        """
        if kind == "maker":
            return self.maker_fee_pct
        if kind == "taker":
            return self.taker_fee_pct + self.slippage_pct
        raise ValueError(f"fill kind {kind!r}: expected 'maker' or 'taker'")

    def round_trip_pct(self, mode: CostMode) -> float:
        """Entry + exit cost in percent of notional: ``maker`` (2 × maker side), ``taker`` (2 × taker side) or
        ``auto`` (maker entry + taker exit).

        Raises:
            ValueError: unknown ``mode``.
        """
        if mode == "maker":
            return 2 * self.side_pct("maker")
        if mode == "taker":
            return 2 * self.side_pct("taker")
        if mode == "auto":
            return self.side_pct("maker") + self.side_pct("taker")
        raise ValueError(f"cost mode {mode!r}: expected 'maker', 'taker' or 'auto'")

    def sim_kwargs(self) -> dict[str, float]:
        """The :class:`pipeline.core.simulator.SimParams` cost fields: ``fee_taker_bps``, ``fee_maker_bps``,
        ``slippage_bps`` (same bps values; the simulator applies slippage to market and stop fills only)."""
        return {
            "fee_taker_bps": self.taker_fee_bps,
            "fee_maker_bps": self.maker_fee_bps,
            "slippage_bps": self.slippage_bps,
        }


def spot_costs() -> Costs:
    """Binance spot's default tier: taker and maker 10 bps (0.10 %), 2 bps slippage (``research.backtest.costs``)."""
    return Costs(maker_fee_bps=10.0, taker_fee_bps=10.0, slippage_bps=2.0)


def futures_costs() -> Costs:
    """Bitget USDT-M futures: maker 2 bps, taker 6 bps, 2 bps slippage (``setup_scanner.costs``, seed 002)."""
    return Costs(maker_fee_bps=2.0, taker_fee_bps=6.0, slippage_bps=2.0)
