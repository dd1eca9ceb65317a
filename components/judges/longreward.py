"""``judge.longreward``: LongReward's four-dimension AI-feedback reward for long-context answers.

Each sampled response is rated on helpfulness and logicality (the question and the answer only, never the
document), faithfulness (its factual statements checked against retrieved document chunks) and completeness
(against the per-chunk information of ``longreward.chunk_info``); ``total`` is the sum (0–40) and ``mean``
the average. The verdict parsers are LongReward's own:

>>> parse_numeric_score("analysis ... [[8]] out of [[10]]"), parse_numeric_score("[[8/10]]")
(10.0, None)
>>> parse_support_verdict("so: [[Partially supported]]"), parse_support_verdict("[[Not fully supported]]")
(0.5, 0.0)
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from pydantic import Field

from components.base import (
    Context,
    Estimate,
    Failed,
    Fields,
    MapComponent,
    ModelSlot,
    Out,
    Params,
    record_key,
)
from components.judges import longreward_prompts as P
from components.judges.asking import ask_until_parsed
from components.judges.llm_score import digit_score
from components.retrieval import scored_search
from components.templates import render
from components.text import detect_language, repair_tags, split_sentences, token_chunks
from runner.backends.base import Sampling

DIMENSIONS = ("helpfulness", "logicality", "faithfulness", "completeness")

_NUMERIC = re.compile(r"\[\[(\d+\.\d+|\d+)\]\]")
_LABEL = re.compile(r"\[\[([ /a-zA-Z]+)\]\]")
_STATEMENT = re.compile(r"<statement>(.*?)</statement>", re.DOTALL)


def parse_numeric_score(text: str) -> float | None:
    """The last ``[[n]]`` whose content is a bare number (decimals allowed), unclamped; None when there is
    none. ``[[8/10]]``, ``[[ 8 ]]`` and ``[[-3]]`` are not bare numbers."""
    matches = _NUMERIC.findall(text)
    return float(matches[-1]) if matches else None


def parse_support_verdict(text: str) -> float | None:
    """The last ``[[label]]`` made of letters, spaces and slashes: fully supported 1, partially supported
    0.5, any other label 0; None when there is none.

    Labels are compared case-insensitively. A negated degree ("Not fully supported") does not count: the
    reference's substring test scores "Not fully supported" as full support, which is its bug, not the
    method.
    """
    matches = _LABEL.findall(text)
    if not matches:
        return None
    label = " ".join(matches[-1].lower().split())
    if _says(label, "fully"):
        return 1.0
    if _says(label, "partially"):
        return 0.5
    return 0.0


def _says(label: str, degree: str) -> bool:
    """Whether ``label`` names ``degree`` without negating it ("not fully", "no partially")."""
    return degree in label and re.search(rf"\b(?:not|no|non)[ -]+{degree}", label) is None


def parse_statements(text: str) -> list[str] | None:
    """The non-blank ``<statement>`` texts of a fact-extraction reply, in order; None when there are none."""
    found = [s.strip() for s in _STATEMENT.findall(repair_tags(text))]
    return [s for s in found if s] or None


def prompt_key(response: dict) -> str:
    """The key of the prompt a sampled response answers: its ``prompt_id``, else its own key without the
    trailing ``-k`` sample number (``"11-3"`` → ``"11"``; ``generate.chat`` with ``n`` names samples so)."""
    if response.get("prompt_id") is not None:
        return str(response["prompt_id"])
    key = record_key(response)
    head, sep, tail = key.rpartition("-")
    return head if sep and tail.isdigit() else key


def option_score(top: dict[str, float], values: dict[str, float]) -> float | None:
    """The probability-weighted value of the options among a first token's candidates (``top``: token →
    logprob; ``values``: option → value, tokens compared stripped and upper-cased); None without any."""
    import math

    mass: dict[str, float] = {}
    for token, logprob in top.items():
        t = token.strip().upper()
        if t in values:
            mass[t] = mass.get(t, 0.0) + math.exp(logprob)
    total = sum(mass.values())
    return sum(values[t] * m for t, m in mass.items()) / total if total > 0 else None


@dataclass(eq=False)
class Ask:
    """One question to the judge: ``kind`` is ``rating`` (0–10), ``support`` (1/0.5/0) or ``facts``."""

    kind: Literal["rating", "support", "facts"]
    conversation: list[dict[str, str]]
    value: Any = None
    reply: str = ""
    error: str | None = None
    calls: int = 0


@dataclass
class Plan:
    """The asks of one response."""

    position: int
    key: str
    prompt: dict
    lang: str
    asks: dict[str, Ask] = field(default_factory=dict)
    statements: list[str] = field(default_factory=list)
    evidence: list[list[int]] = field(default_factory=list)  # chunk indices shown per statement
    support: list[Ask] = field(default_factory=list)


class LongRewardParams(Params):
    scoring: Literal["brackets", "digit_probabilities"] = Field("brackets", description=(
        "brackets (the reference): the judge explains and writes [[score]] or [[label]]; "
        "digit_probabilities (for judges too small to write that): one token, the score is the "
        "probability-weighted digit 0-9 (x10/9) or option A/B/C"))
    statements: Literal["model", "sentences"] = Field("model", description=(
        "where faithfulness gets the answer's factual statements: model (the reference: the judge lists "
        "them); sentences (not the method, for small judges): the answer's sentences"))
    max_statements: int | None = Field(None, ge=1, description="check at most this many statements (null: all)")
    retrieval: Literal["dense", "bm25"] = Field("dense", description=(
        "evidence retrieval: dense (cosine with the embedder slot; the reference uses a remote embedder) "
        "or bm25"))
    evidence_chunk_size: int = Field(128, ge=1, description="tokens per evidence chunk (reference: 128)")
    top_k: int = Field(5, ge=1, description="evidence chunks per statement, shown in document order (reference: 5)")
    language: Literal["auto", "en", "zh"] = Field("auto", description=(
        "prompt language; auto: the document's (components.text.detect_language)"))
    temperature: float = Field(0.01, ge=0.0, description="temperature of the first ask (reference: 0.01)")
    retry_temperature: float = Field(0.95, ge=0.0, description="temperature of re-asks (reference: 0.95)")
    tries: int = Field(5, ge=1, description="asks per question while the verdict does not parse (reference: 5)")
    seed: int | None = Field(None, description="sampling seed of the first ask (re-ask k uses seed + k)")
    max_new_tokens: int = Field(512, ge=1, description="longest rating or support reply (reference: 512)")
    facts_max_new_tokens: int = Field(2048, ge=1, description="longest fact list (reference: 2048)")
    top_logprobs: int = Field(20, ge=1, description="digit_probabilities: candidates of the first token")


class LongReward(MapComponent):
    """Scores sampled responses on LongReward's four dimensions (LongReward §3.2), each 0–10.

    * helpfulness, logicality: the judge sees the question and the answer only;
    * faithfulness: the answer's factual statements (``<statement>`` list from the judge; a reply without
      one is asked again), each checked against the ``top_k`` ``evidence_chunk_size``-token chunks of the
      document it retrieves (dense or BM25), shown in document order: fully supported 1, partially 0.5,
      otherwise 0; the score is 10 × the mean (duplicates count twice);
    * completeness: the question, every chunk's information from the ``prompts`` input (the output of
      ``longreward.chunk_info``, computed once per prompt) and the answer.

    A response finds its prompt by ``prompt_id`` or by its own id without the ``-k`` sample suffix. Every
    question is asked at ``temperature`` first and at ``retry_temperature`` again while its verdict does not
    parse, up to ``tries`` asks; a response with a verdict still missing fails with the raw replies (its
    failure is final), a failed model call fails it for the runner to retry. Prompts are English or Chinese
    by the document's language. Output: ``id``, ``prompt_id``, ``query``, ``answer``, ``scores``
    (the four and ``total``, their sum 0–40), ``mean`` (total / 4) and ``details`` (statements with their
    verdicts and evidence chunks, the judge's replies).

    ``scoring: digit_probabilities`` and ``statements: sentences`` are not the paper's method: they let a
    135M judge on a CPU produce scores at all (the numbers then only show the plumbing).
    """

    type = "judge.longreward"
    inputs: ClassVar[dict[str, Fields]] = {"responses": Fields("answer"),
                                           "prompts": Fields("query", "context", "chunk_info")}
    map_over = "responses"
    outputs = Fields("id", "prompt_id", "query", "answer", "scores", "mean", "details")
    models: ClassVar[dict[str, ModelSlot]] = {
        "judge": ModelSlot("chat", doc="the judge (glm-4-0520 in the paper)"),
        "embedder": ModelSlot("embed", required=False, default="all-minilm-l6-v2",
                              doc="sentence embedder for evidence retrieval (unused with retrieval: bm25)"),
    }
    prompts: ClassVar[dict[str, str]] = P.all_prompts()
    Params = LongRewardParams
    batch_size = 8

    def estimate(self, n_in: dict[str, int | None]) -> Estimate:
        """Four asks per response, plus one per statement (not known before; not counted)."""
        n = n_in.get("responses")
        return Estimate(records_out=n, llm_calls=4 * (n or 0))

    # -- asking ------------------------------------------------------------------------------------------

    def _user(self, template: str, values: dict[str, Any], tail: str | None = None) -> list[dict[str, str]]:
        text = render(template, values)
        return [{"role": "user", "content": text + tail if tail else text}]

    def _tail(self, table: dict[str, dict[str, str]], lang: str) -> str:
        return table[self.params.scoring][lang]

    def _ask(self, llm: Any, asks: list[Ask]) -> None:
        """Fill every ask's value, reply, error and call count."""
        p: LongRewardParams = self.params  # type: ignore[assignment]
        by_tokens = [a for a in asks if p.scoring == "digit_probabilities" and a.kind != "facts"]
        by_text = [a for a in asks if a not in by_tokens]
        if by_text:
            # one sampling per kind of question: where generation requests carry a format, each kind's
            # verdict format ([[n]], [[label]], <statement> list) is declared here
            first = Sampling(temperature=p.temperature, max_new_tokens=p.max_new_tokens, seed=p.seed)
            facts = first.model_copy(update={"max_new_tokens": p.facts_max_new_tokens})
            parsers = {"rating": parse_numeric_score, "support": parse_support_verdict, "facts": parse_statements}
            verdicts = ask_until_parsed(
                llm, [a.conversation for a in by_text], [facts if a.kind == "facts" else first for a in by_text],
                [parsers[a.kind] for a in by_text], tries=p.tries, retry_temperature=p.retry_temperature)
            for a, v in zip(by_text, verdicts, strict=True):
                a.value, a.reply, a.error, a.calls = v.value, v.reply, v.error, v.calls
        if by_tokens:  # one token with its candidates: a re-ask would see the same distribution
            sampling = Sampling(temperature=0.0, max_new_tokens=1, logprobs=p.top_logprobs)
            for a, res in zip(by_tokens, llm.chat([a.conversation for a in by_tokens], sampling), strict=True):
                a.calls, a.reply, a.error = 1, res.text, res.error
                first_token = res.logprobs[0] if res.logprobs else None
                if res.error or first_token is None:
                    a.error = a.error or "the judge's backend returned no logprobs (needed by digit_probabilities)"
                    continue
                top = first_token.top or {first_token.token: first_token.logprob}
                if a.kind == "rating":
                    got = digit_score(top, 0, 9)
                    a.value = None if got is None else got[0] * 10 / 9
                else:
                    a.value = option_score(top, {"A": 1.0, "B": 0.5, "C": 0.0})

    # -- one batch ---------------------------------------------------------------------------------------

    def process(self, batch: list[dict], ctx: Context) -> list[Out]:
        p: LongRewardParams = self.params  # type: ignore[assignment]
        llm = ctx.model("judge")
        prompts = {record_key(r): r for r in ctx.inputs.get("prompts", [])}
        out: list[Out | None] = [None] * len(batch)
        plans: list[Plan] = []
        for i, response in enumerate(batch):
            key = prompt_key(response)
            prompt = prompts.get(key)
            if prompt is None:
                out[i] = Failed(f"prompt {key!r} is not on the prompts input (the longreward.chunk_info stage)",
                                retry=False)
            elif not str(response.get("answer") or "").strip():
                out[i] = Failed("empty answer", retry=False)
            else:
                lang = p.language if p.language != "auto" else detect_language(str(prompt["context"]))
                plans.append(self._first_asks(Plan(i, key, prompt, lang), response))
        self._ask(llm, [a for plan in plans for a in plan.asks.values()])
        self._support_asks(plans, batch, llm.tokenizer(), ctx)
        self._ask(llm, [a for plan in plans for a in plan.support])
        for plan in plans:
            out[plan.position] = self._result(plan, batch[plan.position])
        return out  # type: ignore[return-value]

    def _first_asks(self, plan: Plan, response: dict) -> Plan:
        p: LongRewardParams = self.params  # type: ignore[assignment]
        lang, question, answer = plan.lang, plan.prompt["query"], response["answer"]
        qa = {"question": question, "answer": answer}
        rating_tail = self._tail(P.RATING_TAIL, lang)
        plan.asks["helpfulness"] = Ask("rating", self._user(P.HELPFULNESS[lang], qa, rating_tail))
        plan.asks["logicality"] = Ask("rating", self._user(P.LOGICALITY[lang], qa, rating_tail))
        info = "\n\n".join(render(P.INFO_BLOCK[lang], {"span": c["span"], "info": c["info"]})
                           for c in plan.prompt["chunk_info"])
        plan.asks["completeness"] = Ask("rating", self._user(P.COMPLETENESS[lang], {**qa, "info": info},
                                                             rating_tail))
        if p.statements == "model":
            plan.asks["facts"] = Ask("facts", self._user(P.FACTS[lang], qa))
        else:
            plan.statements = [s["content"] for s in split_sentences(answer)]
        return plan

    def _support_asks(self, plans: list[Plan], batch: list[dict], tokenizer: Any, ctx: Context) -> None:
        """Each statement's evidence (retrieved once per prompt for all its responses) and support ask."""
        p: LongRewardParams = self.params  # type: ignore[assignment]
        ready: dict[str, list[Plan]] = {}
        for plan in plans:
            facts = plan.asks.get("facts")
            if facts is not None and facts.value is not None:
                plan.statements = list(facts.value)
            plan.statements = plan.statements[: p.max_statements] if p.max_statements else plan.statements
            if plan.statements and all(a.value is not None for a in plan.asks.values()):
                ready.setdefault(plan.key, []).append(plan)
        embedder = ctx.embedder("embedder") if p.retrieval == "dense" and ready else None
        for group in ready.values():
            chunks = token_chunks(str(group[0].prompt["context"]), tokenizer, p.evidence_chunk_size)
            statements = [s for plan in group for s in plan.statements]
            hits = scored_search(statements, [c["content"] for c in chunks], p.top_k, p.retrieval, embedder)
            row = 0
            for plan in group:
                for statement in plan.statements:
                    shown = sorted(i for i, _ in hits[row])  # document order, as the reference shows them
                    row += 1
                    plan.evidence.append(shown)
                    evidence = "\n\n".join(render(P.EVIDENCE_BLOCK[plan.lang], {"n": n, "chunk": chunks[i]["content"]})
                                           for n, i in enumerate(shown, start=1))
                    plan.support.append(Ask("support", self._user(
                        P.SUPPORT[plan.lang], {"evidence": evidence, "statement": statement},
                        self._tail(P.SUPPORT_TAIL, plan.lang))))

    def _result(self, plan: Plan, response: dict) -> Out:
        asks = {**plan.asks, **{f"support {n}": a for n, a in enumerate(plan.support)}}
        broken = {name: a for name, a in asks.items() if a.error is not None}
        if broken:
            name, a = next(iter(broken.items()))
            return Failed(f"judge call failed ({name}, after {a.calls} tries): {a.error}", raw=a.reply or None)
        if not plan.statements:
            why = "no factual statement in the judge's reply" if "facts" in plan.asks else "no sentence in the answer"
            return Failed(f"faithfulness: {why}", raw=_raw(asks), retry=False)
        missing = [name for name, a in asks.items() if a.value is None]
        if missing:
            tries = max(asks[m].calls for m in missing)
            return Failed(f"no verdict for {', '.join(missing)} after {tries} tries", raw=_raw(asks), retry=False)
        support = [a.value for a in plan.support]
        scores = {"helpfulness": plan.asks["helpfulness"].value, "logicality": plan.asks["logicality"].value,
                  "faithfulness": 10 * sum(support) / len(support),
                  "completeness": plan.asks["completeness"].value}
        scores["total"] = sum(scores[d] for d in DIMENSIONS)
        kept = {k: response[k] for k in ("idx", "sample") if k in response}
        return {
            **kept, "id": record_key(response), "prompt_id": plan.key, "query": plan.prompt["query"],
            "answer": response["answer"], "scores": scores, "mean": scores["total"] / len(DIMENSIONS),
            "details": {
                "lang": plan.lang,
                "statements": [{"statement": s, "support": a.value, "evidence": ev, "reply": a.reply}
                               for s, a, ev in zip(plan.statements, plan.support, plan.evidence, strict=True)],
                "replies": {name: a.reply for name, a in plan.asks.items()},
            },
        }

    # -- aggregation -------------------------------------------------------------------------------------

    def summarize(self, records: list[dict], ctx: Context) -> dict[str, Any]:
        return reward_means(records)

    def report_data(self, records: list[dict], metrics: dict[str, Any] | None, ctx: Context) -> list[Any]:
        from components.views.longreward import longreward_sections  # the four scores and judged facts

        return longreward_sections(records)

    def report(self, records: list[dict], metrics: dict[str, Any] | None, ctx: Context) -> str | None:
        m = metrics or reward_means(records)
        if not m["n"]:
            return "No response was scored (see the stage's failures)."
        lines = [f"LongReward over {m['n']} responses of {m['prompts']} prompts (each dimension 0–10, "
                 "total 0–40):", "", "| dimension | mean |", "| --- | ---: |"]
        lines += [f"| {d} | {m[d]:.2f} |" for d in (*DIMENSIONS, "total")]
        return "\n".join(lines)


def reward_means(records: list[dict]) -> dict[str, Any]:
    """Mean of each dimension and of ``total`` over scored responses, with their counts."""
    n = len(records)
    out: dict[str, Any] = {"n": n, "prompts": len({r["prompt_id"] for r in records})}
    for d in (*DIMENSIONS, "total"):
        out[d] = sum(r["scores"][d] for r in records) / n if n else None
    out["mean"] = out["total"] / len(DIMENSIONS) if n else None
    return out


def _raw(asks: dict[str, Ask]) -> str:
    return json.dumps({name: a.reply for name, a in asks.items()}, ensure_ascii=False)
