"""Monitoring history at a glance: a two-panel PNG over time (embedding p-value, accuracy drop) and a terminal table.

Figures use a bare Figure on the Agg canvas, as textclf.evaluate does: no pyplot global state, no display.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from textclf.monitor.result import MonitorResult

P_VALUE_FLOOR = 1e-4  # permutation p-values bottom out near 1/(permutations+1); below this the log axis only adds noise
DROP_WIDTH = 28  # characters of the drop shown in the terminal table
# Distinct marker per version, colours from the default cycle: two versions stay apart even in grey print.
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "p")


@dataclass
class HistoryPoint:
    """One monitoring pass, flattened to what the history plot and table show."""

    when: datetime  # tz-aware, UTC
    model_version: str
    drop: str
    embedding_p_value: float
    input_drift: bool
    prediction_drift: bool
    accuracy: float | None
    accuracy_drop: float | None  # registered accuracy minus the drop's: positive is worse
    retrain: bool
    run_id: str

    @classmethod
    def from_result(cls, result: MonitorResult, run_id: str = "") -> HistoryPoint:
        """The point one MonitorResult contributes (its `started` time, read as UTC when it has no offset)."""
        return cls(
            when=_utc(datetime.fromisoformat(result.started)),
            model_version=result.model_version,
            drop=result.drop,
            embedding_p_value=result.embedding.p_value,
            input_drift=result.input_drift,
            prediction_drift=result.prediction.drifted,
            accuracy=None if result.decay is None else result.decay.accuracy,
            accuracy_drop=None if result.decay is None else result.decay.accuracy_drop,
            retrain=result.decision.retrain,
            run_id=run_id,
        )


def _utc(when: datetime) -> datetime:
    # A naive time is taken as UTC (what the monitor writes); an aware one is converted, so axes and table agree.
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _figure(width: float, height: float) -> Figure:
    # Agg canvas on a bare Figure: no pyplot global state, no display needed, thread-safe enough for tasks.
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # local: matplotlib is slow to import, plots are rare
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def plain_text(text: str, limit: int | None = None) -> str:
    """User text for a matplotlib label: `$` escaped (else mathtext parses it, and a stray `$x^$` fails the draw)."""
    text = str(text)
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("$", r"\$")


def version_label(version: str) -> str:
    """`3` -> `v3`; a version already spelled `v3` stays as it is."""
    return version if version[:1] in {"v", "V"} else f"v{version}"


def _version_key(version: str) -> tuple[Any, ...]:
    # Numeric-aware order: v2 before v10 (registry versions are integers as strings).
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", version) if part)


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def plot_history(points: list[HistoryPoint], path: Path, title: str, *, bound: float = 0.01, decay_bound: float = 0.02) -> Path:
    """Write a PNG of the monitoring history: embedding p-value (log) over accuracy drop, one series per version.

    Filled markers are passes that decided to retrain, hollow ones were skipped. `bound` is the embedding test's
    p-value bound, `decay_bound` the largest accepted accuracy drop; both are drawn dashed.
    """
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
    from matplotlib.lines import Line2D

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not points:
        fig = _figure(8, 3)
        fig.suptitle(plain_text(title))
        fig.text(0.5, 0.45, "no monitoring runs yet", ha="center", va="center", fontsize=14, color="grey")
        fig.savefig(path)
        return path

    fig = _figure(9, 6.5)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    ordered = sorted(points, key=lambda p: _utc(p.when))
    versions = sorted({p.model_version for p in ordered}, key=_version_key)
    colours = [c["color"] for c in _colour_cycle()]
    handles: list[Any] = []
    any_accuracy = False
    for i, version in enumerate(versions):
        colour, marker = colours[i % len(colours)], _MARKERS[i % len(_MARKERS)]
        series = [p for p in ordered if p.model_version == version]
        when = [_utc(p.when) for p in series]
        # NaN (a test that could not run) is drawn at the top, not dropped: the pass still happened.
        p_values = [max(p.embedding_p_value, P_VALUE_FLOOR) if _finite(p.embedding_p_value) else 1.0 for p in series]
        top.plot(when, p_values, color=colour, linewidth=0.8, alpha=0.5)
        _scatter(top, when, p_values, [p.retrain for p in series], colour, marker)
        scored = [p for p in series if p.accuracy is not None and _finite(p.accuracy_drop)]
        if scored:
            any_accuracy = True
            s_when = [_utc(p.when) for p in scored]
            drops = [float(p.accuracy_drop) for p in scored]  # type: ignore[arg-type]  # _finite checked it
            bottom.plot(s_when, drops, color=colour, linewidth=0.8, alpha=0.5)
            _scatter(bottom, s_when, drops, [p.retrain for p in scored], colour, marker)
        handles.append(Line2D([], [], color=colour, marker=marker, linestyle="-", label=plain_text(version_label(version))))

    top.set_yscale("log")
    top.set_ylim(P_VALUE_FLOOR * 0.6, 1.6)
    top.axhline(bound, linestyle="--", color="firebrick", linewidth=1)
    top.set_ylabel(f"embedding p-value\n(log, floor {P_VALUE_FLOOR:g})")
    top.grid(True, which="major", alpha=0.3)

    bottom.axhline(decay_bound, linestyle="--", color="firebrick", linewidth=1)
    bottom.axhline(0.0, color="grey", linewidth=0.6)
    bottom.set_ylabel("accuracy drop\nvs registered")
    bottom.grid(True, alpha=0.3)
    if not any_accuracy:
        bottom.text(0.5, 0.5, "no labelled drops yet", transform=bottom.transAxes, ha="center", va="center", color="grey")

    times = [_utc(p.when) for p in ordered]
    if times[-1] - times[0] < timedelta(hours=2):
        # One pass (or a burst): pad to a day, else matplotlib widens a zero span to years.
        bottom.set_xlim(times[0] - timedelta(hours=12), times[-1] + timedelta(hours=12))
    locator = AutoDateLocator()
    bottom.xaxis.set_major_locator(locator)
    bottom.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    bottom.set_xlabel("time (UTC)")

    handles += [
        Line2D([], [], color="black", marker="o", linestyle="", label="retrain"),
        Line2D([], [], color="black", marker="o", markerfacecolor="none", linestyle="", label="skipped"),
        Line2D([], [], color="firebrick", linestyle="--", label=f"bound (p {bound:g}, drop {decay_bound:g})"),
    ]
    # Outside the axes: drifted passes sit at the bottom of the p-value panel, where an inner legend would hide them.
    top.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    top.set_title(plain_text(title))
    fig.tight_layout()
    fig.savefig(path)
    return path


def _colour_cycle() -> list[dict[str, str]]:
    from matplotlib import rcParams

    return list(rcParams["axes.prop_cycle"])


def _scatter(ax: Any, when: list[datetime], values: list[float], retrain: list[bool], colour: str, marker: str) -> None:
    # Filled = retrain, hollow = skipped: the decision reads without a second colour per version.
    for flag in (True, False):
        xs = [w for w, r in zip(when, retrain, strict=True) if r is flag]
        ys = [v for v, r in zip(values, retrain, strict=True) if r is flag]
        if xs:
            ax.scatter(xs, ys, marker=marker, s=42, edgecolors=colour, facecolors=colour if flag else "none", zorder=3)


def _cell(value: float | None, fmt: str) -> str:
    return "-" if value is None else ("nan" if not math.isfinite(value) else format(value, fmt))


def _truncate_left(text: str, width: int) -> str:
    # Keep the end of a drop: for paths the file name is what tells drops apart.
    return text if len(text) <= width else "..." + text[-(width - 3) :]


def history_table(points: list[HistoryPoint]) -> str:
    """A fixed-width plain-text table of the monitoring history, oldest first, for a terminal."""
    header = ["time (UTC)", "version", "drop", "embedding p", "input drift", "pred drift", "accuracy", "drop vs reg", "decision"]
    rows = [
        [
            _utc(p.when).strftime("%Y-%m-%d %H:%M"),
            version_label(p.model_version),
            _truncate_left(" ".join(p.drop.split()), DROP_WIDTH),  # newlines in a drop name would break the grid
            _cell(p.embedding_p_value, ".3g"),
            "yes" if p.input_drift else "no",
            "yes" if p.prediction_drift else "no",
            _cell(p.accuracy, ".3f"),
            _cell(p.accuracy_drop, "+.3f"),
            "retrain" if p.retrain else "skipped",
        ]
        for p in sorted(points, key=lambda p: _utc(p.when))
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    numeric = {3, 6, 7}  # right-aligned so the decimals line up

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))

    out = [line(header), "  ".join("-" * w for w in widths), *(line(r) for r in rows)]
    if not rows:
        out.append("(no monitoring runs yet)")
    return "\n".join(s.rstrip() for s in out) + "\n"
