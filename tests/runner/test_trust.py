"""--trust-code: a recipe that is not one of the user's own files may not name code unless asked."""

from __future__ import annotations

import sys

import pytest
from helpers import write

from runner.cli import main
from runner.phases.trust import not_own_reason

EVIL = """\
from pathlib import Path

from components.base import Fields, WholeComponent

Path(__file__).with_name("imported.marker").write_text("ran")


class Grab(WholeComponent):
    outputs = Fields("id", "text")

    def run(self, inputs, ctx):
        return [{"id": "g", "text": "x"}]
"""

RECIPE = """\
recipe: fetched
stages:
  grab:
    type: evil_mod:Grab
  ask:
    type: demo_components:Ask
    inputs: {records: grab}
    model: remote
models:
  remote: {name: "random://llama", backend: vllm, options: {trust_remote_code: true}}
"""


def test_own_files_are_those_inside_the_working_directory(tmp_path):
    (tmp_path / "work" / "recipes").mkdir(parents=True)
    assert not_own_reason(tmp_path / "work" / "recipes" / "r.yaml", tmp_path / "work") is None
    assert not_own_reason(tmp_path / "elsewhere" / "r.yaml", tmp_path / "work") == (
        f"it lies outside the current directory {(tmp_path / 'work').resolve()}")
    hidden = tmp_path / "work" / ".cache" / "huggingface" / "hub" / "r.yaml"
    assert not_own_reason(hidden, tmp_path / "work") == "it lies in the hidden folder '.cache' (a cache or download)"
    (tmp_path / "work" / "dl" / ".cache" / "huggingface").mkdir(parents=True)  # hf download --local-dir dl
    assert not_own_reason(tmp_path / "work" / "dl" / "recipe.lock.yaml", tmp_path / "work") == (
        f"it was downloaded from the Hugging Face Hub into {(tmp_path / 'work' / 'dl').resolve()}")
    # a symlink in the working directory to a file elsewhere is not the user's own file either
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "r.yaml").write_text("x")
    (tmp_path / "work" / "link.yaml").symlink_to(tmp_path / "elsewhere" / "r.yaml")
    assert not_own_reason(tmp_path / "work" / "link.yaml", tmp_path / "work").startswith("it lies outside")


@pytest.fixture
def fetched(tmp_path, monkeypatch):
    """A recipe outside the working directory, naming a module that leaves a marker when imported."""
    code = tmp_path / "code"
    code.mkdir()
    (code / "evil_mod.py").write_text(EVIL)
    monkeypatch.syspath_prepend(str(code))
    monkeypatch.delitem(sys.modules, "evil_mod", raising=False)
    (tmp_path / "cwd").mkdir()
    (tmp_path / "downloads").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    return write(tmp_path / "downloads" / "r.yaml", RECIPE), code / "imported.marker"


def test_a_recipe_from_elsewhere_naming_code_is_refused_before_the_code_is_imported(fetched, capsys):
    recipe, marker = fetched
    assert main(["validate", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert f"{recipe}:4:11: stages.grab.type: 'evil_mod:Grab' is code that would run in this process, and " \
           "this recipe is not one of your own files (it lies outside the current directory" in err
    assert f"{recipe}:6:11: stages.ask.type: 'demo_components:Ask' is code" in err
    assert f"{recipe}:10:80: models.remote.options.trust_remote_code: 'random://llama' sets trust_remote_code " \
           "(the model repository's code would run), and this recipe is not one of your own files" in err
    assert err.count("run again with --trust-code") == 3
    assert not marker.exists()
    assert main(["run", str(recipe), "--no-progress"]) == 2 and not marker.exists()

    assert main(["validate", str(recipe), "--trust-code"]) == 0
    assert marker.read_text() == "ran"


def test_the_users_own_recipe_runs_its_code_without_the_flag(fetched, monkeypatch, capsys):
    recipe, marker = fetched
    monkeypatch.chdir(recipe.parent)
    assert main(["validate", "r.yaml"]) == 0
    assert marker.exists()


def test_a_recipe_from_elsewhere_with_only_built_in_components_needs_no_flag(fetched, capsys):
    recipe, _ = fetched
    plain = write(recipe.parent / "plain.yaml", "recipe: plain\nstages:\n"
                  "  docs: {type: load.jsonl, params: {path: docs.jsonl}}\n")
    assert main(["validate", str(plain)]) == 0


def test_plugins_count_as_code_and_a_misspelled_built_in_is_left_to_the_components_phase(tmp_path):
    from runner.phases.trust import check_trust
    from runner.schema import StageSpec

    stages = {"a": StageSpec(type="load.jsonl"), "b": StageSpec(type="my_plugin"),
              "c": StageSpec(type="load.jsonll"), "d": StageSpec(type="pkg.mod:Cls")}
    outside = tmp_path / "r.yaml"
    problems, refused = check_trust(outside, stages, {}, None, {"load.jsonl"}, {"my_plugin"})
    assert refused == {"b", "d"}
    assert [p.path for p in problems] == [("stages", "b", "type"), ("stages", "d", "type")]
