"""Recipe loading and validation: positions, all problems at once, did-you-mean, overrides, profiles."""

from __future__ import annotations

import pytest
from helpers import write

from runner.errors import RecipeError
from runner.load import load_recipe, parse_override

GOOD = """\
recipe: demo
models:
  gen: tiny-random-llama
profiles:
  big:
    stages:
      nums: {params: {n: 7}}
stages:
  nums:
    type: demo_components:Numbers
    params: {n: 3, path: data/x.jsonl}
  ask:
    type: demo_components:Ask
    inputs: {records: nums}
    model: gen
"""


def test_good_recipe_loads_in_dependency_order(tmp_path):
    loaded = load_recipe(write(tmp_path / "r.yaml", GOOD))
    assert loaded.order == ["nums", "ask"]
    assert loaded.components["nums"].params.n == 3
    assert loaded.bindings["ask"]["llm"].ref == "tiny-random-llama"
    assert loaded.bindings["ask"]["llm"].role == "gen"
    # relative paths point from the recipe file
    assert loaded.components["nums"].params.path == str(tmp_path / "data" / "x.jsonl")


def test_override_beats_profile_beats_file(tmp_path):
    p = write(tmp_path / "r.yaml", GOOD)
    assert load_recipe(p).components["nums"].params.n == 3
    assert load_recipe(p, profile="big").components["nums"].params.n == 7
    assert load_recipe(p, profile="big", overrides=["stages.nums.params.n=11"]).components["nums"].params.n == 11
    assert load_recipe(p, overrides=["stages.nums.params.n=12"]).components["nums"].params.n == 12


def test_override_values_are_typed():
    assert parse_override("a.b=3") == (("a", "b"), 3)
    assert parse_override("a=1e-5") == (("a",), 1e-5)
    assert parse_override("a=true") == (("a",), True)
    assert parse_override("a=[1, 2]") == (("a",), [1, 2])
    assert parse_override("a=hello") == (("a",), "hello")
    with pytest.raises(ValueError):
        parse_override("no-equals-sign")


def test_bad_override_type_is_reported_against_the_override(tmp_path):
    p = write(tmp_path / "r.yaml", GOOD)
    with pytest.raises(RecipeError) as e:
        load_recipe(p, overrides=["stages.nums.params.n=five"])
    (line,) = e.value.lines()
    assert "override 'stages.nums.params.n=five'" in line
    assert "stages.nums.params.n" in line and "five" in line


PLANTED = """\
recipe: demo
models:
  gen: tiny-random-lama
stages:
  nums:
    type: demo_components:Numbers
    params: {n: five}
  ask:
    type: demo_components:Ask
    inputs: {records: numz}
    model: gen
    params: {fail_onn: x}
  judge:
    type: select.filtr
"""


def test_planted_mistakes_are_all_reported_with_positions_and_suggestions(tmp_path):
    p = write(tmp_path / "r.yaml", PLANTED)
    with pytest.raises(RecipeError) as e:
        load_recipe(p)
    lines = e.value.lines()
    text = "\n".join(lines)
    f = str(p)
    assert f"{f}:3:8: models.gen: unknown zoo model 'tiny-random-lama' — did you mean 'tiny-random-llama'" in text
    assert f"{f}:7:17: stages.nums.params.n:" in text and "'five'" in text
    assert f"{f}:10:23: stages.ask.inputs.records: no stage named 'numz' — did you mean 'nums'?" in text
    assert f"{f}:12:14: stages.ask.params.fail_onn: unknown key 'fail_onn' — did you mean 'fail_on'?" in text
    assert f"{f}:14:11: stages.judge.type: unknown component 'select.filtr' — did you mean 'select.filter'" in text
    assert len(lines) == 5


def test_unknown_top_level_and_stage_keys(tmp_path):
    p = write(tmp_path / "r.yaml", GOOD.replace("recipe: demo", "recipe: demo\nstagez: {}").replace(
        "    model: gen", "    modle: gen"))
    with pytest.raises(RecipeError) as e:
        load_recipe(p)
    text = "\n".join(e.value.lines())
    assert ":2:1: stagez: unknown key 'stagez' — did you mean 'stages'?" in text
    assert "stages.ask.modle: unknown key 'modle' — did you mean 'model'" in text


def test_cycle_and_missing_input_are_named(tmp_path):
    p = write(tmp_path / "r.yaml", """\
recipe: demo
stages:
  a: {type: demo_components:Explode, inputs: {records: b}}
  b: {type: demo_components:Explode, inputs: {records: a}}
  c: {type: demo_components:Explode}
""")
    with pytest.raises(RecipeError) as e:
        load_recipe(p)
    text = "\n".join(e.value.lines())
    assert "dependency cycle: a → b → a" in text or "dependency cycle: b → a → b" in text
    assert "stages.c.inputs: demo_components:Explode needs input 'records'" in text


def test_record_fields_are_checked_between_stages(tmp_path):
    p = write(tmp_path / "r.yaml", """\
recipe: demo
stages:
  nums: {type: demo_components:Numbers}
  need: {type: demo_components:Needs, inputs: {records: nums}}
""")
    with pytest.raises(RecipeError) as e:
        load_recipe(p)
    (line,) = e.value.lines()
    assert ":4:57: stages.need.inputs.records:" in line
    assert "needs record fields ['score']" in line and "gives ['id', 'text']" in line


def test_missing_model_and_unknown_model_reference(tmp_path):
    p = write(tmp_path / "r.yaml", """\
recipe: demo
models: {gen: tiny-random-llama}
stages:
  nums: {type: demo_components:Numbers}
  a: {type: demo_components:Ask, inputs: {records: nums}}
  b: {type: demo_components:Ask, inputs: {records: nums}, model: genn}
""")
    with pytest.raises(RecipeError) as e:
        load_recipe(p)
    text = "\n".join(e.value.lines())
    assert "stages.a: demo_components:Ask needs a model for slot 'llm'" in text
    assert "stages.b.model: 'genn' is not a model role, a trainer stage or a zoo model — did you mean 'gen'?" in text


def test_yaml_syntax_error_has_position(tmp_path):
    p = write(tmp_path / "r.yaml", "recipe: demo\nstages:\n  a: {type: x\n")
    with pytest.raises(RecipeError) as e:
        load_recipe(p)
    (line,) = e.value.lines()
    assert line.startswith(f"{p}:") and "invalid YAML" in line


def test_unknown_profile_suggests(tmp_path):
    p = write(tmp_path / "r.yaml", GOOD)
    with pytest.raises(RecipeError) as e:
        load_recipe(p, profile="bigg")
    assert "no profile 'bigg' — did you mean 'big'?" in e.value.lines()[0]


def test_overrides_follow_the_field_type_not_yaml(tmp_path):
    p = write(tmp_path / "r.yaml", GOOD.replace("params: {n: 3, path: data/x.jsonl}",
                                                "params: {n: 3, path: data/x.jsonl}"))
    # a str field keeps the text as typed, where YAML alone would give a bool
    loaded = load_recipe(p, overrides=["stages.ask.params.fail_on=no", "stages.nums.params.n=4"])
    assert loaded.components["ask"].params.fail_on == "no"
    assert loaded.components["nums"].params.n == 4
    # options of a role given as a plain zoo name
    loaded = load_recipe(p, overrides=["models.gen.options.batch_size=2"])
    assert loaded.bindings["ask"]["llm"].ref == "tiny-random-llama"
    assert loaded.bindings["ask"]["llm"].options == {"batch_size": 2}


def test_publish_target_is_checked(tmp_path):
    p = write(tmp_path / "r.yaml", GOOD + "publish: {to: s3://bucket/x}\n")
    with pytest.raises(RecipeError) as e:
        load_recipe(p)
    assert "publish.to: unknown publish target 's3://bucket/x'" in e.value.lines()[0]
    p = write(tmp_path / "r.yaml", GOOD + "publish: {to: hf://just-org}\n")
    with pytest.raises(RecipeError) as e:
        load_recipe(p)
    assert "a Hub target is hf://org/name" in e.value.lines()[0]
