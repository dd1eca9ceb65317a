"""``longreward.chunk_info``: per prompt, the information each part of the document holds for its question.

LongReward's completeness judge (spec §3.2) does not read the whole document: the document is cut into
``chunk_size``-token chunks, the judge lists each chunk's information relevant to the question, and the
completeness rating compares an answer against those lists. The lists depend only on (document, question),
so they are computed once per prompt here, in their own cached stage, and ``judge.longreward`` reuses them
for every sampled response.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from components.base import Context, Estimate, Failed, Fields, MapComponent, ModelSlot, Out, Params
from components.judges.asking import ask_until_parsed
from components.judges.longreward_prompts import CHUNK_INFO, NO_INFO, chunk_info_prompts
from components.templates import render
from components.text import detect_language, token_chunks
from runner.backends.base import Sampling


def span_key(start: int, end: int, total: int) -> str:
    """A chunk's position as ``"{start%} - {end%}"`` of ``total`` tokens, rounded half to even.

    >>> span_key(0, 4096, 10000), span_key(4096, 8192, 10000), span_key(1, 3, 8)
    ('0% - 41%', '41% - 82%', '12% - 38%')
    """
    return f"{round(start / total * 100)}% - {round(end / total * 100)}%"


def _text(reply: str) -> str | None:
    return reply.strip() or None


class ChunkInfoParams(Params):
    chunk_size: int = Field(4096, ge=1, description=(
        "tokens per document chunk (the judge's tokenizer; whitespace words when it has none); the "
        "reference uses 4096, smaller keeps CPU prompts short"))
    max_new_tokens: int = Field(1024, ge=1, description="longest information list per chunk, in tokens")
    temperature: float = Field(0.01, ge=0.0, description="temperature of the first ask (reference: 0.01)")
    retry_temperature: float = Field(0.95, ge=0.0, description="temperature of re-asks (reference: 0.95)")
    tries: int = Field(5, ge=1, description="asks per chunk while the reply is empty (reference: 5)")
    seed: int | None = Field(None, description="sampling seed of the first ask (re-ask k uses seed + k)")


class ChunkInfo(MapComponent):
    """Lists, for each chunk of a prompt's document, the information relevant to its question (LongReward
    §3.2, completeness step 1).

    The document (``context``) is cut into ``chunk_size``-token chunks; each chunk gets the English or the
    Chinese extraction prompt by its own language (``components.text.detect_language``). The judge answers a
    numbered list, or says there is no relevant information (kept: the completeness judge sees every
    chunk). Output adds ``chunk_info``: ``[{span: "st% - ed%", info, lang}]`` in document order. An empty
    reply is asked again (``tries``); a chunk still without information fails the prompt with the raw
    reply.
    """

    type = "longreward.chunk_info"
    inputs: ClassVar[dict[str, Fields]] = {"prompts": Fields("context", "query")}
    passthrough = "prompts"
    outputs = Fields("chunk_info")
    models: ClassVar[dict[str, ModelSlot]] = {
        "judge": ModelSlot("chat", doc="the judge that extracts the information (glm-4-0520 in the paper)"),
    }
    prompts: ClassVar[dict[str, str]] = chunk_info_prompts()
    Params = ChunkInfoParams
    batch_size = 4

    def estimate(self, n_in: dict[str, int | None]) -> Estimate:
        """At least one call per prompt (one per chunk: the document lengths are not known before)."""
        n = n_in.get("prompts")
        return Estimate(records_out=n, llm_calls=n or 0)

    def process(self, batch: list[dict], ctx: Context) -> list[Out]:
        p: ChunkInfoParams = self.params  # type: ignore[assignment]
        llm = ctx.model("judge")
        tokenizer = llm.tokenizer()
        out: list[Out | None] = [None] * len(batch)
        owners: list[tuple[int, dict]] = []  # (record position, chunk entry) per conversation
        conversations: list[list[dict[str, str]]] = []
        for i, record in enumerate(batch):
            chunks = token_chunks(str(record["context"]), tokenizer, p.chunk_size)
            if not chunks:
                out[i] = Failed("empty context: nothing to extract information from", retry=False)
                continue
            for chunk in chunks:
                lang = detect_language(chunk["content"])
                entry = {"span": span_key(chunk["start_idx"], chunk["end_idx"], chunk["total_token"]),
                         "lang": lang}
                owners.append((i, entry))
                conversations.append([{"role": "user", "content": render(
                    CHUNK_INFO[lang], {"chunk": chunk["content"], "question": record["query"]})}])
        sampling = Sampling(temperature=p.temperature, max_new_tokens=p.max_new_tokens, seed=p.seed)
        verdicts = ask_until_parsed(llm, conversations, sampling, _text, tries=p.tries,
                                    retry_temperature=p.retry_temperature) if conversations else []
        infos: dict[int, list[dict[str, Any]]] = {}
        for (i, entry), v in zip(owners, verdicts, strict=True):
            if out[i] is not None:
                continue
            if not v.parsed:
                out[i] = v.failure("chunk information")
                continue
            infos.setdefault(i, []).append({**entry, "info": v.value})
        for i, record in enumerate(batch):
            if out[i] is None:
                out[i] = {**record, "chunk_info": infos[i]}
        return out  # type: ignore[return-value]

    def summarize(self, records: list[dict], ctx: Context) -> dict[str, Any]:
        chunks = [c for r in records for c in r["chunk_info"]]
        empty = sum(1 for c in chunks if c["info"].strip().rstrip(".。") in NO_INFO.values())
        return {"prompts": len(records), "chunks": len(chunks),
                "chunks_per_prompt": len(chunks) / len(records) if records else 0.0,
                "chunks_without_information": empty}
