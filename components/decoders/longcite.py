"""LongCite decoding: answer a question over a long document with sentence-level citations.

Follows LongCite §1.3 (``query_longcite`` / ``vllm_inference.py``): the context is split into sentences
numbered from 0 as ``<C0>…<C1>…``, the prompt is middle-truncated *after* numbering (so whole sentences in
the middle vanish while the kept ones keep their numbers), and the answer's
``<statement>S<cite>[s-e]…</cite></statement>`` markup is parsed into cited sentence spans.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from components.base import Context, Estimate, Failed, Fields, MapComponent, ModelSlot, Out
from components.decoders.longcite_parse import MAX_SPANS, parse_output
from components.formats import Constrained, bounded_text, chat_each, constrained, spans
from components.templates import render
from components.text import number_sentences, repair_tags, truncate_middle
from runner.backends.base import Format, Sampling

# The one instruction of LongCite-style models: the inference prompt here and the CoF SFT records
# (``cof.filter``) use this same text.
LONGCITE_INSTRUCTION = (
    "You are given a document whose sentences are numbered with markers <C0>, <C1>, <C2>, and so on, "
    "followed by a question about it. Answer the question. Whenever a sentence S of your answer uses "
    "information from the document, write that sentence as "
    "\"<statement>{S}<cite>[{s1}-{e1}][{s2}-{e2}]...</cite></statement>\", where each [{s}-{e}] gives the "
    "number of the first and of the last document sentence of a passage that supports S. Write your answer "
    "in the same language as the question."
)

USER_TEMPLATE = "{instruction}\n\n[Document Start]\n{context}\n[Document End]\n\n{question}"

TEMPLATE_ALLOWANCE = 64  # tokens left for the chat template's role markers
STATEMENT_CHARS = 400  # longest statement text the format allows
TAG_ALLOWANCE = 64  # tokens of tags and spans around one statement


def longcite_user_prompt(numbered_context: str, question: str) -> str:
    """The user turn: instruction, the ``<Ci>``-numbered document, the question."""
    values = {"instruction": LONGCITE_INSTRUCTION, "context": numbered_context, "question": question}
    return render(USER_TEMPLATE, values)


_MARKER = re.compile(r"<<(context|question)>>")


def file_user_prompt(template: str, numbered_context: str, question: str) -> str:
    """The user turn from a prompt file's text: ``<<context>>`` becomes the ``<Ci>``-numbered document and
    ``<<question>>`` the question, in one pass (so neither value is searched for markers); every other
    character, braces included, stays as written."""
    values = {"context": numbered_context, "question": question}
    return _MARKER.sub(lambda m: values[m.group(1)], template)


def read_prompt_file(path: str) -> str:
    """A prompt file's text; it must hold both ``<<context>>`` and ``<<question>>``."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"decode.longcite: prompt_file not found: {file}")
    text = file.read_text(encoding="utf-8")
    missing = [m for m in ("<<context>>", "<<question>>") if m not in text]
    if missing:
        raise ValueError(f"decode.longcite: prompt_file {file} lacks {' and '.join(missing)}")
    return text


def input_limit(max_input_tokens: int, context_length: int | None, max_new_tokens: int) -> int:
    """Prompt token budget: ``max_input_tokens``, lowered to fit the context window when it is known."""
    if context_length is None:
        return max_input_tokens
    return max(2, min(max_input_tokens, context_length - max_new_tokens - TEMPLATE_ALLOWANCE))


def answer_format(n_sentences: int, max_new_tokens: int) -> Format:
    """The cited answer: one or more ``<statement>S<cite>[s-e]…</cite></statement>`` blocks (up to 3
    spans of the ``n_sentences`` numbered sentences each, ``s ≤ e``; an empty cite is allowed), separated
    by at most two whitespace characters. A statement's text has no ``<`` and is at most ``STATEMENT_CHARS``
    characters (``bounded_text``), fewer when ``max_new_tokens`` is small: 3 characters per token of the
    budget left after the tags (English text averages about 4), so the first statement normally closes,
    with its citations, within the budget. (A statement cut off by the budget still parses.)"""
    text_chars = max(16, min(STATEMENT_CHARS, 3 * (max_new_tokens - TAG_ALLOWANCE)))
    span = r"\[" + spans(n_sentences) + r"\]"
    statement = (r"<statement>[^<\s]" + bounded_text(text_chars - 1, "<") + "<cite>(" + span + "){0,"
                 + str(MAX_SPANS) + r"}</cite></statement>")
    return Format.regex(f"({statement}\\s{{0,2}})+")


def parse_citations(output: str, chunks: list[dict]) -> list[dict]:
    """Statements with their cited sentences, in order, from LongCite-style model output: exactly what
    the reference's ``query_longcite`` post-processing returns as ``statements_with_citations``.

    ``chunks`` are the numbered pieces exactly as the prompt showed them (``number_sentences``; pieces
    with ``start``/``end`` keys are read too). Each statement is ``{statement, citation:
    [{start_sentence_idx, end_sentence_idx, start_char_idx, end_char_idx, cite}]}``; ``cite`` is the cited
    pieces' text, trailing whitespace included. The rules, edge cases included, are those of
    ``components.decoders.longcite_parse``: statement text as written (cite blocks removed, the text after
    them kept), untagged text of more than 5 characters as an uncited statement, a final unclosed
    ``<statement>`` dropped, a blank statement with cite blocks kept, only ``[s-e]`` ranges, clamped,
    merged, at most 3 spans.
    """
    return parse_output(output, chunks)[0]


class LongCiteDecoder(MapComponent):
    """Generate cited answers the LongCite way (paper §1.3) and parse them into statements.

    Output: ``{idx, dataset?, query, answer?, few_shot_scores?, prediction, statements, splited_context}``
    where ``prediction`` is the rebuilt answer and ``splited_context`` the full numbered context (before
    truncation). The prompt budget is ``max_input_tokens`` (the reference's 128000), lowered to the
    model's context window minus the answer budget when the backend knows it (``fit_context``), so small
    local models are not fed more than they can read.

    Sentences are numbered with a Punkt splitter trained on each context, as the reference's
    ``query_longcite`` (the prediction path of LongBench-Cite) does; ``train_punkt: false`` uses the
    untrained splitter of the CoF training data (``cof.filter``) instead. The answer is parsed exactly as
    the reference post-processing does (``parse_citations``); ``repair_tags: true`` first fixes common tag
    mistakes, which the reference does not.

    The prompt is this project's instruction. The released LongCite models were trained on the
    reference's own instruction; to decode with it, put the whole user turn in a ``prompt_file`` with
    ``<<context>>`` and ``<<question>>`` where the numbered document and the question go; or, with
    ``model_query: true``, let the model's own ``query_longcite`` (its repository code, run only with the
    backend option ``trust_remote_code: true``) number, prompt, generate and parse.
    """

    type = "decode.longcite"
    inputs: ClassVar[dict[str, Fields]] = {"records": Fields("query", "context")}
    outputs = Fields("query", "prediction", "statements", "splited_context")
    models: ClassVar[dict[str, ModelSlot]] = {
        "model": ModelSlot("chat", doc="the model that answers with citations")}
    prompts: ClassVar[dict[str, str]] = {"instruction": LONGCITE_INSTRUCTION, "user": USER_TEMPLATE}
    reply_formats: ClassVar[dict[str, str]] = {"answer": "regex"}
    batch_size = 4

    class Params(Constrained):
        max_input_tokens: int = Field(128000, ge=2, description=(
            "prompt length limit in tokens of the model's tokenizer (whitespace words when it has none); "
            "longer prompts lose their middle after the sentences are numbered"))
        temperature: float = Field(0.95, ge=0.0, description="sampling temperature")
        top_p: float = Field(0.7, gt=0.0, le=1.0, description="nucleus sampling mass")
        max_new_tokens: int = Field(1024, ge=1, description="answer length limit in tokens")
        fit_context: bool = Field(True, description=(
            "also keep the prompt within the model's context length minus max_new_tokens and a small "
            "allowance for the chat template, when the backend reports a context length"))
        train_punkt: bool = Field(True, description=(
            "train Punkt on each context before splitting, as the reference's query_longcite does; false: "
            "the untrained splitter of the CoF training data"))
        prompt_file: str | None = Field(None, description=(
            "a text file holding the whole user turn, with <<context>> for the numbered document and "
            "<<question>> for the question (e.g. the instruction the released LongCite models were trained "
            "on); default: this project's instruction"))
        model_query: bool = Field(False, description=(
            "decode with the model's own query_longcite (the released LongCite models' repository code: "
            "numbering, prompt, generation and parsing all theirs); needs a local transformers model with "
            "the option trust_remote_code: true"))
        repair_tags: bool = Field(False, description=(
            "fix common tag mistakes (`< cite>`, `statement>`, doubled tags) before parsing; the reference "
            "parses the raw answer"))

    def prompt_texts(self) -> dict[str, str]:
        if self.params.prompt_file is None:
            return dict(self.prompts)
        return {"user": read_prompt_file(self.params.prompt_file)}

    def estimate(self, n_in: dict[str, int | None]) -> Estimate:
        n = n_in.get("records")
        return Estimate(records_out=n, llm_calls=n or 0,
                        completion_tokens=(n or 0) * self.params.max_new_tokens)

    def process(self, batch: list[dict], ctx: Context) -> list[Out]:
        p = self.params
        llm = ctx.model()
        if p.model_query:
            return self._by_model_query(batch, llm)
        tokenizer = llm.tokenizer()
        limit = input_limit(p.max_input_tokens, llm.context_length if p.fit_context else None, p.max_new_tokens)
        template = read_prompt_file(p.prompt_file) if p.prompt_file is not None else None
        numbered: list[tuple[list[dict], str]] = []
        conversations = []
        for record in batch:
            chunks, text = number_sentences(record["context"], trained=p.train_punkt)
            numbered.append((chunks, text))
            prompt = (longcite_user_prompt(text, record["query"]) if template is None
                      else file_user_prompt(template, text, record["query"]))
            prompt = truncate_middle(prompt, tokenizer, limit)
            conversations.append([{"role": "user", "content": prompt}])
        sampling = Sampling(temperature=p.temperature, top_p=p.top_p, max_new_tokens=p.max_new_tokens)
        samplings = [sampling] * len(batch)
        if constrained(llm, p.constrained):  # one format per number of sentences
            samplings = [sampling.model_copy(update={"format": answer_format(len(chunks), p.max_new_tokens)})
                         for chunks, _ in numbered]
        results = chat_each(llm, conversations, samplings)
        out: list[Out] = []
        for record, (chunks, text), result in zip(batch, numbered, results):
            if result.error:
                out.append(Failed(f"generation failed: {result.error}", raw=None))
                continue
            answer = repair_tags(result.text) if p.repair_tags else result.text
            statements, prediction = parse_output(answer, chunks)
            out.append({**_passthrough(record), "prediction": prediction, "statements": statements,
                        "splited_context": text})
        return out

    def _by_model_query(self, batch: list[dict], llm: Any) -> list[Out]:
        """Each record through the model's own ``query_longcite``, called as LongBench-Cite's
        ``pred_sft.py`` calls it; its ``answer`` and ``statements_with_citations`` become the output."""
        p = self.params
        method = getattr(llm, "model_method", None)
        query = method("query_longcite") if method is not None else None
        if query is None:
            raise ValueError("decode.longcite: model_query needs a local transformers model whose repository "
                             "code defines query_longcite (a released LongCite model), loaded with the "
                             "option trust_remote_code: true")
        tokenizer = llm.tokenizer()
        out: list[Out] = []
        for record in batch:
            try:
                res = query(record["context"], record["query"], tokenizer=tokenizer,
                            max_input_length=p.max_input_tokens, max_new_tokens=p.max_new_tokens)
            except Exception as e:  # the repository's code: any failure is this record's
                out.append(Failed(f"query_longcite failed: {type(e).__name__}: {e}", raw=None))
                continue
            out.append({**_passthrough(record), "prediction": res["answer"],
                        "statements": res["statements_with_citations"],
                        "splited_context": res.get("splited_context", "")})
        return out

    def summarize(self, records: list[dict], ctx: Context) -> dict[str, Any]:
        statements = [s for r in records for s in r.get("statements", [])]
        cited = [s for s in statements if s["citation"]]
        spans = sum(len(s["citation"]) for s in statements)
        return {
            "records": len(records),
            "statements": len(statements),
            "cited_statements": len(cited),
            "cited_fraction": len(cited) / len(statements) if statements else 0.0,
            "spans_per_cited_statement": spans / len(cited) if cited else 0.0,
        }


_PASSTHROUGH = ("id", "idx", "dataset", "query", "answer", "few_shot_scores")


def _passthrough(record: dict) -> dict:
    return {k: record[k] for k in _PASSTHROUGH if k in record}
