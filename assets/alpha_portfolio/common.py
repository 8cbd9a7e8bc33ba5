"""What the alpha-portfolio asset modules share: the universe's tiers and the planned trade's costs."""

from pipeline.core.alpha_features import round_trip_cost

TIMEFRAME = "1h"


def tiers_of(cfg, symbols: list[str]) -> dict[str, int]:
    """Each symbol's tier (1, 2 or 3) from ``alpha_portfolio.tiers``."""
    return dict(zip(symbols, (int(t) for t in cfg.alpha_portfolio.tiers.tier_of(symbols))))


def planned_cost(cfg) -> float:
    """The planned round trip's cost fraction: ``alpha_portfolio.execution.costs`` (the costs the backtest charges,
    Binance spot by default) filled as ``alpha_portfolio.score.cost_mode``."""
    book = cfg.alpha_portfolio
    return round_trip_cost(book.execution.costs, book.score.cost_mode)
