"""Pure rendering: statistics in, HTML/SVG text out. No ipywidgets, no threads.

Every value that reaches the markup goes through ``esc`` (``html.escape``), so a record or a
result containing ``<script>`` is shown as text. The same markup is the live widget's value and
the static fallback saved with the notebook.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..display import format_seconds

__all__ = [
    "EdgeView",
    "GraphModel",
    "NodeView",
    "count",
    "graph_svg",
    "monitor_html",
    "progress_html",
    "rate",
    "short",
    "sparkline_svg",
]

STYLE = """<style>
.sage-nb-view{font-family:var(--jp-ui-font-family,system-ui,sans-serif);font-size:12px}
.sage-nb-view table{border-collapse:collapse;margin:4px 0}
.sage-nb-view td,.sage-nb-view th{padding:2px 8px;text-align:right;border-bottom:1px solid #ddd}
.sage-nb-view td:first-child,.sage-nb-view th:first-child{text-align:left}
.sage-nb-view .sage-card{display:inline-block;vertical-align:top;margin:4px 12px 4px 0}
.sage-nb-view .ok{color:#1a7f37}.sage-nb-view .bad{color:#cf222e}
</style>"""

_STATE_COLORS = {
    "running": "#0969da",
    "finished": "#1a7f37",
    "failed": "#cf222e",
    "stopped": "#9a6700",
    "idle": "#8c959f",
    "healthy": "#1a7f37",
    "degraded": "#9a6700",
    "down": "#cf222e",
}


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def short(value: Any, limit: int = 40) -> str:
    """``repr`` cut to ``limit`` characters (not escaped)."""
    try:
        text = repr(value)
    except Exception as exc:  # a broken __repr__ must not break a monitor
        text = f"<unrepresentable {type(value).__name__}: {type(exc).__name__}>"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def count(n: int) -> str:
    if n >= 10_000_000:
        return f"{n / 1e6:.0f}M"
    if n >= 100_000:
        return f"{n / 1e3:.0f}k"
    return f"{n:,}"


def rate(per_second: float) -> str:
    if per_second >= 1e6:
        return f"{per_second / 1e6:.1f}M/s"
    if per_second >= 1e3:
        return f"{per_second / 1e3:.1f}k/s"
    return f"{per_second:.0f}/s"


# -- the graph ----------------------------------------------------------------------------
@dataclass
class NodeView:
    """What the graph shows of one node (an operator or a service)."""

    key: str
    label: str
    kind: str  # "source", "map", ..., or "service"
    lines: list[str]
    state: str
    layer: int = 0
    row: int = 0
    x: int = 0
    y: int = 0


@dataclass
class EdgeView:
    source: str
    target: str
    kind: str  # "data" or "call"
    label: str = ""


@dataclass
class GraphModel:
    """Nodes and edges ready to draw; ``data`` holds the numbers (for tests and logs)."""

    nodes: list[NodeView] = field(default_factory=list)
    edges: list[EdgeView] = field(default_factory=list)
    title: str = ""
    data: dict[str, Any] = field(default_factory=dict)


_W, _H, _GAP_X, _GAP_Y, _PAD = 176, 54, 100, 30, 12


def _layout(model: GraphModel) -> tuple[int, int]:
    """Operators left to right in layers (one more than the deepest data input), stacked in
    rows within a layer; services in a band below, each under its first caller. Sets every
    node's ``x``/``y`` and returns the drawing's width and height."""
    inputs: dict[str, list[str]] = {n.key: [] for n in model.nodes}
    callers: dict[str, list[str]] = {}
    for e in model.edges:
        if e.kind == "data" and e.target in inputs:
            inputs[e.target].append(e.source)
        elif e.kind == "call":
            callers.setdefault(e.target, []).append(e.source)
    layers: dict[str, int] = {}

    def layer_of(key: str, depth: int = 0) -> int:
        if key in layers:
            return layers[key]
        if depth > len(inputs):  # a cycle would be a bug; draw it flat rather than recurse
            return 0
        layers[key] = 1 + max((layer_of(u, depth + 1) for u in inputs.get(key, [])), default=-1)
        return layers[key]

    operators = [n for n in model.nodes if n.kind != "service"]
    rows: dict[int, int] = {}
    for n in operators:
        n.layer = layer_of(n.key)
        n.row = rows.get(n.layer, 0)
        rows[n.layer] = n.row + 1
        n.x, n.y = _PAD + n.layer * (_W + _GAP_X), _PAD + n.row * (_H + _GAP_Y)
    band = _PAD + max(rows.values(), default=0) * (_H + _GAP_Y) + (_GAP_Y if operators else 0)
    by_key = {n.key: n for n in operators}
    services = [n for n in model.nodes if n.kind == "service"]

    def wanted_x(n: NodeView) -> int:
        xs = [by_key[c].x for c in callers.get(n.key, []) if c in by_key]
        return min(xs) if xs else 10**9

    next_x = _PAD
    for n in sorted(services, key=wanted_x):
        want = wanted_x(n)
        n.x = max(next_x, want if want < 10**9 else next_x)
        n.y = band
        next_x = n.x + _W + _GAP_X // 2
    nodes = model.nodes
    width = max((n.x for n in nodes), default=0) + _W + _PAD
    height = max((n.y for n in nodes), default=0) + _H + _PAD
    return width, height


def graph_svg(model: GraphModel) -> str:
    """The graph as an inline SVG inside a titled ``div``."""
    if not model.nodes:
        return (
            f'{STYLE}<div class="sage-nb-view sage-graph"><b>{esc(model.title)}</b>'
            "<p>no pipeline yet: build one with sage_env.from_batch(data)...</p></div>"
        )
    width, height = _layout(model)
    by_key = {n.key: n for n in model.nodes}
    parts = [
        # Scales down to the output's width (never clipped, no sideways scroll), never up.
        f'<svg xmlns="http://www.w3.org/2000/svg" width="100%" '
        f'viewBox="0 0 {width} {height}" style="max-width:{width}px;height:auto" '
        f'font-family="sans-serif" font-size="11">',
        '<defs><marker id="sage-arrow" viewBox="0 0 10 10" refX="10" refY="5" '
        'markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
        '<path d="M 0 0 L 10 5 L 0 10 z" fill="#57606a"/></marker></defs>',
    ]
    for e in model.edges:
        a, b = by_key.get(e.source), by_key.get(e.target)
        if a is None or b is None:
            continue
        if e.kind == "call":  # down from the caller's bottom to the service's top
            x1, y1 = a.x + _W / 2, float(a.y + _H)
            x2, y2 = b.x + _W / 2, float(b.y)
            my = (y1 + y2) / 2
            d = f"M {x1:.0f} {y1:.0f} C {x1:.0f} {my:.0f}, {x2:.0f} {my:.0f}, {x2:.0f} {y2:.0f}"
            lx, ly = (x1 + x2) / 2, my
        else:
            x1, y1 = float(a.x + _W), a.y + _H / 2
            x2, y2 = float(b.x), b.y + _H / 2
            mid = (x1 + x2) / 2
            d = f"M {x1:.0f} {y1:.0f} C {mid:.0f} {y1:.0f}, {mid:.0f} {y2:.0f}, {x2:.0f} {y2:.0f}"
            lx, ly = mid, (y1 + y2) / 2 - 4
        dash = ' stroke-dasharray="5,4"' if e.kind == "call" else ""
        color = "#8250df" if e.kind == "call" else "#57606a"
        parts.append(
            f'<path class="sage-edge sage-edge-{e.kind}" d="{d}" fill="none" stroke="{color}" '
            f'stroke-width="1.4"{dash} marker-end="url(#sage-arrow)"/>'
        )
        if e.label and e.kind == "call":
            parts.append(
                f'<text x="{lx:.0f}" y="{ly:.0f}" text-anchor="middle" font-size="10" '
                f'fill="{color}">{esc(e.label)}</text>'
            )
        elif e.label:  # above the edge how it partitions, below it the queue and rate:
            # each line fits the gap between the boxes, so no label runs into one
            first, _, rest = e.label.partition(" · ")
            fits = _GAP_X // 6
            for dy, text in ((0, first), (15, rest)):
                if text:
                    parts.append(
                        f'<text x="{lx:.0f}" y="{ly + dy:.0f}" text-anchor="middle" '
                        f'font-size="10" fill="{color}">{esc(_clip(text, fits))}</text>'
                    )
    for n in model.nodes:
        x, y = n.x, n.y
        color = _STATE_COLORS.get(n.state, "#8c959f")
        fill = "#fbefff" if n.kind == "service" else "#f6f8fa"
        rx = 14 if n.kind == "service" else 4
        parts.append(
            f'<g class="sage-node sage-node-{esc(n.kind)}" data-node="{esc(n.key)}">'
            f'<rect x="{x}" y="{y}" width="{_W}" height="{_H}" rx="{rx}" fill="{fill}" '
            f'stroke="{color}" stroke-width="2"/>'
            f'<text x="{x + 8}" y="{y + 16}" font-weight="bold">{esc(_clip(n.label, 26))}</text>'
        )
        for i, line in enumerate(n.lines[:2]):
            parts.append(f'<text x="{x + 8}" y="{y + 31 + 13 * i}">{esc(_clip(line, 30))}</text>')
        parts.append("</g>")
    parts.append("</svg>")
    return (
        f'{STYLE}<div class="sage-nb-view sage-graph"><b>{esc(model.title)}</b><br>'
        "<div>" + "".join(parts) + "</div></div>"
    )


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- the monitor --------------------------------------------------------------------------
def sparkline_svg(values: Sequence[float], width: int = 200, height: int = 36) -> str:
    """``values`` (seconds, latest right) as a line over a zero baseline, with a y axis
    labelled at its top (the highest value) and its bottom (0), so it reads as a chart."""
    if len(values) < 2:
        return f'<svg class="sage-sparkline" width="{width}" height="{height}"></svg>'
    axis = 44  # the labels' column
    plot = width - axis - 2
    top = max(values) or 1.0
    step = plot / (len(values) - 1)
    points = " ".join(
        f"{axis + i * step:.1f},{height - 4 - (v / top) * (height - 10):.1f}"
        for i, v in enumerate(values)
    )
    label = format_seconds(top)
    return (
        f'<svg class="sage-sparkline" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="9">'
        f'<line x1="{axis - 2}" y1="4" x2="{axis - 2}" y2="{height - 4}" stroke="#8c959f"/>'
        f'<line x1="{axis - 2}" y1="{height - 4}" x2="{width}" y2="{height - 4}" '
        f'stroke="#8c959f"/>'
        f'<text class="sage-axis-max" x="{axis - 5}" y="10" text-anchor="end" '
        f'fill="#57606a">{esc(label)}</text>'
        f'<text class="sage-axis-min" x="{axis - 5}" y="{height - 4}" text-anchor="end" '
        f'fill="#57606a">0</text>'
        f'<polyline points="{points}" fill="none" stroke="#0969da" stroke-width="1.5"/></svg>'
    )


def monitor_html(
    title: str,
    services: Sequence[Any],
    history: dict[str, list[float]],
    recent: dict[str, list[tuple[Any, Any]]],
    health: dict[str, str] | None = None,
) -> str:
    """One card per service: counters, latency percentiles and history, recent requests."""
    cards = []
    for s in services:
        rows = [
            ("state", s.state + (f" ({health[s.name]})" if health and s.name in health else "")),
            ("queued", f"{s.queued:,}"),
            ("in flight", f"{s.in_flight:,}"),
            ("done", f"{s.done:,}"),
            ("failed", f"{s.failed:,}"),
            ("timed out", f"{s.timed_out:,}"),
            ("retries", f"{s.retries:,}"),
            ("p50 / p95 / p99", " / ".join(format_seconds(v) for v in (s.p50, s.p95, s.p99))),
        ]
        table = "".join(
            f'<tr><th>{esc(k)}</th><td class="sage-{esc(k.split()[0])}">{esc(v)}</td></tr>'
            for k, v in rows
        )
        recent_rows = []
        for request, response in reversed(recent.get(s.name, [])[-8:]):
            if response.success:
                outcome = f'<span class="ok">ok {esc(short(response.result, 48))}</span>'
            else:
                err = response.error
                what = err.type_name.rsplit(".", 1)[-1] if err is not None else "error"
                outcome = f'<span class="bad">{esc(what)}</span>'
            recent_rows.append(
                f"<tr><td>{esc(request.method_name)}</td>"
                f"<td>{esc(short(request.args, 40))}</td><td>{outcome}</td>"
                f"<td>{esc(format_seconds(response.execution_time))}</td></tr>"
            )
        recent_table = (
            "<table><tr><th>method</th><th>args</th><th>outcome</th><th>took</th></tr>"
            + "".join(recent_rows)
            + "</table>"
            if recent_rows
            else "<p>no requests yet</p>"
        )
        cards.append(
            f'<div class="sage-card" data-service="{esc(s.name)}"><b>{esc(s.name)}</b>'
            f"<table>{table}</table>p50 latency {sparkline_svg(history.get(s.name, []))}"
            f"{recent_table}</div>"
        )
    body = "".join(cards) or "<p>no services</p>"
    return f'{STYLE}<div class="sage-nb-view sage-monitor"><b>{esc(title)}</b><br>{body}</div>'


# -- progress -----------------------------------------------------------------------------
def progress_html(
    title: str, sources: Sequence[tuple[str, int, int | None]], speed: float, eta: float | None
) -> str:
    """Records done / total per source, with a bar where the total is known."""
    rows = []
    for label, done, total in sources:
        if total:
            pct = min(100.0, 100.0 * done / total)
            bar = (
                f'<div style="width:200px;height:8px;background:#eaeef2;display:inline-block">'
                f'<div style="width:{pct:.1f}%;height:8px;background:#0969da"></div></div>'
            )
            text = f"{done:,} / {total:,} ({pct:.1f}%)"
        else:
            bar, text = "", f"{done:,}"
        rows.append(f"<tr><td>{esc(label)}</td><td>{bar}</td><td>{esc(text)}</td></tr>")
    tail = f"{rate(speed)}" + (f", ETA {eta:.1f} s" if eta is not None else "")
    return (
        f'{STYLE}<div class="sage-nb-view sage-progress"><b>{esc(title)}</b> {esc(tail)}'
        f"<table>{''.join(rows)}</table></div>"
    )
