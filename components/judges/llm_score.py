"""``judge.llm_score``: an LLM judge that rates each record on a numeric scale, written as ``[[n]]``."""

from __future__ import annotations

import math
from itertools import islice
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from components.base import Context, Estimate, Failed, Fields, MapComponent, ModelSlot, Out
from components.formats import Constrained, constrained, number_verdict
from components.generators.chat import SamplingParams, estimate_tokens
from components.judges.asking import ask_until_parsed
from components.templates import check_template, conversations_for, render
from components.text import last_bracket_number
from runner.backends.base import Format, Sampling


def parse_score(text: str, lo: float, hi: float) -> float | None:
    """The first number inside the **last** ``[[...]]`` of ``text``; None when absent or outside
    ``[lo, hi]``.

    >>> parse_score("fine [[3]] ... so: [[Rating: 8/10]]", 1, 10)
    8.0
    """
    value = last_bracket_number(text)
    return value if value is not None and lo <= value <= hi else None


def digit_score(top: dict[str, float], lo: float, hi: float) -> tuple[float, float] | None:
    """Probability-weighted score from the judge's first-token distribution (G-Eval style).

    ``top`` maps candidate first tokens to log-probabilities. Tokens that are a single digit within
    ``[lo, hi]`` (after stripping spaces) are the valid answers; the score is their probability-weighted
    mean, returned with the probability mass they hold. None when no valid digit is among the candidates.

    >>> round(digit_score({"7": math.log(0.5), "8": math.log(0.25), "The": math.log(0.25)}, 1, 9)[0], 3)
    7.333
    """
    mass: dict[int, float] = {}
    for token, logprob in top.items():
        t = token.strip()
        if len(t) == 1 and t.isdigit() and lo <= int(t) <= hi:
            mass[int(t)] = mass.get(int(t), 0.0) + math.exp(logprob)
    total = sum(mass.values())
    if total <= 0:
        return None
    return sum(d * p for d, p in mass.items()) / total, total


def _num(x: float) -> str:
    return f"{x:g}"


class LlmScore(MapComponent):
    """Scores each record with an LLM judge: the judge explains, then writes its score as ``[[n]]``.

    Follows the numeric judges of the reference implementations (bracket score parsing): the
    score is the first number inside the **last** ``[[...]]``; one outside ``[scale_min, scale_max]`` is a
    parse failure. The judge is asked up to ``tries`` times while its reply has no valid score (re-asks at
    ``retry_temperature``, since a greedy re-ask would repeat itself). A record whose reply still does not
    parse is **kept** with ``score: null`` and the judge's text in ``judge_raw``, and counted:
    ``summarize`` reports ``n_scored``, ``parse_failures`` and ``parse_failure_rate`` next to
    ``mean_score`` (over scored records) and a histogram. A failed model call (not a parse failure) makes
    the record fail, so the runner retries it.

    The template is filled from the record plus ``{scale_min}`` and ``{scale_max}`` (the params win over
    record fields of the same name). The default template rates ``{response}`` as an answer to ``{query}``.

    ``scoring: digit_probabilities`` is for judges too small to follow the ``[[n]]`` format (e.g. a 135M
    model): the judge is asked for a single digit, one token is generated with its top log-probabilities,
    and the score is the probability-weighted mean over the valid digits (as in G-Eval); ``score_mass`` is
    the probability those digits held. It needs integer scales within 0–9 and a backend that returns
    logprobs. A reply with no valid digit among the candidates is kept with a null score, as above.

    With ``constrained`` on (``brackets`` scoring), the reply is enforced while decoding: an explanation
    without brackets, short enough that the score fits in ``max_new_tokens``, then ``[[n]]`` with n in the
    scale (whole numbers when both ends are whole).
    """

    type = "judge.llm_score"
    inputs = {"records": Fields()}
    passthrough = "records"
    models = {"judge": ModelSlot(kind="chat", doc="the judge model")}
    template_params = {"template": "records", "system": "records"}
    template_vars = frozenset({"scale_min", "scale_max"})
    reply_formats = {"score": "regex"}
    prompts = {
        "digit": (
            "Rate how well the response answers the question, from {scale_min} (useless) to {scale_max} "
            "(correct and complete).\n\n[Question]\n{query}\n\n[Response]\n{response}\n\n"
            "Reply with one digit only."
        ),
        "system": "You are a careful and impartial evaluator of answers written by AI assistants.",
        "judge": (
            "Assess how well the response answers the question. Weigh correctness, relevance to what was "
            "asked, completeness and clarity; do not reward length for its own sake.\n"
            "Explain your assessment briefly, then finish with your score from {scale_min} (worst) to "
            "{scale_max} (best) in double square brackets on its own line, for example: [[{scale_max}]]\n\n"
            "[Question]\n{query}\n\n[Response]\n{response}"
        ),
    }

    class Params(SamplingParams, Constrained):
        template: str | None = Field(
            None, description="judge prompt template ({field} from the record, plus {scale_min}/{scale_max}); "
            "default: the built-in `judge` prompt over {query} and {response}"
        )
        system: str | None = Field(
            None, description="system message template; default: the built-in `system` prompt"
        )
        max_new_tokens: int = Field(512, ge=1, description="longest judge reply, in tokens (room to explain)")
        scale_min: float = Field(1, description="lowest valid score")
        scale_max: float = Field(10, description="highest valid score")
        score_field: str = Field("score", description="where the score goes (null when unparsable)")
        tries: int = Field(3, ge=1, description="judge calls per record while the reply has no valid score")
        retry_temperature: float = Field(
            0.7, ge=0.0, description="temperature of re-asks (at least `temperature`)"
        )
        scoring: Literal["brackets", "digit_probabilities"] = Field(
            "brackets", description="brackets: parse [[n]] from the reply (the reference judges); "
            "digit_probabilities: probability-weighted digit of the first token (for small judges)"
        )
        top_logprobs: int = Field(20, ge=1, le=20, description="with digit_probabilities: candidates per token")

        check_templates = field_validator("system", "template")(check_template)

        @model_validator(mode="after")
        def _scale_order(self) -> LlmScore.Params:
            if self.scale_min >= self.scale_max:
                raise ValueError(f"scale_min ({self.scale_min}) must be below scale_max ({self.scale_max})")
            if self.scoring == "digit_probabilities" and not (
                    0 <= self.scale_min and self.scale_max <= 9 and self.scale_min == int(self.scale_min)
                    and self.scale_max == int(self.scale_max)):
                raise ValueError("digit_probabilities needs whole-number scale_min/scale_max within 0-9")
            return self

    def output_fields(self) -> Fields | None:
        return Fields(self.params.score_field, "judge_raw")

    def prompt_texts(self) -> dict[str, str]:
        p = self.params
        default = self.prompts["digit" if p.scoring == "digit_probabilities" else "judge"]
        return {
            "system": p.system if p.system is not None else self.prompts["system"],
            "judge": p.template if p.template is not None else default,
        }

    def score_format(self) -> Format:
        """The judge reply with ``brackets`` scoring: a bounded explanation, then ``[[n]]`` in the scale."""
        p = self.params
        return number_verdict(p.scale_min, p.scale_max, p.max_new_tokens)

    def estimate(self, n_in: dict[str, int | None]) -> Estimate:
        """One call per record, not counting re-asks; prompt tokens count the templates' own text only."""
        n = n_in.get("records")
        if n is None:
            return Estimate()
        own_text = "".join(self.prompt_texts().values())
        return Estimate(records_out=n, llm_calls=n, prompt_tokens=n * estimate_tokens(own_text),
                        completion_tokens=n * self.params.max_new_tokens)

    def _conversation(self, record: dict[str, Any]) -> list[dict[str, str]]:
        p = self.params
        values = {**record, "scale_min": _num(p.scale_min), "scale_max": _num(p.scale_max)}
        texts = self.prompt_texts()
        conv = [{"role": "user", "content": render(texts["judge"], values)}]
        if texts["system"]:
            conv.insert(0, {"role": "system", "content": render(texts["system"], values)})
        return conv

    def process(self, batch: list[dict], ctx: Context) -> list[Out]:
        p = self.params
        convs, out = conversations_for(batch, self._conversation)
        judge = ctx.model("judge")
        if p.scoring == "digit_probabilities":
            return self._digit_scores(batch, convs, out, judge)
        todo = list(convs)
        sampling = p.sampling()
        if constrained(judge, p.constrained):
            sampling = sampling.model_copy(update={"format": self.score_format()})
        verdicts = ask_until_parsed(
            judge, [convs[i] for i in todo], sampling, lambda t: parse_score(t, p.scale_min, p.scale_max),
            tries=p.tries, retry_temperature=max(p.temperature, p.retry_temperature), reask_errors=False,
        )
        for i, v in zip(todo, verdicts, strict=True):
            if v.error is not None:  # a failed call, not a parse failure: the runner may retry the record
                out[i] = Failed(error=f"judge call failed: {v.error}")
            else:  # still unparsable after every re-ask: kept with a null score, counted by summarize
                out[i] = {**batch[i], p.score_field: v.value, "judge_raw": v.reply}
        assert all(o is not None for o in out)
        return out  # type: ignore[return-value]

    def _digit_scores(self, batch: list[dict], convs: dict[int, list[dict[str, str]]], out: list[Out | None],
                      judge: Any) -> list[Out]:
        p = self.params
        todo = list(convs)
        sampling = Sampling(temperature=0.0, max_new_tokens=1, logprobs=p.top_logprobs)
        for i, res in zip(todo, judge.chat([convs[i] for i in todo], sampling) if todo else []):
            if res.error:
                out[i] = Failed(error=f"judge call failed: {res.error}")
                continue
            if not res.logprobs:
                out[i] = Failed(error="the judge's backend returned no logprobs (needed by digit_probabilities)",
                                raw=res.text, retry=False)
                continue
            got = digit_score(res.logprobs[0].top or {res.logprobs[0].token: res.logprobs[0].logprob},
                              p.scale_min, p.scale_max)
            out[i] = {**batch[i], p.score_field: None if got is None else round(got[0], 4),
                      "score_mass": None if got is None else round(got[1], 4), "judge_raw": res.text}
        return out  # type: ignore[return-value]

    def summarize(self, records: list[dict], ctx: Context) -> dict[str, Any]:
        p = self.params
        scores = [float(r[p.score_field]) for r in records if r.get(p.score_field) is not None]
        failures = len(records) - len(scores)
        bins = range(math.floor(p.scale_min), math.floor(p.scale_max) + 1)
        histogram = {str(b): 0 for b in bins}
        for s in scores:  # unit bins [b, b+1); scale_max falls in its own floor bin
            histogram[str(math.floor(s))] += 1
        return {
            "n": len(records),
            "n_scored": len(scores),
            "mean_score": sum(scores) / len(scores) if scores else None,
            "parse_failures": failures,
            "parse_failure_rate": failures / len(records) if records else 0.0,
            "scale": [p.scale_min, p.scale_max],
            "histogram": histogram,
        }

    def report_data(self, records: list[dict], metrics: dict[str, Any] | None, ctx: Context) -> list[Any]:
        """The score distribution, and the judged records beside the judge's reply."""
        from components.report_data import MAX_EXAMPLES, score_histogram
        from components.views.answers import answer_example, answers_section

        p = self.params
        examples = []
        for i, r in enumerate(islice(records, MAX_EXAMPLES)):  # only these are shown
            texts = [v for k, v in r.items() if isinstance(v, str) and k not in ("id", "judge_raw")]
            examples.append(answer_example(f"record {r.get('id', r.get('idx', i))}",
                                           question=texts[0] if texts else None,
                                           answer=texts[1] if len(texts) > 1 else None, reference=None,
                                           analysis=r.get("judge_raw"), fields={"score": r.get(p.score_field)}))
        return [score_histogram(f"{p.score_field} distribution", {p.score_field: [r.get(p.score_field)
                                                                                 for r in records]},
                                low=p.scale_min, high=p.scale_max), answers_section("judged records", examples)]

    def report(self, records: list[dict], metrics: dict[str, Any] | None, ctx: Context) -> str | None:
        m = metrics if metrics is not None else self.summarize(records, ctx)
        mean = "n/a" if m["mean_score"] is None else f"{m['mean_score']:.3f}"
        headline = (
            f"Mean score **{mean}** over {m['n_scored']} scored records "
            f"(scale {_num(m['scale'][0])}–{_num(m['scale'][1])}); "
            f"{m['parse_failures']} of {m['n']} replies had no valid score "
            f"({m['parse_failure_rate']:.1%}) and are kept with a null score."
        )
        lines = [
            headline,
            "",
            "| score | records |",
            "| ---: | ---: |",
        ]
        lines += [f"| {b} | {c} |" for b, c in m["histogram"].items()]
        return "\n".join(lines)
