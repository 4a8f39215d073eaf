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


# Bars without data are shaded across the plot, not drawn as zero: grey where readings are
# missing, paler where nothing was due yet (the future, or before the meter was installed).
GAP_FILLS = {"missing": "rgba(110,110,110,0.28)", "none": "rgba(160,160,160,0.10)"}


def _number(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def gap_shapes(gaps: Sequence[str]) -> list[dict[str, Any]]:
    """A band over each bar (by category index) whose state is missing or none."""
    return [
        {
            "type": "rect",
            "xref": "x",
            "yref": "paper",
            "x0": index - 0.5,
            "x1": index + 0.5,
            "y0": 0,
            "y1": 1,
            "fillcolor": GAP_FILLS[state],
            "line": {"width": 0},
            "layer": "below",
        }
        for index, state in enumerate(gaps)
        if state in GAP_FILLS
    ]


def stacked_bars(
    *,
    labels: Sequence[str],
    grid: Sequence[Decimal | None],
    dg: Sequence[Decimal | None],
    x_title: str,
    title: str,
    charges: Sequence[Decimal | None] | None = None,
    gaps: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Grid and DG energy as stacked bars, one per label; y in kWh. None is no bar (no data);
    `charges` (₹ per bar) go into the hover text, `gaps` (Bar.state per bar) shade missing bars."""
    hover = "%{x}<br>%{fullData.name}: %{y:.2f} kWh<extra></extra>"
    if charges is not None:
        hover = "%{x}<br>%{fullData.name}: %{y:.2f} kWh<br>₹%{customdata:.2f} for the whole bar<extra></extra>"
    spec = _stacked(labels, grid, dg, x_title, title, hover)
    if charges is not None:
        for trace in spec["data"]:
            trace["customdata"] = [_number(c) for c in charges]
    if gaps is not None:
        spec["layout"]["shapes"] = gap_shapes(gaps)
    return spec


def _stacked(
    labels: Sequence[str],
    grid: Sequence[Decimal | None],
    dg: Sequence[Decimal | None],
    x_title: str,
    title: str,
    hover: str,
) -> dict[str, Any]:
    return {
        "data": [
            {
                "type": "bar",
                "name": "Grid (kWh)",
                "x": list(labels),
                "y": [_number(v) for v in grid],
                "marker": GRID_STYLE,
                "hovertemplate": hover,
            },
            {
                "type": "bar",
                "name": "DG, diesel generator (kWh, hatched)",
                "x": list(labels),
                "y": [_number(v) for v in dg],
                "marker": DG_STYLE,
                "hovertemplate": hover,
            },
        ],
        "layout": {**_layout(x_title, "Energy (kWh)", title), "barmode": "stack"},
    }


INCOMER_STYLE = {"color": "#333333", "width": 2, "dash": "dot"}
LOSS_STYLE = {"color": "#b02a30", "width": 2}


def _layout(x_title: str, y_title: str, title: str) -> dict[str, Any]:
    """The layout every chart shares."""
    return {
        # The page's heading and caption carry `title`: inside the chart it crowded phones.
        "meta": {"title": title},
        "xaxis": {"title": {"text": x_title}, "type": "category", "automargin": True},
        "yaxis": {"title": {"text": y_title}, "rangemode": "tozero", "automargin": True},
        # Above the plot: below it, the legend collided with rotated tick labels on phones.
        "legend": {"orientation": "h", "x": 0, "y": 1.02, "yanchor": "bottom"},
        "margin": {"t": 40, "r": 16, "b": 16, "l": 16},
        "font": {"family": "system-ui, sans-serif", "size": 13},
    }


def _line(
    name: str, labels: Sequence[str], values: Sequence[Decimal | None], style: dict[str, Any], unit: str
) -> dict[str, Any]:
    """A line with markers; None is a break in it (no data), not a zero."""
    return {
        "type": "scatter",
        "mode": "lines+markers",
        "name": name,
        "x": list(labels),
        "y": [_number(v) for v in values],
        "line": style,
        "connectgaps": False,
        "hovertemplate": f"%{{x}}<br>%{{fullData.name}}: %{{y:.2f}} {unit}<extra></extra>",
    }


def bars_and_line(
    *,
    labels: Sequence[str],
    bars: Sequence[Decimal | None],
    bar_name: str,
    line: Sequence[Decimal | None],
    line_name: str,
    x_title: str,
    title: str,
) -> dict[str, Any]:
    """Energy billed as bars against energy bought as a dotted line, one point per label (kWh)."""
    return {
        "data": [
            {
                "type": "bar",
                "name": bar_name,
                "x": list(labels),
                "y": [_number(v) for v in bars],
                "marker": GRID_STYLE,
                "hovertemplate": "%{x}<br>%{fullData.name}: %{y:.2f} kWh<extra></extra>",
            },
            _line(line_name, labels, line, INCOMER_STYLE, "kWh"),
        ],
        "layout": _layout(x_title, "Energy (kWh)", title),
    }


def line_chart(
    *, labels: Sequence[str], values: Sequence[Decimal | None], name: str, unit: str, x_title: str, title: str
) -> dict[str, Any]:
    """One series as a line with markers (loss %, kWh per litre); gaps where it is unknown."""
    return {"data": [_line(name, labels, values, LOSS_STYLE, unit)], "layout": _layout(x_title, name, title)}
