"""Chart specifications for Plotly.js, which the browser draws (the script is served from the
installed `plotly` package by `gateway/portal/__init__.py`; nothing comes from the internet).

Readable without colour: the DG part of each stacked bar is hatched, the legend names both
parts, axes carry units, and every chart has a table of the same numbers beside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

GRID_STYLE = {"color": "#1f5fa8", "pattern": {"shape": ""}}
# Orange with black hatching: tells apart from blue by hue, lightness and texture.
DG_STYLE = {"color": "#f0a030", "pattern": {"shape": "/", "fgcolor": "#333333", "size": 6, "solidity": 0.35}}


def stacked_bars(
    *, labels: Sequence[str], grid: Sequence[Decimal], dg: Sequence[Decimal], x_title: str, title: str
) -> dict[str, Any]:
    """Grid and DG energy as stacked bars, one per label; y in kWh."""
    hover = "%{x}<br>%{fullData.name}: %{y:.2f} kWh<extra></extra>"
    return {
        "data": [
            {
                "type": "bar",
                "name": "Grid (kWh)",
                "x": list(labels),
                "y": [float(v) for v in grid],
                "marker": GRID_STYLE,
                "hovertemplate": hover,
            },
            {
                "type": "bar",
                "name": "DG, diesel generator (kWh, hatched)",
                "x": list(labels),
                "y": [float(v) for v in dg],
                "marker": DG_STYLE,
                "hovertemplate": hover,
            },
        ],
        "layout": {
            # The page's heading and caption carry `title`: inside the chart it crowded phones.
            "meta": {"title": title},
            "barmode": "stack",
            "xaxis": {"title": {"text": x_title}, "type": "category", "automargin": True},
            "yaxis": {"title": {"text": "Energy (kWh)"}, "rangemode": "tozero", "automargin": True},
            # Above the plot: below it, the legend collided with rotated tick labels on phones.
            "legend": {"orientation": "h", "x": 0, "y": 1.02, "yanchor": "bottom"},
            "margin": {"t": 40, "r": 16, "b": 16, "l": 16},
            "font": {"family": "system-ui, sans-serif", "size": 13},
        },
    }
