"""``score.cam``: GATEAU's Contextual Awareness Measurement (spec §4.2)."""

from __future__ import annotations

import random
from typing import Any, ClassVar

from pydantic import Field

from components.base import Context, Failed, Fields, MapComponent, ModelSlot, Out, Params
from components.scorers.lm import LoadOptions, ModelCache, perplexity, prefix_special_ids, response_nll
from components.scorers.segment_attention import SegmentAttention, register
from components.selectors.gateau import RESPONSE_MARK, contextual_awareness, first_exchange, split_user_turn

CONTEXT_MARK = "### Input: "
INSTRUCTION_MARK = "\n\n ### Instruction: "


class CAMParams(Params):
    window: int = Field(
        64000, ge=16,
        description="Tokens the model reads: context + instruction + response (the reference: 64000 of "
        "context, then ≤500 + ≤500). The context is cut on the left to fit.",
    )
    segment_tokens: int = Field(128, ge=1, description="Context segment size in tokens (the reference: 128).")
    max_segments: int = Field(
        500, ge=1, description="More segments than this are subsampled at random, in order, the same ones for "
        "attention and perplexity (seeded by the run seed and the record id).",
    )
    max_instruction_tokens: int = Field(
        500, ge=1, description="The instruction part is cut to this many tokens, keeping its end (the response marker).",
    )
    max_response_tokens: int = Field(500, ge=1, description="The response is cut to this many tokens, keeping its start.")
    chunk_rows: int = Field(
        64, ge=1, description="Response rows whose attention is computed at once (memory: heads × rows × tokens).",
    )
    ppl_batch_size: int = Field(16, ge=1, description="Segments scored per forward pass.")
    keep_layers: bool = Field(False, description="Also output the per-layer segment attention (layers × segments).")
    load: LoadOptions = Field(default_factory=LoadOptions, description="dtype and device of the model.")


class CAMScore(MapComponent):
    """Measures how well a model's attention over the context matches what the response needs.

    The context (``build_hmg_text``'s input, behind ``"### Input: "``) is cut into ``segment_tokens``-token
    segments, followed by ``"\\n\\n ### Instruction: " + instruct + "\\n\\n ### Response: "`` and the
    response, tokenized separately and laid out without padding (so no pad-only segments arise; the
    reference pads every context to 64000 tokens). Two measurements with θ_B (the long model):

    * segment attention: in every layer, the attention of the response tokens to each segment, averaged
      over heads and over the segment's keys, then over the response tokens; computed for the response
      rows only, in chunks, through a registered transformers attention function (never a full
      ``[heads, n, n]`` matrix; see ``components.scorers.segment_attention``);
    * segment perplexity: the response's perplexity given each segment alone (``segment + instruction +
      response``), the mean taken over the response tokens only (the reference divides by the whole
      length), segments of equal length scored in batches.

    The last segment may be shorter than ``segment_tokens`` (every context token is in one segment).
    CAS = 1 − cos(normalised layer-mean attention, softmax(−log segment PPL)): our documented definition,
    since the reference computes none (``components.selectors.gateau.contextual_awareness``); a record
    without context gets 0. ``select.gateau_rank`` normalises CAS over the dataset.

    Adds ``cas``, ``segments``, ``segment_ppl``, ``segment_attention`` (layer mean) and
    ``context_tokens``.
    """

    type: ClassVar[str] = "score.cam"
    Params: ClassVar[type[Params]] = CAMParams
    inputs: ClassVar[dict[str, Fields]] = {"records": Fields("id", "messages")}
    passthrough: ClassVar[str | None] = "records"
    models: ClassVar[dict[str, ModelSlot]] = {
        "model": ModelSlot("weights", doc="θ_B, the long-window model (LongAlign-7B-64k-base in the paper)"),
    }
    batch_size: ClassVar[int] = 4

    def __init__(self, params: Params | None = None) -> None:
        super().__init__(params)
        self._cache = ModelCache()

    def output_fields(self) -> Fields | None:
        extra = ("segment_attention_layers",) if self.params.keep_layers else ()  # type: ignore[attr-defined]
        return Fields("cas", "segments", "segment_ppl", "segment_attention", "context_tokens", *extra)

    def process(self, batch: list[dict], ctx: Context) -> list[Out]:
        source = ctx.model_source("model")
        out: list[Out] = []
        for record in batch:
            try:
                user, response = first_exchange(record["messages"])
            except ValueError as exc:
                out.append(Failed(str(exc), retry=False))
                continue
            instruct, context = split_user_turn(user)
            with self._cache.lock:
                result = self.measure(source, context, instruct, response, random.Random(f"{ctx.seed}:{record['id']}"))
            out.append(Failed(result, retry=False) if isinstance(result, str) else {**record, **result})
        return out

    def measure(self, source: Any, context: str, instruct: str, response: str, rng: random.Random) -> dict | str:
        """The record's CAM fields, or the reason it cannot be measured."""
        p: CAMParams = self.params  # type: ignore[assignment]
        tok = self._cache.tokenizer(source)
        prefix = prefix_special_ids(tok)

        def encode(text: str) -> list[int]:
            return list(tok(text, add_special_tokens=False)["input_ids"])

        query = encode(INSTRUCTION_MARK + instruct + RESPONSE_MARK)[-p.max_instruction_tokens:]
        answer = encode(response)[: p.max_response_tokens]
        if not answer:
            return "empty response"
        room = p.window - len(prefix) - len(query) - len(answer)
        if room < 1:
            return f"instruction and response fill the {p.window}-token window"
        ctx_ids = encode(CONTEXT_MARK + context)[-room:] if context.strip() else []
        spans = segment_spans(len(ctx_ids), p.segment_tokens)
        if len(spans) > p.max_segments:
            spans = [spans[i] for i in sorted(rng.sample(range(len(spans)), p.max_segments))]
        base = {"context_tokens": len(ctx_ids), "segments": len(spans)}
        if not spans:
            return {**base, "cas": 0.0, "segment_ppl": [], "segment_attention": []}
        lm = self._cache.model(source, p.load, attn_implementation=register())
        layers = self._attention(lm, prefix + ctx_ids + query + answer, len(prefix), spans, len(answer))
        seg_ppl = self._segment_ppl(lm, prefix, ctx_ids, spans, query, answer)
        mean = [sum(col) / len(layers) for col in zip(*layers)]
        result = {**base, "cas": contextual_awareness(layers, seg_ppl), "segment_ppl": seg_ppl,
                  "segment_attention": mean}
        if p.keep_layers:
            result["segment_attention_layers"] = layers
        return result

    def _attention(self, lm: Any, ids: list[int], offset: int, spans: list[tuple[int, int]],
                   n_answer: int) -> list[list[float]]:
        import torch

        p: CAMParams = self.params  # type: ignore[assignment]
        device = next(lm.parameters()).device
        keys = [(offset + s, offset + e) for s, e in spans]
        with torch.no_grad(), SegmentAttention((len(ids) - n_answer, len(ids)), keys, p.chunk_rows) as seg:
            lm(input_ids=torch.tensor([ids], device=device), logits_to_keep=1, use_cache=False)
        return seg.result()

    def _segment_ppl(self, lm: Any, prefix: list[int], ctx_ids: list[int], spans: list[tuple[int, int]],
                     query: list[int], answer: list[int]) -> list[float]:
        p: CAMParams = self.params  # type: ignore[assignment]
        rows = [prefix + ctx_ids[s:e] + query + answer for s, e in spans]
        out: list[float] = [0.0] * len(rows)
        by_length: dict[int, list[int]] = {}
        for i, row in enumerate(rows):
            by_length.setdefault(len(row), []).append(i)
        for length, members in by_length.items():
            for b in range(0, len(members), p.ppl_batch_size):
                chunk = members[b:b + p.ppl_batch_size]
                scores = response_nll(lm, [rows[i] for i in chunk], length - len(answer))
                for i, (nll, count) in zip(chunk, scores):
                    out[i] = perplexity(nll, count)
        return out

    def summarize(self, records: list[dict], ctx: Context) -> dict[str, Any]:
        self._cache.clear()  # every record is done: the weights are not needed any more
        if not records:
            return {"n": 0}
        cas = [r["cas"] for r in records]
        return {
            "n": len(records),
            "mean_cas": sum(cas) / len(cas),
            "min_cas": min(cas),
            "max_cas": max(cas),
            "mean_segments": sum(r["segments"] for r in records) / len(records),
            "no_context": sum(1 for r in records if r["segments"] == 0),
        }


def segment_spans(n_tokens: int, size: int, padding: list[bool] | None = None) -> list[tuple[int, int]]:
    """``(start, end)`` of consecutive ``size``-token segments of ``n_tokens`` (the last may be shorter),
    leaving out segments whose tokens are all padding (``padding[i]`` true for a pad token).

    >>> segment_spans(300, 128)
    [(0, 128), (128, 256), (256, 300)]
    >>> segment_spans(6, 2, padding=[False, False, False, True, True, True])
    [(0, 2), (2, 4)]
    """
    spans = [(s, min(s + size, n_tokens)) for s in range(0, n_tokens, size)]
    if padding is not None:
        spans = [(s, e) for s, e in spans if not all(padding[s:e])]
    return spans
