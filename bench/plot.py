"""Bar charts as small, dependency-free SVG files, for the benchmarks' `--plot`.

A chart is a row of panels sharing one value axis; each panel holds groups of
bars (e.g. one group per client count, one bar per server) and each bar is
labelled with its value, so that the figure reads without the table.
"""

from __future__ import annotations

import datetime
import os
import platform
from pathlib import Path
from xml.sax.saxutils import escape

PANEL_WIDTH = 190  # at least; wider when its group labels need it
HEIGHT = 220
TOP = 48
LEFT = 52
BAR = 22
GAP = 10
STEPS = (1, 2, 2.5, 4, 5, 10)
COLOURS = ("#e95420", "#77216f", "#333333", "#0e8420")
FONT = 'font-family="sans-serif"'


def conditions() -> list[str]:
    """Caption lines naming where and when a figure was measured."""
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return [
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC on {os.cpu_count()}"
        f" cores ({platform.machine()}, {platform.system()} {platform.release()}),"
        f" load average {load} at the end.",
        "A shared machine: absolute figures drift by 20% or more; ratios side by side are"
        " the figures.",
    ]


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten at or above `value`."""
    if value <= 0:
        return 1.0
    power = 10 ** len(str(int(value))) / 10
    for step in STEPS:
        if value <= step * power:
            return step * power
    return 10 * power


def tick_count(top: float) -> int:
    """How many intervals divide the axis up to `top` into round steps (0.5, not 0.625)."""
    leading = top / 10 ** len(str(int(top))) * 10
    return 5 if round(leading, 6) in (2.5, 5) else 4


def label(value: float) -> str:
    """A value as a bar's label: whole numbers from 100 up, three digits below."""
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def text(x: float, y: float, body: str, size: int = 11, anchor: str = "middle", **extra) -> str:
    attributes = "".join(f' {k.replace("_", "-")}="{v}"' for k, v in extra.items())
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" {FONT}'
        f"{attributes}>{escape(body)}</text>"
    )


def bar_chart(
    title: str,
    panels: dict[str, dict[str, dict[str, float]]],
    unit: str,
    caption: list[str],
) -> str:
    """An SVG of `panels`: panel name -> group label -> series name -> value, in `unit`."""
    series = list(
        dict.fromkeys(s for groups in panels.values() for bars in groups.values() for s in bars)
    )
    top_value = nice_ceiling(
        max(v for groups in panels.values() for bars in groups.values() for v in bars.values())
    )
    widest_group = max(len(group) for groups in panels.values() for group in groups)
    group_width = max(BAR * len(series) + GAP, 6 * widest_group + 10)
    panel_width = max(
        PANEL_WIDTH, GAP + group_width * max(len(groups) for groups in panels.values())
    )
    # Wide enough for the title and caption too (about 9 and 6 px a character).
    width = max(
        LEFT + panel_width * len(panels) + 10,
        9 * len(title) + 20,
        *(6 * len(line) + 20 for line in caption),
    )
    plot_height = HEIGHT - TOP - 40
    height = HEIGHT + 16 * len(caption) + 10

    def y_of(value: float) -> float:
        return TOP + plot_height * (1 - value / top_value)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}"'
        f' viewBox="0 0 {width} {height}">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        text(width / 2, 18, title, size=14, font_weight="bold"),
    ]
    right = LEFT + panel_width * len(panels)
    intervals = tick_count(top_value)
    for tick in range(intervals + 1):
        value = top_value * tick / intervals
        y = y_of(value)
        parts.append(f'<line x1="{LEFT}" x2="{right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        parts.append(text(LEFT - 6, y + 4, f"{value:g}", size=10, anchor="end"))
    parts.append(
        text(
            14,
            TOP + plot_height / 2,
            unit,
            size=11,
            transform=f"rotate(-90 14 {TOP + plot_height / 2})",
        )
    )
    for index, (panel, groups) in enumerate(panels.items()):
        x0 = LEFT + index * panel_width
        parts.append(text(x0 + panel_width / 2, TOP - 8, panel, size=12))
        group_width = (panel_width - GAP) / len(groups)
        for g, (group, bars) in enumerate(groups.items()):
            gx = x0 + GAP + g * group_width + (group_width - BAR * len(series)) / 2
            for s, name in enumerate(series):
                if name not in bars:
                    continue
                value, bx = bars[name], gx + s * BAR
                tooltip = escape(f"{panel}, {group}, {name}: {label(value)} {unit}")
                parts.append(
                    f'<rect x="{bx:.1f}" y="{y_of(value):.1f}" width="{BAR - 2}"'
                    f' height="{TOP + plot_height - y_of(value):.1f}"'
                    f' fill="{COLOURS[s % len(COLOURS)]}"><title>{tooltip}</title></rect>'
                )
                parts.append(text(bx + BAR / 2 - 1, y_of(value) - 3, label(value), size=8))
            parts.append(text(gx + BAR * len(series) / 2, TOP + plot_height + 14, group, size=10))
    legend_y = HEIGHT - 6
    for s, name in enumerate(series):
        lx = LEFT + s * 120
        parts.append(
            f'<rect x="{lx}" y="{legend_y - 9}" width="10" height="10"'
            f' fill="{COLOURS[s % len(COLOURS)]}"/>'
        )
        parts.append(text(lx + 14, legend_y, name, anchor="start"))
    for n, line in enumerate(caption):
        parts.append(text(10, HEIGHT + 12 + 16 * n, line, size=10, anchor="start", fill="#555"))
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def save(path: Path, svg: str) -> None:
    """Write a chart where `--plot` asked, saying where."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(svg)
    print(f"plot: {path}")
