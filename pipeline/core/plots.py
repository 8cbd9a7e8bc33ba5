"""Headless matplotlib helpers shared by report plots (pure: figures in, PNG bytes out)."""

from __future__ import annotations

import io


def pyplot():
    """``matplotlib.pyplot`` on the non-interactive Agg backend (assets and CI have no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def to_png(fig, dpi: int = 80) -> bytes:
    """Lay out ``fig``, render it as PNG bytes and close it."""
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    pyplot().close(fig)
    return buf.getvalue()
