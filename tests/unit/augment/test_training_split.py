import numpy as np
import pandas as pd
import pytest
from datasets import load_from_disk

from textclf import stages
from textclf.augment.report import AugmentReport
from textclf.augment.training_split import new_rows_per_class, plan
from textclf.config import AugmentConfig, build_config
from textclf.data.sources import content_digest


def test_new_rows_per_class():
    cfg = AugmentConfig(enabled=True, multiplier=1.5, class_multipliers={"neg": 2.0})
    assert new_rows_per_class({"neg": 10, "pos": 40}, cfg) == {"neg": 10, "pos": 20}
    balanced = AugmentConfig(enabled=True, multiplier=1.0, balance_to_majority=True)
    assert new_rows_per_class({"neg": 10, "pos": 40}, balanced) == {"neg": 30, "pos": 0}


def test_plan_respects_share_cap_and_capacity():
    cfg = AugmentConfig.model_validate(
        {"enabled": True, "variants_per_example": 2, "backtranslate": {"share": 0.5, "max_rows": 6}}
    )
    eligible = {"a": np.arange(0, 10), "b": np.arange(10, 20)}
    bt, syn = plan(eligible, {"a": 30, "b": 4}, cfg, np.random.default_rng(0))
    assert len(bt) == 6 and len(set(bt)) == 6  # capped, one back-translation per source row
    assert max(syn.values()) <= 2  # at most variants_per_example per row
    assert sum(v for r, v in syn.items() if r < 10) == 20  # capacity 10 rows x 2 variants
    assert all(r in range(20) for r in list(syn) + bt)


@pytest.fixture()
def augment_config(tiny_config, tmp_path):
    """tiny_config with augmentation on, a few bad rows in the data, a small back-translation share."""
    frame = pd.read_csv(tiny_config.data.source)
    bad = ["", "<div>Loved <b>it</b></div>", "😀😀😀", "これは本当に素晴らしい映画です", "great " * 5000]
    frame = pd.concat(
        [frame, pd.DataFrame({"text": bad, "label": ["positive"] * len(bad), "movie_name": ["x"] * len(bad)})], ignore_index=True
    )
    source = tmp_path / "with_bad_rows.csv"
    frame.to_csv(source, index=False)
    tree = tiny_config.to_dict()
    tree["data"]["source"] = str(source)
    tree["augment"] = {"enabled": True, "multiplier": 1.5, "backtranslate": {"share": 0.2, "max_rows": 8}}
    tree["validate"]["enabled"] = False
    return build_config(tree)


def test_only_the_train_split_grows_and_rows_are_traceable(augment_config, tmp_path):
    out = tmp_path / "run"
    raw = stages.ingest(augment_config, out)
    data = stages.split(augment_config, raw, out)
    before = load_from_disk(data.path)
    augmented = stages.augment(augment_config, data, out)
    ref, report = augmented.data, augmented.report
    after = load_from_disk(ref.path)

    for name in ("validation", "test"):  # never augmented
        assert content_digest(after[name]) == content_digest(before[name])
    train, n = after["train"], len(before["train"])
    assert len(train) == n + report.total_added() > n
    ops = train["origin_op"]
    assert ops[:n] == ["original"] * n and train["origin_row"][:n] == list(range(n))
    assert set(ops[n:]) == {"synonym", "backtranslation"}
    for row in train.select(range(n, len(train))):
        source = before["train"][row["origin_row"]]
        assert row["label"] == source["label"] and row["text"] != source["text"]
    assert sum(report.skipped.values()) >= 1 and set(report.skipped) <= {"empty", "html", "non_latin", "too_long"}
    assert 0 < len(report.pairs) <= 20 and report.metrics()["augment.rows_added"] == report.total_added()
    assert AugmentReport.read(out / "augment").added == report.added
    assert "| op | label | original | augmented |" in (out / "augment" / "augment_report.md").read_text()

    rerun = stages.augment(augment_config, data, tmp_path / "rerun")  # same seed, warm cache
    again, report2 = rerun.data, rerun.report
    assert again.fingerprint == ref.fingerprint
    assert report2.cache["hits"] == report.planned["backtranslation"] and report2.cache["misses"] == 0
