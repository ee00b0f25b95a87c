"""Small SVG plots for the static report, written by hand: no plotting library, no JavaScript, no external file.

Each function returns one `<svg>` element (a string) with explicit width, height and viewBox, a <title> and
an aria-label, ready to be placed inline in an HTML page.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from kubevibe.text import clip_end

# Tableau 10: distinguishable, and readable in print.
PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
           "#bab0ac")
FONT = "font-family=\"Helvetica, Arial, sans-serif\""
CHAR_W = 6.6  # approximate width of a character at 12px


def colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _clip(text: str, limit: int = 44) -> str:
    return clip_end(text, limit, "…")


def _label_width(labels: Sequence[str], limit: int = 44) -> float:
    return min(limit, max((len(_clip(label, limit)) for label in labels), default=4)) * CHAR_W + 16


def _svg(width: float, height: float, title: str, body: list[str]) -> str:
    t = escape(title)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" width="{width:.0f}" height="{height:.0f}" '
            f'viewBox="0 0 {width:.0f} {height:.0f}" role="img" aria-label="{t}" {FONT} font-size="12">'
            f"<title>{t}</title>" + "".join(body) + "</svg>")


def _empty(title: str, message: str = "no finished runs yet") -> str:
    return _svg(420, 60, title, [f'<text x="10" y="35" fill="#666">{escape(message)}</text>'])


def _pct(v: float) -> str:
    return f"{100 * v:.0f}%"


def success_rates(rows: Sequence[dict], title: str = "Success rate with 95% Wilson interval") -> str:
    """rows: {label, rate, ci: (lo, hi), s, n}. A dot per group, whiskers for the interval."""
    rows = [r for r in rows if r.get("n")]
    if not rows:
        return _empty(title)
    left = _label_width([r["label"] for r in rows])
    plot_w, row_h, top = 420.0, 30.0, 30.0
    width, height = left + plot_w + 90, top + row_h * len(rows) + 34
    body = []
    for tick in range(0, 101, 20):
        x = left + plot_w * tick / 100
        body.append(f'<line x1="{x:.1f}" y1="{top - 6}" x2="{x:.1f}" y2="{top + row_h * len(rows)}" '
                    f'stroke="#ddd"/>')
        body.append(f'<text x="{x:.1f}" y="{top + row_h * len(rows) + 16}" text-anchor="middle" '
                    f'fill="#555">{tick}%</text>')
    for i, r in enumerate(rows):
        y = top + row_h * i + row_h / 2
        lo, hi = r["ci"]
        x, x_lo, x_hi = (left + plot_w * v for v in (r["rate"], lo, hi))
        c = colour(i)
        body.append(f'<text x="{left - 8:.1f}" y="{y + 4:.1f}" text-anchor="end">{escape(_clip(r["label"]))}</text>')
        body.append(f'<line x1="{x_lo:.1f}" y1="{y:.1f}" x2="{x_hi:.1f}" y2="{y:.1f}" stroke="{c}" stroke-width="2.5"/>')
        for xe in (x_lo, x_hi):
            body.append(f'<line x1="{xe:.1f}" y1="{y - 6:.1f}" x2="{xe:.1f}" y2="{y + 6:.1f}" stroke="{c}" '
                        'stroke-width="2"/>')
        body.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5.5" fill="{c}"><title>{escape(r["label"])}: '
                    f'{r["s"]}/{r["n"]} = {_pct(r["rate"])} (95% CI {_pct(lo)}–{_pct(hi)})</title></circle>')
        body.append(f'<text x="{left + plot_w + 10:.1f}" y="{y + 4:.1f}" fill="#333">{r["s"]}/{r["n"]} '
                    f'({_pct(r["rate"])})</text>')
    body.append(f'<text x="{left}" y="16" font-weight="bold">{escape(title)}</text>')
    return _svg(width, height, title, body)


def pass_itr_curves(curves: Sequence[dict], title: str = "passItr@k: success within k fix iterations") -> str:
    """curves: {label, points: [(k, rate or None)]}."""
    curves = [c for c in curves if any(v is not None for _, v in c["points"])]
    if not curves:
        return _empty(title)
    k_max = max(max(k for k, _ in c["points"]) for c in curves)
    left, top, plot_w, plot_h = 50.0, 34.0, 460.0, 220.0
    legend_w = _label_width([c["label"] for c in curves]) + 24
    width, height = left + plot_w + 20 + legend_w, top + plot_h + 46
    body = [f'<text x="{left}" y="18" font-weight="bold">{escape(title)}</text>']

    def px(k: float) -> float:
        return left + (plot_w * k / k_max if k_max else plot_w / 2)

    def py(v: float) -> float:
        return top + plot_h * (1 - v)

    for tick in range(0, 101, 25):
        y = py(tick / 100)
        body.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#ddd"/>')
        body.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#555">{tick}%</text>')
    step = max(1, (k_max + 9) // 10)
    for k in range(0, k_max + 1, step):
        body.append(f'<text x="{px(k):.1f}" y="{top + plot_h + 16}" text-anchor="middle" fill="#555">{k}</text>')
    body.append(f'<text x="{left + plot_w / 2}" y="{top + plot_h + 36}" text-anchor="middle" fill="#333">'
                "k (fix iterations)</text>")
    body.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#888"/>')
    for i, c in enumerate(curves):
        col = colour(i)
        pts = [(px(k), py(v)) for k, v in c["points"] if v is not None]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
        body.append(f'<polyline points="{path}" fill="none" stroke="{col}" stroke-width="2.2"/>')
        for (k, v), (x, y) in zip([p for p in c["points"] if p[1] is not None], pts):
            body.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.2" fill="{col}"><title>{escape(c["label"])}: '
                        f'passItr@{k} = {_pct(v)}</title></circle>')
        ly = top + 8 + 20 * i
        lx = left + plot_w + 20
        body.append(f'<line x1="{lx}" y1="{ly:.1f}" x2="{lx + 18}" y2="{ly:.1f}" stroke="{col}" stroke-width="3"/>')
        body.append(f'<text x="{lx + 24}" y="{ly + 4:.1f}">{escape(_clip(c["label"]))}</text>')
    return _svg(width, height, title, body)


def _heat(rate: float | None) -> str:
    if rate is None:
        return "#f4f4f4"
    # white -> red
    r, g, b = 255, int(255 - 200 * rate), int(255 - 210 * rate)
    return f"rgb({r},{g},{b})"


def failure_heatmap(rows: Sequence[dict], stages: Sequence[str], title: str = "Failed executions by stage") -> str:
    """rows: {label, failures: {stage: count}, executions: {stage: count}}; colour = failed / executions."""
    if not rows:
        return _empty(title)
    left = _label_width([r["label"] for r in rows])
    cell_w, cell_h, top = 78.0, 30.0, 46.0
    width, height = left + cell_w * len(stages) + 20, top + cell_h * len(rows) + 34
    body = [f'<text x="{left}" y="16" font-weight="bold">{escape(title)}</text>']
    for j, st in enumerate(stages):
        x = left + cell_w * j + cell_w / 2
        body.append(f'<text x="{x:.1f}" y="{top - 8}" text-anchor="middle" fill="#333">{escape(st.capitalize())}</text>')
    for i, r in enumerate(rows):
        y = top + cell_h * i
        body.append(f'<text x="{left - 8:.1f}" y="{y + cell_h / 2 + 4:.1f}" text-anchor="end">'
                    f'{escape(_clip(r["label"]))}</text>')
        for j, st in enumerate(stages):
            failed, total = r["failures"].get(st, 0), r["executions"].get(st, 0)
            rate = failed / total if total else None
            x = left + cell_w * j
            tip = f"{r['label']} · {st}: {failed} failed of {total} executions"
            body.append(f'<rect x="{x + 1:.1f}" y="{y + 1:.1f}" width="{cell_w - 2}" height="{cell_h - 2}" '
                        f'fill="{_heat(rate)}" stroke="#ccc"><title>{escape(tip)}</title></rect>')
            text = "–" if not total else f"{failed}/{total}"
            fill = "#fff" if rate is not None and rate > 0.6 else "#222"
            body.append(f'<text x="{x + cell_w / 2:.1f}" y="{y + cell_h / 2 + 4:.1f}" text-anchor="middle" '
                        f'fill="{fill}">{text}</text>')
    ly = top + cell_h * len(rows) + 20
    body.append(f'<text x="{left}" y="{ly}" fill="#555">failed / executions; colour: share failed (white 0% → '
                "red 100%)</text>")
    return _svg(width, height, title, body)


def time_breakdown(rows: Sequence[dict], stages: Sequence[str],
                   title: str = "Mean time per run by stage (seconds)") -> str:
    """rows: {label, times: {stage: mean seconds}}; horizontal stacked bars."""
    rows = [r for r in rows if sum(r["times"].values()) > 0]
    if not rows:
        return _empty(title, "no stage time recorded yet")
    left = _label_width([r["label"] for r in rows])
    plot_w, row_h, top = 460.0, 28.0, 56.0
    longest = max(sum(r["times"].values()) for r in rows)
    width, height = left + plot_w + 80, top + row_h * len(rows) + 28
    body = [f'<text x="{left}" y="16" font-weight="bold">{escape(title)}</text>']
    lx = left
    for j, st in enumerate(stages):
        body.append(f'<rect x="{lx:.1f}" y="26" width="11" height="11" fill="{colour(j)}"/>')
        body.append(f'<text x="{lx + 15:.1f}" y="36" font-size="11">{escape(st.capitalize())}</text>')
        lx += 15 + len(st) * 6.4 + 12
    width = max(width, lx + 10)
    for i, r in enumerate(rows):
        y = top + row_h * i
        body.append(f'<text x="{left - 8:.1f}" y="{y + row_h / 2 + 4:.1f}" text-anchor="end">'
                    f'{escape(_clip(r["label"]))}</text>')
        x = left
        for j, st in enumerate(stages):
            v = r["times"].get(st, 0.0)
            if v <= 0:
                continue
            w = plot_w * v / longest
            body.append(f'<rect x="{x:.1f}" y="{y + 4:.1f}" width="{max(w, 0.5):.1f}" height="{row_h - 8}" '
                        f'fill="{colour(j)}"><title>{escape(r["label"])} · {st}: {v:.1f}s</title></rect>')
            x += w
        body.append(f'<text x="{x + 6:.1f}" y="{y + row_h / 2 + 4:.1f}" fill="#333">'
                    f'{sum(r["times"].values()):.1f}s</text>')
    return _svg(width, height, title, body)
