"""Record values reach a prompt as text, never as None or a Python repr."""

from __future__ import annotations

import pytest

from components.base import Failed
from components.templates import TemplateError, conversations_for, render, template_fields


def test_null_field_is_an_error_naming_it():
    with pytest.raises(TemplateError, match="field 'rec' is null in this record"):
        render("rec {rec}: {text}", {"rec": None, "text": "x"})


def test_missing_field_is_an_error_naming_it():
    with pytest.raises(TemplateError, match="template needs field 'text', missing from the record"):
        render("{text}", {"other": 1})


@pytest.mark.parametrize(("value", "kind"), [([1, 2], "list"), ({"a": 1}, "dict")])
def test_lists_and_dicts_need_the_json_conversion(value, kind):
    with pytest.raises(TemplateError, match=f"field 'v' is a {kind}; write {{v!j}}"):
        render("v={v}", {"v": value})
    assert render("v={v!j}", {"v": value}) == "v=" + {"list": "[1, 2]", "dict": '{"a": 1}'}[kind]


def test_nested_lookups_and_specs_still_work():
    assert render("{meta[lang]} {score:.2f} {n:>{w}}", {"meta": {"lang": "en"}, "score": 0.5, "n": 7, "w": 3}) \
        == "en 0.50   7"
    with pytest.raises(TemplateError, match="field 'meta\\[lang\\]' is null"):
        render("{meta[lang]}", {"meta": {"lang": None}})


def test_unknown_conversion_is_rejected_at_validation():
    with pytest.raises(TemplateError, match="use !j"):
        template_fields("{a!x}")


def test_a_record_with_a_null_field_fails_and_is_not_sent():
    convs, out = conversations_for([{"q": "ok"}, {"q": None}],
                                   lambda r: [{"role": "user", "content": render("Q: {q}", r)}])
    assert convs == {0: [{"role": "user", "content": "Q: ok"}]}
    assert out[0] is None and isinstance(out[1], Failed) and "field 'q' is null" in out[1].error
    assert out[1].retry is False
