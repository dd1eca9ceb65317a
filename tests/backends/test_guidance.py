"""Formats enforced by the transformers backend (llguidance): the logits processor's mask against a
hand-computed set of allowed tokens, and generation on a tiny random llama whose every reply, greedy or
sampled, in left-padded batches, matches its format."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("llguidance")

from registry.resolved import ResolvedModel
from runner.backends.base import Format, Sampling
from runner.backends.guidance import Guide
from runner.backends.hf_loading import load_tokenizer
from runner.backends.transformers_backend import TransformersLLM

CONVS = [
    [{"role": "user", "content": "the fox"}],
    [{"role": "system", "content": "answer with citations"}, {"role": "user", "content": "what does it say?"}],
    [{"role": "user", "content": "a"}],
    [{"role": "user", "content": "rewards score helpfulness and faithfulness of long answers"}],
]
OPTIONS = ["the fox", "a dog"]


@pytest.fixture(scope="module")
def tok(tiny_llama: Path):
    return load_tokenizer(tiny_llama)


@pytest.fixture(scope="module")
def llm(tiny_llama: Path) -> TransformersLLM:
    return TransformersLLM(ResolvedModel(name="tiny", source="file://tiny", path=tiny_llama), batch_size=3)


def expected_allowed(tok, done: str) -> set[int]:
    """Plain tokens whose text continues ``done`` towards one of OPTIONS (computed from the vocabulary)."""
    specials = set(tok.all_special_ids)
    out = set()
    for i in range(len(tok)):
        text = tok.decode([i])
        if i not in specials and text and any(o.startswith(done + text) for o in OPTIONS):
            out.add(i)
    return out


def test_the_processor_masks_exactly_the_tokens_the_format_does_not_allow(tok):
    guide = Guide(tok, [tok.eos_token_id], len(tok))
    finished: list[int | None] = [None, None]
    proc = guide.processor(Format.choice(OPTIONS), rows=2, prompt_len=3, finished=finished)
    prompt = torch.tensor([[5, 6, 7], [5, 6, 8]])
    scores = proc(prompt, torch.zeros(2, len(tok)))
    for row in range(2):
        allowed = {int(i) for i in torch.nonzero(scores[row] == 0)}
        assert allowed == expected_allowed(tok, "")
        assert allowed and all(scores[row, i] == float("-inf") for i in range(len(tok)) if i not in allowed)
    # row 0 wrote "the": only what continues it to "the fox" is left (llguidance also drops a lone space
    # token where the tokenizer would never split there), the canonical next token among them; row 1 has
    # finished and is left alone
    the = tok.encode("the", add_special_tokens=False)
    assert len(the) == 1
    finished[1] = 1
    scores = proc(torch.tensor([[5, 6, 7, the[0]], [5, 6, 8, 0]]), torch.zeros(2, len(tok)))
    allowed = {int(i) for i in torch.nonzero(scores[0] == 0)}
    assert allowed <= expected_allowed(tok, "the")
    assert tok.encode(" fox", add_special_tokens=False)[0] in allowed
    assert bool((scores[1] == 0).all())


def test_the_format_is_complete_only_end_of_sequence_is_left(tok):
    guide = Guide(tok, [tok.eos_token_id], len(tok))
    proc = guide.processor(Format.regex("a"), rows=1, prompt_len=1, finished=[None])
    a = tok.encode("a", add_special_tokens=False)[0]
    proc(torch.tensor([[5]]), torch.zeros(1, len(tok)))
    scores = proc(torch.tensor([[5, a]]), torch.zeros(1, len(tok)))
    assert {int(i) for i in torch.nonzero(scores[0] == 0)} == {tok.eos_token_id}


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_every_reply_of_a_padded_batch_matches_its_regex(llm, temperature):
    fmt = Format.regex(r"[^\[\]]{0,12}\[\[(10|[1-9])\]\]")
    out = llm.chat(CONVS, Sampling(temperature=temperature, seed=3, max_new_tokens=40, format=fmt))
    assert [r.error for r in out] == [None] * len(CONVS)
    for r in out:
        assert re.fullmatch(fmt.spec, r.text), r.text
        assert r.finish_reason == "stop"


def test_json_schema_and_lark_grammar_formats(llm):
    schema = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 0, "maximum": 9}},
              "required": ["n"], "additionalProperties": False}
    out = llm.chat(CONVS[:2], Sampling(temperature=1.0, seed=1, max_new_tokens=40,
                                       format=Format.json_schema(schema)))
    for r in out:
        value = json.loads(r.text)
        assert set(value) == {"n"} and 0 <= value["n"] <= 9
    out = llm.chat(CONVS, Sampling(max_new_tokens=8, format=Format.grammar('start: "yes" | "no"')))
    assert all(r.text in ("yes", "no") for r in out)


def test_free_requests_are_unchanged_by_formats_elsewhere(llm):
    before = [r.text for r in llm.chat(CONVS, Sampling(max_new_tokens=6))]
    llm.chat(CONVS, Sampling(max_new_tokens=6, format=Format.regex("a+")))
    assert [r.text for r in llm.chat(CONVS, Sampling(max_new_tokens=6))] == before


def test_an_invalid_format_is_the_callers_error(llm):
    with pytest.raises(ValueError, match="invalid regex format"):
        llm.chat(CONVS[:1], Sampling(max_new_tokens=4, format=Format.regex("(unclosed")))
    with pytest.raises(ValueError, match="invalid grammar format"):
        llm.check_format(Format.grammar("start: undefined_rule"))
