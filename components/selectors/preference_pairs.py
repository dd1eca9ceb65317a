"""``select.preference_pairs``: best and worst scored response of each prompt as a DPO pair (LongReward §3.3).

>>> rs = [{"idx": "x-7-0", "query": "q", "answer": "a", "scores": {"total": 20}},
...       {"idx": "x-7-1", "query": "q", "answer": "b", "scores": {"total": 31}}]
>>> build_pairs(rs, {7: "doc"}, min_responses=2)[0]["win_id"]
'x-7-1'
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, field_validator

from components.base import Context, Fields, Params, WholeComponent, record_key
from components.templates import check_template, render


def pick(group: list[dict], total: Any) -> tuple[dict, dict]:
    """(winner, loser) of responses in input order: the highest ``total(r)`` (the first of tied maxima) and
    the lowest (the last of tied minima), as a stable sort by total, descending, gives them."""
    ranked = sorted(group, key=lambda r: -total(r))
    return ranked[0], ranked[-1]


def build_pairs(responses: list[dict], contexts: dict[int, str], min_responses: int = 5,
                *, min_margin: float = 0.0) -> list[dict]:
    """Preference pairs from scored responses, LongReward's way.

    ``responses``: ``{idx: "<...>-<prompt>-<k>", query, answer, scores: {total, ...}}`` in input order;
    the prompt id is the integer before the last ``-``. ``contexts``: prompt id → context. Prompts are taken
    in the order they first appear; one without a context is skipped, then one with fewer than
    ``min_responses`` responses, then one whose best and worst totals differ by less than ``min_margin``.
    Each pair: ``{idx: prompt id, context, query, win_response, lose_response, win_id, lose_id}``.
    """
    groups: dict[int, list[dict]] = {}
    for r in responses:
        groups.setdefault(int(str(r["idx"]).split("-")[-2]), []).append(r)
    pairs = []
    for prompt, group in groups.items():
        if prompt not in contexts or len(group) < min_responses:
            continue
        win, lose = pick(group, lambda r: r["scores"]["total"])
        if win["scores"]["total"] - lose["scores"]["total"] < min_margin:
            continue
        pairs.append({"idx": prompt, "context": contexts[prompt], "query": group[0]["query"],
                      "win_response": win["answer"], "lose_response": lose["answer"],
                      "win_id": win["idx"], "lose_id": lose["idx"]})
    return pairs


class PreferencePairsParams(Params):
    min_responses: int = Field(5, ge=2, description=(
        "prompts with fewer scored responses are skipped (reference: 5; counted in the metrics)"))
    min_margin: float = Field(0.0, ge=0.0, description=(
        "skip prompts whose best and worst totals differ by less than this (0: keep all, as the reference)"))
    template: str = Field("{context}\n\n{query}", description=(
        "the user message of the pair's prompt, from the prompt record ({context}, {query}, ...); use the "
        "template the responses were sampled with"))
    system: str | None = Field(None, description="a system message template before it (optional)")

    check_templates = field_validator("template", "system")(check_template)


class PreferencePairs(WholeComponent):
    """Groups scored responses by prompt and pairs the best with the worst (LongReward §3.3).

    Responses (``judge.longreward`` output) are grouped by ``prompt_id`` in the order prompts first
    appear; a prompt missing from the ``prompts`` input, with fewer than ``min_responses`` responses, or
    with a margin below ``min_margin`` is skipped and counted. Winner: the highest ``scores.total`` (the
    first in input order on a tie); loser: the lowest (the last in input order on a tie), so a prompt whose
    responses all tie still gives a pair, as in the reference.

    Output: DPO records ``{id: prompt id, prompt: [chat messages with the context], chosen, rejected,
    context, query, chosen_id, rejected_id, chosen_total, rejected_total, margin}``; ``chosen`` and
    ``rejected`` are the assistant replies.
    """

    type = "select.preference_pairs"
    inputs: ClassVar[dict[str, Fields]] = {"responses": Fields("prompt_id", "answer", "scores"),
                                           "prompts": Fields("context", "query")}
    outputs = Fields("id", "prompt", "chosen", "rejected", "context", "query", "chosen_id", "rejected_id",
                     "chosen_total", "rejected_total", "margin")
    template_params: ClassVar[dict[str, str]] = {"template": "prompts", "system": "prompts"}
    Params = PreferencePairsParams

    def run(self, inputs: dict[str, list[dict]], ctx: Context) -> list[dict]:
        p: PreferencePairsParams = self.params  # type: ignore[assignment]
        prompts = {record_key(r): r for r in inputs["prompts"]}
        groups: dict[str, list[dict]] = {}
        for r in inputs["responses"]:
            groups.setdefault(str(r["prompt_id"]), []).append(r)
        counts = {"prompts": len(groups), "responses": len(inputs["responses"]), "skipped_no_prompt": 0,
                  "skipped_too_few": 0, "skipped_margin": 0}
        out = []
        for key, group in groups.items():
            if key not in prompts:
                counts["skipped_no_prompt"] += 1
                continue
            if len(group) < p.min_responses:
                counts["skipped_too_few"] += 1
                continue
            win, lose = pick(group, lambda r: r["scores"]["total"])
            margin = win["scores"]["total"] - lose["scores"]["total"]
            if margin < p.min_margin:
                counts["skipped_margin"] += 1
                continue
            prompt = prompts[key]
            messages = [{"role": "user", "content": render(p.template, prompt)}]
            if p.system is not None:
                messages.insert(0, {"role": "system", "content": render(p.system, prompt)})
            out.append({"id": key, "prompt": messages, "chosen": win["answer"], "rejected": lose["answer"],
                        "context": prompt["context"], "query": prompt["query"],
                        "chosen_id": record_key(win), "rejected_id": record_key(lose),
                        "chosen_total": win["scores"]["total"], "rejected_total": lose["scores"]["total"],
                        "margin": margin})
        ctx.save_stats("pairs", counts)
        return out

    def summarize(self, records: list[dict], ctx: Context) -> dict[str, Any]:
        margins = [r["margin"] for r in records]
        return {**(ctx.load_stats("pairs") or {}), "pairs": len(records),
                "mean_margin": sum(margins) / len(margins) if margins else None}

    def report(self, records: list[dict], metrics: dict[str, Any] | None, ctx: Context) -> str | None:
        m = metrics or self.summarize(records, ctx)
        margin = "n/a" if m["mean_margin"] is None else f"{m['mean_margin']:.2f}"
        return (f"{m['pairs']} preference pairs from {m.get('prompts', '?')} prompts (mean margin {margin}); "
                f"skipped: {m.get('skipped_too_few', 0)} with fewer than {self.params.min_responses} responses, "
                f"{m.get('skipped_margin', 0)} below the margin, {m.get('skipped_no_prompt', 0)} without a prompt.")
