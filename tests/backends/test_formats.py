"""Output formats in the LLM contract and how each backend receives them: the vLLM parameters (mapped
here without vLLM), the OpenAI-compatible request fields and what ``recipe serve`` reads back."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import ValidationError

from runner.backends.base import Format, Sampling, regex_escape
from runner.backends.format_fields import format_from_body, request_fields
from runner.backends.vllm_backend import format_param, sampling_kwargs, structured_output_kwargs

REGEX = Format.regex(r"\[\[(10|[1-9])\]\]")
SCHEMA = Format.json_schema({"type": "object", "properties": {"score": {"type": "integer"}}})
GRAMMAR = Format.grammar('start: "yes" | "no"')


def test_a_free_request_dumps_as_before_formats_existed_and_a_constrained_one_carries_its_format():
    # the call journal keys on this dump: runs journaled before formats existed keep their keys
    assert Sampling(max_new_tokens=8).model_dump(mode="json") == {
        "temperature": 0.0, "top_p": 1.0, "max_new_tokens": 8, "stop": [], "seed": None, "logprobs": None}
    dumped = Sampling(max_new_tokens=8, format=REGEX).model_dump(mode="json")
    assert dumped["format"] == {"kind": "regex", "spec": r"\[\[(10|[1-9])\]\]"}
    assert Sampling.model_validate(dumped) == Sampling(max_new_tokens=8, format=REGEX)
    assert Sampling(format=REGEX) != Sampling(format=Format.regex("[0-9]"))


def test_formats_are_values_with_a_key_and_a_json_schema_must_be_an_object():
    assert Format.regex("a+") == Format.regex("a+") and Format.regex("a+").key == Format.regex("a+").key
    assert Format.regex("a+").key != Format.grammar("a+").key
    assert SCHEMA.spec == '{"properties":{"score":{"type":"integer"}},"type":"object"}'
    assert SCHEMA.schema() == {"type": "object", "properties": {"score": {"type": "integer"}}}
    with pytest.raises(ValidationError):
        Format(kind="json_schema", spec="[1, 2]")
    with pytest.raises(ValidationError):
        Format(kind="json_schema", spec="{not json")
    with pytest.raises(ValidationError):
        Format(kind="xml", spec="x")  # type: ignore[arg-type]


def test_regex_escape_and_choice_make_literals():
    assert regex_escape("a.b (c)|[d]\n") == r"a\.b \(c\)\|\[d\]\n"
    assert Format.choice(["Yes", "No."]).spec == r"(Yes|No\.)"


# ---- vLLM ---------------------------------------------------------------------------------------------


@dataclass
class NewParams:  # stands in for vllm.sampling_params.StructuredOutputsParams
    regex: str | None = None
    json: Any = None
    grammar: str | None = None


@dataclass
class OldParams:  # stands in for the older GuidedDecodingParams
    regex: str | None = None
    json: Any = None
    grammar: str | None = None


def test_vllm_gets_the_same_format_as_its_structured_output_params():
    assert structured_output_kwargs(REGEX) == {"regex": r"\[\[(10|[1-9])\]\]"}
    assert structured_output_kwargs(SCHEMA) == {"json": {"type": "object", "properties": {"score": {"type": "integer"}}}}
    assert structured_output_kwargs(GRAMMAR) == {"grammar": 'start: "yes" | "no"'}
    recent = SimpleNamespace(StructuredOutputsParams=NewParams, GuidedDecodingParams=OldParams)
    assert format_param(REGEX, recent) == {"structured_outputs": NewParams(regex=r"\[\[(10|[1-9])\]\]")}
    older = SimpleNamespace(GuidedDecodingParams=OldParams)
    assert format_param(GRAMMAR, older) == {"guided_decoding": OldParams(grammar='start: "yes" | "no"')}
    with pytest.raises(ValueError, match="no structured outputs"):
        format_param(REGEX, SimpleNamespace())
    # the rest of the sampling settings map as without a format
    assert sampling_kwargs(Sampling(max_new_tokens=4, format=REGEX)) == sampling_kwargs(Sampling(max_new_tokens=4))


# ---- OpenAI-compatible request fields -----------------------------------------------------------------


def test_request_fields_per_kind_and_style():
    kinds = ["regex", "json_schema", "grammar"]
    assert request_fields(REGEX, kinds) == {"structured_outputs": {"regex": r"\[\[(10|[1-9])\]\]"}}
    assert request_fields(GRAMMAR, kinds) == {"structured_outputs": {"grammar": 'start: "yes" | "no"'}}
    assert request_fields(REGEX, kinds, "guided") == {"guided_regex": r"\[\[(10|[1-9])\]\]"}
    assert request_fields(GRAMMAR, kinds, "guided") == {"guided_grammar": 'start: "yes" | "no"'}
    assert request_fields(SCHEMA, kinds) == {"response_format": {"type": "json_schema", "json_schema": {
        "name": "reply", "schema": {"type": "object", "properties": {"score": {"type": "integer"}}},
        "strict": True}}}


def test_a_kind_the_endpoint_does_not_declare_is_refused():
    with pytest.raises(ValueError, match="does not enforce regex formats .*declares: json_schema"):
        request_fields(REGEX, ["json_schema"])
    with pytest.raises(ValueError, match="declares: none"):
        request_fields(SCHEMA, [])


@pytest.mark.parametrize("body, expected", [
    ({}, None),
    ({"response_format": {"type": "text"}}, None),
    ({"response_format": {"type": "json_object"}}, Format.json_schema({"type": "object"})),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "integer"}}}},
     Format.json_schema({"type": "integer"})),
    ({"structured_outputs": {"regex": "[0-9]+"}}, Format.regex("[0-9]+")),
    ({"structured_outputs": {"grammar": "start: A\nA: /a+/"}}, Format.grammar("start: A\nA: /a+/")),
    ({"structured_outputs": {"json": '{"type": "integer"}'}}, Format.json_schema({"type": "integer"})),
    ({"structured_outputs": {"choice": ["a.b", "c"]}}, Format.regex(r"(a\.b|c)")),
    ({"guided_regex": "[0-9]+"}, Format.regex("[0-9]+")),
    ({"guided_json": {"type": "integer"}}, Format.json_schema({"type": "integer"})),
    ({"guided_grammar": "start: A\nA: /a+/"}, Format.grammar("start: A\nA: /a+/")),
    ({"guided_choice": ["x"]}, Format.regex("(x)")),
])
def test_serve_reads_every_format_field(body, expected):
    assert format_from_body(body) == expected


def test_the_request_fields_read_back_as_the_same_format():
    for fmt in (REGEX, SCHEMA, GRAMMAR):
        for style in ("structured_outputs", "guided"):
            assert format_from_body(request_fields(fmt, ["regex", "json_schema", "grammar"], style)) == fmt


@pytest.mark.parametrize("body", [
    {"response_format": {"type": "yaml"}},
    {"response_format": {"type": "json_schema", "json_schema": {}}},
    {"structured_outputs": "regex"},
    {"structured_outputs": {"regex": 3}},
    {"guided_choice": []},
    {"guided_regex": "a", "response_format": {"type": "json_object"}},
])
def test_malformed_or_conflicting_format_fields_are_errors(body):
    with pytest.raises(ValueError):
        format_from_body(body)
