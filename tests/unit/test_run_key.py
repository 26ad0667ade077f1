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
    assert set(key.as_tags()) == {"textclf.run_key", "textclf.run_key.data", "textclf.run_key.config",
                                  "textclf.run_key.code"}
