"""``judge.compare_rewards``: a policy before and after training, side by side on the same prompts.

Takes two sets of ``judge.longreward`` records (``before``, ``after``: responses of two policies to the
same prompts) and reports the mean of each reward dimension for both, and the win rate of after over
before: every after-response of a prompt against every before-response of the same prompt, a higher
``total`` wins (1), an equal one ties (½); each prompt weighs the same.

>>> win_rate([[30.0, 10.0]], [[20.0]])  # after 30 beats 20, after 10 loses to 20
(0.5, 1, 0, 1)
"""

from __future__ import annotations

from typing import Any, ClassVar

from components.base import Context, Fields, WholeComponent
from components.judges.longreward import DIMENSIONS, reward_means

SCORED = Fields("prompt_id", "scores")


def win_rate(after: list[list[float]], before: list[list[float]]) -> tuple[float | None, int, int, int]:
    """(win rate, wins, ties, losses) of ``after`` over ``before``: per prompt (the i-th list of each), all
    after × before comparisons of totals, the prompt's rate (wins + ½ ties) / comparisons, then the mean
    over prompts that have both; None when none does."""
    rates: list[float] = []
    wins = ties = losses = 0
    for a, b in zip(after, before, strict=True):
        if not a or not b:
            continue
        w = sum(1 for x in a for y in b if x > y)
        t = sum(1 for x in a for y in b if x == y)
        wins, ties, losses = wins + w, ties + t, losses + len(a) * len(b) - w - t
        rates.append((w + 0.5 * t) / (len(a) * len(b)))
    return (sum(rates) / len(rates) if rates else None), wins, ties, losses


class CompareRewards(WholeComponent):
    """Mean LongReward per dimension before and after (e.g. DPO), and the win rate of after over before.

    Records out: one per prompt with responses on both sides, ``{prompt_id, before_total, after_total,
    wins, ties, losses}`` (totals are the prompt's means).
    """

    type = "judge.compare_rewards"
    inputs: ClassVar[dict[str, Fields]] = {"before": SCORED, "after": SCORED}
    outputs = Fields("prompt_id", "before_total", "after_total", "wins", "ties", "losses")

    def run(self, inputs: dict[str, list[dict]], ctx: Context) -> list[dict]:
        before, after = _by_prompt(inputs["before"]), _by_prompt(inputs["after"])
        out = []
        for key in [k for k in before if k in after]:
            b, a = before[key], after[key]
            _, w, t, loss = win_rate([a], [b])
            out.append({"prompt_id": key, "before_total": sum(b) / len(b), "after_total": sum(a) / len(a),
                        "wins": w, "ties": t, "losses": loss})
        ctx.save_stats("means", {"before": reward_means(inputs["before"]), "after": reward_means(inputs["after"])})
        return out

    def summarize(self, records: list[dict], ctx: Context) -> dict[str, Any]:
        """``before_<dimension>`` / ``after_<dimension>`` means (and ``_n`` responses), the win rate and its
        counts."""
        means = ctx.load_stats("means") or {}
        rates = [(r["wins"] + 0.5 * r["ties"]) / max(r["wins"] + r["ties"] + r["losses"], 1) for r in records]
        out: dict[str, Any] = {}
        for side in ("before", "after"):
            got = means.get(side) or {}
            out.update({f"{side}_{k}": got.get(k) for k in ("n", *DIMENSIONS, "total")})
        return {**out, "prompts": len(records), "win_rate": sum(rates) / len(rates) if rates else None,
                "wins": sum(r["wins"] for r in records), "ties": sum(r["ties"] for r in records),
                "losses": sum(r["losses"] for r in records)}

    def report_data(self, records: list[dict], metrics: dict[str, Any] | None, ctx: Context) -> list[Any]:
        """Mean reward per dimension before and after training, and the per-prompt totals."""
        from components.report_data import Plot, Series, score_histogram

        m = metrics or self.summarize(records, ctx)
        dims = [*DIMENSIONS, "total"]
        bars = Plot(title="mean LongReward before and after training", chart="bars", labels=dims,
                    y_label="mean score", series=[Series(name=side, y=[m.get(f"{side}_{d}") for d in dims])
                                                  for side in ("before", "after")],
                    note="Each dimension 0–10, total 0–40.")
        totals = score_histogram("mean total per prompt (0–40)", {
            "before": [r["before_total"] for r in records], "after": [r["after_total"] for r in records]},
            low=0, high=40)
        return [bars, totals]

    def report(self, records: list[dict], metrics: dict[str, Any] | None, ctx: Context) -> str | None:
        m = metrics or self.summarize(records, ctx)
        lines = ["Mean LongReward of the policy before and after training (each dimension 0–10, total 0–40):", "",
                 "| dimension | before | after | change |", "| --- | ---: | ---: | ---: |"]
        for d in (*DIMENSIONS, "total"):
            b, a = m.get(f"before_{d}"), m.get(f"after_{d}")
            change = f"{a - b:+.2f}" if a is not None and b is not None else "–"
            lines.append(f"| {d} | {_num(b)} | {_num(a)} | {change} |")
        lines.append(f"| responses | {m.get('before_n') or 0} | {m.get('after_n') or 0} | |")
        rate = m.get("win_rate")
        lines += ["", f"Win rate of after over before: **{'n/a' if rate is None else f'{rate:.1%}'}** over "
                      f"{m['prompts']} prompts ({m['wins']} wins, {m['ties']} ties, {m['losses']} losses in "
                      "pairwise comparisons of totals)."]
        return "\n".join(lines)


def _by_prompt(records: list[dict]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for r in records:
        out.setdefault(str(r["prompt_id"]), []).append(float(r["scores"]["total"]))
    return out


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"
