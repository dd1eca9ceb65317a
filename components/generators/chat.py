"""``generate.chat``: one model reply (or ``n`` sampled replies) per record from a prompt template."""

from __future__ import annotations

import math
import re
from typing import Any

from pydantic import Field, field_validator, model_validator

from components.base import (
    Context,
    Estimate,
    Failed,
    Fields,
    MapComponent,
    ModelSlot,
    Out,
    Params,
    record_key,
)
from components.templates import TemplateError, check_template, conversations_for, render
from runner.backends.base import Sampling

CHARS_PER_TOKEN = 4  # rough English average, only for `recipe plan` estimates


class SamplingParams(Params):
    """Decoding settings shared by components that call a chat model."""

    temperature: float = Field(0.0, ge=0.0, description="0 = greedy decoding")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="nucleus sampling mass")
    max_new_tokens: int = Field(256, ge=1, description="longest reply, in tokens")
    stop: list[str] = Field(default_factory=list, description="stop strings (not included in the reply)")
    seed: int | None = Field(None, description="sampling seed where the backend supports one")

    def sampling(self, seed_offset: int = 0, temperature: float | None = None) -> Sampling:
        """These settings as a backend ``Sampling``; ``seed_offset`` is added to a given seed."""
        return Sampling(
            temperature=self.temperature if temperature is None else temperature,
            top_p=self.top_p,
            max_new_tokens=self.max_new_tokens,
            stop=list(self.stop),
            seed=None if self.seed is None else self.seed + seed_offset,
        )


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


class ChatGenerate(MapComponent):
    """Sends each record to a chat model and stores the reply in ``output_field``.

    The user message is ``template`` filled from the record (``{field}`` placeholders, see
    ``components.templates``), after an optional ``system`` message (a template too). Alternatively
    ``messages_field`` names a field that already holds a conversation (a list of ``{role, content}``);
    it is sent as is, after dropping a trailing assistant turn (so SFT records can be re-answered), with
    ``system`` put first unless the conversation already starts with a system message.

    With ``n > 1`` each record gives ``n`` records, ids ``{id}-{k}`` and ``sample: k`` (k = 0..n-1). A backend
    that supports ``Sampling.n`` (transformers, vLLM, OpenAI-compatible APIs) samples them in one request
    per record, with ``seed`` as given; any other model is asked once per sample, sample k with seed
    ``seed + k``. ``parse`` is a regex: its first group (stripped) is stored
    instead of the whole reply; a reply it does not match makes the record fail with the raw text, and the
    runner may retry it.
    """

    type = "generate.chat"
    inputs = {"records": Fields()}
    passthrough = "records"
    models = {"llm": ModelSlot(kind="chat", doc="the model that writes the replies")}
    template_params = {"template": "records", "system": "records"}

    class Params(SamplingParams):
        system: str | None = Field(None, description="system message template (optional)")
        template: str | None = Field(
            None, description="user message template, {field} placeholders filled from the record"
        )
        messages_field: str | None = Field(
            None, description="instead of `template`: the record field holding the conversation to send"
        )
        output_field: str = Field("response", description="where the reply goes")
        n: int = Field(1, ge=1, description="replies sampled per record (n > 1 gives n records per input)")
        parse: str | None = Field(
            None, description="regex applied to the reply; its first group is stored in output_field"
        )
        raw_field: str | None = Field(None, description="with `parse`: also keep the whole reply in this field")

        check_templates = field_validator("system", "template")(check_template)

        @field_validator("parse")
        @classmethod
        def _one_group(cls, pattern: str | None) -> str | None:
            if pattern is not None:
                try:
                    groups = re.compile(pattern).groups
                except re.error as e:
                    raise ValueError(f"not a valid regex: {e}") from None
                if groups < 1:
                    raise ValueError("the regex needs a capturing group, e.g. 'Answer: (.*)'")
            return pattern

        @model_validator(mode="after")
        def _one_source(self) -> ChatGenerate.Params:
            if (self.template is None) == (self.messages_field is None):
                raise ValueError("give exactly one of `template` or `messages_field`")
            if self.raw_field is not None and self.parse is None:
                raise ValueError("`raw_field` is only used with `parse`")
            return self

    def output_fields(self) -> Fields | None:
        p = self.params
        names = [p.output_field] + ([p.raw_field] if p.raw_field else []) + (["id", "sample"] if p.n > 1 else [])
        return Fields(*names)

    def prompt_texts(self) -> dict[str, str]:
        p = self.params
        return {k: v for k, v in (("system", p.system), ("user", p.template)) if v is not None}

    def estimate(self, n_in: dict[str, int | None]) -> Estimate:
        """Calls are exact; prompt tokens count only the templates' own text (the record fields add more),
        completion tokens assume every reply uses ``max_new_tokens`` (an upper bound)."""
        n = n_in.get("records")
        if n is None:
            return Estimate()
        calls = n * self.params.n
        own_text = "".join(self.prompt_texts().values())
        return Estimate(
            records_out=calls,
            llm_calls=calls,
            prompt_tokens=calls * estimate_tokens(own_text),
            completion_tokens=calls * self.params.max_new_tokens,
        )

    def _conversation(self, record: dict[str, Any]) -> list[dict[str, str]]:
        p = self.params
        if p.messages_field is not None:
            conv = record.get(p.messages_field)
            if not isinstance(conv, list) or not all(
                isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                for m in conv
            ):
                raise TemplateError(f"field {p.messages_field!r} must hold a list of {{role, content}} messages")
            conv = [{"role": m["role"], "content": m["content"]} for m in conv]
            if conv and conv[-1]["role"] == "assistant":
                conv = conv[:-1]
            if not conv:
                raise TemplateError(f"field {p.messages_field!r} holds no message to answer")
        else:
            assert p.template is not None
            conv = [{"role": "user", "content": render(p.template, record)}]
        if p.system is not None and conv[0]["role"] != "system":
            conv.insert(0, {"role": "system", "content": render(p.system, record)})
        return conv

    def _extract(self, text: str) -> str | None:
        if self.params.parse is None:
            return text
        m = re.search(self.params.parse, text)
        return None if m is None or m.group(1) is None else m.group(1).strip()

    def process(self, batch: list[dict], ctx: Context) -> list[Out]:
        p = self.params
        convs, out = conversations_for(batch, self._conversation)
        todo = list(convs)
        answers = self._replies(ctx.model("llm"), [convs[i] for i in todo]) if todo else []
        for i, (texts, error) in zip(todo, answers):
            tag = (lambda k: f" (sample {k})") if p.n > 1 else (lambda k: "")
            if error is not None:
                out[i] = Failed(error=f"model call failed{tag(len(texts))}: {error}")
                continue
            samples: list[dict] = []
            for k, text in enumerate(texts):
                value = self._extract(text)
                if value is None:
                    out[i] = Failed(error=f"reply does not match parse regex {p.parse!r}{tag(k)}", raw=text)
                    break
                rec = {**batch[i], p.output_field: value}
                if p.raw_field:
                    rec[p.raw_field] = text
                if p.n > 1:
                    rec["id"] = f"{record_key(batch[i])}-{k}"
                    rec["sample"] = k
                samples.append(rec)
            if out[i] is None:
                out[i] = samples if p.n > 1 else samples[0]
        assert all(o is not None for o in out)
        return out  # type: ignore[return-value]

    def _replies(self, llm: Any, conversations: list[list[dict]]) -> list[tuple[list[str], str | None]]:
        """Per conversation, ``(reply texts, error)``: ``n`` texts and None, or the texts before the call
        that failed and its error. A backend that supports ``Sampling.n`` is asked once, with the seed as
        given; any other is asked ``n`` times, sample k with seed ``seed + k``."""
        p = self.params
        if p.n > 1 and getattr(llm, "supports_n", False):
            results = llm.chat(conversations, p.sampling().model_copy(update={"n": p.n}))
            return [([], r.error) if r.error else (r.replies(), None) for r in results]
        texts: list[list[str]] = [[] for _ in conversations]
        errors: list[str | None] = [None] * len(conversations)
        for k in range(p.n):
            pending = [j for j in range(len(conversations)) if errors[j] is None]
            if not pending:
                break
            for j, res in zip(pending, llm.chat([conversations[j] for j in pending], p.sampling(seed_offset=k))):
                if res.error:
                    errors[j] = res.error
                else:
                    texts[j].append(res.text)
        return list(zip(texts, errors))
