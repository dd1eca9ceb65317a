"""``selfrag.critic_data``: the Self-RAG critic's training data, labelled by an LLM (spec §5.2)."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any, ClassVar, Literal

from pydantic import Field

from components.base import Context, Estimate, Fields, ModelSlot, Params, WholeComponent, record_key
from components.selfrag.ask import CriticAskParams, ask_labels
from components.selfrag.assemble import output_sentences, pair_instruction, passage_text
from components.selfrag.critic_prompts import EXAMPLES, INSTRUCTIONS, question_input, user_message
from components.selfrag.labels import ASPECTS
from components.selfrag_tokens import RELEVANT

Aspect = Literal["retrieval", "multi_retrieval", "relevance", "support", "utility"]
STATS_NAME = "critic_data"


class CriticDataParams(CriticAskParams):
    aspects: list[Aspect] = Field(list(ASPECTS), description="the critic tasks to make data for")
    passages_field: str = Field("passages", description="record field with the retrieved passages "
                                "`[{title, text}]` (a `retrieve` stage writes it)")
    ndocs: int = Field(3, ge=1, description="passages per instruction used for relevance and support items")
    max_per_aspect: int | None = Field(
        None, ge=1, description="label at most this many items per aspect, a seeded sample (caps the calls)")
    few_shot: bool = Field(True, description="show the labelling model the aspect's worked examples first")
    relevant_keep: float = Field(0.7, gt=0.0, le=1.0, description="share of `[Relevant]` relevance items "
                                 "kept, a seeded sample (reference: 0.7)")
    dev_size: int | None = Field(None, ge=0, description="items held out as the dev split (reference: "
                                 "1500); null: `dev_fraction` of them")
    dev_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="share held out when `dev_size` is null")
    batch_size: int = Field(16, ge=1, description="questions sent to the labelling model per call")


class CriticData(WholeComponent):
    """Makes instruction → label records for the Self-RAG critic from instruction–output pairs with
    retrieved passages.

    Per pair it builds critic questions for each aspect in ``aspects`` (spec §5.2):

    * ``retrieval``: does the instruction need retrieval (``[Retrieval]`` / ``[No Retrieval]``);
    * ``multi_retrieval``: for each sentence after the first, given the sentences before it and one of the
      passages drawn at random (seeded), ``[Retrieval]`` / ``[No Retrieval]`` / ``[Continue to Use Evidence]``;
    * ``relevance``: each of the first ``ndocs`` passages, ``[Relevant]`` / ``[Irrelevant]``;
    * ``support``: each (sentence, passage), the three IsSup labels;
    * ``utility``: the whole output, ``[Utility:1]`` … ``[Utility:5]``.

    With ``max_per_aspect`` a seeded sample of each aspect's questions is labelled. The labelling model
    (``labeler``: GPT-4 in the paper, any zoo model here) answers each with the aspect's few-shot prompt
    (written for this project), its reply held to the label set while decoding when ``constrained``;
    questions without a label after ``tries`` asks are dropped and counted. Then, as the reference does:
    ``[Relevant]`` relevance items are cut to ``relevant_keep`` (70 %) by a seeded sample, items whose input
    contains ``### Response:`` are dropped, the rest is shuffled (seeded) and the first ``dev_size`` items
    (or ``dev_fraction``) become the ``dev`` split, the others ``train``.

    Records: ``{id, task, instruction, input, output, split, messages}``. ``messages`` is the critic's
    conversation (the aspect's instruction and input as the user turn, the label string as the assistant
    turn) for ``train.sft``; the critic learns the label strings as plain text, like the released critic.
    """

    type: ClassVar[str] = "selfrag.critic_data"
    Params: ClassVar[type[Params]] = CriticDataParams
    inputs: ClassVar[dict[str, Fields]] = {"pairs": Fields("instruction", "output")}
    outputs: ClassVar[Fields | None] = Fields("id", "task", "instruction", "input", "output", "split",
                                              "messages")
    models: ClassVar[dict[str, ModelSlot]] = {
        "labeler": ModelSlot("chat", doc="the model that labels the critic's questions (GPT-4 in the paper)"),
    }
    prompts: ClassVar[dict[str, str]] = {
        **{f"instruction_{a}": t for a, t in INSTRUCTIONS.items()},
        **{f"examples_{a}": "\n".join(f"{user_message(a, i)}\n=> {label}" for i, label in ex)
           for a, ex in EXAMPLES.items()},
    }
    reply_formats: ClassVar[dict[str, str]] = {"label": "regex"}

    def questions(self, pairs: list[dict], seed: int) -> list[dict]:
        """Every critic question the pairs give, per aspect in ``aspects``, each ``{id, task, item}``."""
        p: CriticDataParams = self.params  # type: ignore[assignment]
        out: list[dict] = []
        for pair in pairs:
            qid = record_key(pair)
            rng = random.Random(f"{seed}:{qid}")
            instruction = pair_instruction(pair)
            output = str(pair["output"])
            sentences = output_sentences(output)
            passages = [passage_text(x) for x in (pair.get(p.passages_field) or [])[: p.ndocs]]
            if "retrieval" in p.aspects:
                out.append({"id": f"{qid}-retrieval", "task": "retrieval", "item": {"instruction": instruction}})
            if "multi_retrieval" in p.aspects and passages:
                for s in range(1, len(sentences)):
                    out.append({"id": f"{qid}-multi_retrieval-{s}", "task": "multi_retrieval", "item": {
                        "instruction": instruction, "preceding_sentences": " ".join(sentences[:s]),
                        "evidence": rng.choice(passages), "target_output": sentences[s]}})
            if "relevance" in p.aspects:
                for j, ev in enumerate(passages):
                    out.append({"id": f"{qid}-relevance-{j}", "task": "relevance",
                                "item": {"instruction": instruction, "evidence": ev}})
            if "support" in p.aspects:
                for s, sent in enumerate(sentences):
                    for j, ev in enumerate(passages):
                        out.append({"id": f"{qid}-support-{s}-{j}", "task": "support",
                                    "item": {"instruction": instruction, "evidence": ev, "target_output": sent}})
            if "utility" in p.aspects:
                out.append({"id": f"{qid}-utility", "task": "utility",
                            "item": {"instruction": instruction, "output": output}})
        if p.max_per_aspect is not None:
            out = _cap_per_aspect(out, p.max_per_aspect, random.Random(f"{seed}:cap"))
        return out

    def run(self, inputs: dict[str, list[dict]], ctx: Context) -> list[dict]:
        p: CriticDataParams = self.params  # type: ignore[assignment]
        questions = self.questions(inputs["pairs"], ctx.seed)
        labeler = ctx.model("labeler")
        labelled: list[dict] = []
        unlabelled = 0
        # one aspect per batch: its questions share a label set, so a batch is one request to the model
        order = sorted(questions, key=lambda q: ASPECTS.index(q["task"]))
        for start in range(0, len(order), p.batch_size):
            chunk = order[start:start + p.batch_size]
            labels = ask_labels(labeler, [(q["task"], q["item"], None) for q in chunk], p, few_shot=p.few_shot)
            for q, label in zip(chunk, labels, strict=True):
                if label is None:
                    unlabelled += 1
                else:
                    labelled.append(self.record(q, label))
            ctx.advance(len(chunk), total=len(questions))
        kept, dropped = self.finish(labelled, ctx.seed)
        ctx.save_stats(STATS_NAME, {"questions": len(questions), "unlabelled": unlabelled, **dropped})
        return kept

    @staticmethod
    def record(question: dict, label: str) -> dict:
        """The training record of one labelled question."""
        task = question["task"]
        text = question_input(task, question["item"])
        return {"id": question["id"], "task": task, "instruction": INSTRUCTIONS[task], "input": text,
                "output": label, "messages": [{"role": "user", "content": user_message(task, question["item"])},
                                              {"role": "assistant", "content": label}]}

    def finish(self, records: list[dict], seed: int) -> tuple[list[dict], dict[str, int]]:
        """The reference's last steps: ``[Relevant]`` cut to ``relevant_keep``, ``### Response:`` inputs
        dropped, a seeded shuffle, the dev split first. Returns the records and the drop counts."""
        p: CriticDataParams = self.params  # type: ignore[assignment]
        rng = random.Random(f"{seed}:critic-data")
        relevant = [i for i, r in enumerate(records) if r["task"] == "relevance" and r["output"] == RELEVANT]
        keep_n = round(p.relevant_keep * len(relevant))
        cut = set(relevant) - set(rng.sample(relevant, keep_n))
        kept = [r for i, r in enumerate(records) if i not in cut]
        clean = [r for r in kept if "### Response:" not in r["input"]]
        rng.shuffle(clean)
        n_dev = p.dev_size if p.dev_size is not None else int(p.dev_fraction * len(clean))
        n_dev = min(n_dev, len(clean))
        out = [{**r, "split": "dev" if i < n_dev else "train"} for i, r in enumerate(clean)]
        return out, {"relevant_dropped": len(cut), "response_marker_dropped": len(kept) - len(clean)}

    def estimate(self, n_in: dict[str, int | None]) -> Estimate:
        """At least one call per question: the questions the pairs give however long their outputs are
        (one sentence each, ``ndocs`` passages each), each aspect capped by ``max_per_aspect``. Longer
        outputs add multi-sentence and support questions, retries add calls."""
        n = n_in.get("pairs")
        if n is None:
            return Estimate()
        p: CriticDataParams = self.params  # type: ignore[assignment]
        least = {"retrieval": n, "multi_retrieval": 0, "relevance": n * p.ndocs, "support": n * p.ndocs,
                 "utility": n}
        cap = p.max_per_aspect
        calls = sum(min(least[a], cap) if cap is not None else least[a] for a in p.aspects)
        return Estimate(llm_calls=calls)

    def summarize(self, records: list[dict], ctx: Context) -> dict[str, Any]:
        counts = Counter((r["task"], r["output"]) for r in records)
        stats = ctx.load_stats(STATS_NAME, {}) or {}
        return {
            "records": len(records),
            "train": sum(r["split"] == "train" for r in records),
            "dev": sum(r["split"] == "dev" for r in records),
            **stats,
            **{f"{task} {label}": n for (task, label), n in sorted(counts.items())},
        }

    def report(self, records: list[dict], metrics: dict[str, Any] | None, ctx: Context) -> str | None:
        if not metrics:
            return None
        rows = "\n".join(f"| {k} | {v} |" for k, v in metrics.items() if k.split(" ")[0] in ASPECTS)
        return (f"Critic data: {metrics['train']} train and {metrics['dev']} dev records.\n\n"
                f"| aspect and label | records |\n| --- | --- |\n{rows}\n")


def _cap_per_aspect(questions: list[dict], cap: int, rng: random.Random) -> list[dict]:
    """At most ``cap`` questions per aspect (a seeded sample), in their original order."""
    by_task: dict[str, list[int]] = {}
    for i, q in enumerate(questions):
        by_task.setdefault(q["task"], []).append(i)
    chosen: set[int] = set()
    for idx in by_task.values():
        chosen.update(idx if len(idx) <= cap else rng.sample(idx, cap))
    return [q for i, q in enumerate(questions) if i in chosen]
