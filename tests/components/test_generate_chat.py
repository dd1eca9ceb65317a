"""generate.chat against a scripted model: prompts sent, replies stored, samples, parsing, failures."""

from __future__ import annotations

import hashlib

import pytest
from pydantic import ValidationError

from components.base import Failed
from components.generators.chat import ChatGenerate
from components.templates import TemplateError, render, template_fields
from runner.backends.base import ChatResult, Choice, Sampling, Usage
from tests.fakes import FakeCtx, ScriptedLLM


def make(tmp_path, reply, **params):
    comp = ChatGenerate(ChatGenerate.Params(**params))
    llm = ScriptedLLM(reply)
    return comp, llm, FakeCtx(comp.params, models={None: llm}, tmp=tmp_path)


def test_template_system_and_output_field(tmp_path):
    comp, llm, ctx = make(tmp_path, lambda conv: "reply to " + conv[-1]["content"],
                          system="Be brief about {topic}.", template="Q: {query}", output_field="answer",
                          temperature=0.5, top_p=0.9, max_new_tokens=32, stop=["\n\n"])
    out = comp.process([{"idx": 3, "topic": "cats", "query": "why?"}], ctx)
    assert out == [{"idx": 3, "topic": "cats", "query": "why?", "answer": "reply to Q: why?"}]
    conv, sampling = llm.calls[0]
    assert conv == [{"role": "system", "content": "Be brief about cats."}, {"role": "user", "content": "Q: why?"}]
    assert sampling == Sampling(temperature=0.5, top_p=0.9, max_new_tokens=32, stop=["\n\n"], seed=None)


def test_n_samples_get_distinct_ids_and_seeds(tmp_path):
    comp, llm, ctx = make(tmp_path, lambda conv: "r", template="{q}", n=3, seed=7, temperature=1.0)
    out = comp.process([{"id": "a", "q": "x"}, {"idx": 5, "q": "y"}], ctx)
    assert [[(r["id"], r["sample"]) for r in group] for group in out] == [
        [("a-0", 0), ("a-1", 1), ("a-2", 2)],
        [("5-0", 0), ("5-1", 1), ("5-2", 2)],
    ]
    assert all(r["idx"] == 5 for r in out[1])  # the parent's idx stays for joining
    # one batched call per sample index, seeds 7, 8, 9
    assert [s.seed for _, s in llm.calls] == [7, 7, 8, 8, 9, 9]


def test_samples_of_a_record_without_id_use_its_content_hash(tmp_path):
    comp, _, ctx = make(tmp_path, lambda conv: "r", template="{q}", n=2)
    (group,) = comp.process([{"q": "x"}], ctx)
    # the runner keys such a record by "h" + the first 16 hex digits of sha256 of its canonical JSON
    h = "h" + hashlib.sha256(b'{"q":"x"}').hexdigest()[:16]
    assert [r["id"] for r in group] == [f"{h}-0", f"{h}-1"]


def test_parse_extracts_first_group_and_keeps_raw(tmp_path):
    replies = {"x": "thinking... Answer: Paris\n", "y": "no idea"}
    comp, _, ctx = make(tmp_path, lambda conv: replies[conv[-1]["content"]], template="{q}",
                        parse=r"Answer:\s*(.+)", raw_field="raw")
    good, bad = comp.process([{"id": 1, "q": "x"}, {"id": 2, "q": "y"}], ctx)
    assert good == {"id": 1, "q": "x", "response": "Paris", "raw": "thinking... Answer: Paris\n"}
    assert isinstance(bad, Failed) and bad.raw == "no idea" and bad.retry
    assert "parse regex" in bad.error


def test_missing_template_field_fails_only_that_record(tmp_path):
    comp, llm, ctx = make(tmp_path, lambda conv: "ok", template="{query} / {context}")
    ok, missing = comp.process([{"query": "a", "context": "b"}, {"query": "c"}], ctx)
    assert ok["response"] == "ok"
    assert isinstance(missing, Failed) and not missing.retry
    assert "'context'" in missing.error and "query" in missing.error
    assert len(llm.calls) == 1  # the broken record never reached the model


def test_messages_field_drops_a_trailing_assistant_turn(tmp_path):
    comp, llm, ctx = make(tmp_path, lambda conv: "new", messages_field="messages", system="sys")
    conv_in = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "old answer"}]
    out = comp.process([{"id": "c", "messages": conv_in}], ctx)
    assert out[0]["response"] == "new" and out[0]["messages"] == conv_in
    assert llm.calls[0][0] == [{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"}]
    bad = comp.process([{"id": "d", "messages": "not a list"}], ctx)[0]
    assert isinstance(bad, Failed) and "messages" in bad.error


class ErrorOnSecond(ScriptedLLM):
    def chat(self, conversations, sampling):
        out = super().chat(conversations, sampling)
        out[1] = ChatResult(error="HTTP 500")
        return out


def test_backend_error_becomes_a_retryable_failure(tmp_path):
    comp = ChatGenerate(ChatGenerate.Params(template="{q}"))
    ctx = FakeCtx(comp.params, models={None: ErrorOnSecond(lambda c: "fine")}, tmp=tmp_path)
    ok, err = comp.process([{"id": 1, "q": "a"}, {"id": 2, "q": "b"}], ctx)
    assert ok["response"] == "fine"
    assert isinstance(err, Failed) and err.retry and "HTTP 500" in err.error


def test_estimate_counts_calls_and_template_tokens():
    comp = ChatGenerate(ChatGenerate.Params(template="x" * 40, n=2, max_new_tokens=10))
    est = comp.estimate({"records": 10})
    # 10 records x 2 samples; 40 template characters at 4 characters per token = 10 tokens per call
    assert (est.records_out, est.llm_calls, est.prompt_tokens, est.completion_tokens) == (20, 20, 200, 200)
    assert comp.estimate({"records": None}).llm_calls == 0


def test_output_fields_and_prompt_texts():
    comp = ChatGenerate(ChatGenerate.Params(template="{q}", system="s", n=2, parse="(a)", raw_field="raw"))
    assert comp.output_fields() == {"response", "raw", "id", "sample"}
    assert comp.prompt_texts() == {"system": "s", "user": "{q}"}


@pytest.mark.parametrize("params, message", [
    ({}, "exactly one of"),
    ({"template": "{q}", "messages_field": "m"}, "exactly one of"),
    ({"template": "{q"}, "bad template"),
    ({"template": "{}"}, "must name a record field"),
    ({"template": "{q}", "parse": "no group"}, "capturing group"),
    ({"template": "{q}", "raw_field": "raw"}, "only used with `parse`"),
    ({"template": "{q}", "n": 0}, "greater than or equal to 1"),
])
def test_params_are_checked(params, message):
    with pytest.raises(ValidationError, match=message):
        ChatGenerate.Params(**params)


def test_templates_fill_fields_with_format_semantics():
    assert template_fields("{a} {b[x]} {{c}} {a:>3}") == ["a", "b"]
    assert render("{a:>3}|{b[x]}|{{c}}", {"a": 7, "b": {"x": "y"}}) == "  7|y|{c}"
    with pytest.raises(TemplateError, match="needs field 'z'"):
        render("{z}", {"a": 1})
    with pytest.raises(TemplateError, match="cannot fill"):
        render("{b[missing]}", {"b": {}})


class SamplingLLM(ScriptedLLM):
    """A model that answers ``Sampling.n`` replies per conversation in one request."""

    supports_n = True

    def chat(self, conversations, sampling):
        self.calls.extend((c, sampling) for c in conversations)
        return [ChatResult.of_choices([Choice(text=f"{c[-1]['content']} #{k}") for k in range(sampling.n)],
                                      Usage()) for c in conversations]


def test_n_samples_come_from_one_request_where_the_backend_supports_n(tmp_path):
    comp = ChatGenerate(ChatGenerate.Params(template="{q}", n=3, seed=7, temperature=1.0))
    llm = SamplingLLM(lambda conv: "")
    (group,) = comp.process([{"id": "a", "q": "x"}], FakeCtx(comp.params, models={None: llm}, tmp=tmp_path))
    assert [(r["id"], r["sample"], r["response"]) for r in group] == [
        ("a-0", 0, "x #0"), ("a-1", 1, "x #1"), ("a-2", 2, "x #2")]
    (sampling,) = [s for _, s in llm.calls]
    assert (sampling.n, sampling.seed) == (3, 7)


def test_a_failed_sample_fails_the_record_with_its_index(tmp_path):
    state = {"calls": 0}

    def reply(conv):
        state["calls"] += 1
        return "ok"

    comp, llm, ctx = make(tmp_path, reply, template="{q}", n=3, temperature=1.0)
    real = llm.chat
    llm.chat = lambda convs, s: ([ChatResult(error="boom")] * len(convs) if s.seed is None and state["calls"] >= 1
                                 else real(convs, s))
    (out,) = comp.process([{"id": "a", "q": "x"}], ctx)
    assert isinstance(out, Failed) and out.error == "model call failed (sample 1): boom"
