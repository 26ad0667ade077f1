"""The run key: data bytes, config (without `ops`) and code; any change gives a new key."""

from textclf import run_key
from textclf.config import build_config


def test_key_follows_data_config_and_code_but_not_the_schedule(tmp_path):
    data = tmp_path / "reviews.csv"
    data.write_text("text,label\ngood,positive\nbad,negative\n")
    code = tmp_path / "code"
    code.mkdir()
    (code / "stage.py").write_text("x = 1\n")
    cfg = build_config({"data": {"source": str(data)}})
    key = run_key.compute_run_key(cfg, [code])

    rescheduled = build_config({"data": {"source": str(data)}, "ops": {"cron": "0 5 * * *"}})
    assert run_key.compute_run_key(rescheduled, [code]) == key

    retuned = build_config({"data": {"source": str(data)}, "train": {"epochs": 2}})
    assert run_key.compute_run_key(retuned, [code]).config != key.config

    data.write_text("text,label\ngood,positive\nawful,negative\n")
    changed = run_key.compute_run_key(cfg, [code])
    assert changed.data != key.data and changed.value != key.value

    (code / "stage.py").write_text("x = 2\n")
    assert run_key.compute_run_key(cfg, [code]).code != changed.code
    assert set(key.as_tags()) == {"textclf.run_key", "textclf.run_key.data", "textclf.run_key.config", "textclf.run_key.code"}


def test_skip_decision_follows_the_mode_and_the_last_successful_run(tmp_path):
    """The skip rule against a real sqlite MLflow store: only a FINISHED run with the same key skips."""
    from textclf import stages
    from textclf.deployments import SCHEDULED_DEPLOYMENT

    data = tmp_path / "reviews.csv"
    data.write_text("text,label\ngood,positive\nbad,negative\n")
    code = tmp_path / "code"
    code.mkdir()
    (code / "stage.py").write_text("x = 1\n")
    tree = {"output_dir": str(tmp_path / "out"), "data": {"source": str(data)}}
    cfg = build_config({**tree, "ops": {"skip_unchanged": "scheduled"}})

    manual = run_key.decide_skip(cfg, [code], "manual")
    assert not manual.skip and "not a run to skip" in manual.reason
    first = run_key.decide_skip(cfg, [code], SCHEDULED_DEPLOYMENT)
    assert not first.skip and "is new" in first.reason and first.previous_run_id is None

    run = stages.start_tracking(cfg, "earlier", first.key_tags)
    assert not run_key.decide_skip(cfg, [code], SCHEDULED_DEPLOYMENT).skip  # still RUNNING: not a success
    run.end()
    again = run_key.decide_skip(cfg, [code], SCHEDULED_DEPLOYMENT)
    assert again.skip and again.previous_run_id == run.run_id and "unchanged since" in again.reason
    never = build_config({**tree, "ops": {"skip_unchanged": "never"}})
    assert not run_key.decide_skip(never, [code], SCHEDULED_DEPLOYMENT).skip
    (code / "stage.py").write_text("x = 2\n")  # new code: a new key
    assert not run_key.decide_skip(cfg, [code], SCHEDULED_DEPLOYMENT).skip


def test_the_retrain_policy_is_asked_when_only_the_data_changed_on_a_scheduled_run(tmp_path):
    """monitor.scheduled: a scheduled run whose config and code equal the last success's but whose data changed asks
    the policy first; a manual run, a config or code change, or monitor.scheduled=false just train."""
    from textclf import stages
    from textclf.deployments import SCHEDULED_DEPLOYMENT

    data = tmp_path / "reviews.csv"
    data.write_text("text,label\ngood,positive\nbad,negative\n")
    code = tmp_path / "code"
    code.mkdir()
    (code / "stage.py").write_text("x = 1\n")
    tree = {"output_dir": str(tmp_path / "out"), "data": {"source": str(data)}}
    cfg = build_config(tree)
    assert not run_key.decide_skip(cfg, [code], SCHEDULED_DEPLOYMENT).ask_policy  # no run yet: train
    first = run_key.decide_skip(cfg, [code], SCHEDULED_DEPLOYMENT)
    stages.start_tracking(cfg, "earlier", first.key_tags).end()

    data.write_text("text,label\ngood,positive\nbad,negative\nfine,positive\n")
    asked = run_key.decide_skip(cfg, [code], SCHEDULED_DEPLOYMENT)
    assert asked.ask_policy and not asked.skip and "the retrain policy decides" in asked.reason
    assert not run_key.decide_skip(cfg, [code], "manual").ask_policy
    off = build_config({**tree, "monitor": {"scheduled": False}})
    assert not run_key.decide_skip(off, [code], SCHEDULED_DEPLOYMENT).ask_policy
    retuned = build_config({**tree, "train": {"epochs": 2}})
    assert not run_key.decide_skip(retuned, [code], SCHEDULED_DEPLOYMENT).ask_policy
    (code / "stage.py").write_text("x = 2\n")
    assert not run_key.decide_skip(cfg, [code], SCHEDULED_DEPLOYMENT).ask_policy
