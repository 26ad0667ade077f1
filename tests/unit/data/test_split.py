"""Stratified, seeded, byte-identical splits; copies of a text and groups never straddle two sides."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from datasets import ClassLabel, Dataset, Features, Value

from textclf.config import DataConfig
from textclf.data.dedup import text_keys
from textclf.data.sources import load_source
from textclf.data.split import split_stratified
from textclf.errors import DataError

VARIANTS = (str.upper, lambda t: f"  {t}\n", lambda t: t.replace(" ", " \t "), str.casefold)


def folder_hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def grouped_data(rows_csv):
    return load_source(DataConfig(source=str(rows_csv), group_column="movie_name"))


def test_same_input_gives_byte_identical_saved_splits(tmp_path, rows_csv):
    for name in ("a", "b"):  # two independent reads and splits, as two runs would do
        dataset = load_source(DataConfig(source=str(rows_csv)))
        split_stratified(dataset, 0.1, 0.2, seed=7).save_to_disk(str(tmp_path / name))
    first, second = folder_hashes(tmp_path / "a"), folder_hashes(tmp_path / "b")
    assert any(name.endswith(".arrow") for name in first)
    assert first == second


def test_another_seed_gives_another_split(rows_csv):
    dataset = load_source(DataConfig(source=str(rows_csv)))
    first, second = split_stratified(dataset, 0.1, 0.2, 1), split_stratified(dataset, 0.1, 0.2, 2)
    assert first["test"]["text"] != second["test"]["text"]


def test_stratified_shares_and_sizes(rows_csv):
    dataset = load_source(DataConfig(source=str(rows_csv)))
    splits = split_stratified(dataset, 0.1, 0.2, seed=0)
    assert {k: len(v) for k, v in splits.items()} == {"train": 140, "validation": 20, "test": 40}
    for part in splits.values():
        assert np.mean(part["label"]) == pytest.approx(0.5)
    texts = [set(part["text"]) for part in splits.values()]
    assert not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2])


def test_groups_stay_on_one_side(grouped_data):
    splits = split_stratified(grouped_data, 0.1, 0.1, seed=3, grouped=True)
    groups = {name: set(part["group"]) for name, part in splits.items()}
    assert not groups["train"] & groups["test"]
    assert not groups["train"] & groups["validation"]
    assert not groups["validation"] & groups["test"]
    assert sum(len(p) for p in splits.values()) == len(grouped_data)
    assert all(len(p) > 0 for p in splits.values())


def test_grouped_split_is_deterministic(grouped_data):
    first = split_stratified(grouped_data, 0.1, 0.1, seed=3, grouped=True)
    second = split_stratified(grouped_data, 0.1, 0.1, seed=3, grouped=True)
    assert all(first[k]["text"] == second[k]["text"] for k in first)


def test_grouped_needs_a_group_column(rows_csv):
    dataset = load_source(DataConfig(source=str(rows_csv)))
    with pytest.raises(DataError, match="data.group_column"):
        split_stratified(dataset, 0.1, 0.1, seed=0, grouped=True)


def test_too_few_groups(tmp_path):
    (tmp_path / "a.csv").write_text("text,label,g\n" + "".join(f"t{i},{'pn'[i % 2]},{i % 3}\n" for i in range(30)))
    dataset = load_source(DataConfig(source=str(tmp_path / "a.csv"), group_column="g"))
    with pytest.raises(DataError, match="only 3 groups"):
        split_stratified(dataset, 0.1, 0.1, seed=0, grouped=True)


def test_class_too_small_to_split(tmp_path):
    (tmp_path / "a.csv").write_text("text,label\n" + "".join(f"t{i},p\n" for i in range(10)) + "x,n\ny,n\n")
    dataset = load_source(DataConfig(source=str(tmp_path / "a.csv")))
    with pytest.raises(DataError, match=r"\['n'\] have fewer than 3 rows"):
        split_stratified(dataset, 0.1, 0.1, seed=0)


def row_level_reference(labels: np.ndarray, val: float, test: float, seed: int) -> tuple[np.ndarray, ...]:
    """The split as it was before duplicate grouping: rows shuffled per class, cut by share."""
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[], [], []]
    for cls in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        n_test, n_val = int(round(len(idx) * test)), int(round(len(idx) * val))
        parts[2].append(idx[:n_test])
        parts[1].append(idx[n_test : n_test + n_val])
        parts[0].append(idx[n_test + n_val :])
    return tuple(np.sort(np.concatenate(p)) for p in parts)


def with_copies(frame: pd.DataFrame, every: int, seed: int = 0) -> pd.DataFrame:
    """`frame` plus a case/whitespace variant of every `every`-th row (1..3 copies each), shuffled."""
    rng = np.random.default_rng(seed)
    copies = [
        {**row, "text": VARIANTS[(i + k) % len(VARIANTS)](row["text"])}
        for i, row in enumerate(frame.iloc[::every].to_dict("records"))
        for k in range(1 + int(rng.integers(0, 3)))
    ]
    return pd.concat([frame, pd.DataFrame(copies)], ignore_index=True).sample(frac=1, random_state=seed)


def as_dataset(frame: pd.DataFrame, group: bool = False) -> Dataset:
    features = {"text": Value("string"), "label": ClassLabel(names=["negative", "positive"])}
    columns = ["text", "label"] + (["group"] if group else [])
    data = frame.assign(label=frame["label"].map({"negative": 0, "positive": 1}))
    if group:
        data = data.assign(group=data["movie_name"].astype(str))
        features["group"] = Value("string")
    return Dataset.from_pandas(data[columns], features=Features(features), preserve_index=False)


def side_of_each_key(splits) -> dict[str, set[str]]:
    sides: dict[str, set[str]] = {}
    for name, part in splits.items():
        for key in text_keys(part["text"]).to_pylist():
            sides.setdefault(key, set()).add(name)
    return sides


@pytest.fixture(scope="module")
def real_frame(tmp_path_factory, real_rows) -> pd.DataFrame:
    return pd.read_csv(real_rows(tmp_path_factory.mktemp("real") / "rows.csv", 2000, seed=4))


def test_without_duplicates_the_split_is_the_row_level_one(real_frame):
    dataset = as_dataset(real_frame)
    splits = split_stratified(dataset, 0.1, 0.2, seed=5)
    reference = row_level_reference(np.asarray(dataset["label"]), 0.1, 0.2, seed=5)
    for part, idx in zip(splits.values(), reference, strict=True):
        assert part["text"] == dataset.select(idx)["text"]


def test_copies_of_a_text_land_on_one_side_in_the_requested_shares(real_frame):
    data = with_copies(real_frame, every=10)  # 200 texts with 1..3 case/whitespace variants each
    dataset = as_dataset(data)
    splits = split_stratified(dataset, 0.1, 0.1, seed=2)
    sides = side_of_each_key(splits)
    assert sum(len(s) > 1 for s in sides.values()) == 0
    # the corpus does hold copies, and a row-level split would have put them on both sides
    row_level = row_level_reference(np.asarray(dataset["label"]), 0.1, 0.1, seed=2)
    straddling = side_of_each_key({n: dataset.select(i) for n, i in zip(("train", "validation", "test"), row_level, strict=True)})
    assert sum(len(s) > 1 for s in straddling.values()) > 30
    n = len(dataset)
    assert sum(len(p) for p in splits.values()) == n
    for name, share in (("validation", 0.1), ("test", 0.1), ("train", 0.8)):
        assert abs(len(splits[name]) - share * n) <= 6, name  # a few rows off at most: groups are cut whole
        assert np.mean(splits[name]["label"]) == pytest.approx(np.mean(dataset["label"]), abs=0.01), name


def test_split_with_duplicates_is_deterministic_and_seeded(real_frame):
    dataset = as_dataset(with_copies(real_frame.head(600), every=7))
    first, again, other = (split_stratified(dataset, 0.1, 0.1, seed=s) for s in (3, 3, 4))
    assert all(first[k]["text"] == again[k]["text"] for k in first)
    assert first["test"]["text"] != other["test"]["text"]


def test_grouped_split_keeps_groups_that_share_a_text_together(real_frame):
    frame = real_frame.head(600)
    movies = frame["movie_name"].drop_duplicates().tolist()
    # 20 rows copy a text of one movie into another movie: those two movies must now go together
    pairs = list(zip(movies[0:40:2], movies[1:40:2], strict=True))
    copies = [{**frame[frame.movie_name == a].iloc[0].to_dict(), "movie_name": b} for a, b in pairs]
    dataset = as_dataset(pd.concat([frame, pd.DataFrame(copies)], ignore_index=True), group=True)
    splits = split_stratified(dataset, 0.1, 0.1, seed=3, grouped=True)
    side_of_group = {g: name for name, part in splits.items() for g in part["group"]}
    assert len(side_of_group) == len(set(dataset["group"]))  # each group on exactly one side...
    assert sum(1 for p in splits.values() for _ in set(p["group"])) == len(side_of_group)
    assert all(side_of_group[a] == side_of_group[b] for a, b in pairs)  # ...and sharing a text joins them
    assert not [k for k, s in side_of_each_key(splits).items() if len(s) > 1]
