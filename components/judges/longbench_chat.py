"""LongBench-Chat few-shot judge: a 1-10 rating of each prediction (LongAlign)."""

from __future__ import annotations

import random
from itertools import islice
from typing import Any, ClassVar

from pydantic import Field

from components.base import Context, Estimate, Fields, MapComponent, ModelSlot, Out, Params
from components.formats import Constrained, analysis_chars, constrained, integers, verdict
from components.judges.asking import ask_until_parsed
from components.templates import render
from components.text import last_bracket_number
from runner.backends.base import Format, Sampling

SYSTEM = "You are a fair and careful evaluator of written answers."

JUDGE = """[Task]
Grade how well an AI assistant answered a user's question. An expert's reference answer is given. \
Judge correctness first: compare the assistant's answer with the reference answer. After correctness, \
weigh how helpful, precise and on-topic the answer is. Lower the rating for anything false, and for extra \
material that does not serve the question, even when the rest is good. Three example answers to the same \
question are shown with the ratings they were given, to show how the scale is used. Rate the assistant's \
answer with a whole number from 1 (worst) to 10 (best), written in double square brackets, for example [[6]].

[Question]
{question}

[Reference answer]
{reference}

{examples}

[Answer to grade]
{prediction}

Rating: """

EXAMPLE = """[Example answer {n}]
{answer}
Rating: [[{score}]]
"""


RATINGS = integers(1, 10)


class LongBenchChatJudgeParams(Constrained):
    system_prompt: str = Field(SYSTEM, description="System message sent with every judge request.")
    tries: int = Field(5, ge=1, description="Judge calls per record while the reply has no `[[rating]]`.")
    temperature: float = Field(0.0, ge=0.0, description="Judge temperature (reference: 0).")
    retry_temperature: float | None = Field(
        None, ge=0.0, description="Temperature of the re-asks; default: `temperature` (as the reference)."
    )
    max_new_tokens: int = Field(512, ge=1, description="Judge reply length cap.")
    shuffle_examples: bool = Field(
        False,
        description="Shuffle the three example answers per record (as LongCite's copy of this judge does); "
        "off keeps the file order, as LongAlign does. The order is seeded by the stage seed and the record "
        "id.",
    )
    newlines_to_spaces: bool = Field(
        True,
        description="Replace newlines in the prediction with spaces before judging, as the reference does.",
    )
    prediction_field: str = Field("prediction", description="Record field holding the answer to grade.")


class LongBenchChatJudge(MapComponent):
    """Rates each prediction 1-10 against the reference answer with a few-shot LLM judge.

    Follows LongBench-Chat's judge. The prompt gives the grading instructions (correctness
    first, then helpfulness, accuracy and relevance; points off for wrong or irrelevant content). It then
    shows the question, the reference answer, the case's three example answers each followed by its rating,
    and the candidate, and ends with a rating prompt. The judge runs at temperature 0. The rating is the first
    number in the LAST `[[...]]` of the reply. A reply without one is asked again, up to `tries` calls.
    With `constrained` on, the reply is enforced while decoding: free analysis without brackets, short
    enough that the rating fits in `max_new_tokens`, then `[[n]]` with n in 1-10.
    A record that never yields a rating fails with the raw reply. The metric is the mean rating (1-10). GATEAU
    and LongReward report it ×10 (`score_x10`).
    """

    type: ClassVar[str] = "judge.longbench_chat"
    Params: ClassVar[type[Params]] = LongBenchChatJudgeParams
    inputs: ClassVar[dict[str, Fields]] = {
        "predictions": Fields("prediction", "query", "answer", "few_shots")
    }
    passthrough: ClassVar[str | None] = "predictions"
    models: ClassVar[dict[str, ModelSlot]] = {
        "judge": ModelSlot("chat", doc="the grading model (GPT-4 in the paper)")
    }
    prompts: ClassVar[dict[str, str]] = {"system": SYSTEM, "judge": JUDGE, "example": EXAMPLE}
    reply_formats: ClassVar[dict[str, str]] = {"rating": "regex"}

    def prompt_texts(self) -> dict[str, str]:
        return {**self.prompts, "system": self.params.system_prompt}  # type: ignore[attr-defined]

    def output_fields(self) -> Fields | None:
        return Fields("score", "judge_output", "judge_calls")

    def build_messages(self, record: dict, ctx: Context) -> list[dict]:
        """The judge conversation for one record."""
        p: LongBenchChatJudgeParams = self.params  # type: ignore[assignment]
        examples = list(record.get("few_shots") or [])
        if p.shuffle_examples:
            random.Random(f"{ctx.seed}:{record_key(record)}").shuffle(examples)
        shown = "\n".join(
            render(EXAMPLE, {"n": i, "answer": e["answer"], "score": _number(e["score"])})
            for i, e in enumerate(examples, 1)
        )
        prediction = str(record[p.prediction_field])
        if p.newlines_to_spaces:
            prediction = prediction.replace("\n", " ")
        user = render(JUDGE, {
            "question": record["query"],
            "reference": record["answer"],
            "examples": shown.rstrip("\n"),
            "prediction": prediction,
        })
        return [{"role": "system", "content": p.system_prompt}, {"role": "user", "content": user}]

    def rating_format(self) -> Format:
        """The judge reply: bounded free analysis, then ``[[n]]`` with n in 1-10."""
        p: LongBenchChatJudgeParams = self.params  # type: ignore[assignment]
        return verdict(RATINGS, analysis_chars(p.max_new_tokens, RATINGS))

    def process(self, batch: list[dict], ctx: Context) -> list[Out]:
        p: LongBenchChatJudgeParams = self.params  # type: ignore[assignment]
        judge = ctx.model("judge")
        fmt = self.rating_format() if constrained(judge, p.constrained) else None
        sampling = Sampling(temperature=p.temperature, max_new_tokens=p.max_new_tokens, format=fmt)
        verdicts = ask_until_parsed(
            judge, [self.build_messages(r, ctx) for r in batch], sampling, last_bracket_number,
            tries=p.tries, retry_temperature=p.retry_temperature,
        )
        out: list[Out] = []
        for record, v in zip(batch, verdicts, strict=True):
            if v.parsed:
                out.append({**record, "score": v.value, "judge_output": v.reply, "judge_calls": v.calls})
            else:
                out.append(v.failure("[[rating]]"))
        return out

    def estimate(self, n_in: dict[str, int | None]) -> Estimate:
        n = n_in.get("predictions")
        return Estimate() if n is None else Estimate(records_out=n, llm_calls=n)

    def report_data(self, records: list[dict], metrics: dict[str, Any] | None, ctx: Context) -> list[Any]:
        """The score distribution, and each answer beside the question, the reference and the analysis."""
        from components.report_data import MAX_EXAMPLES, score_histogram
        from components.views.answers import answer_example, answers_section

        examples = [answer_example(f"record {r.get('id', r.get('idx', i))}", question=r.get("query"),
                                   answer=r.get("prediction"), reference=r.get("answer"),
                                   analysis=r.get("judge_output"), fields={"score": r.get("score")})
                    for i, r in enumerate(islice(records, MAX_EXAMPLES))]  # only these are shown
        return [score_histogram("LongBench-Chat scores", {"score": [r.get("score") for r in records]},
                                low=1, high=10), answers_section("LongBench-Chat answers", examples)]

    def summarize(self, records: list[dict], ctx: Context) -> dict[str, Any]:
        scores = [float(r["score"]) for r in records if r.get("score") is not None]
        mean = sum(scores) / len(scores) if scores else None
        inputs = getattr(ctx, "inputs", None) or {}
        n_in = len(inputs["predictions"]) if "predictions" in inputs else None
        return {
            "mean_score": mean,
            "score_x10": mean * 10 if mean is not None else None,
            "n": len(scores),
            # inputs that got no rating at all (their verdicts never parsed or the judge call failed)
            "parse_failures": max(0, n_in - len(scores)) if n_in is not None else None,
            # replies without a rating that a later try recovered from
            "retried_replies": sum(max(0, int(r.get("judge_calls", 1)) - 1) for r in records),
        }


def record_key(record: dict) -> str:
    """The record's id as the runner keys it: `id`, else `idx`, else its query."""
    for key in ("id", "idx"):
        if key in record:
            return str(record[key])
    return str(record.get("query", ""))


def _number(score: Any) -> str:
    """`8` for 8 or 8.0, `7.5` for 7.5."""
    try:
        f = float(score)
    except (TypeError, ValueError):
        return str(score)
    return str(int(f)) if f.is_integer() else str(f)
