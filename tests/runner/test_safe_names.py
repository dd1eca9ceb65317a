"""Names that become folders are safe; zoo URIs are checked at validation; --version; the XDG cache."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from registry.cache import zoo_home
from runner.errors import RecipeError
from runner.load import load_recipe

STAGE = "{type: load.pydoc_topics, params: {topics: [assert]}}"


def _problems(tmp_path: Path, text: str) -> list[str]:
    p = tmp_path / "r.yaml"
    p.write_text(text)
    with pytest.raises(RecipeError) as e:
        load_recipe(p)
    return e.value.lines()


def test_recipe_name_outside_runs_is_rejected(tmp_path):
    (line,) = _problems(tmp_path, f"recipe: ../x\nstages:\n  d: {STAGE}\n")
    assert line.startswith(f"{tmp_path / 'r.yaml'}:1:9: recipe: '../x' is not a safe name")


def test_stage_name_with_a_slash_is_rejected_at_its_key(tmp_path):
    (line,) = _problems(tmp_path, f"recipe: x\nstages:\n  a/b: {STAGE}\n")
    assert line.startswith(f"{tmp_path / 'r.yaml'}:3:3: stages.a/b: 'a/b' is not a safe name")


@pytest.mark.parametrize("uri", ["hf://../../x", "hf://org/..", "hf://org/name@../main"])
def test_hub_uris_that_climb_out_are_rejected(tmp_path, uri):
    text = (f"recipe: x\nmodels: {{g: '{uri}'}}\nstages:\n  d: {STAGE}\n"
            "  a: {type: generate.chat, inputs: {records: d}, model: g, params: {template: '{title}'}}\n")
    (line,) = _problems(tmp_path, text)
    assert line.startswith(f"{tmp_path / 'r.yaml'}:2:13: models.g: {uri}: ")


def test_version_flag():
    out = subprocess.run([sys.executable, "-m", "runner.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("recipe ")


def test_cache_honours_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv("RECIPE_ZOO_HOME", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert zoo_home() == tmp_path / "xdg" / "recipe-zoo"
    monkeypatch.setenv("RECIPE_ZOO_HOME", str(tmp_path / "own"))
    assert zoo_home() == tmp_path / "own"
    monkeypatch.delenv("RECIPE_ZOO_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")  # the XDG spec says: ignore relative paths
    assert zoo_home() == Path.home() / ".cache" / "recipe-zoo"
