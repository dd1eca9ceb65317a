"""The loading phases that need models: zoo names and bindings, backend options, record and template
fields."""

from __future__ import annotations

import pytest
from demo_components import Numbers

from components.base import Fields, MapComponent, ModelSlot, WholeComponent
from components.generators.chat import ChatGenerate
from components.judges.llm_score import LlmScore
from registry.zoo import Zoo
from runner.phases.fields import check_templates, record_fields
from runner.phases.models import bind_models, check_roles, zoo_problem
from runner.phases.options import check_options
from runner.schema import ModelSpec, StageSpec

ZOO = """\
models:
  local:
    source: random://llama?hidden_size=64&layers=2&heads=4&kv_heads=2&intermediate=128&seed=0
  api:
    source: openai://api-model
    api: {model_id: api-model, input_per_mtok: 1.0, output_per_mtok: 2.0}
  enc:
    source: random://bert?seed=0
    kind: embed
  served:
    source: random://llama?seed=1
    serving: {backend: vllm, max_model_len: long}
"""


@pytest.fixture
def zoo(tmp_path, monkeypatch):
    monkeypatch.setenv("RECIPE_ZOO_HOME", str(tmp_path / "home"))
    (tmp_path / "zoo.yaml").write_text(ZOO)
    return Zoo.load([tmp_path / "zoo.yaml"])


# ---------------------------------------------------------------------------------------------- models

def test_zoo_names_and_uris(zoo):
    assert zoo_problem(zoo, "local") is None
    assert zoo_problem(zoo, "random://llama") is None
    assert zoo_problem(zoo, "s3://x") == ("s3://x: unknown source scheme 's3://' "
                                          "(use one of hf://, pypi://, file://, openai://, random://)")
    assert zoo_problem(zoo, "hf://../../x") == "hf://../../x: expected hf://org/name[@revision] (letters, digits, - _ .)"
    assert zoo_problem(zoo, "locall") == "unknown zoo model 'locall' — did you mean 'local'?"
    assert zoo_problem(None, "anything") is None  # no zoo: nothing to check names against


def test_roles_point_at_the_name(zoo):
    roles = {"a": ModelSpec(name="locall"), "b": ModelSpec(name="apii")}
    problems = check_roles(roles, {"a": "locall", "b": {"name": "apii"}}, zoo)
    assert [p.dotted() for p in problems] == ["models.a", "models.b.name"]


class Trainer(WholeComponent):
    type = "t.train"
    inputs = {"records": Fields()}
    models = {"base": ModelSlot(kind="weights")}
    produces_model = True


class Asker(MapComponent):
    type = "t.ask"
    inputs = {"records": Fields()}
    models = {"llm": ModelSlot(), "helper": ModelSlot(required=False)}


def test_bindings_roles_trained_stages_and_their_problems(zoo):
    stages = {
        "sft": StageSpec(type="t.train", model="api"),
        "ask": StageSpec(type="t.ask", model="judge", models={"helpr": "local"}),
        "ask2": StageSpec(type="t.ask", models={"llm": "sft", "helper": "local"}),
        "ask3": StageSpec(type="t.ask"),
    }
    classes = {"sft": Trainer, "ask": Asker, "ask2": Asker, "ask3": Asker}
    roles = {"judge": ModelSpec(name="local", backend="vllm", options={"dtype": "half"})}
    bindings, model_deps, problems = bind_models(stages, classes, roles, list(stages), zoo)
    judge = bindings["ask"]["llm"]
    assert (judge.kind, judge.ref, judge.role, judge.backend, judge.options) == ("zoo", "local", "judge", "vllm",
                                                                                {"dtype": "half"})
    assert (bindings["ask2"]["llm"].kind, bindings["ask2"]["llm"].ref) == ("stage", "sft")
    assert bindings["ask2"]["helper"].ref == "local"
    assert model_deps == {"sft": [], "ask": [], "ask2": ["sft"], "ask3": []}
    assert [(p.dotted(), p.message) for p in problems] == [
        ("stages.sft.model", "slot 'base' needs local weights; 'api' is an API model"),
        ("stages.ask.models.helpr", "t.ask has no model slot 'helpr' — did you mean 'helper'?"),
        ("stages.ask3", "t.ask needs a model for slot 'llm' (set `model:` or `models: {llm: …}`)"),
    ]


# ---------------------------------------------------------------------------------------------- options

def options_problems(zoo, **roles: ModelSpec) -> list[tuple[str, str]]:
    raw = {r: s.model_dump(exclude_defaults=True) for r, s in roles.items()}
    return [(p.dotted(), p.message) for p in check_options(roles, raw, zoo)]


def test_a_misspelled_option_gets_a_did_you_mean(zoo):
    assert options_problems(zoo, g=ModelSpec(name="local", options={"batch_szie": 4})) == [
        ("models.g.options.batch_szie", "unknown option 'batch_szie' for the transformers backend — did you "
                                        "mean 'batch_size'?")]
    assert options_problems(zoo, j=ModelSpec(name="api", options={"concurency": 4})) == [
        ("models.j.options.concurency", "unknown option 'concurency' for the openai backend — did you mean "
                                        "'concurrency'?")]


def test_an_option_of_another_backend_is_named_as_such(zoo):
    transformers_options = "batch_size, dtype, device, num_threads, trust_remote_code"
    assert options_problems(zoo, g=ModelSpec(name="local", options={"concurency": 4})) == [
        ("models.g.options.concurency", "unknown option 'concurency' — did you mean 'concurrency'? ('concurrency' "
         f"is an option of the openai backend; 'local' runs on transformers, whose options are {transformers_options})")]
    assert options_problems(zoo, g=ModelSpec(name="local", options={"budget_usd": 4})) == [
        ("models.g.options.budget_usd", "'budget_usd' is an option of the openai backend, but 'local' runs on "
         f"transformers, whose options are {transformers_options}")]
    assert options_problems(zoo, g=ModelSpec(name="api", options={"device": "cpu"}))[0][1].startswith(
        "'device' is an option of the transformers and embed backends, but 'api' runs on openai")


def test_each_backend_takes_its_own_options(zoo):
    assert options_problems(
        zoo,
        a=ModelSpec(name="local", options={"batch_size": 2, "dtype": "float32", "num_threads": 1}),
        b=ModelSpec(name="api", options={"concurrency": 4, "rpm": 60, "budget_usd": 1.5, "timeout_s": 30}),
        c=ModelSpec(name="local", backend="vllm", options={"gpu_memory_utilization": 0.5, "max_model_len": 4096}),
        d=ModelSpec(name="enc", options={"batch_size": 8, "max_length": 128}),
        e=ModelSpec(name="random://llama?seed=3", options={"batch_size": 1}),
        f=ModelSpec(name="no-such-model", options={"anything": 1}),  # the models phase reports the name
    ) == []


def test_bad_values_and_unknown_backends(zoo):
    assert options_problems(zoo, g=ModelSpec(name="local", options={"batch_size": 0})) == [
        ("models.g.options.batch_size", "input should be greater than or equal to 1, got 0")]
    assert options_problems(zoo, g=ModelSpec(name="local", backend="vlm")) == [
        ("models.g.backend", "unknown backend 'vlm' — did you mean 'vllm'?")]
    # a zoo value the backend cannot take is pinned on the role's model name
    assert options_problems(zoo, s=ModelSpec(name="served")) == [
        ("models.s.name", "zoo entry 'served', max_model_len: input should be a valid integer, unable to parse "
                          "string as an integer, got 'long' (for the vllm backend)")]


# ---------------------------------------------------------------------------------------------- fields

def test_record_fields_follow_passthrough_and_unknown_stays_unknown():
    stages = {
        "nums": StageSpec(type="demo_components:Numbers"),
        "gen": StageSpec(type="generate.chat", inputs={"records": "nums"}),
        "loose": StageSpec(type="load.jsonl"),
        "gen2": StageSpec(type="generate.chat", inputs={"records": "loose"}),
    }
    comps = {"nums": Numbers(), "gen": ChatGenerate(ChatGenerate.Params(template="{text}", output_field="out")),
             "gen2": ChatGenerate(ChatGenerate.Params(template="{x}"))}
    fields_of, problems = record_fields(list(stages), stages, comps)
    assert problems == []
    assert fields_of == {"nums": {"id", "text"}, "gen": {"id", "text", "out"}, "loose": None, "gen2": None}


def test_record_fields_a_port_needs_must_be_given():
    stages = {"nums": StageSpec(type="demo_components:Numbers"),
              "need": StageSpec(type="demo_components:Needs", inputs={"records": "nums"})}
    from demo_components import Needs

    _, problems = record_fields(["nums", "need"], stages, {"nums": Numbers(), "need": Needs()})
    assert [(p.dotted(), p.message) for p in problems] == [
        ("stages.need.inputs.records", "demo_components:Needs needs record fields ['score'] on 'records', but "
                                       "stage 'nums' (demo_components:Numbers) gives ['id', 'text']")]


def test_templates_are_checked_against_upstream_fields():
    stages = {
        "nums": StageSpec(type="demo_components:Numbers"),
        "gen": StageSpec(type="generate.chat", inputs={"records": "nums"}),
        "judge": StageSpec(type="judge.llm_score", inputs={"records": "gen"}),
        "free": StageSpec(type="generate.chat", inputs={"records": "loose"}),
    }
    comps = {
        "gen": ChatGenerate(ChatGenerate.Params(template="{text} {nope} {meta[x]}", system="Be {tone}.")),
        # {scale_min}/{scale_max} are the judge's own, not record fields
        "judge": LlmScore(LlmScore.Params(template="{text} from {scale_min} to {scale_max}: {response}")),
        "free": ChatGenerate(ChatGenerate.Params(template="{whatever}")),  # upstream fields unknown: skipped
    }
    fields_of = {"nums": Fields("id", "text"), "gen": Fields("id", "text", "response"), "loose": None}
    problems = check_templates(stages, comps, fields_of)
    assert [(p.dotted(), p.message) for p in problems] == [
        ("stages.gen.params.template", "the template reads fields 'nope', 'meta', which no record on input "
                                       "'records' has (stage 'nums' (demo_components:Numbers) gives id, text)"),
        ("stages.gen.params.system", "the template reads field 'tone', which no record on input 'records' has "
                                     "(stage 'nums' (demo_components:Numbers) gives id, text)"),
    ]


def test_a_component_names_its_template_params_and_the_fields_they_read():
    chat = ChatGenerate(ChatGenerate.Params(messages_field="messages", system="{persona}"))
    assert chat.template_fields() == {"system": ("records", ["persona"])}  # no template set: not listed
    judge = LlmScore(LlmScore.Params())
    assert judge.template_fields() == {}  # the built-in prompt is the component's own
    assert Numbers().template_fields() == {}
