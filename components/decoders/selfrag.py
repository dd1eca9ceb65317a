"""Self-RAG decoding (spec §5.4–5.5): retrieval on demand and critique-guided answers, ``decode.selfrag``.

The public scoring functions (``score_candidate``, ``final_score``, ``retrieval_ratio``, ``postprocess``,
``aggregate_closed``) live in ``components.decoders.selfrag_scores`` and are re-exported here; the long-form
beam search is ``components.decoders.selfrag_beam``; prompts and generator calls are
``components.decoders.selfrag_generate``.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from components.base import Context, Estimate, Failed, Fields, MapComponent, ModelSlot, Out, Params
from components.decoders.selfrag_beam import beam_search, cited_answer
from components.decoders.selfrag_generate import (
    CLOSED_TYPES,
    MC_INSTRUCTION,
    TF_INSTRUCTION,
    Generation,
    continue_all,
    conversation,
    first_token_logprobs,
    passages_of,
    retrieval_prefix,
    task_prompt,
)
from components.decoders.selfrag_scores import (
    MISSING_LOGPROB,
    aggregate_closed,
    final_score,
    postprocess,
    retrieval_ratio,
    score_candidate,
)
from components.selfrag_tokens import NO_RETRIEVAL, RETRIEVAL

__all__ = ["SelfRAGDecoder", "aggregate_closed", "final_score", "postprocess", "retrieval_ratio",
           "score_candidate"]


class SelfRAGParams(Params):
    form: Literal["short", "long"] = Field("short", description=(
        "short: one candidate per passage, the best (open tasks) or the vote (closed tasks); long: "
        "segment-level beam search with one citation per segment"))
    mode: Literal["adaptive", "always", "never"] = Field("adaptive", description=(
        "adaptive: retrieve when p([Retrieval]) / (p([Retrieval]) + p([No Retrieval])) after the prompt "
        "exceeds threshold; always / never: always or never retrieve"))
    threshold: float = Field(0.2, ge=0.0, le=1.0, description=(
        "retrieval threshold δ on probabilities (the reference README uses 0.2); long form also uses it to "
        "turn a generated [No Retrieval] into [Retrieval]"))
    ndocs: int = Field(5, ge=1, description="passages used per query (reference: 10 PopQA, 5 ARC / PubHealth / ASQA)")
    max_new_tokens: int = Field(100, ge=1, description=(
        "tokens per candidate (short form; reference 100 PopQA, 50 ARC / PubHealth) or per segment (long "
        "form; reference 300)"))
    w_rel: float = Field(1.0, description="weight of the relevance score")
    w_sup: float = Field(1.0, description="weight of the support (grounding) score")
    w_use: float | None = Field(None, description=(
        "weight of the utility score; null: 1.0 in short form (the reference's command-line default) and "
        "0.5 in long form"))
    use_seqscore: bool = Field(False, description="add exp(mean token log-probability) to each candidate's score")
    max_depth: int = Field(7, ge=1, description=(
        "long form: as the reference's --max_depth (README: 7): segments are generated at depths 1 … "
        "max_depth − 1"))
    beam_width: int = Field(2, ge=1, description="long form: nodes kept per depth (reference: 2)")
    passages_field: str = Field("passages", description=(
        "record field with the passages [{id, title, text, score}] (the paper's task files' ctxs [{title, "
        "text}] are read when the field is absent)"))
    question_field: str = Field("question", description="record field with the question (or claim)")
    task_field: str = Field("task_type", description=(
        "record field with the task type: open, multiple_choice or true_false (closed tasks vote)"))
    task_type: Literal["open", "multiple_choice", "true_false"] | None = Field(None, description=(
        "the task type of every record, instead of reading task_field (paper task files carry none)"))
    compat: Literal["default", "reference"] = Field("default", description=(
        "reference: reproduce the reference scripts' numbers — the short-form adaptive ratio on raw "
        "log-probabilities, and long-form segments scored with w = (1, 1, 0.5), no sequence score and a "
        "utility term of 0"))


class SelfRAGDecoder(MapComponent):
    """Self-RAG decoding: adaptive retrieval, one candidate per passage, critique-token scores.

    Short form (spec §5.4): the retrieval decision (``mode``); with retrieval, one greedy candidate per
    passage from ``prompt + [Retrieval]<paragraph>{title}\\n{text}</paragraph>``, scored
    ``w_rel·relevance + w_sup·support + w_use·utility (+ seq score)``; open tasks answer with the best
    candidate (the first on a tie), closed tasks (multiple choice, true/false) with the answer whose
    candidates' scores sum highest; without retrieval, the continuation of ``prompt + [No Retrieval]``. The
    answer is post-processed (reflection tokens, ``</s>``, ``<|endoftext|>`` and newlines removed, then one
    leading ``#`` or ``:``). Long form (spec §5.5): ``components.decoders.selfrag_beam``.

    Where the reference differs, the method is followed: the adaptive ratio uses probabilities (the
    short-form script uses raw log-probabilities); open-task answers are post-processed (the reference
    returns the raw candidate, reflection tokens included); ``[Continue to Use Evidence]`` is removed too;
    one passage with ``always`` works (the reference crashes); long form uses the params' weights and
    sequence-score flag and computes the utility term (see ``selfrag_beam``). ``compat: reference`` brings
    back the reference's adaptive ratio on log-probabilities (short form) and its long-form segment score.

    The model must be a local one with the reflection tokens in its vocabulary (a ``train.sft`` output with
    ``special_tokens: selfrag``, or ``selfrag-llama2-7b``): the scores need the tokens' log-probabilities.

    Output: the input record plus ``prediction``, ``mode``, ``retrieve`` (the decision),
    ``retrieval_ratio`` (adaptive; else null), ``passages_used`` and ``candidates`` (short form: per
    passage ``{passage_id, title, text, relevance, grounding, utility, seq_score, score}``; long form: every
    node of the tree with its ``depth``, ``parent`` and path ``score``), ``answer_sums`` (closed tasks) and,
    in long form, ``segments`` and ``docs`` (the cited passages, ``[k]`` is ``docs[k-1]``).
    """

    type = "decode.selfrag"
    inputs: ClassVar[dict[str, Fields]] = {"records": Fields()}
    outputs = Fields("prediction", "mode", "retrieve", "retrieval_ratio", "passages_used", "candidates")
    models: ClassVar[dict[str, ModelSlot]] = {
        "generator": ModelSlot("chat", local=True, doc="the Self-RAG generator (with the reflection tokens)")}
    prompts: ClassVar[dict[str, str]] = {"multiple_choice": MC_INSTRUCTION, "true_false": TF_INSTRUCTION}
    Params = SelfRAGParams
    batch_size = 4

    def estimate(self, n_in: dict[str, int | None]) -> Estimate:
        n, p = n_in.get("records") or 0, self.params
        per = 1 + p.ndocs if p.form == "short" else 1 + p.ndocs * (1 + p.beam_width * max(p.max_depth - 2, 0))
        return Estimate(records_out=n, llm_calls=n * per, completion_tokens=n * per * p.max_new_tokens)

    def _task(self, record: dict) -> str:
        p = self.params
        return p.task_type or str(record.get(p.task_field) or "open")

    def _w_use(self) -> float:
        p = self.params
        return p.w_use if p.w_use is not None else (1.0 if p.form == "short" else 0.5)

    def _retrieve(self, ratio: float | None) -> bool:
        p = self.params
        return p.mode == "always" or (p.mode == "adaptive" and ratio is not None and ratio > p.threshold)

    def _score(self, scores: dict) -> float:
        p = self.params
        if p.compat == "reference" and p.form == "long":
            return final_score({**scores, "utility": 0.0}, w_rel=1.0, w_sup=1.0, w_use=0.5, use_seqscore=False)
        return final_score(scores, w_rel=p.w_rel, w_sup=p.w_sup, w_use=self._w_use(), use_seqscore=p.use_seqscore)

    def process(self, batch: list[dict], ctx: Context) -> list[Out]:
        p = self.params
        llm = ctx.model("generator")
        users = [task_prompt(r, self._task(r), p.question_field) for r in batch]
        passages = [passages_of(r, p.passages_field, p.ndocs) for r in batch]
        ratios: list[Any] = [None] * len(batch)
        if p.mode == "adaptive":
            ratio = reference_ratio if p.compat == "reference" and p.form == "short" else retrieval_ratio
            ratios = [x if isinstance(x, str) else ratio(x) for x in first_token_logprobs(llm, users)]
        # every short-form candidate and no-retrieval answer of the batch goes to the generator in one call
        convs: list[list[dict]] = []
        spans: list[tuple[int, int] | None] = []
        for user, docs, ratio in zip(users, passages, ratios):
            if isinstance(ratio, str) or (self._retrieve(ratio) and docs and p.form == "long"):
                spans.append(None)
                continue
            prefixes = [retrieval_prefix(d) for d in docs] if self._retrieve(ratio) and docs else [NO_RETRIEVAL]
            spans.append((len(convs), len(prefixes)))
            convs += [conversation(user, prefix) for prefix in prefixes]
        gens = continue_all(llm, convs, p.max_new_tokens)
        out: list[Out] = []
        for record, user, docs, ratio, span in zip(batch, users, passages, ratios, spans):
            if isinstance(ratio, str):
                out.append(Failed(f"generation failed: {ratio}"))
                continue
            retrieve = self._retrieve(ratio)
            base = {**record, "mode": p.mode, "retrieve": retrieve, "retrieval_ratio": ratio}
            try:
                if span is None:
                    fields = self._long(llm, user, docs)
                else:
                    mine = gens[span[0]:span[0] + span[1]]
                    fields = self._short(record, docs, mine) if retrieve and docs else _no_retrieval(mine[0])
            except RuntimeError as exc:
                out.append(Failed(str(exc)))
                continue
            out.append({**base, **fields})
        return out

    def _short(self, record: dict, docs: list[dict], gens: list[Generation]) -> dict:
        candidates = []
        for doc, gen in zip(docs, gens):
            if gen.error is not None:
                raise RuntimeError(f"generation failed: {gen.error}")
            scores = score_candidate(gen.tokens, gen.token_logprobs, gen.tracked, gen.cumulative_logprob)
            candidates.append({"passage_id": doc["id"], "title": doc["title"], "text": gen.text, **scores,
                               "score": self._score(scores)})
        fields: dict[str, Any] = {"passages_used": docs, "candidates": candidates}
        if self._task(record) in CLOSED_TYPES:
            sums, best = aggregate_closed([(c["text"], c["score"]) for c in candidates])
            # the vote's keys are post-processed already (a second pass could cut more than the reference)
            fields.update(prediction=_strip_lead(best or ""), answer_sums=[[a, s] for a, s in sums])
        else:
            best_i = max(range(len(candidates)), key=lambda i: (candidates[i]["score"], -i))
            fields["prediction"] = _answer(candidates[best_i]["text"])
        return fields

    def _long(self, llm: Any, user: str, docs: list[dict]) -> dict:
        p = self.params
        path, nodes = beam_search(llm, user, docs, score=self._score, max_depth=p.max_depth,
                                  beam_width=p.beam_width, threshold=p.threshold, max_new_tokens=p.max_new_tokens)
        if not path:
            return _no_retrieval(continue_all(llm, [conversation(user, NO_RETRIEVAL)], p.max_new_tokens)[0])
        answer, cited = cited_answer(path)
        candidates = [{"node": n.id, "parent": n.parent, "depth": n.depth, "passage_id": n.passage["id"],
                       "title": n.passage["title"], "text": n.pred, **n.scores, "segment_score": n.segment_score,
                       "score": n.score} for n in nodes if n.passage is not None]
        return {"prediction": answer, "segments": [n.segment for n in path], "docs": cited,
                "passages_used": docs, "candidates": candidates}

    def summarize(self, records: list[dict], ctx: Context) -> dict[str, Any]:
        n = len(records)
        retrieved = sum(1 for r in records if r.get("retrieve"))
        return {"records": n, "mode": self.params.mode, "form": self.params.form,
                "retrieval_frequency": retrieved / n if n else 0.0,
                "candidates_per_record": sum(len(r.get("candidates", [])) for r in records) / n if n else 0.0}

    def report(self, records: list[dict], metrics: dict[str, Any] | None, ctx: Context) -> str | None:
        if not records or not metrics:
            return None
        lines = [f"Self-RAG decoding ({metrics['form']} form, {metrics['mode']}): retrieval on "
                 f"{metrics['retrieval_frequency']:.0%} of {metrics['records']} records."]
        example = next((r for r in records if r.get("candidates")), None)
        if example is not None:
            question = str(example.get(self.params.question_field, ""))[:120]
            lines += ["", f"Candidates for: {question} → {example['prediction'][:120]}", "", _example_table(example)]
        return "\n".join(lines) + "\n"


def reference_ratio(logprobs: dict[str, float]) -> float:
    """The reference short-form script's ratio: the raw log-probabilities of [Retrieval] and [No Retrieval]
    divided (a missing one counts as −100), which grows as p([Retrieval]) falls (``compat: reference``)."""
    ret = logprobs.get(RETRIEVAL, MISSING_LOGPROB)
    no = logprobs.get(NO_RETRIEVAL, MISSING_LOGPROB)
    return ret / (ret + no) if ret + no != 0 else 0.0


def _example_table(record: dict) -> str:
    """One record's candidates with their scores, as a markdown table."""
    rows = ["| passage | relevance | support | utility | seq score | score | text |", "|---|---|---|---|---|---|---|"]
    for c in record.get("candidates", [])[:10]:
        text = postprocess(str(c.get("text", ""))).replace("|", "\\|")[:80]
        rows.append(f"| {c.get('title') or c.get('passage_id')} | {c['relevance']:.3f} | {c['grounding']:.3f} | "
                    f"{c['utility']:.3f} | {c['seq_score']:.3f} | {c['score']:.3f} | {text} |")
    return "\n".join(rows)


def _no_retrieval(gen: Generation) -> dict:
    """The answer continued from ``prompt + [No Retrieval]``."""
    if gen.error is not None:
        raise RuntimeError(f"generation failed: {gen.error}")
    return {"prediction": _answer(gen.text), "passages_used": [], "candidates": []}


def _answer(text: str) -> str:
    """The post-processed answer without one leading ``#`` or ``:`` (as the reference's final step)."""
    return _strip_lead(postprocess(text))


def _strip_lead(text: str) -> str:
    """``text`` without one leading ``#`` or ``:`` (the reference's final step; on an empty answer it fails)."""
    return text[1:] if text[:1] in ("#", ":") else text
