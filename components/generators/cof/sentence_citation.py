"""CoF stage 3: refine each chunk citation to the sentences that support the statement."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from components.base import Context, Estimate, Failed, Fields, MapComponent, ModelSlot, Out
from components.formats import Constrained, chat_each, constrained, span_pairs
from components.generators.cof.fallback import best_sentences
from components.selectors.cof_filter import global_spans
from components.templates import render
from components.text import decode_tokens, sentence_tiles, split_sentences, token_chunks
from runner.backends.base import Format, Sampling

SENTENCE_CITATION_PROMPT = """You will see passages from a document whose sentences are numbered <C0>, <C1>, <C2>, ..., a question, and one statement taken from an answer to that question. Find the sentences that support the statement. Write each stretch of consecutive supporting sentences on its own line as [s-e], where s is the number of its first sentence and e the number of its last (a single sentence k is [k-k]). Cite only what the statement needs. If no sentence supports the statement, write exactly: No relevant information

Example 1
[Passages]
<C0>The bakery opened in 1921 on Mill Street. <C1>Its founder, Anna Berg, had trained in Vienna. <C2>In the 1950s it added a small café. <C3>The café closed again in 1974.
[Question]
Who founded the bakery, and where did she learn her trade?
[Statement]
The bakery was founded by Anna Berg, who had trained in Vienna.
[Supporting sentences]
[1-1]

Example 2
[Passages]
<C0>Rainfall in the valley averages 600 mm a year. <C1>Most of it falls between May and August. <C2>Farmers grow barley and potatoes. <C3>Sheep graze on the upper slopes. <C4>Winters are long and dry.
[Question]
What is the climate of the valley like?
[Statement]
The valley gets about 600 mm of rain a year, mostly in summer, and its winters are dry.
[Supporting sentences]
[0-1]
[4-4]

Example 3
[Passages]
<C0>这座桥建于1890年。<C1>它全长约四百米。<C2>桥上每天通行上万辆汽车。
[Question]
这座桥是谁设计的？
[Statement]
这座桥由一位法国工程师设计。
[Supporting sentences]
No relevant information

Now the task:
[Passages]
{context}
[Question]
{question}
[Statement]
{statement}
[Supporting sentences]
"""


def merge_windows(cited: list[int], n_chunks: int) -> list[tuple[int, int]]:
    """Chunk windows ``[c−1, c+2)`` around each cited chunk, clipped, merged when they touch or overlap."""
    windows: list[list[int]] = []
    for c in sorted(set(cited)):
        lo, hi = max(0, c - 1), min(n_chunks, c + 2)
        if windows and lo <= windows[-1][1]:
            windows[-1][1] = max(windows[-1][1], hi)
        else:
            windows.append([lo, hi])
    return [(lo, hi) for lo, hi in windows]


def locate_window(context: str, chunks: list[dict], lo: int, hi: int, tokenizer: Any
                  ) -> tuple[int, int] | None:
    """Character span of chunks ``lo..hi-1`` in ``context``.

    Exact when the chunks carry character offsets. Otherwise (tokenizers without offsets) the decoded
    window is searched for, then with 1–5 characters trimmed from both ends, then with 1–4 tokens trimmed
    from both ends, as the reference does.
    """
    if chunks[lo]["char_start"] is not None:
        return chunks[lo]["char_start"], chunks[hi - 1]["char_end"]
    ids = [t for c in chunks[lo:hi] for t in c["token_ids"]]
    text = decode_tokens(tokenizer, ids)
    candidates = [text] + [text[t:-t] for t in range(1, 6)]
    candidates += [decode_tokens(tokenizer, ids[t:-t]) for t in range(1, 5) if len(ids) > 2 * t]
    for candidate in candidates:
        if candidate.strip():
            at = context.find(candidate)
            if at >= 0:
                return at, at + len(candidate)
    return None


def passage_sentences(spans: list[tuple[int, int]], sentences: list[dict], tiles: list[dict]
                      ) -> tuple[list[dict], str]:
    """The sentences overlapping the passages, numbered locally from 0 across passages.

    Returns ``(chunk_sents, prompt_text)``: ``chunk_sents[j] = {c_idx, content}`` (global sentence index
    and its text; j is the local number) and the passages rendered as ``<Cj>…`` joined by blank lines.
    A sentence overlapping two passages is listed once. Overlap (not only a start or end inside the
    passage) also catches a sentence longer than the whole passage.
    """
    chunk_sents: list[dict] = []
    seen: set[int] = set()
    rendered: list[str] = []
    for start, end in spans:
        parts = []
        for sent in sentences:
            if sent["start_idx"] < end and sent["end_idx"] > start and sent["c_idx"] not in seen:
                seen.add(sent["c_idx"])
                parts.append(f"<C{len(chunk_sents)}>{tiles[sent['c_idx']]['content']}")
                chunk_sents.append({"c_idx": sent["c_idx"], "content": sent["content"]})
        if parts:
            rendered.append("".join(parts).rstrip())
    return chunk_sents, "\n\n".join(rendered)


def sentence_prompt(passages: str, question: str, statement: str) -> str:
    return render(SENTENCE_CITATION_PROMPT, {"context": passages, "question": question, "statement": statement})


NO_SUPPORT = "no relevant information"
MAX_SPANS = 3  # spans per statement that cof.filter keeps


def spans_format(n_sentences: int, max_spans: int = MAX_SPANS) -> Format:
    """The reply about one statement: 1 to ``max_spans`` lines ``[s-e]`` with ``0 ≤ s ≤ e < n_sentences``
    (the local numbers shown), or exactly "No relevant information"."""
    span = r"\[" + span_pairs(n_sentences) + r"\]"
    return Format.regex(f"No relevant information|{span}(\\n{span}){{0,{max_spans - 1}}}")


def settle_citation(reply: str, statement: str, chunk_sents: list[dict], fallback: str = "none", top: int = 1,
                    min_score: float = 0.0) -> tuple[str, Literal["model", "retrieval", "none"]]:
    """``(text to store, citation_source)`` for the model's ``reply`` about one statement.

    ``model``: the reply has an ``[s-e]`` range that ``cof.filter`` turns into a span; it is stored as is.
    With ``fallback="retrieval"`` (not the paper's method), a reply without such a range that is not the
    explicit "No relevant information" is replaced by ``[k-k]`` lines (text order) for up to ``top`` local
    sentences with the best BM25 overlap with the statement that share a content word with it:
    ``retrieval``. Otherwise the reply is stored as is: ``none``.
    """
    if global_spans(reply, chunk_sents):
        return reply, "model"
    if fallback == "retrieval" and NO_SUPPORT not in reply.lower():
        picked = best_sentences(statement, [s["content"] for s in chunk_sents], top, min_score)
        if picked:
            return "\n".join(f"[{k}-{k}]" for k in picked), "retrieval"
    return reply, "none"


class SentenceCitation(MapComponent):
    """CoF stage 3 (LongCite §1.2): sentence-level citations inside the cited chunks.

    For each statement with chunk citations, the windows of chunks ``[c−1, c+2)`` around the cited ones
    are merged and located in the context; the context's sentences in them are numbered locally
    ``<C0>, <C1>, …`` and the model answers with ``[s-e]`` lines or "No relevant information". The raw
    answer is stored in the statement's ``citation`` with ``expand_chunk`` (the passages) and
    ``chunk_sents`` (local number → global sentence ``c_idx``) beside it; ``cof.filter`` turns it into
    global spans. Statements without chunk citations are left as they are; the others get
    ``citation_source``: ``"model"`` (the reply has a usable range), ``"retrieval"`` or ``"none"``.

    ``fallback: none`` (the default, the paper's behaviour) stores every reply as the model wrote it.
    ``fallback: retrieval`` is not the paper's method: it exists so the pipeline can produce training data
    with models too small to write ``[s-e]`` lines (e.g. the 135M CPU default). A reply with no usable range
    that is not "No relevant information" is replaced by ``[k-k]`` lines for the local sentences with the
    best BM25 overlap with the statement (``fallback_top``, ``fallback_min_score``), written exactly as a
    reply would be so ``cof.filter`` reads them unchanged; the model's reply is kept in ``model_reply``.
    ``summarize`` counts the statements cited from each source; the ``paper`` profile keeps
    ``fallback: none``.

    With ``constrained`` on, each reply is enforced while decoding (``spans_format``): one to three
    ``[s-e]`` lines within the sentences shown (``s ≤ e``), or "No relevant information"; the fallback
    then never has an unusable reply to replace.

    Chunking must match ``cof.chunk_citation`` (same model, same ``chunk_size``); a mismatch fails the
    record instead of citing the wrong text.
    """

    type = "cof.sentence_citation"
    inputs: ClassVar[dict[str, Fields]] = {"chunks": Fields("query", "context", "statements")}
    outputs = Fields("query", "context", "statements")
    models: ClassVar[dict[str, ModelSlot]] = {
        "model": ModelSlot("chat", doc="picks the supporting sentences (glm-4-0520 in the paper)")}
    prompts: ClassVar[dict[str, str]] = {"sentence_citation": SENTENCE_CITATION_PROMPT}
    reply_formats: ClassVar[dict[str, str]] = {"spans": "regex"}
    batch_size = 4

    class Params(Constrained):
        chunk_size: int = Field(128, ge=1, description="tokens per chunk; must equal cof.chunk_citation's")
        temperature: float = Field(1.0, ge=0.0, description="sampling temperature")
        max_new_tokens: int = Field(128, ge=1, description="length limit of the [s-e] list")
        fallback: Literal["none", "retrieval"] = Field("none", description=(
            "none (the paper): replies are stored as written; retrieval (not the paper's method, for "
            "models too small to write [s-e] lines): a reply without a usable range cites the local "
            "sentences with the best BM25 overlap instead"))
        fallback_top: int = Field(1, ge=1, description="with fallback: retrieval, sentences cited per statement")
        fallback_min_score: float = Field(0.0, description=(
            "with fallback: retrieval, a sentence is cited only when its BM25 score is above this and it "
            "shares a content word with the statement"))

    def estimate(self, n_in: dict[str, int | None]) -> Estimate:
        return Estimate(records_out=n_in.get("chunks"))

    def _requests(self, record: dict, tokenizer: Any) -> list[tuple[int, dict, str]] | Failed:
        """``(statement index, extra fields, prompt)`` for every statement with chunk citations."""
        context = record["context"]
        chunks = token_chunks(context, tokenizer, self.params.chunk_size)
        sentences = split_sentences(context)
        tiles = sentence_tiles(context, sentences)
        requests = []
        for j, statement in enumerate(record["statements"]):
            citations = statement.get("citation") or []
            if not isinstance(citations, list) or not citations:
                continue
            for cit in citations:
                if not 0 <= cit["idx"] < len(chunks) or chunks[cit["idx"]]["content"] != cit["cite"]:
                    return Failed(f"chunk {cit['idx']} differs from cof.chunk_citation's: use the same model "
                                  "and chunk_size in both stages", retry=False)
            expand, spans = [], []
            for lo, hi in merge_windows([c["idx"] for c in citations], len(chunks)):
                span = locate_window(context, chunks, lo, hi, tokenizer)
                if span is None:
                    return Failed(f"could not find the text of chunks {lo}..{hi - 1} in the context",
                                  retry=False)
                spans.append(span)
                expand.append({"start_chunk": lo, "end_chunk": hi, "start_idx": span[0], "end_idx": span[1],
                               "content": context[span[0]:span[1]]})
            chunk_sents, passages = passage_sentences(spans, sentences, tiles)
            extra = {"expand_chunk": expand, "chunk_sents": chunk_sents}
            requests.append((j, extra, sentence_prompt(passages, record["query"], statement["statement"])
                             if chunk_sents else ""))
        return requests

    def process(self, batch: list[dict], ctx: Context) -> list[Out]:
        p = self.params
        llm = ctx.model()
        tokenizer = llm.tokenizer()
        plans = [self._requests(r, tokenizer) for r in batch]
        calls = [(i, k) for i, plan in enumerate(plans) if not isinstance(plan, Failed)
                 for k, (_, _, prompt) in enumerate(plan) if prompt]
        sampling = Sampling(temperature=p.temperature, max_new_tokens=p.max_new_tokens)
        samplings = [sampling] * len(calls)
        if constrained(llm, p.constrained):  # one format per number of sentences shown
            samplings = [sampling.model_copy(update={"format": spans_format(len(plans[i][k][1]["chunk_sents"]))})
                         for i, k in calls]
        results = chat_each(llm, [[{"role": "user", "content": plans[i][k][2]}] for i, k in calls],
                            samplings) if calls else []
        answers = {call: result for call, result in zip(calls, results)}

        out: list[Out] = []
        for i, (record, plan) in enumerate(zip(batch, plans)):
            if isinstance(plan, Failed):
                out.append(plan)
                continue
            errors = [answers[(i, k)].error for k in range(len(plan)) if (i, k) in answers
                      and answers[(i, k)].error]
            if errors:
                out.append(Failed(f"sentence citation failed: {errors[0]}"))
                continue
            statements = [dict(s) for s in record["statements"]]
            for k, (j, extra, _) in enumerate(plan):
                raw = answers[(i, k)].text if (i, k) in answers else ""
                stored, source = settle_citation(raw, statements[j]["statement"], extra["chunk_sents"],
                                                 p.fallback, p.fallback_top, p.fallback_min_score)
                statements[j] = {**statements[j], "citation": stored, **extra, "citation_source": source}
                if stored != raw:
                    statements[j]["model_reply"] = raw
            out.append({**record, "statements": statements})
        return out

    def summarize(self, records: list[dict], ctx: Context) -> dict[str, Any]:
        refined = [s for r in records for s in r["statements"] if isinstance(s.get("citation"), str)]
        none = sum(1 for s in refined if "[" not in s["citation"])
        sources = [s.get("citation_source") for s in refined]
        return {"records": len(records), "refined_statements": len(refined),
                "answers_without_spans": none,
                "citations_from_model": sources.count("model"),
                "citations_from_retrieval": sources.count("retrieval"),
                "uncited_refined_statements": sources.count("none"),
                "records_with_fallback": sum(1 for r in records if any(
                    s.get("citation_source") == "retrieval" for s in r["statements"]))}
