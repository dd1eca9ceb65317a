"""The loading phases one by one: read (profile, overrides), schema, components, graph."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import write

from runner.errors import RecipeError
from runner.phases.graph import check_publish, order_stages, wire_inputs
from runner.phases.read import base_dir_of, read_recipe_data
from runner.phases.schema import check_schema
from runner.phases.stages import build_components
from runner.schema import StageSpec

RECIPE = """\
recipe: demo
profiles:
  small:
    stages:
      nums: {params: {n: 2}}
  swap:
    stages:
      nums: {type: demo_components:Explode}
stages:
  nums:
    type: demo_components:Numbers
    params: {n: 3, path: x.jsonl}
"""


# ---------------------------------------------------------------------------------------------- read

def test_read_applies_profile_then_overrides_and_points_at_each(tmp_path):
    p = write(tmp_path / "r.yaml", RECIPE)
    raw: dict = {}
    data, smap, problems = read_recipe_data(p, "small", ["stages.nums.params.path=y.jsonl"], raw)
    assert problems == []
    assert data["stages"]["nums"]["params"] == {"n": 2, "path": "y.jsonl"}
    assert raw == {("stages", "nums", "params", "path"): "y.jsonl"}
    # the profile's value points into the profile (line 5), the override's at the override
    assert str(smap.find(("stages", "nums", "params", "n"))) == f"{p}:5:26"
    assert str(smap.find(("stages", "nums", "params", "path"))) == "override 'stages.nums.params.path=y.jsonl'"


def test_read_a_profile_that_swaps_the_component_drops_the_old_params(tmp_path):
    data, _, problems = read_recipe_data(write(tmp_path / "r.yaml", RECIPE), "swap", [])
    assert problems == []
    assert data["stages"]["nums"] == {"type": "demo_components:Explode"}


def test_read_reports_unknown_profile_and_bad_override_without_raising(tmp_path):
    data, smap, problems = read_recipe_data(write(tmp_path / "r.yaml", RECIPE), "smal", ["no-equals"])
    assert [p.message for p in problems] == [
        "no profile 'smal' — did you mean 'small'?",
        "override 'no-equals' is not of the form key.path=value",
    ]
    assert str(problems[0].pos) == f"{tmp_path / 'r.yaml'}:2:1"
    assert data["stages"]["nums"]["params"]["n"] == 3  # nothing overlaid


def test_read_raises_for_a_file_that_is_not_a_mapping(tmp_path):
    with pytest.raises(RecipeError, match="a recipe is a mapping"):
        read_recipe_data(write(tmp_path / "r.yaml", "- a\n- b\n"), None, [])


def test_base_dir_is_the_recipe_folder_or_the_locked_recipe_folder(tmp_path):
    p = tmp_path / "runs" / "r.lock.yaml"
    assert base_dir_of(p, {}) == (tmp_path / "runs").resolve()
    assert base_dir_of(p, {"lock": {"recipe_dir": "../recipes"}}) == (tmp_path / "recipes").resolve()


# ---------------------------------------------------------------------------------------------- schema

def test_schema_keeps_the_good_stages_and_roles_when_one_is_bad():
    data = {"recipe": "demo", "models": {"a": "x", "b": {"name": "y", "options": {"batch_size": 2}}, "c": 3},
            "stages": {"good": {"type": "t"}, "bad": {"type": "t", "retries": -1}}}
    specs, problems = check_schema(data)
    assert specs.recipe is None
    assert list(specs.stages) == ["good"]
    assert {r: (s.name, s.options) for r, s in specs.roles.items()} == {"a": ("x", {}), "b": ("y", {"batch_size": 2})}
    paths = sorted(p.dotted() for p in problems)
    assert "stages.bad.retries" in paths and any(p.startswith("models.c") for p in paths)


def test_schema_of_a_good_recipe_has_no_problems():
    specs, problems = check_schema({"recipe": "demo", "stages": {"a": {"type": "t", "inputs": {"records": "b"}}}})
    assert problems == [] and specs.recipe is not None
    assert specs.stages["a"].inputs == {"records": "b"}
    assert specs.stages_raw == {"a": {"type": "t", "inputs": {"records": "b"}}} and specs.models_raw == {}


# ---------------------------------------------------------------------------------------------- stages

def test_components_are_built_with_paths_resolved_and_problems_per_stage(tmp_path):
    stages = {
        "nums": StageSpec(type="demo_components:Numbers", params={"n": 2, "path": "d/x.jsonl"}),
        "bad": StageSpec(type="demo_components:Numbers", params={"n": "two"}),
        "typo": StageSpec(type="select.filtr"),
    }
    classes, comps, problems = build_components(stages, {}, tmp_path)
    assert set(classes) == {"nums", "bad"} and set(comps) == {"nums"}
    assert comps["nums"].params.path == str(tmp_path / "d" / "x.jsonl")
    assert [p.dotted() for p in problems] == ["stages.bad.params.n", "stages.typo.type"]
    assert "did you mean 'select.filter'" in problems[1].message


def test_an_overridden_string_param_keeps_the_text_as_typed(tmp_path):
    stages = {"ask": StageSpec(type="demo_components:Ask", params={"fail_on": False})}
    _, comps, problems = build_components(stages, {("stages", "ask", "params", "fail_on"): "no"}, Path("."))
    assert problems == [] and comps["ask"].params.fail_on == "no"


# ---------------------------------------------------------------------------------------------- graph

def _classes(**types: str):
    from registry import components

    return {name: components.get(t) for name, t in types.items()}


def test_inputs_become_dependencies_and_wrong_ports_are_named():
    stages = {
        "a": StageSpec(type="demo_components:Numbers"),
        "b": StageSpec(type="demo_components:Explode", inputs={"record": "a", "records": "zz"}),
        "c": StageSpec(type="demo_components:Explode"),
        "d": StageSpec(type="demo_components:Explode", inputs={"records": "d"}),
    }
    classes = _classes(a="demo_components:Numbers", b="demo_components:Explode", c="demo_components:Explode",
                       d="demo_components:Explode")
    deps, problems = wire_inputs(stages, classes, list(stages))
    assert deps == {"a": [], "b": ["a"], "c": [], "d": []}
    assert [(p.dotted(), p.message) for p in problems] == [
        ("stages.b.inputs.record", "demo_components:Explode has no input 'record' — did you mean 'records'?"),
        ("stages.b.inputs.records", "no stage named 'zz'"),
        ("stages.c.inputs", "demo_components:Explode needs input 'records' (an upstream stage name)"),
        ("stages.d.inputs.records", "a stage cannot read its own output"),
    ]


def test_order_is_upstream_first_and_cycles_are_spelled_out():
    order, problems = order_stages({"c": ["b"], "b": ["a"], "a": []}, ["c", "b", "a"])
    assert order == ["a", "b", "c"] and problems == []
    order, problems = order_stages({"a": ["b"], "b": ["a"], "x": []}, ["a", "b", "x"])
    assert [p.message for p in problems] == ["dependency cycle: a → b → a"]
    assert problems[0].dotted() == "stages.a"


def test_publish_targets_and_artifacts():
    assert check_publish(None, ["a"]) == []
    assert check_publish({"to": "file://out", "artifacts": ["a"]}, ["a"]) == []
    msgs = [p.message for p in check_publish({"to": "s3://b", "artifacts": ["a", "bb"]}, ["a", "b"])]
    assert msgs == ["unknown publish target 's3://b' (use hf://org/name or file://folder)",
                    "no stage named 'bb' — did you mean 'b'?"]
    assert [p.message for p in check_publish({"to": "hf://org"}, [])] == ["'hf://org': a Hub target is hf://org/name"]


# ---------------------------------------------------------------------------------------------- secrets

def test_inline_secrets_anywhere_in_a_recipe_are_located_and_reported_once(tmp_path):
    from runner.load import load_recipe

    p = write(tmp_path / "r.yaml", """\
recipe: demo
models:
  g: {name: tiny-random-llama, options: {api_key: sk-inline-1}}
profiles:
  paper:
    models: {g: {name: tiny-random-llama, options: {password: hunter22}}}
stages:
  nums:
    type: demo_components:Numbers
    params: {n: 3, token: abc}
""")
    with pytest.raises(RecipeError) as e:
        load_recipe(p)
    assert e.value.lines() == [
        f"{p}:3:51: models.g.options.api_key: 'api_key' holds a secret written into the recipe; put it in an "
        "environment variable and name that instead (api_key_env: MY_VARIABLE)",
        f"{p}:6:63: profiles.paper.models.g.options.password: 'password' holds a secret written into the recipe; "
        "put it in an environment variable and name that instead (password_env: MY_VARIABLE)",
        f"{p}:10:27: stages.nums.params.token: 'token' holds a secret written into the recipe; put it in an "
        "environment variable and name that instead (token_env: MY_VARIABLE)",
    ]


def test_a_key_variable_named_in_model_options_is_masked_once_the_recipe_loads(tmp_path, monkeypatch):
    from registry.secrets import redact
    from runner.load import load_recipe

    monkeypatch.setenv("ACME_OPTIONS_VAR", "value-named-in-options")
    monkeypatch.setenv("ACME_URI_VAR", "value-named-in-a-uri")
    p = write(tmp_path / "r.yaml", """\
recipe: demo
models:
  g: {name: "openai://m?base_url=http://127.0.0.1:9/v1", options: {api_key_env: ACME_OPTIONS_VAR}}
  h: "openai://m?base_url=http://127.0.0.1:9/v1&api_key_env=ACME_URI_VAR"
stages:
  nums: {type: demo_components:Numbers}
""")
    assert redact("value-named-in-options value-named-in-a-uri") == "value-named-in-options value-named-in-a-uri"
    load_recipe(p)
    assert redact("value-named-in-options value-named-in-a-uri") == "*** ***"
