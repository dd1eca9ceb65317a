"""``recipe validate`` checks that a stage asking for its reply formats to be enforced runs on a model
that can enforce them."""

from __future__ import annotations

import pytest
from helpers import write

from runner.errors import RecipeError
from runner.load import load_recipe

RECIPE = """\
recipe: demo
models:
  judge: {judge}
stages:
  cases:
    type: load.jsonl
    params: {{path: cases.jsonl}}
  rated:
    type: judge.longbench_chat
    inputs: {{predictions: cases}}
    model: judge
    params: {params}
"""


def load(tmp_path, judge: str, params: str = "{}"):
    return load_recipe(write(tmp_path / "r.yaml", RECIPE.format(judge=judge, params=params)))


def test_an_api_endpoint_without_structured_outputs_cannot_run_a_constrained_stage(tmp_path):
    with pytest.raises(RecipeError) as e:
        load(tmp_path, "gpt-4o-2024-05-13", "{constrained: true}")
    text = str(e.value)
    assert "stages.rated.params.constrained" in text
    assert "cannot enforce the regex format of this stage's replies (rating)" in text
    assert "constrained: false" in text


@pytest.mark.parametrize("judge, params", [
    ("gpt-4o-2024-05-13", "{}"),  # default: off for API endpoints
    ("gpt-4o-2024-05-13", "{constrained: false}"),
    ("{name: gpt-4o-2024-05-13, options: {structured_outputs: [regex]}}", "{constrained: true}"),
    ("tiny-random-llama", "{constrained: true}"),  # local backends enforce every kind
])
def test_stages_whose_model_can_enforce_their_formats_or_that_do_not_ask_validate(tmp_path, judge, params):
    assert load(tmp_path, judge, params).components["rated"].params.constrained == (
        None if params == "{}" else "true" in params)


def test_an_endpoint_that_declares_other_kinds_is_still_refused(tmp_path):
    with pytest.raises(RecipeError, match="declares json_schema structured outputs"):
        load(tmp_path, "{name: gpt-4o-2024-05-13, options: {structured_outputs: [json_schema]}}",
             "{constrained: true}")
