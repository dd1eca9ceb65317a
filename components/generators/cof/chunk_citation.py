"""CoF stage 2: cite 128-token chunks of the document for each sentence of an answer."""

from __future__ import annotations

import math
import re
from typing import Any, ClassVar, Literal

from pydantic import Field

from components.base import Context, Estimate, Failed, Fields, MapComponent, ModelSlot, Out
from components.formats import Constrained, chat_each, choice, constrained, escape, integers
from components.generators.cof.fallback import supporting
from components.retrieval import scored_search
from components.templates import render
from components.text import repair_tags, split_sentences, statement_segments, token_chunks
from runner.backends.base import Format, Sampling

CHUNK_CITATION_PROMPT = """You will see numbered snippets from a document, a question, and an answer to the question. Copy the answer exactly, without changing a word, and mark up each of its sentences as <statement>{{sentence}}<cite>[i][j]...</cite></statement>, where [i], [j], ... are the numbers of the snippets that support the sentence. A sentence that states no fact from the snippets (an opening line, a summary, a transition, the writer's own reasoning) gets an empty citation: <statement>{{sentence}}<cite></cite></statement>.

Example:

[Snippets]
Snippet [1]
The Danube flows through ten countries, more than any other river in the world.

Snippet [2]
It rises in the Black Forest in Germany and empties into the Black Sea.

Snippet [3]
Vienna, Bratislava, Budapest and Belgrade all lie on its banks.

[Question]
Where does the Danube start and end, and which capitals does it pass?

[Answer]
The Danube has a long course. It starts in the Black Forest in Germany and ends in the Black Sea. On the way it passes four capitals: Vienna, Bratislava, Budapest and Belgrade.

[Answer with Citations]
<statement>The Danube has a long course.<cite></cite></statement><statement>It starts in the Black Forest in Germany and ends in the Black Sea.<cite>[2]</cite></statement><statement>On the way it passes four capitals: Vienna, Bratislava, Budapest and Belgrade.<cite>[3]</cite></statement>

Now the task:

[Snippets]
{context}

[Question]
{question}

[Answer]
{answer}

[Answer with Citations]
"""

ANSWER_MARK = "[Answer with Citations]"
_SNIPPET_NUMBER = re.compile(r"\[([0-9]+)\]")


def snippet_budget(n_statements: int, top_k: int = 10, max_snippets: int = 40) -> int:
    """Chunks kept per answer sentence: ``min(top_k, ceil(max_snippets / n_statements))``."""
    return min(top_k, math.ceil(max_snippets / max(n_statements, 1)))


def retrieve_chunks(statements: list[str], chunks: list[dict], top_k: int, max_snippets: int,
                    method: Literal["bm25", "dense"], embedder: Any = None) -> list[list[tuple[int, float]]]:
    """The ``snippet_budget`` best ``(chunk index, score)`` pairs for every answer sentence, best first."""
    k = snippet_budget(len(statements), top_k, max_snippets)
    return scored_search(statements, [c["content"] for c in chunks], k, method=method, embedder=embedder)


def union_snippets(hits: list[list[tuple[int, float]]], chunks: list[dict]) -> list[dict]:
    """The chunks of all ``hits``, one per content (its first hit), in document order."""
    chosen: dict[str, dict] = {}
    for row in hits:
        for i, _ in row:
            chosen.setdefault(chunks[i]["content"], chunks[i])
    return sorted(chosen.values(), key=lambda c: c["start_idx"])


def select_chunks(statements: list[str], chunks: list[dict], top_k: int, max_snippets: int,
                  method: Literal["bm25", "dense"], embedder: Any = None) -> list[dict]:
    """Retrieve chunks for every answer sentence; the union (one per content), in document order."""
    return union_snippets(retrieve_chunks(statements, chunks, top_k, max_snippets, method, embedder), chunks)


def chunk_prompt(snippets: list[dict], question: str, answer: str) -> str:
    context = "\n\n".join(f"Snippet [{i}]\n{c['content']}" for i, c in enumerate(snippets, start=1))
    return render(CHUNK_CITATION_PROMPT, {"context": context, "question": question, "answer": answer})


def citation_format(answer: str, sentences: list[dict], n_snippets: int, max_citations: int = 5) -> Format:
    """The marked-up answer as the prompt asks for it: the answer copied exactly, each of its sentences
    (``sentences``: ``split_sentences(answer)``) as ``<statement>{sentence}<cite>…</cite></statement>``
    citing up to ``max_citations`` snippet numbers ``[1]`` … ``[n_snippets]`` (or none), with the text
    between two sentences kept between their statements."""
    cite = (r"<cite>(\[" + choice(integers(1, n_snippets)) + r"\]){0," + str(max_citations) + "}"
            + "</cite></statement>")
    parts = []
    for j, sent in enumerate(sentences):
        if j:
            parts.append(escape(answer[sentences[j - 1]["end_idx"]:sent["start_idx"]]))
        parts += ["<statement>", escape(sent["content"]), cite]
    return Format.regex("".join(parts))


def parse_chunk_citations(output: str, snippets: list[dict], max_citations: int = 5
                          ) -> tuple[str, list[dict]]:
    """``(cited_answer, statements)`` from the model's marked-up answer.

    Keeps what follows the last ``[Answer with Citations]``, repairs tags, then: each statement cites the
    1-based snippet numbers ``[i]`` in its ``<cite>`` (unknown numbers skipped, duplicates once, at most
    ``max_citations``) as ``{start, end, idx, cite}`` (the chunk's token span, index and text); untagged
    text over 5 characters is a statement without citations; whitespace between statements is kept as
    ``{statement: <whitespace>, citation: []}`` so the answer can be rebuilt.
    """
    cited_answer = repair_tags(output.split(ANSWER_MARK)[-1]).strip()
    statements: list[dict] = []
    for seg in statement_segments(cited_answer):
        citations: list[dict] = []
        for number in _SNIPPET_NUMBER.findall(seg["cite"] or ""):
            j = int(number) - 1
            if not 0 <= j < len(snippets) or any(c["idx"] == snippets[j]["c_idx"] for c in citations):
                continue
            citations.append(chunk_citation(snippets[j], "model"))
        statements.append({"statement": seg["text"], "citation": citations[:max_citations]})
    return cited_answer, statements


def chunk_citation(chunk: dict, source: Literal["model", "retrieval"]) -> dict:
    """One citation ``{start, end, idx, cite, source}``: the chunk's token span, index and text, and who
    chose it."""
    return {"start": chunk["start_idx"], "end": chunk["end_idx"], "idx": chunk["c_idx"],
            "cite": chunk["content"], "source": source}


def fallback_citations(answer: str, sentences: list[dict], hits: list[list[tuple[int, float]]],
                       chunks: list[dict], snippets: list[dict], top: int = 1, min_score: float = 0.0,
                       max_citations: int = 5) -> tuple[str, list[dict]]:
    """``(cited_answer, statements)`` without the model: the answer's own sentences, each citing up to
    ``top`` of the chunks it retrieved (``hits``, one row per sentence) that really match it.

    Not the paper's method (see ``components.generators.cof.fallback``). A retrieved chunk counts when its
    score is above ``min_score`` and it shares a content word with the sentence; a sentence with none stays
    uncited. Citations point at the snippet with the chunk's text (``source: "retrieval"``); the whitespace
    between sentences is kept as ``{statement: <whitespace>, citation: []}``; ``cited_answer`` is the
    markup a model would have written, with the snippets' 1-based numbers.
    """
    contents = [c["content"] for c in chunks]
    number = {s["content"]: n for n, s in enumerate(snippets, start=1)}  # snippets have distinct texts
    statements: list[dict] = []
    parts: list[str] = []
    for j, sent in enumerate(sentences):
        gap = answer[sentences[j - 1]["end_idx"]:sent["start_idx"]] if j else ""
        if gap:
            statements.append({"statement": gap, "citation": []})
            parts.append(gap)
        cited: list[int] = []  # snippet numbers
        for i in supporting(sent["content"], hits[j], contents, top, min_score):
            n = number.get(contents[i])
            if n is not None and n not in cited:
                cited.append(n)
        cited = cited[:max_citations]
        statements.append({"statement": sent["content"],
                           "citation": [chunk_citation(snippets[n - 1], "retrieval") for n in cited]})
        parts.append(f"<statement>{sent['content']}<cite>{''.join(f'[{n}]' for n in cited)}</cite></statement>")
    return "".join(parts), statements


class ChunkCitation(MapComponent):
    """CoF stage 2 (LongCite §1.2): chunk-level citations for an existing answer.

    The context is cut into ``chunk_size``-token chunks (the generator's tokenizer; whitespace words when
    it has none). Every sentence of the answer retrieves ``min(10, ceil(40 / #sentences))`` chunks
    (dense cosine with the ``embedder`` slot by default, BM25 with ``retrieval: bm25``), the union in
    document order becomes numbered snippets, and the model copies the answer wrapping each sentence in
    ``<statement>…<cite>[i]…</cite></statement>``. Output adds ``cited_answer``, ``statements``
    (``{statement, citation: [{start, end, idx, cite, source}]}``, at most 5 citations each; ``source`` is
    ``"model"`` or ``"retrieval"``) and ``citation_fallback`` (whether the fallback below made them).

    Output without any ``<statement>`` tag is a failure with the raw text under ``fallback: none`` (the
    default and the paper's behaviour). ``fallback: retrieval`` is not the paper's method: it exists so the
    pipeline can produce training data with models too small to follow the markup (e.g. the 135M CPU
    default). Such output is replaced by the answer's own sentences, each citing the best of the chunks it
    retrieved above, when that chunk shares content words with it (``fallback_top``,
    ``fallback_min_score``); a sentence with no such chunk stays uncited. Parsed markup is kept as the model
    wrote it, even where a sentence got no citation. ``summarize`` counts the citations from each source
    and the records that used the fallback; the ``paper`` profile keeps ``fallback: none``.

    With ``constrained`` on, the reply is enforced while decoding (``citation_format``): the answer copied
    exactly, one statement per sentence, every ``[i]`` one of the snippets shown. The model then always
    writes the markup (it only chooses the citations), so the fallback is never needed.
    """

    type = "cof.chunk_citation"
    inputs: ClassVar[dict[str, Fields]] = {"qa": Fields("query", "answer", "context")}
    outputs = Fields("query", "answer", "context", "cited_answer", "statements")
    models: ClassVar[dict[str, ModelSlot]] = {
        "model": ModelSlot("chat", doc="marks up the answer (glm-4-0520 in the paper)"),
        "embedder": ModelSlot("embed", required=False, default="all-minilm-l6-v2",
                              doc="sentence embedder for dense retrieval (unused with retrieval: bm25)"),
    }
    prompts: ClassVar[dict[str, str]] = {"chunk_citation": CHUNK_CITATION_PROMPT}
    reply_formats: ClassVar[dict[str, str]] = {"cited_answer": "regex"}
    batch_size = 4

    class Params(Constrained):
        chunk_size: int = Field(128, ge=1, description=(
            "tokens per chunk; cof.sentence_citation must use the same value and model"))
        retrieval: Literal["dense", "bm25"] = Field("dense", description=(
            "dense: cosine similarity with the embedder slot (the reference uses a remote embedding "
            "model); bm25: Okapi BM25, no model needed"))
        top_k: int = Field(10, ge=1, description="most chunks retrieved per answer sentence")
        max_snippets: int = Field(40, ge=1, description=(
            "snippet budget of the prompt: each sentence keeps min(top_k, ceil(max_snippets/#sentences))"))
        max_citations: int = Field(5, ge=1, description="citations kept per statement")
        temperature: float = Field(1.0, ge=0.0, description="sampling temperature")
        max_new_tokens: int = Field(2048, ge=1, description="length limit of the marked-up answer")
        fallback: Literal["none", "retrieval"] = Field("none", description=(
            "none (the paper): output without <statement> tags fails the record; retrieval (not the "
            "paper's method, for models too small to follow the markup): the answer's sentences cite the "
            "chunks they retrieved instead"))
        fallback_top: int = Field(1, ge=1, description="with fallback: retrieval, chunks cited per sentence")
        fallback_min_score: float = Field(0.0, description=(
            "with fallback: retrieval, a chunk is cited only when its retrieval score (BM25, or cosine with "
            "dense) is above this and it shares a content word with the sentence"))

    def estimate(self, n_in: dict[str, int | None]) -> Estimate:
        n = n_in.get("qa")
        return Estimate(records_out=n, llm_calls=n or 0)

    def process(self, batch: list[dict], ctx: Context) -> list[Out]:
        p = self.params
        llm = ctx.model()
        tokenizer = llm.tokenizer()
        embedder = ctx.embedder("embedder") if p.retrieval == "dense" else None
        sampling = Sampling(temperature=p.temperature, max_new_tokens=p.max_new_tokens)
        enforce = constrained(llm, p.constrained)
        samplings = []

        out: list[Out | None] = [None] * len(batch)
        snippets_of: dict[int, list[dict]] = {}
        retrieved: dict[int, tuple[list[dict], list[dict], list[list[tuple[int, float]]]]] = {}
        conversations = []
        for i, record in enumerate(batch):
            sentences = split_sentences(record["answer"])
            chunks = token_chunks(record["context"], tokenizer, p.chunk_size)
            if not sentences or not chunks:
                out[i] = Failed("empty answer or context", retry=False)
                continue
            hits = retrieve_chunks([s["content"] for s in sentences], chunks, p.top_k, p.max_snippets,
                                   p.retrieval, embedder)
            retrieved[i] = (sentences, chunks, hits)
            snippets_of[i] = union_snippets(hits, chunks)
            conversations.append([{"role": "user", "content": chunk_prompt(
                snippets_of[i], record["query"], record["answer"])}])
            fmt = citation_format(record["answer"], sentences, len(snippets_of[i]), p.max_citations)
            samplings.append(sampling.model_copy(update={"format": fmt}) if enforce else sampling)

        order = sorted(snippets_of)
        results = chat_each(llm, conversations, samplings) if order else []
        for i, result in zip(order, results):
            if result.error:
                out[i] = Failed(f"chunk citation failed: {result.error}")
                continue
            marked_up = "<statement>" in repair_tags(result.text)
            if not marked_up and p.fallback == "none":
                out[i] = Failed("no <statement> tags in the model output", raw=result.text)
                continue
            if marked_up:
                cited_answer, statements = parse_chunk_citations(result.text, snippets_of[i], p.max_citations)
            else:
                sentences, chunks, hits = retrieved[i]
                cited_answer, statements = fallback_citations(
                    batch[i]["answer"], sentences, hits, chunks, snippets_of[i], p.fallback_top,
                    p.fallback_min_score, p.max_citations)
            out[i] = {**batch[i], "cited_answer": cited_answer, "statements": statements,
                      "citation_fallback": not marked_up}
        return out  # type: ignore[return-value]

    def summarize(self, records: list[dict], ctx: Context) -> dict[str, Any]:
        statements = [s for r in records for s in r["statements"] if s["statement"].strip()]
        cited = sum(1 for s in statements if s["citation"])
        sources = [c.get("source", "model") for s in statements for c in s["citation"]]
        return {"records": len(records), "statements": len(statements), "cited_statements": cited,
                "cited_fraction": cited / len(statements) if statements else 0.0,
                "citations_from_model": sources.count("model"),
                "citations_from_retrieval": sources.count("retrieval"),
                "records_with_fallback": sum(1 for r in records if r.get("citation_fallback"))}
