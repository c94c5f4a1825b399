"""The peaks chart, drawn on the server as SVG: one point per reporting interval and license (its peak, latest
revision), a line through them, the entitlement of each license as a dashed line, and after a "now" line the forecast
of the coming week (an estimate: the p50 line and the band up to the p90). Pure: rows in, markup out.

Each point is a `<circle class="point" data-license=... data-interval=... data-peak=...>` with a `<title>` (a
screen reader and a hover read the same words); the entitlement lines say their value in words too.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from ccxlic_rules import Entitlement
from ccxlic_rules.forecast import Forecast
from ccxlic_rules.report import Row

WIDTH, HEIGHT = 760, 260
LEFT, RIGHT, TOP, BOTTOM = 48, 16, 16, 40
SERIES = (("premium", "Premium"), ("standard", "Standard"), ("ivr_ports", "IVR ports"))


def _y(value: int, top: int) -> float:
    inner = HEIGHT - TOP - BOTTOM
    return TOP + inner - inner * value / top


def _x(i: int, n: int) -> float:
    inner = WIDTH - LEFT - RIGHT
    return LEFT + (inner / 2 if n == 1 else inner * i / (n - 1))


def _frame(
    css: str, title_id: str, n: int, highest: int, entitled: Entitlement | None, title: str
) -> tuple[list[str], int]:
    """A chart's opening, title, value axis (up to `highest`, or the entitlements if higher) and the entitlements as
    dashed lines; with the top of its scale."""
    ceiling = max([1, highest] + ([entitled.premium, entitled.standard, entitled.ivr_ports] if entitled else []))
    top = ceiling + max(1, ceiling // 10)
    parts = [
        f'<svg class="{css}" role="img" aria-labelledby="{title_id}" viewBox="0 0 {WIDTH} {HEIGHT}"'
        f' width="100%" data-intervals="{n}" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{title_id}">{escape(title)}</title>',
    ]
    for step in range(5):  # the value axis
        value = round(top * step / 4)
        y = _y(value, top)
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text class="axis" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{value}</text>')
    if entitled is not None:
        for key, name in SERIES:
            value = getattr(entitled, key)
            y = _y(value, top)
            parts.append(
                f'<line class="entitled {key}" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}">'
                f"<title>{name} purchased: {value}</title></line>"
            )
    return parts, top


def svg(rows: Sequence[Row], entitled: Entitlement | None, title: str, coming: Forecast | None = None) -> str:
    """The chart of `rows` (one per interval, in order) against `entitled` (None: evaluation, nothing purchased), and
    after them, past a dashed "now" line, the `coming` intervals of a forecast (an estimate): per license its p50 as
    a line and the band up to its p90. Each forecast step is a `<circle class="forecast ..." data-p50 data-p90>`."""
    hours = coming.hours if coming is not None else ()
    n, m = len(rows), len(hours)
    total = n + m
    highest = max(
        [max(r.premium, r.standard, r.ivr_ports) for r in rows] + [max(h.p90.values()) for h in hours], default=0
    )
    parts, top = _frame("chart", "chart-title", n, highest, entitled, title)
    for key, name in SERIES:
        points = [(_x(i, total), _y(getattr(r, key), top)) for i, r in enumerate(rows)]
        if len(points) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            parts.append(f'<polyline class="series {key}" points="{path}"/>')
        for (x, y), r in zip(points, rows, strict=True):
            peak = getattr(r, key)
            parts.append(
                f'<circle class="point {key}" data-license="{key}" data-interval="{escape(r.interval_start)}"'
                f' data-peak="{peak}" cx="{x:.1f}" cy="{y:.1f}" r="3.5">'
                f"<title>{name} peak {peak} in the interval from {escape(r.interval_start)}</title></circle>"
            )
    if m:
        x = (_x(n - 1, total) + _x(n, total)) / 2 if n else _x(0, total)
        parts.append(
            f'<line class="now" x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" y2="{HEIGHT - BOTTOM}">'
            "<title>now: to the right, the forecast of the coming intervals (an estimate)</title></line>"
        )
    for key, name in SERIES:
        low = [(_x(n + i, total), _y(h.p50[key], top)) for i, h in enumerate(hours)]
        high = [(_x(n + i, total), _y(h.p90[key], top)) for i, h in enumerate(hours)]
        if m > 1:
            band = " ".join(f"{x:.1f},{y:.1f}" for x, y in [*low, *reversed(high)])
            parts.append(f'<polygon class="band {key}" points="{band}"/>')
            parts.append(
                f'<polyline class="series forecast {key}" points="{" ".join(f"{x:.1f},{y:.1f}" for x, y in low)}"/>'
            )
        for (x, y), h in zip(low, hours, strict=True):
            start = h.start.isoformat()
            parts.append(
                f'<circle class="forecast {key}" data-license="{key}" data-interval="{start}"'
                f' data-p50="{h.p50[key]}" data-p90="{h.p90[key]}" cx="{x:.1f}" cy="{y:.1f}" r="3">'
                f"<title>{name}, the interval from {start}: an estimated peak of {h.p50[key]} (p50), up to"
                f" {h.p90[key]} (p90)</title></circle>"
            )

    def label(i: int) -> str:
        return rows[i].interval_start[:16].replace("T", " ") if i < n else hours[i - n].start.strftime("%Y-%m-%d %H:%M")

    for i in sorted({0, total - 1, (n - 1) // 2 if n else 0, *([n] if m and n else [])}) if total else []:
        anchor = "start" if i == 0 and total > 1 else ("end" if i == total - 1 and total > 1 else "middle")
        parts.append(
            f'<text class="axis" x="{_x(i, total):.1f}" y="{HEIGHT - 12}" text-anchor="{anchor}">{escape(label(i))}</text>'
        )
    if not n:
        parts.append(
            f'<text class="empty" x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle">'
            "no closed reporting interval in this range</text>"
        )
    parts.append("</svg>")
    return "".join(parts)
