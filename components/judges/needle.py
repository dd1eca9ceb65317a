"""Score needle-in-a-haystack answers and plot the depth × length grid (LongAlign)."""

from __future__ import annotations

import math
import re
from itertools import islice
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from components.base import Context, Estimate, Fields, MapComponent, ModelSlot, Out, Params
from components.formats import Constrained, analysis_chars, constrained, integers, verdict
from components.judges.asking import ask_until_parsed
from components.templates import render
from components.text import last_bracket_number
from runner.backends.base import Format, Sampling

HEATMAP_FILE = "needle_heatmap.png"

_WORDS = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
# fmt: off
STOP_WORDS = frozenset({
    "a", "about", "above", "after", "again", "against", "all", "am", "an", "and", "any", "are", "as", "at",
    "be", "because", "been", "before", "being", "below", "between", "both", "but", "by", "can", "could",
    "did", "do", "does", "doing", "down", "during", "each", "few", "for", "from", "further", "had", "has",
    "have", "having", "he", "her", "here", "hers", "him", "his", "how", "i", "if", "in", "into", "is", "it",
    "its", "itself", "just", "me", "more", "most", "my", "no", "nor", "not", "of", "off", "on", "once",
    "only", "or", "other", "our", "ours", "out", "over", "own", "same", "she", "should", "so", "some",
    "such", "than", "that", "the", "their", "theirs", "them", "then", "there", "these", "they", "this",
    "those", "through", "to", "too", "under", "until", "up", "very", "was", "we", "were", "what", "when",
    "where", "which", "while", "who", "whom", "why", "will", "with", "would", "you", "your", "yours"
})
# fmt: on

SYSTEM = "You are a careful, impartial grader."

JUDGE = """[Instruction]
Act as an impartial judge of how accurately the AI assistant's response below answers the user's question. A \
reference answer is provided; treat it as the truth. Judge accuracy only, on this scale:
1: the response has nothing to do with the reference answer.
3: the response touches the topic but gets the reference answer mostly wrong or leaves it out.
5: the response gets part of the reference answer right but misses or distorts key details.
7: the response agrees with the reference answer on most key details, with small omissions or additions.
10: the response matches the reference answer fully and accurately in every key detail.
Start with a short explanation, then give the rating as a whole number in double square brackets, for \
example "Rating: [[5]]".

[Question]
{question}

[Reference answer]
{reference}

[Assistant's response]
{prediction}"""


RATINGS = integers(1, 10)
_FIRST_WHOLE_RATING = re.compile(r"\[\[(\d+)\]\]")


def reference_rating(text: str) -> float | None:
    """The reference's reading of a needle verdict: the first ``[[n]]`` holding only digits, as a whole
    number (``[[ 8 ]]``, ``[[8/10]]`` and ``[[7.5]]`` do not count; ``[[8]] … [[10]]`` gives 8)."""
    match = _FIRST_WHOLE_RATING.search(text)
    return float(int(match.group(1))) if match else None


class NeedleJudgeParams(Constrained):
    method: Literal["llm", "recall", "both"] = Field(
        "recall",
        description="`llm`: a 1-10 rating from the judge model (the paper's GPT-4 judge); `recall`: the "
        "share of the needle's key facts found in the answer, scaled to 1-10 (deterministic, no model "
        "needed); `both`: the LLM rating is the score and recall is kept beside it.",
    )
    key_facts: list[str] | None = Field(
        None,
        description="Words or phrases whose presence counts as recalling the needle. Default: the content "
        "words of each record's needle (stop words removed).",
    )
    system_prompt: str = Field(SYSTEM, description="System message of the LLM judge.")
    tries: int = Field(5, ge=1, description="LLM judge calls per record while the reply has no `[[rating]]`.")
    temperature: float = Field(0.0, ge=0.0, description="LLM judge temperature (reference: 0).")
    retry_temperature: float | None = Field(
        None, ge=0.0, description="Temperature of the LLM judge's re-asks; default: `temperature`."
    )
    max_new_tokens: int = Field(512, ge=1, description="LLM judge reply length cap.")
    question: str | None = Field(
        None, description="The question shown to the LLM judge when a record has no `question` field."
    )
    prediction_field: str = Field("prediction", description="Record field holding the answer to score.")
    compat: Literal["intended", "reference"] = Field("intended", description=(
        "How the LLM judge's rating is read. intended: the first number inside the last `[[...]]` "
        "(`[[ 8 ]]`, `[[8/10]]` read 8); reference: the first `[[n]]` of digits only, as LongAlign's "
        "eval.py"))


class NeedleJudge(MapComponent):
    """Scores each needle-test answer 1-10 and reports the mean per (depth, length) cell as a heatmap.

    Follows LongAlign's needle scoring. With `method: llm` a judge model rates the
    answer's accuracy against the needle. It uses an MT-Bench-style rubric anchored at 1/3/5/7/10, runs
    at temperature 0 and writes the rating as `[[n]]`. The question has no prompt-side suffix. The rating
    is the first number inside the last `[[...]]`, a more lenient reading than the reference's first
    `[[digits]]`; `compat: reference` reads it the reference's way (a difference of reading, not a bug
    either way; the paper profile uses it). The reference does not re-ask when no rating parses: set
    `tries: 1` for that too.
    `method: recall` is the offline scorer suggested in §2.7. It measures the share of the needle's key
    facts (its content words, or the `key_facts` param) that appear as whole words or phrases in the
    answer, and scales it to 1-10 as `1 + 9·share`. `report()` draws the mean score per cell with depth on
    the y axis and length on the x axis, on a fixed 1-10 colour scale as the reference's `vis.py` does.
    """

    type: ClassVar[str] = "judge.needle"
    Params: ClassVar[type[Params]] = NeedleJudgeParams
    inputs: ClassVar[dict[str, Fields]] = {"predictions": Fields("prediction", "needle", "length", "depth")}
    passthrough: ClassVar[str | None] = "predictions"
    models: ClassVar[dict[str, ModelSlot]] = {
        "judge": ModelSlot("chat", required=False, doc="grading model; needed for method llm or both")
    }
    prompts: ClassVar[dict[str, str]] = {"system": SYSTEM, "judge": JUDGE}
    reply_formats: ClassVar[dict[str, str]] = {"rating": "regex"}

    def prompt_texts(self) -> dict[str, str]:
        if self.params.method == "recall":  # type: ignore[attr-defined]
            return {}
        return {"system": self.params.system_prompt, "judge": JUDGE}  # type: ignore[attr-defined]

    def output_fields(self) -> Fields | None:
        return Fields("score", "recall", "recall_score")

    def process(self, batch: list[dict], ctx: Context) -> list[Out]:
        p: NeedleJudgeParams = self.params  # type: ignore[assignment]
        scored = []
        for r in batch:
            share = recall_share(str(r[p.prediction_field]), self._facts(r))
            scored.append({**r, "recall": share, "recall_score": 1.0 + 9.0 * share})
        if p.method == "recall":
            return [{**r, "score": r["recall_score"]} for r in scored]
        conversations = [
            [
                {"role": "system", "content": p.system_prompt},
                {"role": "user", "content": self._judge_prompt(r)},
            ]
            for r in batch
        ]
        judge = ctx.model("judge")
        fmt = self.rating_format() if constrained(judge, p.constrained) else None
        sampling = Sampling(temperature=p.temperature, max_new_tokens=p.max_new_tokens, format=fmt)
        parse = reference_rating if p.compat == "reference" else last_bracket_number
        verdicts = ask_until_parsed(judge, conversations, sampling, parse,
                                    tries=p.tries, retry_temperature=p.retry_temperature)
        out: list[Out] = []
        for r, v in zip(scored, verdicts, strict=True):
            if v.parsed:
                out.append({**r, "score": v.value, "llm_score": v.value, "judge_output": v.reply,
                            "judge_calls": v.calls})
            else:
                out.append(v.failure("[[rating]]"))
        return out

    def rating_format(self) -> Format:
        """The LLM judge's reply: a bounded explanation, then ``[[n]]`` with n in 1-10."""
        p: NeedleJudgeParams = self.params  # type: ignore[assignment]
        return verdict(RATINGS, analysis_chars(p.max_new_tokens, RATINGS))

    def _facts(self, record: dict) -> list[str]:
        p: NeedleJudgeParams = self.params  # type: ignore[assignment]
        return list(p.key_facts) if p.key_facts else key_facts(str(record["needle"]))

    def _judge_prompt(self, record: dict) -> str:
        p: NeedleJudgeParams = self.params  # type: ignore[assignment]
        question = record.get("question") or p.question
        if not question:
            raise ValueError(
                "judge.needle: records have no `question` field and the `question` param is unset"
            )
        values = {"question": question, "reference": str(record["needle"]).strip(),
                  "prediction": record[p.prediction_field]}
        return render(JUDGE, values)

    def estimate(self, n_in: dict[str, int | None]) -> Estimate:
        n = n_in.get("predictions")
        calls = 0 if self.params.method == "recall" or n is None else n  # type: ignore[attr-defined]
        return Estimate(records_out=n, llm_calls=calls)

    def summarize(self, records: list[dict], ctx: Context) -> dict[str, Any]:
        scores = [float(r["score"]) for r in records]
        table = cell_means(records)
        out: dict[str, Any] = {
            "mean_score": _mean(scores),
            "n": len(records),
            "mean_recall": _mean([float(r["recall"]) for r in records if "recall" in r]),
            "by_depth_length": {f"{d:g}": {str(n): v for n, v in row.items()} for d, row in table.items()},
            "by_depth": {
                f"{d:g}": _mean([float(r["score"]) for r in records if float(r["depth"]) == d]) for d in table
            },
            "by_length": {
                str(n): _mean([float(r["score"]) for r in records if int(r["length"]) == n])
                for n in sorted({int(r["length"]) for r in records})
            },
        }
        inputs = getattr(ctx, "inputs", None) or {}
        if "predictions" in inputs:
            out["unscored"] = max(0, len(inputs["predictions"]) - len(records))
        return out

    def report_data(self, records: list[dict], metrics: dict[str, Any] | None, ctx: Context) -> list[Any]:
        """The depth × length heatmap, the score distribution, and answers beside the needle."""
        from components.report_data import MAX_EXAMPLES, score_histogram
        from components.views.answers import answer_example, answers_section, heatmap

        if not records:
            return []
        p: NeedleJudgeParams = self.params  # type: ignore[assignment]
        examples = [answer_example(
            f"depth {r['depth']}% · length {r['length']}", question=r.get("question") or p.question,
            answer=r.get(p.prediction_field), reference=r.get("needle"),
            analysis=r.get("judge_output") or f"key facts recalled: {float(r['recall']):.0%} "
                                              f"({', '.join(self._facts(r))})",
            fields={"score": r.get("score"), "recall": r.get("recall")})
            for r in islice(records, MAX_EXAMPLES)]  # only these are shown
        return [heatmap("needle: mean score per depth and length", cell_means(records), 1, 10),
                score_histogram("needle scores", {"score": [r.get("score") for r in records]}, low=1, high=10),
                answers_section("needle answers", examples)]

    def report(self, records: list[dict], metrics: dict[str, Any] | None, ctx: Context) -> str | None:
        if not records:
            return None
        table = cell_means(records)
        write_heatmap(table, Path(ctx.artifact_dir) / HEATMAP_FILE)
        mean = _mean([float(r["score"]) for r in records])
        return (
            f"Mean needle score: {mean:.2f} / 10 over {len(records)} prompts.\n\n"
            f"![needle heatmap]({HEATMAP_FILE})\n\n{markdown_table(table)}\n"
        )


def key_facts(needle: str) -> list[str]:
    """The needle's content words: lower-cased words minus stop words, each once, in order."""
    seen: list[str] = []
    for w in _WORDS.findall(needle.lower()):
        if w not in STOP_WORDS and w not in seen:
            seen.append(w)
    return seen


def recall_share(answer: str, facts: list[str]) -> float:
    """Share of `facts` (words or phrases) found as whole words in `answer`, case-insensitive."""
    if not facts:
        return 0.0
    words = _WORDS.findall(answer.lower())
    found = 0
    for fact in facts:
        seq = _WORDS.findall(fact.lower())
        if seq and any(words[i : i + len(seq)] == seq for i in range(len(words) - len(seq) + 1)):
            found += 1
    return found / len(facts)


def cell_means(records: list[dict]) -> dict[float, dict[int, float]]:
    """Mean score per depth (rows, ascending) and length (columns, ascending)."""
    cells: dict[tuple[float, int], list[float]] = {}
    for r in records:
        cells.setdefault((float(r["depth"]), int(r["length"])), []).append(float(r["score"]))
    table: dict[float, dict[int, float]] = {}
    for d, n in sorted(cells):
        table.setdefault(d, {})[n] = sum(cells[d, n]) / len(cells[d, n])
    return table


def markdown_table(table: dict[float, dict[int, float]]) -> str:
    lengths = sorted({n for row in table.values() for n in row})
    lines = [
        "| depth % \\ length | " + " | ".join(str(n) for n in lengths) + " |",
        "|---|" + "---|" * len(lengths),
    ]
    for d, row in table.items():
        cells = [f"{row[n]:.1f}" if n in row else "" for n in lengths]
        lines.append(f"| {d:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_heatmap(table: dict[float, dict[int, float]], path: Path) -> None:
    """Depth on y, length on x, colours fixed to the 1-10 scale; empty cells stay blank."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    depths = list(table)
    lengths = sorted({n for row in table.values() for n in row})
    grid = [[table[d].get(n, math.nan) for n in lengths] for d in depths]
    fig = Figure(figsize=(1.2 + 0.9 * len(lengths), 1.0 + 0.55 * len(depths)))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(grid, vmin=1, vmax=10, cmap="RdYlGn", aspect="auto", origin="upper")
    ax.set_xticks(range(len(lengths)), [str(n) for n in lengths], rotation=45, ha="right")
    ax.set_yticks(range(len(depths)), [f"{d:g}" for d in depths])
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("needle depth (%)")
    for i, row in enumerate(grid):
        for j, v in enumerate(row):
            if not math.isnan(v):
                ax.text(j, i, f"{v:.1f}", ha="center", va="center", fontsize=8)
    fig.colorbar(image, ax=ax, label="score")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None
