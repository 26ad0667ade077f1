"""The champion/challenger gate against a real MLflow sqlite registry: promote, reject, rollback, history, races.

Models of different quality: one real tiny classifier, evaluated for real once; candidates are registered with
that evaluation or with worse/better copies of it. The champion is always re-evaluated for real by the gate.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import threading

import mlflow.artifacts
import pytest
from typer.testing import CliRunner

from textclf import promotion, registry, stages, tracking
from textclf.config import build_config
from textclf.evaluate import EvalReport, evaluate_model

FAST_EVAL = {"latency_samples": 5, "throughput_texts": 32, "mistakes_top_k": 5, "max_latency_p95_ms": 60000}


@pytest.fixture(scope="module")
def real_report(tiny_classifier, splits_dir) -> EvalReport:
    from textclf.config import EvalConfig

    return evaluate_model(tiny_classifier, splits_dir, "test", 16, 64, settings=EvalConfig(**FAST_EVAL))


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory):
    """A migrated, empty MLflow sqlite DB, copied per test: migrations cost ~10 s each on this machine."""
    from mlflow.tracking import MlflowClient

    db = tmp_path_factory.mktemp("template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments()
    return db


@pytest.fixture()
def cfg(tmp_path, empty_store):
    (tmp_path / "outputs").mkdir()
    shutil.copy(empty_store, tmp_path / "outputs" / "mlflow.db")
    return build_config(
        {
            "output_dir": str(tmp_path / "outputs"),
            "augment": {"enabled": False},
            "train": {"eval_batch_size": 16, "max_length": 64},
            "evaluate": FAST_EVAL,
            "registry": {"lock_timeout_s": 60},
        }
    )


def scaled(report: EvalReport, factor: float) -> EvalReport:
    """The same evidence with quality scaled (factor < 1: a worse model; the champion is re-measured anyway)."""
    metrics = {k: (min(1.0, v * factor) if k in ("accuracy", "macro_f1") else v) for k, v in report.metrics.items()}
    return dataclasses.replace(report, metrics=metrics)


def candidate(cfg, model_dir, report, splits_dir, trigger="test") -> dict:
    run = stages.start_tracking(cfg, "candidate", {"data.version": "md5-abc123"})
    result = promotion.register_and_promote(
        cfg.registry_target(),
        cfg.evaluate,
        run.run_id,
        model_dir,
        report,
        {"data.fingerprint": "fp-1"},
        splits_dir,
        trigger,
        actor="tester",
        batch_size=cfg.train.eval_batch_size,
    )
    run.end()
    return result.to_dict()


def champion(cfg) -> str | None:
    mv = registry.current_champion(cfg.registry_target())
    return str(mv.version) if mv else None


def test_gate_rollback_history_and_human_actions(cfg, tiny_classifier, splits_dir, real_report):
    first = candidate(cfg, tiny_classifier, real_report, splits_dir, trigger="schedule:weekly")
    assert first["promoted"] and first["reason"] == "passes thresholds; no champion yet"
    assert champion(cfg) == first["version"] == "1"

    worse = candidate(cfg, tiny_classifier, scaled(real_report, 0.5), splits_dir)
    assert not worse["promoted"] and champion(cfg) == "1"
    assert "macro_f1" in worse["reason"] and "re-evaluated now" in worse["reason"]
    client = tracking.client_for(cfg.tracking_target())
    rejected = client.get_model_version(cfg.registry.model_name, worse["version"])
    assert rejected.tags["promotion.decision"] == "rejected"
    assert rejected.tags["promotion.reason"] == worse["reason"]

    better = candidate(cfg, tiny_classifier, scaled(real_report, 10.0), splits_dir)
    assert better["promoted"] and better["previous_champion"] == "1" and champion(cfg) == "3"

    back = promotion.rollback(cfg.registry_target(), cfg.evaluate, "v3 misbehaves in production", actor="oncall")
    assert champion(cfg) == "1" and back.previous_champion == "3" and back.action == "rollback"

    records = promotion.history(cfg.registry_target())
    assert [(r.seq, r.action, r.decision, r.candidate_version) for r in records] == [
        (1, "gate", "promoted", "1"),
        (2, "gate", "rejected", "2"),
        (3, "gate", "promoted", "3"),
        (4, "rollback", "rolled-back", "1"),
    ]
    assert records[0].trigger == "schedule:weekly" and records[0].champion_metrics == {}
    # The champion was re-measured by the gate, not copied from its registration.
    assert records[1].champion_metrics["macro_f1"] == pytest.approx(real_report.metrics["macro_f1"])
    assert records[1].champion_metrics["latency_p95_ms"] > 0
    assert records[1].thresholds["min_improvement"] == 0.0 and records[1].time < records[2].time
    assert records[3].reason == "v3 misbehaves in production" and records[3].actor == "oncall"

    # Human promote through the CLI (in-process), then the history as printed.
    cli = ["-s", f"output_dir={cfg.output_dir}"]
    from textclf.cli import app

    done = CliRunner().invoke(app, ["registry", "promote", "2", "--reason", "needed for demo", *cli])
    assert done.exit_code == 0, done.output
    assert champion(cfg) == "2"
    shown = CliRunner().invoke(app, ["registry", "history", "textclf", *cli])
    lines = shown.output.strip().splitlines()
    assert len(lines) == 5 and "promote" in lines[4] and "trigger=cli" in lines[4] and "needed for demo" in lines[4]

    # The audit record is a run of its own, and the version tags point at it.
    tagged = client.get_model_version(cfg.registry.model_name, "2").tags
    assert tagged["promotion.audit_run_id"] == promotion.history(cfg.registry_target())[-1].audit_run_id
    audit_run = client.get_run(tagged["promotion.audit_run_id"])
    assert audit_run.data.tags["audit.decision"] == "promoted" and "candidate.macro_f1" in audit_run.data.metrics


def run_main(args: list[str], capsys) -> tuple[int, str, str]:
    """The real `textclf` entry point (error formatting and exit codes included), in this process."""
    from textclf.cli import main

    argv, sys.argv = sys.argv, ["textclf", *args]
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    finally:
        sys.argv = argv
    out = capsys.readouterr()
    return code, out.out, out.err


def test_refusals_via_entry_point(cfg, tiny_classifier, splits_dir, real_report, capsys):
    candidate(cfg, tiny_classifier, real_report, splits_dir)
    run_id = stages.start_tracking(cfg, None, {}).run_id
    unevaluated = registry.register_model(cfg.registry_target(), run_id, tiny_classifier)  # registered by hand, no evaluation
    opts = ["-s", f"output_dir={cfg.output_dir}"]
    capsys.readouterr()
    for args, expected in (
        (["promote", "9", "--reason", "x"], "version 9 of model textclf does not exist"),
        (["promote", unevaluated.version, "--reason", "x"], "has no evaluation"),
        (["rollback", "--reason", "x"], "first audited champion"),
    ):
        code, _, err = run_main(["registry", *args, *opts], capsys)
        assert code != 0
        errors = [line for line in err.splitlines() if line.startswith("textclf: error:")]
        assert len(errors) == 1 and expected in errors[0], err[-2000:]
    code, _, err = run_main(["registry", "promote", "1", *opts], capsys)  # --reason is required
    assert code != 0 and "--reason" in err
    code, out, _ = run_main(["registry", "history", "--json", *opts], capsys)
    records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert code == 0 and [r["decision"] for r in records] == ["promoted"]  # refusals record nothing


def test_model_card_and_evidence_attached(cfg, tiny_classifier, splits_dir, real_report):
    result = candidate(cfg, tiny_classifier, real_report, splits_dir)
    mv = tracking.client_for(cfg.tracking_target()).get_model_version(cfg.registry.model_name, result["version"])
    assert mv.tags["model_card"] == result["model_card"] and result["model_card"] in mv.description
    assert mv.tags["eval.report"].endswith("evaluation/v1/eval.json")
    card = _read_artifact(cfg, result["model_card"])
    assert "# Model card: `textclf` version 1" in card
    assert "| `data.fingerprint` | fp-1 |" in card and "| `data.version` | md5-abc123 |" in card
    assert "- code commit: `" in card and "_not recorded_" not in card.split("- code commit:")[1].splitlines()[0]
    assert f"| `accuracy` | {real_report.metrics['accuracy']:.4f} |" in card
    assert "No augmentation was used" in card


def _read_artifact(cfg, uri: str) -> str:
    local = mlflow.artifacts.download_artifacts(artifact_uri=uri, tracking_uri=cfg.mlflow_uri())
    with open(local, encoding="utf-8") as fh:
        return fh.read()


def test_concurrent_promotions_leave_one_consistent_champion(cfg, tiny_classifier, splits_dir, real_report):
    start = threading.Barrier(2, timeout=120)
    results, errors = {}, []

    def flow(key, report):
        try:
            start.wait()
            results[key] = candidate(cfg, tiny_classifier, report, splits_dir, trigger=f"thread:{key}")
        except Exception as err:  # surfaced by the assertion below
            errors.append(repr(err))

    threads = [threading.Thread(target=flow, args=(k, r)) for k, r in (("a", real_report), ("b", scaled(real_report, 1.0)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads) and errors == []
    records = promotion.history(cfg.registry_target())
    assert len(records) == 2 and [r.seq for r in records] == [1, 2]
    assert {r.candidate_version for r in records} == {results["a"]["version"], results["b"]["version"]}
    # The chain is unbroken: each decision saw the champion the previous one left.
    assert records[0].previous_champion is None and records[1].previous_champion == records[0].champion_after
    assert champion(cfg) == records[1].champion_after
    assert records[1].champion_metrics, "the second decision compared against the first's champion"


# Label spaces: the gate compares classes by name. 'mixed' sorts first, so adding it shifts every old id.
TWO = ["negative", "positive"]
THREE = ["mixed", "negative", "positive"]


@pytest.fixture(scope="module")
def three_class(tmp_path_factory, tiny_model, splits_dir):
    """(classifier folder, splits folder, evaluation) of a 3-class drop: every other negative row becomes 'mixed'."""
    import torch
    from datasets import ClassLabel, Dataset, DatasetDict, load_from_disk

    from textclf.config import EvalConfig
    from textclf.modeling import load_classifier

    old = load_from_disk(str(splits_dir))
    new = {}
    for name, split in old.items():
        names, negatives = [], 0
        for i in split["label"]:
            negatives += TWO[i] == "negative"
            names.append("mixed" if TWO[i] == "negative" and negatives % 2 else TWO[i])
        features = split.features.copy()
        features["label"] = ClassLabel(names=THREE)
        new[name] = Dataset.from_dict({**split.to_dict(), "label": [THREE.index(n) for n in names]}, features=features)
    data = tmp_path_factory.mktemp("splits3") / "splits"
    DatasetDict(new).save_to_disk(str(data))

    torch.manual_seed(0)
    model, tokenizer = load_classifier(str(tiny_model), THREE)
    folder = tmp_path_factory.mktemp("tiny-clf3")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder, data, evaluate_model(folder, data, "test", 16, settings=EvalConfig(**FAST_EVAL))


def test_a_changed_label_set_is_recorded_and_waits_unless_configured(cfg, tiny_classifier, splits_dir, real_report, three_class):
    clf3, splits3, report3 = three_class
    reg = cfg.registry_target()
    assert candidate(cfg, tiny_classifier, real_report, splits_dir)["promoted"]  # v1: a 2-class champion
    first = promotion.history(reg)[0]
    assert first.label_verdict == "" and first.champion_labels == [] and first.data_labels == TWO

    added = candidate(cfg, clf3, report3, splits3)  # v2: a class was added (default registry.on_label_change=wait)
    assert not added["promoted"] and champion(cfg) == "1"
    assert added["reason"].startswith(
        f"label set changed: champion not comparable (champion: {TWO}, data: {THREE}); gated on absolute thresholds only; "
        "passes thresholds; not promoted (registry.on_label_change=wait)"
    )
    record = promotion.history(reg)[-1]
    assert (record.label_verdict, record.champion_labels, record.data_labels) == ("changed", TWO, THREE)
    assert record.champion_metrics == {} and record.thresholds["on_label_change"] == "wait"
    assert record.candidate_metrics["macro_f1"] == pytest.approx(report3.metrics["macro_f1"])

    # A person promotes the waiting candidate, as the reason says.
    promotion.promote_version(reg, cfg.evaluate, added["version"], "mixed class reviewed", actor="qa")
    assert champion(cfg) == "2"

    # A class removed, under registry.on_label_change=promote: a 2-class candidate vs the 3-class champion.
    tree = cfg.to_dict()
    tree["registry"]["on_label_change"] = "promote"
    eager = build_config(tree)
    removed = candidate(eager, tiny_classifier, real_report, splits_dir)
    assert removed["promoted"] and removed["previous_champion"] == "2" and champion(cfg) == removed["version"] == "3"
    assert removed["reason"].startswith(f"label set changed: champion not comparable (champion: {THREE}, data: {TWO})")
    assert "registry.on_label_change=promote" in removed["reason"]
    record = promotion.history(reg)[-1]
    assert (record.label_verdict, record.champion_labels, record.data_labels) == ("changed", THREE, TWO)
    assert [r.decision for r in promotion.history(reg)] == ["promoted", "rejected", "promoted", "promoted"]


def test_a_champion_with_reordered_labels_scores_as_in_the_original_order(cfg, three_class, tmp_path, reordered_classifier):
    from textclf.config import EvalConfig

    clf3, splits3, report3 = three_class
    order = ["positive", "mixed", "negative"]
    shuffled = reordered_classifier(clf3, tmp_path / "reordered", order)
    reference = evaluate_model(clf3, splits3, "test", 16, settings=EvalConfig(**FAST_EVAL))
    mapped = evaluate_model(shuffled, splits3, "test", 16, settings=EvalConfig(**FAST_EVAL))
    assert mapped.model_labels == order and mapped.labels == reference.labels == THREE
    assert mapped.confusion == reference.confusion and list(mapped.per_class) == THREE
    assert all(mapped.per_class[name] == pytest.approx(reference.per_class[name]) for name in THREE)

    assert candidate(cfg, shuffled, report3, splits3)["promoted"]  # v1: the reordered champion
    result = candidate(cfg, clf3, report3, splits3)
    record = promotion.history(cfg.registry_target())[-1]
    assert (record.label_verdict, record.champion_labels, record.data_labels) == ("reordered", order, THREE)
    assert result["reason"].startswith(
        f"label order differed: champion's predictions mapped to the data's ids by name (champion: {order}, data: {THREE}); "
        "passes thresholds; macro_f1"
    )
    for key in ("accuracy", "macro_f1", "weighted_f1", "macro_recall", "ece"):
        assert record.champion_metrics[key] == pytest.approx(reference.metrics[key], abs=1e-6), key


def test_a_retried_promotion_registers_one_version_and_takes_one_decision(cfg, tiny_classifier, splits_dir, real_report):
    """A retried promote task (or flow run) of the same training run: the same version and decision come back."""
    reg = cfg.registry_target()
    run = stages.start_tracking(cfg, "candidate", {})

    def promote_once():
        return promotion.register_and_promote(
            reg,
            cfg.evaluate,
            run.run_id,
            tiny_classifier,
            real_report,
            {},
            splits_dir,
            "retry-test",
            batch_size=cfg.train.eval_batch_size,
        )

    first, again = promote_once(), promote_once()
    assert first.version == again.version == "1" and again.promoted == first.promoted
    assert again.audit_run_id == first.audit_run_id
    client = tracking.client_for(cfg.tracking_target())
    assert len(client.search_model_versions(f"name = '{reg.name}'")) == 1
    assert len(promotion.history(reg)) == 1
    models = [a.path for a in client.list_artifacts(run.run_id) if a.path.startswith("model") and a.path != "model_card"]
    assert models == ["model"]  # the model was logged once


def test_a_champion_that_cannot_be_read_fails_closed(monkeypatch):
    """Only 'does not exist' means no champion: a tracking server that does not answer stops the decision."""
    import socket

    from textclf.registry import ChampionUnreadable, current_champion

    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    reg = build_config({"tracking": {"tracking_uri": f"http://127.0.0.1:{port}"}}).registry_target()
    with pytest.raises(ChampionUnreadable, match=f"could not read @champion of textclf from http://127.0.0.1:{port}"):
        current_champion(reg)


def test_a_missing_model_or_alias_is_no_champion(cfg, tiny_classifier):
    from textclf.registry import current_champion, register_model

    reg = cfg.registry_target()
    assert current_champion(reg) is None  # no registered model yet
    register_model(reg, stages.start_tracking(cfg, "c", {}).run_id, tiny_classifier)
    assert current_champion(reg) is None  # a model without the alias
