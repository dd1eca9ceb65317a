"""The trained model's metadata file: one typed read and write, relative base paths, model markers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from registry.model_folder import (
    TRAINED_MODEL_FILE,
    TrainedModel,
    TrainingSummary,
    is_adapter,
    is_model_folder,
    read_trained,
    write_trained,
)


def test_a_plain_folder_has_no_metadata(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    assert read_trained(tmp_path) is None
    assert not is_adapter(tmp_path)
    assert is_model_folder(tmp_path)
    assert not is_model_folder(tmp_path / "missing")


def test_write_then_read_round_trips_and_the_file_is_plain_json(tmp_path: Path) -> None:
    info = TrainedModel(
        base="tiny", base_source="random://llama", base_path=Path("/models/tiny"), adapter=True,
        training=TrainingSummary(component="train.sft", stage="sft", steps=2, tokens=52, first_loss=2.5,
                                 final_loss=2.0, settings={"max_steps": None, "lora": {"r": 4}}),
    )
    path = write_trained(tmp_path, info)
    assert path == tmp_path / TRAINED_MODEL_FILE
    data = json.loads(path.read_text())
    assert {k: data[k] for k in ("base", "base_source", "base_path", "adapter")} == {
        "base": "tiny", "base_source": "random://llama", "base_path": "/models/tiny", "adapter": True}
    assert data["training"]["settings"] == {"max_steps": None, "lora": {"r": 4}}  # None settings are kept
    assert read_trained(tmp_path) == info
    assert is_adapter(tmp_path) and is_model_folder(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [TRAINED_MODEL_FILE]  # no temp file left behind


def test_a_relative_base_path_is_relative_to_the_folder(tmp_path: Path) -> None:
    folder = tmp_path / "runs" / "sft" / "model"
    folder.mkdir(parents=True)
    (folder / TRAINED_MODEL_FILE).write_text(json.dumps({"base_path": "../../base", "adapter": True}))
    assert read_trained(folder).base_path == folder / "../../base"


def test_older_and_newer_files_open(tmp_path: Path) -> None:
    # written by hand or by an older version: only some keys; by a newer one: keys we do not know
    (tmp_path / TRAINED_MODEL_FILE).write_text(json.dumps({"base": "tiny-random-llama", "adapter": True,
                                                           "future_key": 1}))
    info = read_trained(tmp_path)
    assert (info.base, info.base_source, info.base_path, info.adapter, info.training) == (
        "tiny-random-llama", None, None, True, None)


def test_a_malformed_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / TRAINED_MODEL_FILE).write_text(json.dumps({"adapter": "perhaps"}))
    with pytest.raises(ValidationError):
        read_trained(tmp_path)
