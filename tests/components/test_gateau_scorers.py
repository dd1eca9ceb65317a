"""score.hmg, score.cam and the response-rows segment attention on a tiny float32 Llama.

The byte-level tokenizer maps each ASCII character to one token, so the response tokens of a text are
exactly the positions from the response's first character: the hand computations below index the text
directly and take log-probabilities from a plain eager forward pass.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from components.scorers.cam import CAMScore
from components.scorers.hmg import HMGScore
from components.scorers.segment_attention import SegmentAttention, register
from components.selectors.gateau import build_hmg_text, contextual_awareness
from tests.fakes import FakeCtx

CONTEXT = "Alpha beta gamma delta. The key is seven. Epsilon zeta eta theta iota kappa.\n\n"
RECORD = {"id": "r1", "messages": [
    {"role": "user", "content": CONTEXT + "What is the key?"},
    {"role": "assistant", "content": "The key is seven, as the text says."},
]}


@pytest.fixture(autouse=True)
def one_torch_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_model(vocab: int = 260, seed: int = 0):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, intermediate_size=128, max_position_embeddings=512,
                      initializer_range=0.3, pad_token_id=0)
    return LlamaForCausalLM(cfg).float().eval()


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    from registry.random_model import byte_tokenizer

    path = tmp_path_factory.mktemp("gateau") / "model"
    tok = byte_tokenizer()
    make_model(len(tok)).save_pretrained(str(path))
    tok.save_pretrained(str(path))
    return path


def ctx_for(folder: Path, tmp_path: Path) -> FakeCtx:
    from registry.resolved import ResolvedModel

    src = ResolvedModel(name="tiny", source="random://llama", kind="base", path=folder)
    return FakeCtx(models={("source", s): src for s in ("short", "long", "model")}, tmp=tmp_path)


def eager(folder: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(folder), attn_implementation="eager", dtype="float32").eval()


def hand_ppl(lm, ids: list[int], first: int) -> tuple[float, int]:
    """exp(mean −log p(ids[t] | ids[:t])) over t >= max(first, 1), from the full logits."""
    import torch

    with torch.no_grad():
        logp = torch.log_softmax(lm(input_ids=torch.tensor([ids])).logits[0].double(), dim=-1)
    nll = [-float(logp[t - 1, ids[t]]) for t in range(max(first, 1), len(ids))]
    return math.exp(sum(nll) / len(nll)), len(nll)


def byte_ids(text: str) -> list[int]:
    from registry.random_model import byte_tokenizer

    ids = byte_tokenizer()(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(text)  # ASCII: one token per character
    return ids


# ------------------------------------------------------------------------------------- segment attention

def eager_rows(out, batch_row: int, rows: tuple[int, int], segments: list[tuple[int, int]]) -> list[list[float]]:
    layers = []
    for att in out.attentions:  # [batch, heads, n, n]
        probs = att[batch_row, :, rows[0]:rows[1]].double().mean(dim=0)  # heads averaged: [rows, n]
        layers.append([float(probs[:, s:e].mean(dim=-1).mean()) for s, e in segments])
    return layers


def test_response_rows_equal_full_eager_attention(folder):
    import torch

    lm = eager(folder)
    ids = torch.tensor([byte_ids(CONTEXT + "What is the key? The key is seven.")])
    rows, segments = (60, ids.shape[1]), [(0, 16), (16, 32), (32, 48), (48, 59)]
    with torch.no_grad():
        full = lm(input_ids=ids, output_attentions=True)
    lm.set_attn_implementation(register())
    with torch.no_grad(), SegmentAttention(rows, segments, chunk_rows=7) as seg:
        out = lm(input_ids=ids, logits_to_keep=1)
    expected = eager_rows(full, 0, rows, segments)
    assert len(seg.result()) == 2
    for got_layer, want_layer in zip(seg.result(), expected):
        assert got_layer == pytest.approx(want_layer, abs=1e-5)
    assert torch.allclose(out.logits[0, -1], full.logits[0, -1], atol=1e-5)  # the model's output is unchanged
    assert max(max(layer) for layer in expected) > 1.5 * min(min(layer) for layer in expected)  # not uniform


def test_response_rows_with_a_padding_mask_equal_eager(folder):
    import torch

    lm = eager(folder)
    a = byte_ids("Some context here. Query? Answer now.")
    b = byte_ids("Context. Query? Answer now.")
    pad = len(a) - len(b)
    ids = torch.tensor([a, [0] * pad + b])
    mask = torch.tensor([[1] * len(a), [0] * pad + [1] * len(b)])
    rows, segments = (len(a) - 11, len(a)), [(pad, pad + 8), (pad + 8, len(a) - 11)]
    with torch.no_grad():
        full = lm(input_ids=ids, attention_mask=mask, output_attentions=True)
    lm.set_attn_implementation(register())
    with torch.no_grad(), SegmentAttention(rows, segments, chunk_rows=4) as seg:
        lm(input_ids=ids, attention_mask=mask, logits_to_keep=1)
    for row in (0, 1):
        for got, want in zip(seg.result(row), eager_rows(full, row, rows, segments)):
            assert got == pytest.approx(want, abs=1e-5)


# ------------------------------------------------------------------------------------- HMG

def test_hmg_perplexities_match_a_hand_computation(folder, tmp_path):
    comp = HMGScore(HMGScore.Params(short_window=40, long_window=400))
    (out,) = comp.process([RECORD], ctx_for(folder, tmp_path))
    _, _, whole, start = build_hmg_text(RECORD["messages"])
    ids = byte_ids(whole)
    lm = eager(folder)
    want_long, n_long = hand_ppl(lm, ids, start)  # the whole text fits the long window
    short_ids = ids[-40:]
    want_short, n_short = hand_ppl(lm, short_ids, start - (len(ids) - 40))  # the response is inside the window
    assert out["ppl_long"] == pytest.approx(want_long, rel=1e-5)
    assert out["ppl_short"] == pytest.approx(want_short, rel=1e-5)
    assert (out["tokens_long"], out["tokens_short"]) == (len(ids), 40)
    response = len(RECORD["messages"][1]["content"])
    assert (out["response_tokens_long"], out["response_tokens_short"]) == (n_long, n_short) == (response, response)
    assert comp.summarize([out], ctx_for(folder, tmp_path))["short_above_long"] in (0, 1)
    assert not comp._cache._models  # the stage is over: the weights are released


def test_the_response_mask_is_computed_on_the_truncated_sequence(folder, tmp_path):
    # a 12-token window holds only response tokens: all but the first one are scored
    comp = HMGScore(HMGScore.Params(short_window=12, long_window=400))
    (out,) = comp.process([RECORD], ctx_for(folder, tmp_path))
    _, _, whole, _ = build_hmg_text(RECORD["messages"])
    want, n = hand_ppl(eager(folder), byte_ids(whole)[-12:], 0)
    assert out["response_tokens_short"] == n == 11
    assert out["ppl_short"] == pytest.approx(want, rel=1e-5)


def test_dynamic_ntk_changes_only_sequences_beyond_its_window(folder, tmp_path):
    ctx = ctx_for(folder, tmp_path)
    plain = HMGScore(HMGScore.Params(short_window=200, long_window=200)).process([RECORD], ctx)[0]
    scaled = HMGScore(HMGScore.Params(short_window=200, long_window=200, short_rope_factor=4.0,
                                      short_rope_window=64)).process([RECORD], ctx)[0]
    assert scaled["ppl_long"] == plain["ppl_long"]
    assert scaled["ppl_short"] != pytest.approx(plain["ppl_short"], rel=1e-6)
    inside = HMGScore(HMGScore.Params(short_window=60, long_window=60, short_rope_factor=4.0,
                                      short_rope_window=64)).process([RECORD], ctx)[0]
    assert inside["ppl_short"] == pytest.approx(inside["ppl_long"], rel=1e-6)


# ------------------------------------------------------------------------------------- CAM

def test_cam_segments_match_hand_computations(folder, tmp_path):
    import torch

    comp = CAMScore(CAMScore.Params(segment_tokens=16, window=400, keep_layers=True))
    (out,) = comp.process([RECORD], ctx_for(folder, tmp_path))
    context = "### Input: " + CONTEXT
    query = byte_ids("\n\n ### Instruction: What is the key?\n\n ### Response: ")
    answer = byte_ids(RECORD["messages"][1]["content"])
    ctx_ids = byte_ids(context)
    spans = [(s, min(s + 16, len(ctx_ids))) for s in range(0, len(ctx_ids), 16)]
    assert out["segments"] == len(spans) and out["context_tokens"] == len(ctx_ids)
    lm = eager(folder)
    want_ppl = [hand_ppl(lm, ctx_ids[s:e] + query + answer, e - s + len(query))[0] for s, e in spans]
    assert out["segment_ppl"] == pytest.approx(want_ppl, rel=1e-5)
    ids = ctx_ids + query + answer
    with torch.no_grad():
        full = lm(input_ids=torch.tensor([ids]), output_attentions=True)
    want_layers = eager_rows(full, 0, (len(ids) - len(answer), len(ids)), spans)
    for got, want in zip(out["segment_attention_layers"], want_layers):
        assert got == pytest.approx(want, abs=1e-5)
    assert out["cas"] == pytest.approx(contextual_awareness(want_layers, want_ppl), abs=1e-5)
    assert 0.0 <= out["cas"] <= 1.0


def test_cam_subsamples_segments_in_order_and_handles_no_context(folder, tmp_path):
    comp = CAMScore(CAMScore.Params(segment_tokens=8, max_segments=3, window=400))
    ctx = ctx_for(folder, tmp_path)
    (out,) = comp.process([RECORD], ctx)
    assert out["segments"] == 3 and len(out["segment_ppl"]) == 3
    no_context = {"id": "r2", "messages": [{"role": "user", "content": "Hi?"},
                                           {"role": "assistant", "content": "Hello."}]}
    (empty,) = comp.process([no_context], ctx)
    assert (empty["segments"], empty["cas"]) == (0, 0.0)


def test_cam_fails_a_record_whose_response_does_not_fit(folder, tmp_path):
    comp = CAMScore(CAMScore.Params(window=60, max_response_tokens=100))
    (out,) = comp.process([RECORD], ctx_for(folder, tmp_path))
    assert "fill the 60-token window" in out.error
