"""``selfrag.generator_data``: Self-RAG generator training data, outputs rewritten with reflection tokens
from a critic's verdicts (spec §5.3)."""

from __future__ import annotations

import random
from typing import Any, ClassVar, Literal

from pydantic import Field

from components.base import Context, Estimate, Fields, MapComponent, ModelSlot, Out, Params, record_key
from components.retrievers import InputIndex
from components.selfrag.ask import CriticAskParams, ask_labels
from components.selfrag.assemble import (
    Segment,
    choose_passage,
    final_utility,
    keep_record,
    map_verdict_answer,
    output_sentences,
    output_text,
    pair_instruction,
    passage_text,
)
from components.selfrag.critic_prompts import INSTRUCTIONS
from components.selfrag_tokens import CONTINUE, NO_RETRIEVAL, RELEVANT, RETRIEVAL, UTILITY


class GeneratorDataParams(CriticAskParams):
    passages_field: str = Field("passages", description="record field with the retrieved passages "
                                "`[{title, text}]` (a `retrieve` stage writes it)")
    ndocs: int = Field(3, ge=1, description="candidate passages per sentence that retrieves")
    few_shot: bool = Field(False, description="show the critic the worked examples first (for an untrained "
                           "zoo model as critic; a trained critic is asked as it was trained)")
    partial_prob: float = Field(0.7, ge=0.0, le=1.0, description="chance of keeping a partially "
                                "supporting passage when none fully supports (reference: 0.7)")
    no_support_prob: float = Field(0.25, ge=0.0, le=1.0, description="chance of keeping a relevant passage "
                                   "that does not support the sentence (reference: 0.25)")
    no_retrieval_keep: float = Field(0.4, ge=0.0, le=1.0, description="chance of keeping an output that "
                                     "never retrieves (reference: 0.4)")
    max_sentences: int = Field(8, ge=1, description="sentences of an output rated one by one; the rest "
                               "joins the last one")
    first_retrieval: Literal["critic", "always"] = Field(
        "critic", description="critic: the critic decides whether the instruction needs retrieval (the "
        "reference); always: every output retrieves for its first sentence, the critic still deciding the "
        "later sentences (for a critic that never answers [Retrieval], e.g. a 135M model)")
    method: Literal["dense", "bm25", "hybrid"] = Field(
        "hybrid", description="with the `index` input: how each sentence's passages are searched")


class GeneratorData(MapComponent):
    """Rewrites instruction–output pairs into Self-RAG generator targets with reflection tokens.

    For each pair the critic (``critic``: a trained critic stage, or a zoo model with ``few_shot``) is
    asked, its replies held to each question's labels when ``constrained``:

    1. whether the instruction needs retrieval; if not, the output is one ``[No Retrieval]`` segment
       (``first_retrieval: always`` skips this question and retrieves for every first sentence);
    2. the utility of the whole output (``[Utility:k]``, appended at the end);
    3. otherwise sentence by sentence: the first sentence retrieves; each later one gets the multi-sentence
       question (``[Retrieval]`` / ``[No Retrieval]``, and ``[Continue to Use Evidence]`` while a relevant
       passage is in use); a sentence that retrieves has the record's first ``ndocs`` passages rated for
       relevance, the relevant ones for support, and keeps one passage by the rules of
       ``components.selfrag.assemble`` (first fully supported, else partial with p=0.7, else no support
       with p=0.25, else a random irrelevant one).

    Then the record rules of §5.3 apply (SUPPORTS/REFUTES → true/false, ``[Utility:1]`` → ``[Utility:5]`` on
    true/false items, never-retrieving outputs kept with p=0.4, outputs starting with
    ``[Continue to Use Evidence]`` dropped). The draws use a generator seeded by the run seed and the record
    id, so a record's output does not depend on its batch.

    Passages: with the optional ``index`` input (an ``index.build`` stage) each sentence that retrieves
    searches the index in-process for ``{instruction} {sentence}`` (``method``, top ``ndocs``), as the
    reference retrieves per sentence; without it every sentence chooses among the record's
    ``passages_field`` (filled by a ``retrieve`` stage for the instruction).

    No label is guessed: a record with a question the critic never answered with a label after ``tries``
    asks, or one that must retrieve but has no passages, fails with the reason (see ``failures.jsonl``).

    Records: the pair's fields without the passages, plus ``output`` (with reflection tokens),
    ``source_output``, ``retrieves`` (segments with a passage) and ``messages`` (the instruction as the user
    turn, the output as the assistant turn) for ``train.sft`` with ``special_tokens`` and ``mask_spans``.
    """

    type: ClassVar[str] = "selfrag.generator_data"
    Params: ClassVar[type[Params]] = GeneratorDataParams
    inputs: ClassVar[dict[str, Fields]] = {"pairs": Fields("instruction", "output"),
                                            "index": Fields("id", "text")}
    optional_inputs: ClassVar[frozenset[str]] = frozenset({"index"})
    artifact_inputs: ClassVar[dict[str, str]] = {"index": "index"}
    map_over: ClassVar[str | None] = "pairs"
    outputs: ClassVar[Fields | None] = Fields("output", "source_output", "retrieves", "messages")
    passthrough: ClassVar[str | None] = "pairs"
    models: ClassVar[dict[str, ModelSlot]] = {
        "critic": ModelSlot("chat", doc="the critic: a trained critic stage or a zoo model"),
        "embedder": ModelSlot("embed", required=False, default="all-minilm-l6-v2",
                              doc="with the `index` input: the embedder the index was built with"),
    }
    prompts: ClassVar[dict[str, str]] = {f"instruction_{a}": t for a, t in INSTRUCTIONS.items()}
    reply_formats: ClassVar[dict[str, str]] = {"label": "regex"}
    batch_size: ClassVar[int] = 8

    def __init__(self, params: Params | None = None) -> None:
        super().__init__(params)
        self._index = InputIndex()

    def _open_index(self, ctx: Context) -> Any:
        """The index on the ``index`` input, opened once (None when the input is not connected)."""
        if "index" not in (getattr(ctx, "inputs", None) or {}):
            return None
        return self._index.get(ctx, self.params.method)  # type: ignore[attr-defined]

    def process(self, batch: list[dict], ctx: Context) -> list[Out]:
        p: GeneratorDataParams = self.params  # type: ignore[assignment]
        critic = ctx.model("critic")
        index = self._open_index(ctx)
        states = [_State.start(r, p, ctx.seed) for r in batch]

        def ask(questions: list[tuple[_State, str, dict, tuple[str, ...] | None]]) -> list[str | None]:
            labels = ask_labels(critic, [(a, item, allowed) for _, a, item, allowed in questions], p,
                                few_shot=p.few_shot)
            for (st, aspect, _, _), label in zip(questions, labels, strict=True):
                if label is None and st.error is None:
                    st.error = f"the critic gave no {aspect} label after {p.tries} asks"
            return labels

        if p.first_retrieval == "always":
            first: list[str | None] = [RETRIEVAL] * len(states)
        else:
            first = ask([(s, "retrieval", {"instruction": s.instruction}, None) for s in states])
        use = ask([(s, "utility", {"instruction": s.instruction, "output": s.output}, None) for s in states])
        for st, retrieve, utility in zip(states, first, use, strict=True):
            st.utility = final_utility(utility or UTILITY[4], st.output)
            if retrieve == NO_RETRIEVAL:
                st.segments = [Segment(st.output, "none")]
                st.done = True
        for s in range(p.max_sentences):
            active = [st for st in states if not st.done and not st.error and s < len(st.sentences)]
            if not active:
                break
            self._sentence_step(active, s, ask, p, index)
        return [st.result(p) for st in states]

    def _sentence_step(self, active: list[_State], s: int, ask, p: GeneratorDataParams, index: Any) -> None:
        """Decide, fetch, rate and write sentence ``s`` of every active record."""
        retrieving: list[_State] = []
        if s == 0:
            retrieving = list(active)
        else:
            questions = []
            for st in active:
                item = {"instruction": st.instruction, "preceding_sentences": " ".join(st.sentences[:s]),
                        "evidence": passage_text(st.evidence) if st.evidence else None,
                        "target_output": st.sentences[s]}
                allowed = None if st.evidence else (RETRIEVAL, NO_RETRIEVAL)
                questions.append((st, "multi_retrieval", item, allowed))
            for st, label in zip(active, ask(questions), strict=True):
                if label == CONTINUE:
                    st.segments.append(Segment(st.sentences[s], "continue"))
                elif label == NO_RETRIEVAL:
                    st.segments.append(Segment(st.sentences[s], "none"))
                elif label == RETRIEVAL:
                    retrieving.append(st)
        if index is not None and retrieving:
            queries = [f"{st.instruction} {st.sentences[s]}" for st in retrieving]
            for st, hits in zip(retrieving, index.search(queries, p.ndocs, p.method), strict=True):
                st.candidates = hits
        for st in retrieving:
            if not st.candidates:
                st.error = "retrieval needed but no passages found"
        retrieving = [st for st in retrieving if not st.error]
        rel_q = [(st, "relevance", {"instruction": st.instruction, "evidence": passage_text(c)}, None)
                 for st in retrieving for c in st.candidates]
        rel = iter(ask(rel_q))
        rel_labels = {id(st): [next(rel) for _ in st.candidates] for st in retrieving}
        sup_q = [(st, "support", {"instruction": st.instruction, "evidence": passage_text(c),
                                  "target_output": st.sentences[s]}, None)
                 for st in retrieving for c, r in zip(st.candidates, rel_labels[id(st)]) if r == RELEVANT]
        sup = iter(ask(sup_q))
        sup_labels = {id(st): [next(sup) if r == RELEVANT else None for r in rel_labels[id(st)]]
                      for st in retrieving}  # every answer taken in order, also those of failed records
        for st in retrieving:
            if st.error:
                continue
            relevance, support = rel_labels[id(st)], sup_labels[id(st)]
            choice = choose_passage(relevance, support, st.rng, partial_prob=p.partial_prob,
                                    no_support_prob=p.no_support_prob)
            if choice is None:
                st.segments.append(Segment(st.sentences[s], "none"))
                st.evidence = None
                continue
            passage = st.candidates[choice.index]
            st.segments.append(Segment(st.sentences[s], "passage", passage, choice))
            st.evidence = passage if choice.relevance == RELEVANT else None

    def estimate(self, n_in: dict[str, int | None]) -> Estimate:
        n = n_in.get("pairs")
        return Estimate() if n is None else Estimate(llm_calls=2 * n)

    def summarize(self, records: list[dict], ctx: Context) -> dict[str, Any]:
        n_in = len((getattr(ctx, "inputs", None) or {}).get("pairs", [])) or None
        retrieving = sum(1 for r in records if r["retrieves"] > 0)
        return {
            "records": len(records),
            "pairs_in": n_in,
            "with_retrieval": retrieving,
            "retrieval_share": retrieving / len(records) if records else None,
            "segments_with_passage": sum(r["retrieves"] for r in records),
        }


class _State:
    """One pair on its way through the critic's questions."""

    def __init__(self, record: dict, instruction: str, output: str, sentences: list[str],
                 candidates: list[dict], rng: random.Random) -> None:
        self.record, self.instruction, self.output = record, instruction, output
        self.sentences, self.candidates, self.rng = sentences, candidates, rng
        self.segments: list[Segment] = []
        self.utility = UTILITY[4]
        self.evidence: dict | None = None
        self.done = False
        self.error: str | None = None

    @classmethod
    def start(cls, record: dict, p: GeneratorDataParams, seed: int) -> _State:
        output = map_verdict_answer(str(record["output"]))
        instruction = pair_instruction(record)
        sentences = output_sentences(output)
        if len(sentences) > p.max_sentences:  # the tail joins the last rated sentence
            sentences = sentences[: p.max_sentences - 1] + [" ".join(sentences[p.max_sentences - 1:])]
        candidates = list(record.get(p.passages_field) or [])[: p.ndocs]
        return cls(record, instruction, output, sentences, candidates,
                   random.Random(f"{seed}:{record_key(record)}"))

    def result(self, p: GeneratorDataParams) -> Out:
        from components.base import Failed

        if self.error:
            return Failed(error=self.error, retry=False)
        text = output_text(self.segments, self.utility)
        if not keep_record(text, self.rng, no_retrieval_keep=p.no_retrieval_keep):
            return []
        record = {k: v for k, v in self.record.items() if k != p.passages_field}
        return {**record, "source_output": self.output, "output": text,
                "retrieves": sum(s.kind == "passage" for s in self.segments),
                "messages": [{"role": "user", "content": self.instruction},
                             {"role": "assistant", "content": text}]}
