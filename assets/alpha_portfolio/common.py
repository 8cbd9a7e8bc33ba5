"""What the alpha-portfolio asset modules share: the universe's tiers and the planned trade's costs."""

from pipeline.core.alpha_features import DEFAULT_TIERS, round_trip_cost
from pipeline.core.costs import spot_costs

TIMEFRAME = "1h"


def tiers_of(cfg, symbols: list[str]) -> dict[str, int]:
    """Each symbol's tier from ``alpha_portfolio.tiers`` (the portfolio part), else the seed's default tiers."""
    book = cfg.alpha_portfolio
    if hasattr(book, "tiers"):
        return dict(zip(symbols, (int(t) for t in book.tiers.tier_of(symbols))))
    return {s: DEFAULT_TIERS.get(s, 3) for s in symbols}


def planned_cost(cfg) -> float:
    """The planned round trip's cost fraction: ``alpha_portfolio.execution.costs`` (the costs the backtest charges,
    Binance spot by default) filled as ``alpha_portfolio.score.cost_mode``."""
    book = cfg.alpha_portfolio
    costs = book.execution.costs if hasattr(book, "execution") else spot_costs()
    return round_trip_cost(costs, book.score.cost_mode)
