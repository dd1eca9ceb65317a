"""How a ``Format`` travels in an OpenAI-compatible chat request, both ways.

``request_fields`` is what the openai backend adds to a request body; ``format_from_body`` is how
``recipe serve`` reads a format back. The fields are the ones OpenAI and vLLM's server accept:

* ``json_schema``: ``response_format: {"type": "json_schema", "json_schema": {"name", "schema", "strict"}}``
  (OpenAI's structured outputs; vLLM and ``recipe serve`` take it too);
* ``regex`` / ``grammar``: vLLM's extra fields, ``structured_outputs: {"regex": …}`` /
  ``{"grammar": …}`` (vLLM ≥ 0.10.2) or the older ``guided_regex`` / ``guided_grammar`` (removed in vLLM
  0.12), chosen by the endpoint's ``structured_outputs_fields`` setting.

An endpoint declares the kinds it enforces (``structured_outputs`` in its settings); asking it for any
other kind is a ``ValueError``, never a request whose format the server would silently ignore.

>>> request_fields(Format.regex("[0-9]"), ["regex"], "structured_outputs")
{'structured_outputs': {'regex': '[0-9]'}}
>>> format_from_body({"guided_regex": "[0-9]"})
Format(kind='regex', spec='[0-9]')
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from runner.backends.base import Format

# kind -> (key under ``structured_outputs``, older ``guided_*`` field)
EXTRA_FIELDS = {"regex": ("regex", "guided_regex"), "grammar": ("grammar", "guided_grammar"),
                "json_schema": ("json", "guided_json")}


def request_fields(fmt: Format, kinds: Sequence[str], style: str = "structured_outputs") -> dict[str, Any]:
    """The request body fields that ask an endpoint enforcing ``kinds`` for ``fmt``; ``style`` is
    ``structured_outputs`` or ``guided`` (how it takes regexes and grammars)."""
    if fmt.kind not in kinds:
        declared = ", ".join(kinds) or "none"
        raise ValueError(f"the endpoint does not enforce {fmt.kind} formats (it declares: {declared}); "
                         "declare the kinds it supports in its `structured_outputs` option, or run the "
                         "stage with constrained: false")
    if fmt.kind == "json_schema":
        return {"response_format": {"type": "json_schema",
                                    "json_schema": {"name": "reply", "schema": fmt.schema(), "strict": True}}}
    key, guided = EXTRA_FIELDS[fmt.kind]
    return {"structured_outputs": {key: fmt.spec}} if style == "structured_outputs" else {guided: fmt.spec}


def format_from_body(body: dict[str, Any]) -> Format | None:
    """The format a chat request body asks for (None: free text). Reads ``response_format``
    (``json_schema``, ``json_object``, ``text``), ``structured_outputs`` (``regex``, ``json``, ``grammar``,
    ``choice``) and ``guided_regex`` / ``guided_json`` / ``guided_grammar`` / ``guided_choice``.
    ValueError for a malformed field or more than one format."""
    found: list[tuple[str, Format]] = []
    response_format = body.get("response_format")
    if response_format is not None:
        fmt = _response_format(response_format)
        if fmt is not None:
            found.append(("response_format", fmt))
    structured = body.get("structured_outputs")
    if structured is not None:
        if not isinstance(structured, dict):
            raise ValueError("structured_outputs must be an object")
        for key, value in structured.items():
            if value is None or key in ("whitespace_pattern", "disable_fallback", "disable_any_whitespace",
                                        "disable_additional_properties"):
                continue
            found.append((f"structured_outputs.{key}", _field(key, value)))
    for key in ("regex", "json", "grammar", "choice"):
        value = body.get(f"guided_{key}")
        if value is not None:
            found.append((f"guided_{key}", _field(key, value)))
    if len(found) > 1:
        raise ValueError("more than one output format: " + ", ".join(name for name, _ in found))
    return found[0][1] if found else None


def _response_format(value: Any) -> Format | None:
    if not isinstance(value, dict):
        raise ValueError("response_format must be an object")
    kind = value.get("type")
    if kind in (None, "text"):
        return None
    if kind == "json_object":
        return Format.json_schema({"type": "object"})
    if kind == "json_schema":
        spec = value.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise ValueError("response_format.json_schema.schema must be a JSON schema object")
        return Format.json_schema(schema)
    raise ValueError(f"unknown response_format type {kind!r}")


def _field(key: str, value: Any) -> Format:
    if key == "regex" and isinstance(value, str):
        return Format.regex(value)
    if key == "grammar" and isinstance(value, str):
        return Format.grammar(value)
    if key == "json" and isinstance(value, (str, dict)):
        return Format.json_schema(json.loads(value) if isinstance(value, str) else value)
    if key == "choice" and isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return Format.choice(value)
    raise ValueError(f"unsupported or malformed format field {key!r}")
