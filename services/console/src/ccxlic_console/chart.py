"""The peaks chart and the forecast chart, drawn on the server as SVG. The peaks chart: one point per reporting interval and license (its peak, latest
revision), a line through them, and the entitlement of each license as a dashed line. Pure: rows in, markup out.

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


def svg(rows: Sequence[Row], entitled: Entitlement | None, title: str) -> str:
    """The chart of `rows` (one per interval, in order) against `entitled` (None: evaluation, nothing purchased)."""
    n = len(rows)
    highest = max([max(r.premium, r.standard, r.ivr_ports) for r in rows], default=0)
    parts, top = _frame("chart", "chart-title", n, highest, entitled, title)
    for key, name in SERIES:
        points = [(_x(i, n), _y(getattr(r, key), top)) for i, r in enumerate(rows)]
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
    labels = sorted({0, n - 1, (n - 1) // 2}) if n else []
    for i in labels:
        anchor = "start" if i == 0 and n > 1 else ("end" if i == n - 1 and n > 1 else "middle")
        parts.append(
            f'<text class="axis" x="{_x(i, n):.1f}" y="{HEIGHT - 12}" text-anchor="{anchor}">'
            f"{escape(rows[i].interval_start[:16].replace('T', ' '))}</text>"
        )
    if not n:
        parts.append(
            f'<text class="empty" x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle">'
            "no closed reporting interval in this range</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def forecast_svg(f: Forecast, entitled: Entitlement | None, title: str) -> str:
    """The coming intervals of a forecast (an estimate): per license its p50 as a line and the band up to its p90,
    against the entitlements. Each step is a `<circle class="forecast ..." data-p50=... data-p90=...>`."""
    n = len(f.hours)
    highest = max([max(h.p90.values()) for h in f.hours], default=0)
    parts, top = _frame("chart forecast", "forecast-title", n, highest, entitled, title)
    for key, name in SERIES:
        low = [(_x(i, n), _y(h.p50[key], top)) for i, h in enumerate(f.hours)]
        high = [(_x(i, n), _y(h.p90[key], top)) for i, h in enumerate(f.hours)]
        if n > 1:
            band = " ".join(f"{x:.1f},{y:.1f}" for x, y in [*low, *reversed(high)])
            parts.append(f'<polygon class="band {key}" points="{band}"/>')
            parts.append(f'<polyline class="series {key}" points="{" ".join(f"{x:.1f},{y:.1f}" for x, y in low)}"/>')
        for (x, y), h in zip(low, f.hours, strict=True):
            start = h.start.isoformat()
            parts.append(
                f'<circle class="forecast {key}" data-license="{key}" data-interval="{start}"'
                f' data-p50="{h.p50[key]}" data-p90="{h.p90[key]}" cx="{x:.1f}" cy="{y:.1f}" r="3">'
                f"<title>{name}, the interval from {start}: an estimated peak of {h.p50[key]} (p50), up to"
                f" {h.p90[key]} (p90)</title></circle>"
            )
    for i in sorted({0, n - 1, (n - 1) // 2}) if n else []:
        anchor = "start" if i == 0 and n > 1 else ("end" if i == n - 1 and n > 1 else "middle")
        parts.append(
            f'<text class="axis" x="{_x(i, n):.1f}" y="{HEIGHT - 12}" text-anchor="{anchor}">'
            f"{f.hours[i].start.strftime('%Y-%m-%d %H:%M')}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)
