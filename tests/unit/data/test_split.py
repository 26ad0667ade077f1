"""Stratified, seeded, byte-identical splits; groups never straddle two sides."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from textclf.config import DataConfig
from textclf.data.sources import load_source
from textclf.data.split import split_stratified
from textclf.errors import DataError


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
