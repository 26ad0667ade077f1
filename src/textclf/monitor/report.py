"""The monitoring report: one self-contained HTML page per pass (inline CSS, charts as base64 PNG, no JS).

Machines running the monitor are offline, so nothing is fetched: no CDN, no fonts, no scripts. Every text that
comes from users (drop paths, labels, reasons, provenance) goes through html.escape.
"""

from __future__ import annotations

import base64
import io
import json
import math
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textclf.monitor.plot import _figure, plain_text
from textclf.monitor.result import Decay, MonitorResult, PredictionDrift, TwoSampleTest

if TYPE_CHECKING:
    from matplotlib.figure import Figure

REPORT_FILE = "report.html"
RESULT_FILE = "monitor.json"
LABEL_CHARS = 18  # tick labels longer than this are cut in charts (the tables show them whole)

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto; max-width: 68rem;
       padding: 0 1rem; color: #1d2329; line-height: 1.45; }
h1 { font-size: 1.5rem; margin-bottom: .25rem; word-break: break-all; }
h2 { font-size: 1.15rem; margin-top: 2rem; border-bottom: 1px solid #d0d7de; padding-bottom: .25rem; }
.sub { color: #57606a; margin-top: 0; }
.banner { border-radius: 6px; padding: .8rem 1rem; margin: 1rem 0; border: 1px solid; }
.banner.retrain { background: #fff1e5; border-color: #d4700f; }
.banner.skipped { background: #eef7ee; border-color: #3c8d40; }
.banner .verdict { font-size: 1.3rem; font-weight: 600; }
.banner ul { margin: .4rem 0 0 0; }
table { border-collapse: collapse; margin: .5rem 0; font-size: .92rem; }
th, td { border: 1px solid #d0d7de; padding: .25rem .55rem; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.drift td { background: #fff1e5; }
.yes { color: #b35900; font-weight: 600; }
.no { color: #3c8d40; }
img { max-width: 100%; height: auto; display: block; margin: .5rem 0; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .88rem; word-break: break-all; }
details { margin: .5rem 0; }
.note { color: #57606a; font-size: .9rem; }
"""


def _e(value: Any) -> str:
    return escape(str(value), quote=True)


def _num(value: float | None, fmt: str = ".3f") -> str:
    # None and NaN (a test that could not run) read as a dash, never as an exception mid-report.
    if value is None:
        return "—"
    if isinstance(value, float) and not math.isfinite(value):
        return "—" if math.isnan(value) else ("∞" if value > 0 else "-∞")
    return format(value, fmt)


def _yes_no(flag: bool) -> str:
    return '<span class="yes">yes</span>' if flag else '<span class="no">no</span>'


def _png(fig: Figure, alt: str) -> str:
    buffer = io.BytesIO()
    # No Software metadata: the same result renders to the same bytes.
    fig.savefig(buffer, format="png", metadata={"Software": None})
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{_e(alt)}">'


# --- charts ---------------------------------------------------------------------------------------------------------


def label_share_chart(prediction: PredictionDrift) -> str:
    """Side-by-side bars of predicted-label shares: the champion's test split against the drop."""
    n = len(prediction.labels)
    fig = _figure(min(14.0, max(5.0, 2.0 + 0.55 * n)), 3.6)
    ax = fig.subplots()
    if n == 0:
        ax.text(0.5, 0.5, "no predictions", ha="center", va="center", transform=ax.transAxes, color="grey")
        ax.set_axis_off()
    else:
        xs = list(range(n))
        width = 0.4
        ax.bar([x - width / 2 for x in xs], prediction.reference_share, width, label="test split", color="#4c78a8")
        ax.bar([x + width / 2 for x in xs], prediction.current_share, width, label="drop", color="#f58518")
        ax.set_xticks(
            xs,
            [plain_text(label, LABEL_CHARS) for label in prediction.labels],
            rotation=30 if n > 4 else 0,
            ha="right" if n > 4 else "center",
        )
        ax.set_ylabel("share of predictions")
        ax.set_ylim(0, max([0.0, *prediction.reference_share, *prediction.current_share]) * 1.15 or 1.0)
        ax.legend(fontsize=8)
        ax.grid(True, axis="y", alpha=0.3)
    ax.set_title("Predicted labels")
    fig.tight_layout()
    return _png(fig, "predicted-label shares, test split vs drop")


def confidence_chart(prediction: PredictionDrift) -> str:
    """Histogram of the top-class probability, test split against drop, on the result's own bin edges."""
    edges = prediction.confidence_edges
    ref, cur = prediction.reference_confidence, prediction.current_confidence
    fig = _figure(6.0, 3.4)
    ax = fig.subplots()
    if len(edges) == len(ref) + 1 == len(cur) + 1 and ref:
        # Stairs on the real edges: side-by-side bars would read as bins of half the width.
        ax.stairs(ref, edges, fill=True, alpha=0.45, color="#4c78a8", label="test split")
        ax.stairs(cur, edges, linewidth=2, color="#f58518", label="drop")
        ax.set_xlim(edges[0], edges[-1])
        ax.set_xlabel("top-class probability")
        ax.set_ylabel("share of rows")
        ax.legend(fontsize=8, loc="upper left")
        ax.grid(True, axis="y", alpha=0.3)
    else:
        # Edges and shares disagree (or are empty): say so rather than draw a misleading histogram.
        ax.text(0.5, 0.5, "no confidence histogram", ha="center", va="center", transform=ax.transAxes, color="grey")
        ax.set_axis_off()
    ax.set_title("Confidence")
    fig.tight_layout()
    return _png(fig, "confidence histogram, test split vs drop")


def decay_chart(decay: Decay) -> str:
    """Accuracy and macro-F1 on the drop with their intervals, the registered test scores as diamonds."""
    fig = _figure(6.5, 2.4)
    ax = fig.subplots()
    rows = [
        ("accuracy", decay.accuracy, decay.accuracy_ci, decay.registered_accuracy),
        ("macro-F1", decay.macro_f1, decay.macro_f1_ci, decay.registered_macro_f1),
    ]
    registered_shown = False  # one legend entry, whichever score has a registered value first
    for y, (_, value, (low, high), registered) in enumerate(rows):
        xerr = [[max(0.0, value - low)], [max(0.0, high - value)]]
        ax.errorbar([value], [y], xerr=xerr, fmt="o", color="#f58518", capsize=4, label=None if y else "drop (interval)")
        if registered is not None:
            ax.scatter([registered], [y], marker="D", color="#4c78a8", zorder=3, label=None if registered_shown else "registered")
            registered_shown = True
    ax.set_yticks(range(len(rows)), [name for name, *_ in rows])
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.invert_yaxis()
    values = [v for _, value, ci, reg in rows for v in (value, *ci, reg) if v is not None and math.isfinite(v)]
    if values:
        pad = max(0.01, (max(values) - min(values)) * 0.15)
        ax.set_xlim(max(0.0, min(values) - pad), min(1.0, max(values) + pad))
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.set_title("Scores on the drop against the registered test scores", fontsize=10)
    fig.tight_layout()
    return _png(fig, "accuracy and macro-F1 with intervals against registered scores")


# --- sections -------------------------------------------------------------------------------------------------------


def _tests(result: MonitorResult) -> list[tuple[str, TwoSampleTest]]:
    """Every test the pass ran, with the group it belongs to, in report order."""
    out = [("input: descriptor", t) for t in result.descriptors]
    out.append(("input: embedding", result.embedding))
    out.append(("prediction: label", result.prediction.label_test))
    out.append(("prediction: confidence", result.prediction.confidence_test))
    if result.decay is not None:
        out.append(("label shift", result.decay.label_test))
    return out


def _banner(result: MonitorResult) -> str:
    decision = result.decision
    kind = "retrain" if decision.retrain else "skipped"
    findings = "".join(f"<li><code>{_e(f)}</code></li>" for f in decision.findings) or "<li>no bound crossed</li>"
    return (
        f'<div class="banner {kind}"><div class="verdict">{"Retrain" if decision.retrain else "Skipped"}</div>'
        f"<div>{_e(decision.reason)}</div><div>Findings:</div><ul>{findings}</ul></div>"
    )


def _summary_table(result: MonitorResult) -> str:
    head = "".join(
        f"<th>{h}</th>"
        for h in ("group", "test", "method", "statistic", "p-value", "effect", "reference", "drop", "n ref / drop", "drifted")
    )
    body = []
    for group, t in _tests(result):
        numbers = (_num(t.statistic, ".4g"), _num(t.p_value, ".3g"), _num(t.effect, ".3g"), _num(t.reference, ".4g"))
        cells = "".join(f"<td class=num>{n}</td>" for n in (*numbers, _num(t.current, ".4g"), f"{t.n_reference} / {t.n_current}"))
        body.append(
            f'<tr class="{"drift" if t.drifted else ""}"><td>{_e(group)}</td><td><code>{_e(t.name)}</code></td>'
            f"<td>{_e(t.method)}</td>{cells}<td>{_yes_no(t.drifted)}</td></tr>"
        )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _share_table(prediction: PredictionDrift) -> str:
    rows = "".join(
        f"<tr><td>{_e(label)}</td><td class=num>{_num(r)}</td><td class=num>{_num(c)}</td>"
        f"<td class=num>{_num(c - r, '+.3f')}</td></tr>"
        for label, r, c in zip(prediction.labels, prediction.reference_share, prediction.current_share, strict=False)
    )
    return (
        "<details><summary>Shares per label</summary><table><thead><tr><th>label</th><th>test split</th><th>drop</th>"
        f"<th>difference</th></tr></thead><tbody>{rows}</tbody></table></details>"
    )


def _decay_section(decay: Decay) -> str:
    def row(name: str, value: float, ci: tuple[float, float], registered: float | None, drop: float | None) -> str:
        return (
            f"<tr><td>{name}</td><td class=num>{_num(value)}</td><td class=num>{_num(ci[0])} – {_num(ci[1])}</td>"
            f"<td class=num>{_num(registered)}</td><td class=num>{_num(drop, '+.3f')}</td></tr>"
        )

    table = (
        "<table><thead><tr><th>score</th><th>on the drop</th><th>interval</th><th>registered</th>"
        "<th>drop vs registered</th></tr></thead><tbody>"
        + row("accuracy", decay.accuracy, decay.accuracy_ci, decay.registered_accuracy, decay.accuracy_drop)
        + row("macro-F1", decay.macro_f1, decay.macro_f1_ci, decay.registered_macro_f1, decay.macro_f1_drop)
        + "</tbody></table>"
    )
    return (
        f"<h2>Decay</h2><p>{decay.n} labelled rows. Decayed: {_yes_no(decay.decayed)}. "
        '<span class="note">Drop vs registered is the registered score minus the drop\'s: positive is worse.</span></p>'
        f"{table}{decay_chart(decay)}"
    )


def _value(value: Any) -> str:
    # Nested provenance (splits, hashes) prints as JSON so nothing is lost; escaped like every other text.
    if isinstance(value, dict | list | tuple):
        return f'<span class="mono">{_e(json.dumps(value, default=str, sort_keys=True))}</span>'
    return f'<span class="mono">{_e(value)}</span>'


def _provenance(result: MonitorResult) -> str:
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_value(v)}</td></tr>" for k, v in result.reference.items())
    reference = f"<table><tbody>{rows}</tbody></table>" if rows else "<p class=note>No provenance recorded.</p>"
    timing = (
        f"<table><tbody><tr><th>started</th><td class=mono>{_e(result.started)}</td></tr>"
        f"<tr><th>seconds</th><td class=num>{_num(result.seconds, '.1f')}</td></tr>"
        f"<tr><th>rows in the drop</th><td class=num>{result.rows}</td></tr>"
        f"<tr><th>labelled rows</th><td class=num>{result.labelled_rows}</td></tr></tbody></table>"
    )
    return f"<h2>Reference</h2>{reference}<h2>Timing</h2>{timing}"


def render_html(result: MonitorResult) -> str:
    """The whole report as one self-contained HTML page (inline style and images; readable without JS)."""
    title = f"Monitoring {result.model} on {result.drop}"
    prediction = result.prediction
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="sub">{result.rows} rows, {result.labelled_rows} labelled · started {_e(result.started)} · '
        f"input drift {_yes_no(result.input_drift)} · prediction drift {_yes_no(prediction.drifted)}</p>",
        _banner(result),
        "<h2>Tests</h2>",
        '<p class="note">Reference: the training split for input tests and label shift, the champion\'s test split for '
        "prediction tests. Drifted is set from the configured bounds.</p>",
        _summary_table(result),
        "<h2>Predictions</h2>",
        label_share_chart(prediction),
        _share_table(prediction),
        confidence_chart(prediction),
        _decay_section(result.decay)
        if result.decay is not None
        else "<h2>Decay</h2><p class=note>The drop has no labels: no decay measured.</p>",
        _provenance(result),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def write_report(result: MonitorResult, folder: Path) -> Path:
    """Write `folder/report.html` and `folder/monitor.json`; return the HTML's path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    result.write(folder / RESULT_FILE)
    html_path = folder / REPORT_FILE
    html_path.write_text(render_html(result), encoding="utf-8")
    return html_path
