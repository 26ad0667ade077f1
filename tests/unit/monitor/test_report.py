"""The monitoring report (self-contained, escaped HTML) and the history plot and table."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from textclf.monitor.plot import HistoryPoint, history_table, plot_history
from textclf.monitor.report import render_html, write_report
from textclf.monitor.result import Decay, MonitorResult, PolicyDecision, PredictionDrift, TwoSampleTest

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MALICIOUS = "<script>alert(1)</script>"


def _test(name: str, method: str, p_value: float, effect: float, drifted: bool = False) -> TwoSampleTest:
    return TwoSampleTest(
        name=name,
        method=method,
        statistic=effect * 1.5,
        p_value=p_value,
        effect=effect,
        reference=0.42,
        current=0.47,
        n_reference=2000,
        n_current=350,
        drifted=drifted,
    )


def make_result(*, decay: bool, drop: str = "data/drops/2024-06.csv", retrain: bool = True) -> MonitorResult:
    """Every dataclass filled with plausible numbers; `decay` adds a labelled drop's scores."""
    labels = ["billing", "shipping", "returns & <refunds>"]
    prediction = PredictionDrift(
        labels=labels,
        reference_share=[0.5, 0.3, 0.2],
        current_share=[0.35, 0.45, 0.2],
        label_test=_test("predicted_label", "chi2", 0.003, 0.15, drifted=True),
        confidence_edges=[0.0, 0.2, 0.4, 0.6, 0.8, 1.0],
        reference_confidence=[0.0, 0.05, 0.1, 0.25, 0.6],
        current_confidence=[0.02, 0.1, 0.2, 0.3, 0.38],
        confidence_test=_test("confidence", "ks", 0.04, 0.08),
    )
    scores = (
        Decay(
            n=320,
            accuracy=0.861,
            accuracy_ci=(0.823, 0.897),
            macro_f1=0.842,
            macro_f1_ci=(0.8, 0.88),
            registered_accuracy=0.912,
            registered_macro_f1=0.9,
            label_test=_test("label", "chi2", 0.2, 0.04),
            decayed=True,
        )
        if decay
        else None
    )
    findings = ["input_drift", "prediction_drift", *(["decay"] if decay else [])] if retrain else []
    return MonitorResult(
        model_name="tickets-student",
        model_version="3",
        drop=drop,
        rows=350,
        labelled_rows=320 if decay else 0,
        descriptors=[_test("length_chars", "ks", 0.0004, 0.18, drifted=True), _test("non_ascii_share", "ks", 0.6, 0.02)],
        embedding=_test("embedding", "mmd-permutation", 0.002, 0.011, drifted=True),
        prediction=prediction,
        decay=scores,
        decision=PolicyDecision(
            retrain=retrain,
            findings=findings,
            reason="embedding p=0.002 < 0.01; accuracy 0.861 vs registered 0.912" if retrain else "no bound crossed",
        ),
        started="2024-06-03T08:15:00+00:00",
        seconds=42.5,
        reference={"run_id": "abc123", "splits": {"train": 2000, "test": 500}, "data_version": "d41d8cd9"},
    )


def _test_names(result: MonitorResult) -> list[str]:
    names = [d.name for d in result.descriptors]
    names += [result.embedding.name, result.prediction.label_test.name, result.prediction.confidence_test.name]
    return names + ([result.decay.label_test.name] if result.decay is not None else [])


@pytest.mark.parametrize("decay", [True, False])
def test_html_shows_decision_every_test_and_inline_charts(decay: bool):
    result = make_result(decay=decay)
    html = render_html(result)
    assert html.startswith("<!DOCTYPE html>")
    assert "<title>Monitoring tickets-student/3 on data/drops/2024-06.csv</title>" in html
    assert "Retrain" in html and result.decision.reason.replace("<", "&lt;") in html
    for finding in result.decision.findings:
        assert f"<code>{finding}</code>" in html
    for name in _test_names(result):
        assert f"<code>{name}</code>" in html
    assert ("<td>label shift</td>" in html) is decay
    # Charts are inline: shares, confidence, and the decay chart only with a labelled drop.
    assert html.count('<img src="data:image/png;base64,') == (3 if decay else 2)
    # Labels and provenance are shown, escaped.
    assert "returns &amp; &lt;refunds&gt;" in html
    assert "abc123" in html and "d41d8cd9" in html and "42.5" in html
    if decay:
        assert "0.912" in html and "0.823" in html and "+0.051" in html  # registered, CI low, drop vs registered


def test_html_is_offline_and_self_contained():
    html = render_html(make_result(decay=True))
    assert "http://" not in html and "https://" not in html
    assert "<script" not in html and "<link" not in html
    # Every src/href points inside the page.
    for ref in re.findall(r'(?:src|href)="([^"]*)"', html):
        assert ref.startswith("data:image/png;base64,"), ref[:60]


def test_html_escapes_user_text():
    result = make_result(decay=False, drop=MALICIOUS)
    result.decision.reason = MALICIOUS
    result.prediction.labels[0] = MALICIOUS
    result.reference["note"] = MALICIOUS
    html = render_html(result)
    assert "<script" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_skipped_banner():
    html = render_html(make_result(decay=False, retrain=False))
    assert 'class="banner skipped"' in html and ">Skipped<" in html and "no bound crossed" in html


@pytest.mark.parametrize("decay", [True, False])
def test_write_report_writes_html_and_a_json_that_round_trips(tmp_path: Path, decay: bool):
    result = make_result(decay=decay)
    html_path = write_report(result, tmp_path / "report")
    assert html_path == tmp_path / "report" / "report.html"
    assert html_path.read_text(encoding="utf-8") == render_html(result)
    assert MonitorResult.read(tmp_path / "report" / "monitor.json") == result
    assert MonitorResult.read(result.write(tmp_path / "again.json")) == result


def make_points(n: int) -> list[HistoryPoint]:
    """n passes a day apart over two champion versions; every third one without labels."""
    start = datetime(2024, 6, 1, 8, tzinfo=UTC)
    points = []
    for i in range(n):
        labelled = i % 3 != 2
        points.append(
            HistoryPoint(
                when=start + timedelta(days=i),
                model_version="3" if i < n // 2 else "4",
                drop=f"data/drops/very/long/folder/name/drop-{i:02d}.csv",
                embedding_p_value=[0.3, 0.02, 0.004, 0.0, 0.5][i % 5],  # 0.0: clipped on the log axis
                input_drift=i % 5 in {2, 3},
                prediction_drift=i % 4 == 0,
                accuracy=0.9 - 0.01 * i if labelled else None,
                accuracy_drop=0.005 * i if labelled else None,
                retrain=i % 5 == 3,
                run_id=f"run{i}",
            )
        )
    return points


def _assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 1024


@pytest.mark.parametrize("n", [0, 1, 8])
def test_plot_history_writes_a_png(tmp_path: Path, n: int):
    out = plot_history(make_points(n), tmp_path / "plots" / "history.png", "tickets-student $monitor$")
    assert out == tmp_path / "plots" / "history.png"
    _assert_png(out)


def test_plot_history_without_any_accuracy(tmp_path: Path):
    points = make_points(4)
    for p in points:
        p.accuracy = p.accuracy_drop = None
    _assert_png(plot_history(points, tmp_path / "h.png", "no labels", bound=0.05, decay_bound=0.01))


def test_history_point_from_result():
    point = HistoryPoint.from_result(make_result(decay=True), run_id="r1")
    assert point.when == datetime(2024, 6, 3, 8, 15, tzinfo=UTC)
    assert (point.model_version, point.embedding_p_value, point.run_id) == ("3", 0.002, "r1")
    assert point.input_drift and point.prediction_drift and point.retrain
    assert point.accuracy == 0.861 and point.accuracy_drop == pytest.approx(0.051)
    assert HistoryPoint.from_result(make_result(decay=False)).accuracy_drop is None


def test_history_table_lists_every_point():
    points = make_points(6)
    table = history_table(points)
    lines = table.splitlines()
    assert len(lines) == 2 + len(points)
    assert "embedding p" in lines[0] and "decision" in lines[0]
    for point, line in zip(points, lines[2:], strict=True):  # already oldest first
        assert point.when.strftime("%Y-%m-%d %H:%M") in line
        assert f"v{point.model_version}" in line
        assert ("retrain" if point.retrain else "skipped") in line
        assert f"drop-{points.index(point):02d}.csv" in line  # the drop keeps its end when truncated
    assert "-" in lines[4]  # a point without labels shows dashes for accuracy
    assert len({len(line) for line in lines[:2]}) == 1  # fixed width header and rule


def test_history_table_empty():
    assert "no monitoring runs yet" in history_table([])
