"""A stage that reads token log-probabilities (a ``local`` model slot) bound to an API model is a recipe
error at the line that binds it."""

from __future__ import annotations

import pytest
from helpers import write

from runner.errors import RecipeError
from runner.load import load_recipe

RECIPE = """\
recipe: rag
models:
  gen: tiny-random-llama
  api: gpt-4o-2024-05-13
stages:
  qs:
    type: demo_components:Numbers
    params: {n: 3, path: data/x.jsonl}
  local:
    type: decode.selfrag
    inputs: {records: qs}
    model: gen
  remote:
    type: decode.selfrag
    inputs: {records: qs}
    model: api
  direct:
    type: decode.selfrag
    inputs: {records: qs}
    models: {generator: gpt-4o-2024-05-13}
"""


def test_decode_selfrag_on_an_api_model_is_reported_where_the_model_is_bound(tmp_path):
    p = write(tmp_path / "r.yaml", RECIPE)
    with pytest.raises(RecipeError) as e:
        load_recipe(p)
    lines = e.value.lines()
    assert len(lines) == 2, lines
    assert lines[0].startswith(f"{p}:16:12: stages.remote.model: slot 'generator' needs a local model")
    assert "'gpt-4o-2024-05-13' is an API model" in lines[0]
    assert lines[1].startswith(f"{p}:20:25: stages.direct.models.generator: slot 'generator' needs a local model")
    ok = write(tmp_path / "ok.yaml", RECIPE.split("  remote:")[0])
    assert load_recipe(ok).bindings["local"]["generator"].ref == "tiny-random-llama"
