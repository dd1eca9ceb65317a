"""``generate.doc_quotes``: long instruction records made from documents, answer placed at a chosen depth."""

from __future__ import annotations

import re
from typing import Any, ClassVar

from pydantic import Field, field_validator

from components.base import Context, Estimate, Fields, Params, WholeComponent
from components.templates import render, template_fields

INSTRUCTION = 'Quote, word for word, the paragraph of the document above that begins with "{lead}".'

_BLANK = re.compile(r"\n[ \t]*\n")


class DocQuotesParams(Params):
    depths: list[float] = Field(
        default_factory=lambda: [0.1, 0.9],
        description="Where the quoted paragraph starts, as a share of the document (0 = start, 1 = end); one "
        "record per document and depth.",
    )
    min_words: int = Field(15, ge=1, description="Shortest paragraph (in words) that can be quoted.")
    max_words: int = Field(90, ge=1, description="Longest paragraph (in words) that can be quoted.")
    lead_words: int = Field(6, ge=1, description="Words of the paragraph's start given in the instruction.")
    instruction: str = Field(
        INSTRUCTION, description="The request after the document; `{lead}` is the paragraph's first words. It "
        "must not contain a blank line (it is the user turn's last paragraph).",
    )
    text_field: str = Field("context", description="Field of the `documents` records holding the text.")

    @field_validator("instruction")
    @classmethod
    def _one_paragraph(cls, v: str) -> str:
        if _BLANK.search(v) or "\n\n" in v:
            raise ValueError("instruction must not contain a blank line")
        if [f for f in template_fields(v) if f != "lead"]:
            raise ValueError("instruction can only use {lead}")
        return v

    @field_validator("depths")
    @classmethod
    def _depths(cls, v: list[float]) -> list[float]:
        if not v or any(not 0.0 <= d <= 1.0 for d in v):
            raise ValueError("depths must be shares in [0, 1]")
        return v


class DocQuotes(WholeComponent):
    """Builds long single-turn records that need the document: quote the paragraph that begins with given
    words.

    For each document and each depth, the prose paragraph (not indented, ``min_words``–``max_words``
    words, its first ``lead_words`` words unique in the document) whose start is nearest to that share of
    the text is chosen, each paragraph at most once per document. The user turn is the document, a blank
    line and the instruction; the assistant turn is the paragraph. A paragraph deep in the document is
    far from the question, one near the end is within reach of a short window: the records span the
    long-range dependency that GATEAU's HMG measures. Records: ``{id: "<doc id>@<depth %>", messages,
    doc, depth}`` with ``depth`` the paragraph's actual start share. Documents with no usable paragraph
    for a depth give no record for it (counted in the metrics).
    """

    type: ClassVar[str] = "generate.doc_quotes"
    Params: ClassVar[type[Params]] = DocQuotesParams
    inputs: ClassVar[dict[str, Fields]] = {"documents": Fields("id")}
    outputs: ClassVar[Fields | None] = Fields("id", "messages", "doc", "depth")

    def run(self, inputs: dict[str, list[dict]], ctx: Context) -> list[dict]:
        p: DocQuotesParams = self.params  # type: ignore[assignment]
        out: list[dict] = []
        missing = 0
        for doc in inputs.get("documents", []):
            text = str(doc.get(p.text_field) or "").strip()
            candidates = quotable_paragraphs(text, p.min_words, p.max_words, p.lead_words)
            used: set[int] = set()
            for depth in p.depths:
                free = [c for c in candidates if c[0] not in used]
                if not free:
                    missing += 1
                    continue
                start, paragraph, lead = min(free, key=lambda c: abs(c[0] - depth * len(text)))
                used.add(start)
                user = text + "\n\n" + render(p.instruction, {"lead": lead})
                out.append({
                    "id": f"{doc['id']}@{round(depth * 100)}",
                    "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": paragraph}],
                    "doc": doc["id"],
                    "depth": round(start / len(text), 4),
                })
        ctx.save_stats("doc_quotes", {"missing": missing})
        return out

    def estimate(self, n_in: dict[str, int | None]) -> Estimate:
        n = n_in.get("documents")
        return Estimate() if n is None else Estimate(records_out=n * len(self.params.depths))  # type: ignore[attr-defined]

    def summarize(self, records: list[dict], ctx: Context) -> dict[str, Any]:
        stats = ctx.load_stats("doc_quotes") or {}
        depths = [r["depth"] for r in records]
        return {"n": len(records), "missing": stats.get("missing", 0),
                "mean_depth": sum(depths) / len(depths) if depths else None}


def quotable_paragraphs(text: str, min_words: int, max_words: int, lead_words: int) -> list[tuple[int, str, str]]:
    """``(start offset, paragraph, lead)`` of the prose paragraphs of ``text`` that can be quoted: not
    indented (code, grammar), ``min_words``–``max_words`` words, a lead of ``lead_words`` words that no other
    paragraph starts with.

    >>> quotable_paragraphs("Title\\n\\none two three four\\n\\n   code here and there\\n\\nfive six seven", 3, 4, 2)
    [(7, 'one two three four', 'one two'), (51, 'five six seven', 'five six')]
    """
    found = []
    pos = 0
    for piece in _BLANK.split(text):
        start = text.index(piece, pos) if piece else pos
        pos = start + len(piece)
        words = piece.split()
        if not words or piece[:1].isspace() or not min_words <= len(words) <= max_words:
            continue
        found.append((start, piece.strip(), " ".join(words[:lead_words])))
    leads = [lead for _, _, lead in found]
    return [c for c in found if leads.count(c[2]) == 1]
