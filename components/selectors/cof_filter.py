"""CoF stage 4: turn sentence citations into LongCite chat SFT records and drop poorly cited ones."""

from __future__ import annotations

import re
from itertools import islice
from typing import Any, ClassVar

from pydantic import Field

from components.base import Context, Estimate, Fields, MapComponent, Out, Params
from components.decoders.longcite import LONGCITE_INSTRUCTION, USER_TEMPLATE, longcite_user_prompt
from components.report_data import MAX_EXAMPLES
from components.text import number_sentences

_RANGE = re.compile(r"\[\s*(\d+)\s*-\s*(\d+)\s*\]")


def global_spans(raw: str, chunk_sents: list[dict], max_spans: int = 3) -> list[tuple[int, int]]:
    """Local ``[s-e]`` lines of stage 3 → global sentence spans.

    Each range is clamped to the local sentences (``s = max(0, s)``, ``e = min(e, n−1)``), dropped unless
    ``s ≤ e``, and mapped through ``chunk_sents`` to global ``c_idx``; only the first ``max_spans`` count.
    """
    n = len(chunk_sents)
    spans: list[tuple[int, int]] = []
    for match in _RANGE.finditer(raw):
        s, e = max(0, int(match.group(1))), min(int(match.group(2)), n - 1)
        if s <= e:
            spans.append((chunk_sents[s]["c_idx"], chunk_sents[e]["c_idx"]))
    return spans[:max_spans]


def rebuild(statements: list[dict], max_spans: int = 3) -> tuple[str, int, int]:
    """``(answer, statements, cited statements)``: every non-blank statement becomes
    ``<statement>S<cite>[a-b]…</cite></statement>``; whitespace-only pieces stay as they are."""
    parts: list[str] = []
    total = cited = 0
    for st in statements:
        text = st["statement"]
        if not text.strip():
            parts.append(text)
            continue
        raw = st.get("citation")
        spans = global_spans(raw, st.get("chunk_sents") or [], max_spans) if isinstance(raw, str) else []
        total += 1
        cited += bool(spans)
        parts.append(f"<statement>{text}<cite>{''.join(f'[{a}-{b}]' for a, b in spans)}</cite></statement>")
    return "".join(parts).strip(), total, cited


def keep(total: int, cited: int, min_fraction: float = 0.2, min_statements: int = 5) -> str | None:
    """None to keep a record, else why it is dropped: no cited statement, or at least ``min_statements``
    statements of which fewer than ``min_fraction`` are cited."""
    if cited == 0:
        return "no_citation"
    if total >= min_statements and cited / total < min_fraction:
        return "low_cited_fraction"
    return None


class CoFFilter(MapComponent):
    """CoF stage 4 (LongCite §1.2): build the chat SFT record and filter.

    Stage-3 spans are clamped, mapped to global sentence numbers (first 3 per statement) and the answer is
    rebuilt as ``<statement>S<cite>[a-b]…</cite></statement>``. A record is dropped on purpose when no
    statement is cited, or when it has ≥5 statements and fewer than 20% are cited (exactly 20% stays);
    ``summarize`` counts the drops. Output ``{idx, messages: [user, assistant]}``; the user turn is the
    LongCite instruction (the same text ``decode.longcite`` sends), the ``<Ci>``-numbered document and the
    question.
    """

    type = "cof.filter"
    inputs: ClassVar[dict[str, Fields]] = {"sentences": Fields("query", "context", "statements")}
    outputs = Fields("messages")
    prompts: ClassVar[dict[str, str]] = {"instruction": LONGCITE_INSTRUCTION, "user": USER_TEMPLATE}
    batch_size = 16

    class Params(Params):
        max_spans: int = Field(3, ge=1, description="sentence spans kept per statement")
        min_cited_fraction: float = Field(0.2, ge=0.0, le=1.0, description=(
            "records with at least min_statements statements need this share cited"))
        min_statements: int = Field(5, ge=1, description="statement count from which the share applies")

    def estimate(self, n_in: dict[str, int | None]) -> Estimate:
        return Estimate(records_out=None)

    def decide(self, record: dict) -> tuple[str, str | None]:
        """The rebuilt answer and the drop reason (None: kept)."""
        p = self.params
        answer, total, cited = rebuild(record["statements"], p.max_spans)
        return answer, keep(total, cited, p.min_cited_fraction, p.min_statements)

    def process(self, batch: list[dict], ctx: Context) -> list[Out]:
        out: list[Out] = []
        for record in batch:
            answer, reason = self.decide(record)
            if reason is not None:
                out.append([])  # dropped on purpose; counted in summarize
                continue
            _, numbered = number_sentences(record["context"])
            messages = [{"role": "user", "content": longcite_user_prompt(numbered, record["query"])},
                        {"role": "assistant", "content": answer}]
            out.append({**{k: record[k] for k in ("id", "idx") if k in record}, "messages": messages})
        return out

    def report_data(self, records: list[dict], metrics: dict[str, Any] | None, ctx: Context) -> list[Any]:
        """The kept training records in the citation viewer (statements beside the numbered document)."""
        from components.views.citations import (
            answer_statements,
            citation_example,
            citation_section,
            document_of,
        )

        examples = []
        for r in islice(records, MAX_EXAMPLES):
            user, answer = r["messages"][0]["content"], r["messages"][-1]["content"]
            question = user.rsplit("[Document End]", 1)[-1].strip()
            examples.append(citation_example(f"record {r.get('id', r.get('idx'))}", question, document_of(user),
                                             answer_statements(answer)))
        return [citation_section("CoF training data: citations", examples)] if examples else []

    def summarize(self, records: list[dict], ctx: Context) -> dict[str, Any]:
        metrics: dict[str, Any] = {"kept": len(records)}
        inputs = (getattr(ctx, "inputs", None) or {}).get("sentences")
        if inputs is not None:
            reasons = [self.decide(r)[1] for r in inputs]
            metrics.update({
                "input_records": len(inputs),
                "dropped_no_citation": reasons.count("no_citation"),
                "dropped_low_cited_fraction": reasons.count("low_cited_fraction"),
            })
            metrics["kept_fraction"] = len(records) / len(inputs) if inputs else 0.0
        return metrics
