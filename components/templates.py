"""Prompt templates filled from a record, with ``str.format`` semantics (``string.Formatter``).

* ``{field}`` is replaced by ``str(record["field"])``; format specs work (``{score:.2f}``), and so do
  item lookups into nested values (``{meta[lang]}``, ``{messages[0]}``).
* ``{{`` and ``}}`` are literal braces — escape them when a prompt shows JSON.
* Positional placeholders (``{}``, ``{0}``) are rejected: every placeholder names a record field.
* A value is never sent as ``None`` or a Python repr: a missing or null field is a ``TemplateError``
  naming it, and a list or dict goes in only where the template asks for JSON with ``!j``
  (``{messages!j}``).

A placeholder the record cannot fill raises ``TemplateError`` naming the field and what the record has.

>>> render("Q: {query}\\nA:", {"query": "Why?"})
'Q: Why?\\nA:'
>>> render("tags: {tags!j}", {"tags": ["a", "é"]})
'tags: ["a", "é"]'
>>> render("{tags}", {"tags": ["a"]})
Traceback (most recent call last):
...
components.templates.TemplateError: field 'tags' is a list; write {tags!j} to insert it as JSON
>>> template_fields("{a} and {b[0]} and {{literal}}")
['a', 'b']
"""

from __future__ import annotations

import json
import string
from typing import Any

_FORMATTER = string.Formatter()
_CONVERSIONS = (None, "j", "r", "s")


class TemplateError(ValueError):
    """A template that cannot be parsed or filled."""


def _root(field_name: str) -> str:
    """``meta[lang]`` → ``meta``; ``a.b`` → ``a``."""
    for i, ch in enumerate(field_name):
        if ch in ".[":
            return field_name[:i]
    return field_name


def template_fields(template: str) -> list[str]:
    """The record fields a template reads (top-level names, in order of first use).

    Raises ``TemplateError`` for unbalanced braces or positional placeholders, so params validation can
    report a bad template before anything runs.
    """
    names: list[str] = []
    try:
        parsed = list(_FORMATTER.parse(template))
    except ValueError as e:
        raise TemplateError(f"bad template: {e} (write {{{{ and }}}} for literal braces)") from None
    for _, field_name, spec, conversion in parsed:
        if field_name is None:
            continue
        if conversion not in _CONVERSIONS:
            raise TemplateError(f"bad template: {{{field_name}!{conversion}}}: use !j (JSON), !r or !s")
        root = _root(field_name)
        if not root or root.isdigit():
            raise TemplateError(
                f"bad template: placeholder {{{field_name}}} must name a record field, e.g. {{query}}"
            )
        if root not in names:
            names.append(root)
        if spec:  # nested placeholders inside a format spec are fields too
            for nested in template_fields(spec):
                if nested not in names:
                    names.append(nested)
    return names


def check_template(text: str | None) -> str | None:
    """For pydantic ``field_validator``: the template parses and names only record fields."""
    if text is not None:
        template_fields(text)
    return text


def render(template: str, record: dict[str, Any]) -> str:
    """Fill ``template`` from ``record``; ``TemplateError`` names a missing, null or non-text field."""
    for name in template_fields(template):
        if name not in record:
            have = ", ".join(sorted(record)) or "none"
            raise TemplateError(f"template needs field {name!r}, missing from the record (fields: {have})")
    out = []
    for literal, field_name, spec, conversion in _FORMATTER.parse(template):
        out.append(literal)
        if field_name is None:
            continue
        try:
            value, _ = _FORMATTER.get_field(field_name, (), record)
        except (KeyError, IndexError, AttributeError, TypeError, ValueError) as e:
            raise TemplateError(f"cannot fill {{{field_name}}} from the record: {type(e).__name__}: {e}") from None
        if value is None:
            raise TemplateError(f"field {field_name!r} is null in this record")
        if conversion == "j":
            value, conversion = json.dumps(value, ensure_ascii=False), None
        elif isinstance(value, list | dict):
            kind = "list" if isinstance(value, list) else "dict"
            raise TemplateError(f"field {field_name!r} is a {kind}; write {{{field_name}!j}} to insert it as JSON")
        try:
            text = _FORMATTER.format_field(_FORMATTER.convert_field(value, conversion),
                                           render(spec, record) if spec else "")
        except (TypeError, ValueError) as e:
            raise TemplateError(f"cannot format {{{field_name}}}: {e}") from None
        out.append(text)
    return "".join(out)


def conversations_for(batch: list[dict], make: Any) -> tuple[dict[int, list[dict[str, str]]], list[Any]]:
    """``make(record)`` for each record of a batch: ``(conversations by position, out)`` where ``out`` has a
    final ``Failed`` at the positions whose template could not be filled (a retry would fail the same
    way) and None elsewhere, for the caller to fill."""
    from components.base import Failed

    out: list[Any] = [None] * len(batch)
    convs: dict[int, list[dict[str, str]]] = {}
    for i, record in enumerate(batch):
        try:
            convs[i] = make(record)
        except TemplateError as e:
            out[i] = Failed(error=str(e), retry=False)
    return convs, out
