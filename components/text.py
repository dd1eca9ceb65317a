"""Text building blocks shared by the methods: sentences, token chunks, truncation, language, verdict
parsing and LongCite's ``<statement>``/``<cite>`` markup.

Sentences (``split_sentences``) follow the LongCite/LongReward reference: nltk Punkt, then a second cut
after the Chinese end marks ``。；！？`` (the mark stays with the sentence it ends), empty pieces dropped, a
fallback to blank-line paragraphs when everything came out as one piece, pieces stripped and located in
the text by a forward search::

    >>> [s["content"] for s in split_sentences("It rained. We stayed in.")]
    ['It rained.', 'We stayed in.']

Tokenizers: every function that takes ``tokenizer`` accepts a Hugging Face tokenizer, a raw
``tokenizers.Tokenizer`` or ``None``. ``None`` means the whitespace fallback: a token is a run of
non-space characters, and the whitespace after it belongs to it (so decoding a window of tokens gives the
exact text it came from).
"""

from __future__ import annotations

import re
from typing import Any

_CJK_END = re.compile(r"(?<=[。；！？])")
_CJK_CHAR = re.compile(r"[\u4e00-\u9fff]")
_LATIN_CHAR = re.compile(r"[A-Za-z]")
_WORD = re.compile(r"\S+\s*")


# ----------------------------------------------------------------------------------------------------------
# sentences


def _punkt_pieces(text: str, trained: bool) -> list[str]:
    from nltk.tokenize.punkt import PunktSentenceTokenizer

    # Untrained Punkt needs no downloaded data; the trained variant learns abbreviations from the text.
    punkt = PunktSentenceTokenizer(text) if trained else PunktSentenceTokenizer()
    return punkt.tokenize(text)


def split_sentences(text: str, trained: bool = False) -> list[dict]:
    """Split ``text`` into sentences ``{c_idx, content, start_idx, end_idx}``.

    ``content`` is the stripped sentence and ``text[start_idx:end_idx] == content``.
    ``trained=False`` is the CoF / LongBench-Cite variant (an untrained ``PunktSentenceTokenizer()``);
    ``trained=True`` trains Punkt on ``text`` itself, as LongCite's ``vllm_inference.py`` and LongReward do.
    """
    if not text.strip():
        return []
    pieces: list[str] = []
    for piece in _punkt_pieces(text, trained):
        pieces.extend(p for p in _CJK_END.split(piece) if p)
    if len(pieces) == 1:
        pieces = text.split("\n\n")
    pieces = [p.strip() for p in pieces if p.strip()]

    sentences: list[dict] = []
    pos = 0
    for piece in pieces:
        start = text.find(piece, pos)
        if start < 0:  # cannot happen for substrings; kept as a guard against odd whitespace handling
            start = text.find(piece)
            if start < 0:
                continue
        end = start + len(piece)
        sentences.append({"c_idx": len(sentences), "content": piece, "start_idx": start, "end_idx": end})
        pos = end
    return sentences


def number_sentences(context: str, trained: bool = False) -> tuple[list[dict], str]:
    """LongCite's sentence-as-chunk view of ``context``: ``(chunks, prompt_text)``.

    Chunk i is ``context[start_i:start_{i+1}]``: the sentence plus the whitespace up to the next one
    (pitfall: the trailing whitespace is part of the sentence). As in the reference, the first chunk
    starts where its sentence starts (whitespace before it is in no chunk) and the last ends at
    ``len(context)``, so the chunks tile the context from the first sentence on. ``prompt_text`` is
    ``"<C0>…<C1>…"``.

    >>> chunks, prompt = number_sentences("A cat. A dog.")
    >>> prompt
    '<C0>A cat. <C1>A dog.'
    """
    chunks = sentence_tiles(context, split_sentences(context, trained=trained))
    prompt = "".join(f"<C{c['c_idx']}>{c['content']}" for c in chunks)
    return chunks, prompt


def sentence_tiles(context: str, sentences: list[dict]) -> list[dict]:
    """The pieces of ``number_sentences`` for sentences already split from ``context``."""
    tiles: list[dict] = []
    for i, sent in enumerate(sentences):
        start = sent["start_idx"]
        end = sentences[i + 1]["start_idx"] if i + 1 < len(sentences) else len(context)
        tiles.append({"c_idx": sent["c_idx"], "content": context[start:end], "start_idx": start,
                      "end_idx": end})
    return tiles


# ----------------------------------------------------------------------------------------------------------
# tokens


def _token_spans(text: str, tokenizer: Any) -> tuple[list[int] | None, list[tuple[int, int]] | None]:
    """Token ids and character spans of ``text`` (without special tokens); either may be None."""
    if tokenizer is None:
        return None, [(m.start(), m.end()) for m in _WORD.finditer(text)]
    if getattr(tokenizer, "is_fast", False):  # Hugging Face fast tokenizers report offsets
        mapped = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return list(mapped["input_ids"]), [tuple(o) for o in mapped["offset_mapping"]]
    encoded = tokenizer.encode(text, add_special_tokens=False)
    if hasattr(encoded, "ids"):  # a raw ``tokenizers.Tokenizer``
        return list(encoded.ids), [tuple(o) for o in encoded.offsets]
    return list(encoded), None  # slow tokenizers: ids only


def decode_tokens(tokenizer: Any, ids: list[int]) -> str:
    """Decode ids without special tokens (HF and raw ``tokenizers`` both take this keyword)."""
    return tokenizer.decode(ids, skip_special_tokens=True)


def count_tokens(text: str, tokenizer: Any) -> int:
    """Number of tokens of ``text`` (whitespace words when ``tokenizer`` is None)."""
    ids, spans = _token_spans(text, tokenizer)
    return len(ids) if ids is not None else len(spans or [])


def token_chunks(text: str, tokenizer: Any = None, size: int = 128) -> list[dict]:
    """Cut ``text`` into consecutive windows of ``size`` tokens (no overlap).

    Each chunk: ``{c_idx, content, start_idx, end_idx, total_token, token_ids, char_start, char_end}``
    with ``start_idx``/``end_idx`` token offsets. When the tokenizer reports character offsets (fast
    tokenizers, the whitespace fallback) the chunks' character spans tile the text and ``content`` is that
    exact slice; otherwise ``content`` is the decoded window and ``char_start``/``char_end`` are None.
    ``token_ids`` is None for the whitespace fallback.
    """
    if size < 1:
        raise ValueError("chunk size must be at least 1 token")
    ids, spans = _token_spans(text, tokenizer)
    total = len(ids) if ids is not None else len(spans or [])
    chunks: list[dict] = []
    for c_idx, lo in enumerate(range(0, total, size)):
        hi = min(lo + size, total)
        chunk = {"c_idx": c_idx, "content": "", "start_idx": lo, "end_idx": hi, "total_token": total,
                 "token_ids": ids[lo:hi] if ids is not None else None, "char_start": None, "char_end": None}
        if spans is not None:
            chunk["char_start"] = 0 if c_idx == 0 else spans[lo][0]
        else:
            chunk["content"] = decode_tokens(tokenizer, ids[lo:hi])
        chunks.append(chunk)
    if spans is not None:
        for i, chunk in enumerate(chunks):
            end = chunks[i + 1]["char_start"] if i + 1 < len(chunks) else len(text)
            chunk["char_end"] = max(end, chunk["char_start"])
            chunk["content"] = text[chunk["char_start"]:chunk["char_end"]]
    return chunks


def truncate_middle(text: str, tokenizer: Any, max_tokens: int) -> str:
    """Keep the first and last ``max_tokens // 2`` tokens of ``text`` when it is longer than ``max_tokens``.

    Long-context evaluation convention: the instruction at the start and the question at the end survive,
    the middle of the document goes.
    """
    ids, spans = _token_spans(text, tokenizer)
    total = len(ids) if ids is not None else len(spans or [])
    if total <= max_tokens:
        return text
    half = max_tokens // 2
    if ids is None:  # whitespace fallback: slice the text itself
        head = text[:spans[half - 1][1]] if half > 0 else ""
        tail = text[spans[total - half][0]:] if half > 0 else ""
        return head + tail
    head = decode_tokens(tokenizer, ids[:half]) if half > 0 else ""
    tail = decode_tokens(tokenizer, ids[total - half:]) if half > 0 else ""
    return head + tail


# ----------------------------------------------------------------------------------------------------------
# language and verdicts


def detect_language(text: str) -> str:
    """``"en"`` when Latin letters outnumber four times the CJK ideographs (U+4E00–U+9FFF), else ``"zh"``."""
    cjk = len(_CJK_CHAR.findall(text))
    latin = len(_LATIN_CHAR.findall(text))
    return "en" if latin > 4 * cjk else "zh"


_LABEL = re.compile(r"\[\[([ /a-zA-Z]+)\]\]")
_BRACKETED = re.compile(r"\[\[([^\]]+)\]\]")
_NUMBER = re.compile(r"\d+\.\d+|\d+")


def first_bracket_label(text: str) -> str | None:
    """The first ``[[Label]]`` (letters, spaces, slashes) in ``text``, stripped; None if absent."""
    match = _LABEL.search(text)
    return match.group(1).strip() if match else None


def last_bracket_label(text: str) -> str | None:
    """The last ``[[Label]]`` in ``text``, stripped; None if absent."""
    matches = _LABEL.findall(text)
    return matches[-1].strip() if matches else None


def last_bracket_number(text: str) -> float | None:
    """The first number inside the last ``[[…]]`` of ``text`` (``"[[7]]"`` → 7.0); None if absent."""
    matches = _BRACKETED.findall(text)
    if not matches:
        return None
    number = _NUMBER.search(matches[-1])
    return float(number.group()) if number else None


# ----------------------------------------------------------------------------------------------------------
# <statement>…<cite>…</cite></statement> markup (LongCite)

_TAG_SPACES = re.compile(r"<\s*(/?)\s*(statement|cite)\s*>")
_OPEN_STATEMENT_JUNK = re.compile(r"<statement[\s,]+>?")
_MISSING_LT = re.compile(r"(?<![<\w/])(/?)(statement|cite)>")
_MISSING_LT_CLOSE = re.compile(r"(?<![<\w])/(statement|cite)>")
_DOUBLED = re.compile(r"(</?(?:statement|cite)>)(?:\s*\1)+")
_STRAY_CITE = re.compile(r"<cite>.*?(?:</cite>|$)", re.DOTALL)
_ANY_TAG = re.compile(r"</?(?:statement|cite)>")


def repair_tags(text: str) -> str:
    """Fix the tag mistakes models make: ``< cite>``, ``<statement,``/``<statement `` for ``<statement>``,
    a missing ``<`` (``statement>``), and the same tag written twice in a row."""
    text = _TAG_SPACES.sub(r"<\1\2>", text)
    text = _OPEN_STATEMENT_JUNK.sub("<statement>", text)
    text = _MISSING_LT_CLOSE.sub(r"</\1>", text)
    text = _MISSING_LT.sub(r"<\1\2>", text)
    return _DOUBLED.sub(r"\1", text)


def statement_segments(text: str, min_untagged_chars: int = 5) -> list[dict]:
    """Cut (already repaired) model output into ordered segments ``{kind, text, cite}``.

    * ``statement``: the text of a ``<statement>`` before its first ``<cite>`` (stripped, non-blank);
      ``cite`` is everything inside its ``<cite>…</cite>`` blocks, joined. A missing closing tag runs to
      the next ``<statement>`` or the end.
    * ``untagged``: text outside statements whose stripped length is more than ``min_untagged_chars``
      (an uncited statement; stray cite blocks in it are removed, citations outside a statement belong to
      nothing); ``cite`` is None.
    * ``space``: whitespace between statements, kept so a rebuilt answer keeps its paragraphs.
    """
    segments: list[dict] = []

    def outside(chunk: str) -> None:
        chunk = _ANY_TAG.sub("", _STRAY_CITE.sub("", chunk))
        core = chunk.strip()
        lead = chunk[: len(chunk) - len(chunk.lstrip())]
        trail = chunk[len(chunk.rstrip()):] if core else ""
        if len(core) > min_untagged_chars:
            if lead:
                segments.append({"kind": "space", "text": lead, "cite": None})
            segments.append({"kind": "untagged", "text": core, "cite": None})
            if trail:
                segments.append({"kind": "space", "text": trail, "cite": None})
        elif lead + trail:
            segments.append({"kind": "space", "text": lead + trail, "cite": None})

    pos = 0
    while True:
        open_at = text.find("<statement>", pos)
        if open_at < 0:
            outside(text[pos:])
            break
        outside(text[pos:open_at])
        body_start = open_at + len("<statement>")
        close_at = text.find("</statement>", body_start)
        next_open = text.find("<statement>", body_start)
        if close_at < 0 or (0 <= next_open < close_at):
            body_end = next_open if next_open >= 0 else len(text)
            pos = body_end
        else:
            body_end = close_at
            pos = close_at + len("</statement>")
        body = text[body_start:body_end]
        cite_at = body.find("<cite>")
        words = (body if cite_at < 0 else body[:cite_at]).strip()
        words = _ANY_TAG.sub("", words).strip()
        cites = re.findall(r"<cite>(.*?)(?:</cite>|$)", body, re.DOTALL) if cite_at >= 0 else []
        if words:
            segments.append({"kind": "statement", "text": words, "cite": "".join(cites)})
    return segments


def strip_tags(text: str) -> str:
    """The answer without citation markup: ``<cite>…</cite>`` blocks and statement tags removed."""
    return _ANY_TAG.sub("", _STRAY_CITE.sub("", text))
