"""``judge.llm_score``: an LLM judge that rates each record on a numeric scale, written as ``[[n]]``."""

from __future__ import annotations

import math
from typing import Any

from pydantic import Field, field_validator, model_validator

from components.base import Context, Estimate, Failed, Fields, MapComponent, ModelSlot, Out
from components.generators.chat import SamplingParams, estimate_tokens
from components.templates import TemplateError, check_template, render
from components.text import last_bracket_number


def parse_score(text: str, lo: float, hi: float) -> float | None:
    """The first number inside the **last** ``[[...]]`` of ``text``; None when absent or outside
    ``[lo, hi]``.

    >>> parse_score("fine [[3]] ... so: [[Rating: 8/10]]", 1, 10)
    8.0
    """
    value = last_bracket_number(text)
    return value if value is not None and lo <= value <= hi else None


def _num(x: float) -> str:
    return f"{x:g}"


class LlmScore(MapComponent):
    """Scores each record with an LLM judge: the judge explains, then writes its score as ``[[n]]``.

    Follows the numeric judges of the reference implementations (bracket score parsing): the
    score is the first number inside the **last** ``[[...]]``; one outside ``[scale_min, scale_max]`` is a
    parse failure. A parse failure is re-asked up to ``retries_on_parse_failure`` times (at
    ``retry_temperature``, since a greedy re-ask would repeat itself). A record whose reply still does not
    parse is **kept** with ``score: null`` and the judge's text in ``judge_raw``, and counted:
    ``summarize`` reports ``n_scored``, ``parse_failures`` and ``parse_failure_rate`` next to
    ``mean_score`` (over scored records) and a histogram. A failed model call (not a parse failure) makes
    the record fail, so the runner retries it.

    The template is filled from the record plus ``{scale_min}`` and ``{scale_max}`` (the params win over
    record fields of the same name). The default template rates ``{response}`` as an answer to ``{query}``.
    """

    type = "judge.llm_score"
    inputs = {"records": Fields()}
    passthrough = "records"
    models = {"judge": ModelSlot(kind="chat", doc="the judge model")}
    prompts = {
        "system": "You are a careful and impartial evaluator of answers written by AI assistants.",
        "judge": (
            "Assess how well the response answers the question. Weigh correctness, relevance to what was "
            "asked, completeness and clarity; do not reward length for its own sake.\n"
            "Explain your assessment briefly, then finish with your score from {scale_min} (worst) to "
            "{scale_max} (best) in double square brackets on its own line, for example: [[{scale_max}]]\n\n"
            "[Question]\n{query}\n\n[Response]\n{response}"
        ),
    }

    class Params(SamplingParams):
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
        retries_on_parse_failure: int = Field(2, ge=0, description="re-asks after a reply without a valid score")
        retry_temperature: float = Field(
            0.7, ge=0.0, description="temperature of re-asks (at least `temperature`)"
        )

        check_templates = field_validator("system", "template")(check_template)

        @model_validator(mode="after")
        def _scale_order(self) -> LlmScore.Params:
            if self.scale_min >= self.scale_max:
                raise ValueError(f"scale_min ({self.scale_min}) must be below scale_max ({self.scale_max})")
            return self

    def output_fields(self) -> Fields | None:
        return Fields(self.params.score_field, "judge_raw")

    def prompt_texts(self) -> dict[str, str]:
        p = self.params
        return {
            "system": p.system if p.system is not None else self.prompts["system"],
            "judge": p.template if p.template is not None else self.prompts["judge"],
        }

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
        out: list[Out | None] = [None] * len(batch)
        convs: dict[int, list[dict[str, str]]] = {}
        for i, record in enumerate(batch):
            try:
                convs[i] = self._conversation(record)
            except TemplateError as e:
                out[i] = Failed(error=str(e), retry=False)
        judge = ctx.model("judge")
        raw: dict[int, str] = {}
        todo = list(convs)
        for attempt in range(p.retries_on_parse_failure + 1):
            if not todo:
                break
            temperature = p.temperature if attempt == 0 else max(p.temperature, p.retry_temperature)
            results = judge.chat([convs[i] for i in todo], p.sampling(attempt, temperature))
            unparsed = []
            for i, res in zip(todo, results):
                if res.error:
                    out[i] = Failed(error=f"judge call failed: {res.error}")
                    continue
                raw[i] = res.text
                score = parse_score(res.text, p.scale_min, p.scale_max)
                if score is None:
                    unparsed.append(i)
                else:
                    out[i] = {**batch[i], p.score_field: score, "judge_raw": res.text}
            todo = unparsed
        for i in todo:  # still unparsable after every re-ask: kept, counted by summarize
            out[i] = {**batch[i], p.score_field: None, "judge_raw": raw[i]}
        assert all(o is not None for o in out)
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
