"""The lockfile's record of the environment (every distribution, the torch build) and the warning a replay
gives, naming the packages, when the environment differs."""

from __future__ import annotations

import logging
from importlib.metadata import version

import pytest
import yaml
from helpers import CountingLLM, write

from runner.environment import difference_warning, differences, environment, torch_build
from runner.load import load_recipe
from runner.session import run_recipe

RECIPE = """\
recipe: demo
models:
  gen: tiny-random-llama
stages:
  nums: {type: "demo_components:Numbers", params: {n: 2}}
"""


@pytest.fixture
def llm(monkeypatch):
    fake = CountingLLM()
    monkeypatch.setattr("runner.models.ModelManager.llm", lambda self, b: fake)
    return fake


def test_the_environment_lists_every_distribution_and_the_torch_build():
    env = environment()
    names = {k.lower().replace("_", "-") for k in env["packages"]}
    # more than the project's own dependencies: pytest and its plugins' dependencies too
    assert {"torch", "transformers", "peft", "pydantic", "pytest", "pluggy", "iniconfig"} <= names
    assert env["packages"]["pluggy"] == version("pluggy")
    import torch

    expected = f"cuda {torch.version.cuda}" if torch.version.cuda else "cpu"
    assert env["torch"] == {"version": torch.__version__, "build": expected}


def test_the_torch_build_is_read_without_importing_torch(monkeypatch):
    import sys

    import torch

    monkeypatch.delitem(sys.modules, "torch")  # the file is read, not imported
    assert torch_build() == {"version": torch.__version__, "build": "cuda " + torch.version.cuda
                             if torch.version.cuda else "cpu"}
    assert "torch" not in sys.modules


def test_differences_name_changed_missing_packages_and_the_torch_build():
    locked = {
        "torch": {"version": "2.5.1+cu124", "build": "cuda 12.4"},
        "packages": {"torch": "2.5.1+cu124", "transformers": "5.0.0", "Flash_Attn": "2.7.0", "peft": "0.21.2"},
    }
    now = {
        "torch": {"version": "2.13.0+cpu", "build": "cpu"},
        "packages": {"torch": "2.13.0+cpu", "transformers": "5.0.0", "peft": "0.21.2", "extra-pkg": "1.0"},
    }
    assert differences(locked, now) == [
        "torch build cpu (locked cuda 12.4)",
        "torch 2.13.0+cpu (locked 2.5.1+cu124)",
        "Flash_Attn missing (locked 2.7.0)",
    ]
    assert differences(now, now) == [] and difference_warning(now, now) is None
    many = {"packages": {f"p{i}": "1" for i in range(15)}}
    text = difference_warning(many, {"packages": {}})
    assert "p0 missing (locked 1)" in text and "p11 missing" in text and "p12" not in text
    assert "and 3 more" in text


def test_the_lockfile_records_the_environment_and_a_replay_warns_naming_the_packages(tmp_path, llm, caplog):
    write(tmp_path / "r.yaml", RECIPE)
    run_recipe(load_recipe(tmp_path / "r.yaml"), tmp_path / "runs", progress=False)
    lock_path = tmp_path / "runs" / "demo" / "recipe.lock.yaml"
    data = yaml.safe_load(lock_path.read_text())
    assert data["lock"]["packages"]["pluggy"] == version("pluggy")
    assert data["lock"]["torch"]["build"] in ("cpu",) or data["lock"]["torch"]["build"].startswith("cuda")
    assert data["lock"]["recipe_file"] == "r.yaml"  # no absolute path of this machine

    caplog.clear()  # the run above may have logged at INFO when another test lowered the level
    with caplog.at_level(logging.WARNING, logger="recipe.load"):
        assert load_recipe(lock_path).env_warning is None
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]

    data["lock"]["packages"]["pluggy"] = "0.0.1"
    data["lock"]["packages"]["not-installed-here"] = "3.0"
    write(lock_path, yaml.safe_dump(data, sort_keys=False))
    with caplog.at_level(logging.WARNING, logger="recipe.load"):
        loaded = load_recipe(lock_path)
    assert loaded.env_warning is not None
    assert f"pluggy {version('pluggy')} (locked 0.0.1)" in loaded.env_warning
    assert "not-installed-here missing (locked 3.0)" in loaded.env_warning
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [
        f"{lock_path}: {loaded.env_warning}"]
    # a recipe (no lock section) gives no warning
    assert load_recipe(tmp_path / "r.yaml").env_warning is None
