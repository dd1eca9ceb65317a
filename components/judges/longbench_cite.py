"""LongBench-Cite evaluation: citation recall, precision and F1, correctness, citation length (§1.4)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice
from typing import Any, ClassVar, Literal

from pydantic import Field

from components.base import Context, Estimate, Failed, Fields, MapComponent, ModelSlot, Out
from components.formats import Constrained, constrained, integers, verdict
from components.judges.asking import ask_until_parsed
from components.judges.longbench_cite_metrics import (
    aggregate,
    f1,
    label_parser,
    needs_citation_score,
    rating_parser,
    relevance_score,
    strip_markup,
    support_score,
)
from components.judges.longbench_cite_prompts import (
    CHAT_EXAMPLE,
    CORRECT_CHAT_PROMPT,
    CORRECT_QA_PROMPT,
    CORRECT_SUMMARY_PROMPT,
    JUDGE_SYSTEM,
    NEED_CITATION_PROMPT,
    RELEVANCE_PROMPT,
    SUPPORT_PROMPT,
)
from components.templates import render
from components.text import count_tokens
from runner.backends.base import Format, Sampling

# How each verdict's label scores (``label_parser(SUPPORT)`` reads a support verdict).
SUPPORT, NEEDS_CITATION, RELEVANCE = support_score, needs_citation_score, relevance_score
# The verdict formats: each label as its prompt spells it, first and alone (the prompts ask for the verdict
# first; what follows it, "Analysis: ...", is cut by the stop string and never read).
SUPPORT_FORMAT = verdict(["Fully supported", "Partially supported", "No support"])
NEEDS_CITATION_FORMAT = verdict(["Yes", "No"])
RELEVANCE_FORMAT = verdict(["Relevant", "Irrelevant"])

QA_SETS = ("multifieldqa_en", "multifieldqa_zh", "hotpotqa", "dureader")


def correctness_scale(dataset: str) -> tuple[str, Callable[[str], float | None], Format]:
    """Prompt, parser and verdict format for a dataset: 1–3 → (r−1)/2 for QA sets (and unknown sets),
    1–5 → (r−1)/4 for gov_report, 1–10 → r/10 for longbench-chat."""
    if "longbench-chat" in dataset:
        return CORRECT_CHAT_PROMPT, rating_parser(1, 10, lambda r: r / 10), verdict(integers(1, 10))
    if "gov_report" in dataset:
        return CORRECT_SUMMARY_PROMPT, rating_parser(1, 5, lambda r: (r - 1) / 4), verdict(integers(1, 5))
    return CORRECT_QA_PROMPT, rating_parser(1, 3, lambda r: (r - 1) / 2), verdict(integers(1, 3))


@dataclass
class Ask:
    """One judge question and, once asked, its verdict (``value`` None: never parsed)."""

    conversation: list[dict]
    parse: Callable[[str], float | None]
    stop: tuple[str, ...]
    max_new_tokens: int
    format: Format | None = None  # the verdict's format, sent when the stage is constrained
    value: float | None = None
    raw: str = ""
    error: str | None = None


def ask_all(llm: Any, asks: list[Ask], tries: int, temperature: float, retry_temperature: float | None,
            enforce: bool = False) -> None:
    """Ask every question until its verdict parses (``components.judges.asking``): the first try at
    ``temperature``, up to ``tries − 1`` re-asks at ``retry_temperature``; questions with the same stop
    strings, length and format go out in one chat call per round. With ``enforce`` each ask's format is
    sent. Fills each ask's ``value``, ``raw`` and ``error``."""
    samplings = [Sampling(temperature=temperature, max_new_tokens=a.max_new_tokens, stop=list(a.stop),
                          format=a.format if enforce else None) for a in asks]
    verdicts = ask_until_parsed(llm, [a.conversation for a in asks], samplings, [a.parse for a in asks],
                                tries=tries, retry_temperature=retry_temperature)
    for ask, got in zip(asks, verdicts, strict=True):
        ask.value, ask.raw, ask.error = got.value, got.reply, got.error


class LongBenchCiteJudge(MapComponent):
    """Score LongCite-style predictions the LongBench-Cite way (LongCite §1.4).

    Per response, over its first ``max_statements`` statements:

    * recall — a cited statement scores its support verdict (fully 1, partially 0.5, else 0; a statement
      whose cited text is blank scores 0 unasked); an uncited statement scores ``1 − needs citation`` (an
      uncited sentence that needs no citation counts 1); mean over statements, 0 if there are none;
    * precision — every single citation scores its relevance verdict (1/0); mean over citations, 0 if none;
    * F1 = 2PR/(P+R) of this response. Dataset scores average the per-response values (F1 is not
      recomputed from averaged P and R);
    * correctness against each reference answer (cite blocks and statement tags removed): QA sets 1–3 →
      (r−1)/2, gov_report 1–5 → (r−1)/4, longbench-chat 1–10 few-shot with the 3 scored examples shuffled
      → r/10; an unparsable verdict scores 0.5; the item takes the best reference;
    * citation length — tokens per citation (the judge model's tokenizer, or its backend's
      ``count_tokens`` when it has none); the headline is one average over all citations.

    As in the reference (none of this is a bug fix): labels are read from the first ``[[…]]`` and matched
    by substring (``components.judges.longbench_cite_metrics``); statements, snippets and the answer are
    stripped in the prompts. Citation judges start at ``temperature`` (0) and re-ask at
    ``retry_temperature`` (1), up to ``tries`` in all, while a verdict does not parse; correctness judges
    re-ask greedily (at ``temperature``), ``correctness_tries`` times in all for QA and summaries and
    ``chat_correctness_tries`` for LongBench-Chat items. A response with a citation verdict that never
    parses is left out of the recall, precision, F1 and citation-length means and counted as
    ``excluded`` (the reference's scorer raises on it); ``unparsed_verdicts: zero`` scores such a verdict
    0 instead and keeps the response. With ``constrained`` on, every verdict is enforced while decoding,
    first and alone as the prompts ask: ``[[Fully supported]]`` / ``[[Partially supported]]`` /
    ``[[No support]]``, ``[[Yes]]`` / ``[[No]]``, ``[[Relevant]]`` / ``[[Irrelevant]]``, and the
    correctness rating in its scale. A backend error on the last try fails the record.
    """

    type = "judge.longbench_cite"
    inputs: ClassVar[dict[str, Fields]] = {"predictions": Fields("query", "prediction", "statements")}
    outputs = Fields("recall", "precision", "f1", "correctness", "citation_tokens", "n_citations")
    models: ClassVar[dict[str, ModelSlot]] = {
        "judge": ModelSlot("chat", doc="the judge (gpt-4o-2024-05-13 in the paper)")}
    prompts: ClassVar[dict[str, str]] = {
        "support": SUPPORT_PROMPT, "need_citation": NEED_CITATION_PROMPT, "relevance": RELEVANCE_PROMPT,
        "system": JUDGE_SYSTEM, "correct_qa": CORRECT_QA_PROMPT, "correct_summary": CORRECT_SUMMARY_PROMPT,
        "correct_chat": CORRECT_CHAT_PROMPT, "chat_example": CHAT_EXAMPLE}
    reply_formats: ClassVar[dict[str, str]] = {"support": "regex", "need_citation": "regex", "relevance": "regex",
                                               "correctness": "regex"}
    batch_size = 4

    class Params(Constrained):
        max_statements: int = Field(40, ge=1, description="statements scored per response (the first ones)")
        correctness: bool = Field(True, description=(
            "also grade the answer against the references (records need ``answer``)"))
        tries: int = Field(5, ge=1, description=(
            "attempts per citation judge question while the verdict does not parse"))
        temperature: float = Field(0.0, ge=0.0, description="temperature of the first attempt")
        retry_temperature: float = Field(1.0, ge=0.0, description="temperature of the citation judges' retries")
        unparsed_verdicts: Literal["exclude", "zero"] = Field("exclude", description=(
            "a citation verdict that never parses: exclude leaves the response out of the recall, precision, "
            "F1 and citation-length means and counts it (the reference); zero scores the verdict 0"))
        correctness_tries: int = Field(5, ge=1, description=(
            "attempts per correctness question for QA sets and summaries, all greedy (the reference: 5)"))
        chat_correctness_tries: int = Field(2, ge=1, description=(
            "attempts per correctness question for LongBench-Chat items, all greedy (the reference: 2)"))
        max_new_tokens: int = Field(10, ge=1, description="verdict length of the citation judges")
        stop: list[str] = Field(["Analysis:"], description="stop strings of the citation judges")
        correctness_max_new_tokens: int = Field(32, ge=1, description=(
            "verdict length of the correctness judges"))
        report_examples: int = Field(3, ge=0, description=(
            "records shown statement by statement in the report"))

    def estimate(self, n_in: dict[str, int | None]) -> Estimate:
        return Estimate(records_out=n_in.get("predictions"))

    # -- asks --------------------------------------------------------------------------------------------

    def _citation_asks(self, record: dict) -> tuple[list[dict], list[Ask]]:
        p = self.params
        stop = tuple(p.stop)
        question = record["query"].strip()
        response = strip_markup(record["prediction"]).strip()
        scored, asks = [], []
        for st in record["statements"][:p.max_statements]:
            statement = st["statement"].strip()
            entry: dict[str, Any] = {"statement": st["statement"], "citation": []}
            cites = st.get("citation") or []
            if cites:
                snippets = "\n\n".join(c["cite"] for c in cites).strip()
                if snippets:
                    entry["support_ask"] = len(asks)
                    prompt = render(SUPPORT_PROMPT, {"question": question, "statement": statement,
                                                     "snippets": snippets})
                    asks.append(Ask(_user(prompt), label_parser(SUPPORT), stop, p.max_new_tokens,
                                    SUPPORT_FORMAT))
                else:  # nothing to check the statement against: no support, unasked (as the reference)
                    entry["support_ask"] = None
                for c in cites:
                    entry["citation"].append({**{k: c[k] for k in ("start_sentence_idx", "end_sentence_idx")
                                                 if k in c}, "cite": c["cite"], "ask": len(asks)})
                    prompt = render(RELEVANCE_PROMPT, {"question": question, "statement": statement,
                                                       "snippet": c["cite"].strip()})
                    asks.append(Ask(_user(prompt), label_parser(RELEVANCE), stop, p.max_new_tokens,
                                    RELEVANCE_FORMAT))
            else:
                entry["need_ask"] = len(asks)
                prompt = render(NEED_CITATION_PROMPT, {"question": question, "response": response,
                                                       "sentence": statement})
                asks.append(Ask(_user(prompt), label_parser(NEEDS_CITATION), stop, p.max_new_tokens,
                                NEEDS_CITATION_FORMAT))
            scored.append(entry)
        return scored, asks

    def _correctness_asks(self, record: dict, rng: Any) -> tuple[list[Ask], int]:
        """The correctness questions of one record (one per reference answer) and their number of tries."""
        p = self.params
        references = record.get("answer")
        if not p.correctness or references is None:
            return [], p.correctness_tries
        if isinstance(references, str):
            references = [references]
        dataset = record.get("dataset", "")
        template, parse, fmt = correctness_scale(dataset)
        prediction = strip_markup(record["prediction"]).strip()
        stop: tuple[str, ...] = ()
        examples = ""
        tries = p.correctness_tries
        if template is CORRECT_CHAT_PROMPT:
            prediction = prediction.replace("\n", " ").strip()
            stop = ("\n\n",)
            tries = p.chat_correctness_tries
            shots = list(record.get("few_shot_scores") or [])
            rng.shuffle(shots)
            examples = "\n\n".join(render(CHAT_EXAMPLE, {"n": i, "answer": s["answer"], "score": s["score"]})
                                   for i, s in enumerate(shots, start=1))
        asks = [Ask([{"role": "system", "content": JUDGE_SYSTEM},
                     {"role": "user", "content": render(template, {"question": record["query"], "reference": ref,
                                                                  "prediction": prediction,
                                                                  "examples": examples})}],
                    parse, stop, p.correctness_max_new_tokens, fmt) for ref in references]
        return asks, tries

    # -- scoring -----------------------------------------------------------------------------------------

    def process(self, batch: list[dict], ctx: Context) -> list[Out]:
        p = self.params
        llm = ctx.model()
        tokenizer = llm.tokenizer()
        enforce = constrained(llm, p.constrained)
        plans = []
        cite_all: list[Ask] = []
        correct_by_tries: dict[int, list[Ask]] = {}
        for record in batch:
            scored, cite_asks = self._citation_asks(record)
            correct_asks, tries = self._correctness_asks(record, ctx.rng)
            plans.append((scored, cite_asks, correct_asks))
            cite_all.extend(cite_asks)
            correct_by_tries.setdefault(tries, []).extend(correct_asks)
        ask_all(llm, cite_all, p.tries, p.temperature, p.retry_temperature, enforce)
        for tries, asks in correct_by_tries.items():  # greedy re-asks: the same temperature every time
            ask_all(llm, asks, tries, p.temperature, None, enforce)

        out: list[Out] = []
        for record, (scored, cite_asks, correct_asks) in zip(batch, plans):
            failed = next((a for a in cite_asks + correct_asks if a.error), None)
            if failed is not None:
                out.append(Failed(f"judge call failed: {failed.error}"))
                continue
            out.append(self._score(record, scored, cite_asks, correct_asks,
                                   lambda text: count_tokens(text, tokenizer) if tokenizer is not None
                                   else llm.count_tokens(text)))
        return out

    def _score(self, record: dict, scored: list[dict], cite_asks: list[Ask], correct_asks: list[Ask],
               length: Callable[[str], int]) -> dict:
        statement_scores: list[float] = []
        citation_scores: list[float] = []
        for entry in scored:
            if "support_ask" in entry:
                at = entry.pop("support_ask")
                value, raw = (cite_asks[at].value, cite_asks[at].raw) if at is not None else (0.0, "")
                entry["support"], entry["support_raw"] = value, raw
                statement_scores.append(value or 0.0)
                for c in entry["citation"]:
                    rel = cite_asks[c.pop("ask")]
                    c["relevant"], c["relevance_raw"] = rel.value, rel.raw
                    citation_scores.append(rel.value or 0.0)
            else:
                ask = cite_asks[entry.pop("need_ask")]
                entry["needs_citation"], entry["need_raw"] = ask.value, ask.raw
                statement_scores.append(1.0 - ask.value if ask.value is not None else 0.0)
        unparsed = sum(a.value is None for a in cite_asks)
        recall: float | None = sum(statement_scores) / len(statement_scores) if statement_scores else 0.0
        precision: float | None = sum(citation_scores) / len(citation_scores) if citation_scores else 0.0
        f1_value: float | None = f1(precision, recall)
        if unparsed and self.params.unparsed_verdicts == "exclude":
            recall = precision = f1_value = None
        correctness = None
        if correct_asks:
            correctness = max(a.value if a.value is not None else 0.5 for a in correct_asks)
        cites = [c["cite"] for st in record["statements"] for c in (st.get("citation") or [])]
        return {
            **{k: record[k] for k in ("id", "idx", "dataset", "query", "prediction") if k in record},
            "recall": recall, "precision": precision, "f1": f1_value, "correctness": correctness,
            "citation_tokens": sum(length(c) for c in cites), "n_citations": len(cites),
            "scored_statements": len(scored),
            "excluded": recall is None,
            "unparsed_verdicts": unparsed,
            "unparsed_correctness": sum(a.value is None for a in correct_asks),
            "statements": scored,
        }

    # -- aggregation -------------------------------------------------------------------------------------

    def summarize(self, records: list[dict], ctx: Context) -> dict[str, Any]:
        return aggregate(records)

    def report_data(self, records: list[dict], metrics: dict[str, Any] | None, ctx: Context) -> list[Any]:
        """Score distributions, and each judged answer in the citation viewer with the verdicts."""
        from components.report_data import MAX_EXAMPLES, columns, score_histogram
        from components.views.citations import citation_example, citation_section

        shown = list(islice(records, MAX_EXAMPLES))
        ids = {str(r.get("id", r.get("idx"))) for r in shown}
        contexts = {key: r.get("splited_context") or ""
                    for r in (getattr(ctx, "inputs", None) or {}).get("predictions", [])
                    if (key := str(r.get("id", r.get("idx")))) in ids}  # only the shown answers' documents
        examples = [citation_example(
            f"{r.get('dataset', '')} {r.get('id', r.get('idx'))}".strip(), r.get("query", ""),
            contexts.get(str(r.get("id", r.get("idx"))), ""), r.get("statements") or [],
            {k: r.get(k) for k in ("recall", "precision", "f1", "correctness", "n_citations")})
            for r in shown]
        plot = score_histogram("LongBench-Cite scores per answer",
                               columns(records, ("recall", "precision", "f1", "correctness")), low=0.0, high=1.0)
        return [plot, citation_section("judged answers: statements, citations and verdicts", examples,
                                       "A cited sentence's label is the judge's relevance verdict; a "
                                       "statement's note is its support verdict.")]

    def report(self, records: list[dict], metrics: dict[str, Any] | None, ctx: Context) -> str:
        metrics = metrics or aggregate(records)
        lines = ["### LongBench-Cite", "",
                 "| dataset | n | recall | precision | F1 | correctness | citation length |",
                 "| --- | --- | --- | --- | --- | --- | --- |"]
        for name, row in metrics["datasets"].items():
            cells = [str(row["n"]), _num(row["recall"]), _num(row["precision"]), _num(row["f1"]),
                     _num(row["correctness"]), _num(row["citation_length"], 1)]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        groups = ", ".join(metrics["avg_groups"]) or "no groups"
        average = (f"Average over {groups}: recall {_num(metrics['avg_recall'])}, precision "
                   f"{_num(metrics['avg_precision'])}, F1 {_num(metrics['avg_f1'])}, correctness "
                   f"{_num(metrics['avg_correctness'])}; citation length "
                   f"{_num(metrics['avg_citation_length'], 1)} tokens over all citations.")
        lines += ["", average, ""]
        if metrics.get("excluded"):
            lines += [f"{metrics['excluded']} response(s) left out of the citation scores: a citation "
                      "verdict never parsed.", ""]
        # show the answers that cite the most first: they are the ones whose citations can be read
        shown = sorted(records, key=lambda r: -sum(len(st["citation"]) for st in r["statements"]))
        for record in shown[:self.params.report_examples]:
            title = f"#### {record.get('dataset', '')} {record.get('idx', record.get('id', ''))}".rstrip()
            scores = (f"recall {_num(record['recall'])}, precision {_num(record['precision'])}, "
                      f"F1 {_num(record['f1'])}, correctness {_num(record['correctness'])}")
            lines += [title, "", f"**Question:** {_short(record.get('query', ''))}", "", scores, ""]
            for i, st in enumerate(record["statements"]):
                if st["citation"]:
                    support = _verdict(st.get("support"))
                    lines.append(f"{i + 1}. {_short(st['statement'])} — support: {support}")
                    for c in st["citation"]:
                        span = f"[{c.get('start_sentence_idx', '?')}-{c.get('end_sentence_idx', '?')}]"
                        lines.append(f"   - {span} relevant: {_verdict(c.get('relevant'))} — "
                                     f"\"{_short(c['cite'])}\"")
                else:
                    lines.append(f"{i + 1}. {_short(st['statement'])} — no citation; needs one: "
                                 f"{_verdict(st.get('needs_citation'))}")
            lines.append("")
        return "\n".join(lines)


def _user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def _num(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _verdict(value: float | None) -> str:
    return "unparsed" if value is None else f"{value:g}"


def _short(text: str, limit: int = 240) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"
