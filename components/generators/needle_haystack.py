"""Needle-in-a-haystack prompts over a length × depth grid (LongAlign)."""

from __future__ import annotations

import bisect
import glob
import re
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from components.base import Context, Estimate, Fields, ModelSlot, Params, WholeComponent
from components.templates import render, template_fields

# A sentence ends at '.', '!' or '?' (maybe followed by closing quotes/brackets) plus whitespace, or at a
# blank line (headings, list items). A single newline is not enough: hard-wrapped text breaks lines
# mid-sentence.
_SENTENCE_END = re.compile(r"[.!?][\"')\]]*\s+|\n[ \t]*\n\s*")
_GLOB_CHARS = re.compile(r"[*?\[]")
_PIECES = re.compile(r"\S+\s*|\s+")

NEEDLE = (
    "\nThe most enjoyable thing to do in San Francisco is eating a sandwich while sitting in Dolores Park "
    "on a sunny day.\n"
)
QUESTION = "What is the most enjoyable thing to do in San Francisco?"
QUESTION_SUFFIX = " Reply with the sentence from the document that answers this."
SYSTEM = (
    "You are a helpful assistant who answers questions about a document. Keep the answer short and direct."
)
USER = "{context}\n\nRead the document above and answer this question: {question}"


class Linspace(BaseModel):
    """`num` evenly spaced values from `start` to `stop` (both included), rounded to whole numbers."""

    model_config = ConfigDict(extra="forbid")

    start: float = Field(description="First value.")
    stop: float = Field(description="Last value.")
    num: int = Field(ge=1, description="How many values.")

    def values(self) -> list[int]:
        if self.num == 1:
            return [round(self.start)]
        step = (self.stop - self.start) / (self.num - 1)
        return [round(self.start + i * step) for i in range(self.num)]


class NeedleParams(Params):
    lengths: list[int] | Linspace = Field(
        default_factory=lambda: Linspace(start=512, stop=6000, num=5),
        description="Prompt lengths in tokens of the target model: a list, or {start, stop, num} for evenly "
        "spaced values (the reference: start 1000, stop 60000, num 10).",
    )
    depths: list[float] | Linspace = Field(
        default_factory=lambda: Linspace(start=0, stop=100, num=5),
        description="Needle depths in percent of the context (0 = start, 100 = end): a list, or "
        "{start, stop, num} (the reference: start 10, stop 90, num 10).",
    )
    haystack_files: list[str] = Field(
        default_factory=list,
        description="Text files or glob patterns for the haystack, read in sorted order and repeated until "
        "long enough. Relative paths are relative to the recipe file. Default (no files and no `documents` "
        "input): the CPython documentation topics shipped with Python (`pydoc_data.topics`).",
        json_schema_extra={"path": True},
    )
    text_field: str = Field("text", description="Field of the `documents` input records that holds the text.")
    separator: str = Field("\n\n", description="Text put between haystack documents.")
    buffer_tokens: int = Field(
        200,
        ge=0,
        description="Tokens kept free below each length for the question and template (reference: 200).",
    )
    needle: str = Field(
        NEEDLE, description="The sentence hidden in the haystack; also the judge's reference answer."
    )
    question: str = Field(QUESTION, description="The question the needle answers (what the judge sees).")
    question_suffix: str = Field(QUESTION_SUFFIX, description="Appended to the question in the prompt only.")
    system_prompt: str = Field(SYSTEM, description="System instruction of the prompt.")
    user_template: str = Field(USER, description="User turn; must contain {context} and {question}.")
    join_system: bool = Field(
        True,
        description="Send system + newline + user as a single user turn, as the reference's pred.py does; "
        "off sends a separate system message.",
    )

    @field_validator("depths")
    @classmethod
    def _depth_range(cls, v: list[float] | Linspace) -> list[float] | Linspace:
        values = v.values() if isinstance(v, Linspace) else v
        if any(not 0 <= d <= 100 for d in values):
            raise ValueError("depths must lie in [0, 100] (percent)")
        return v

    @field_validator("lengths")
    @classmethod
    def _positive(cls, v: list[int] | Linspace) -> list[int] | Linspace:
        values = v.values() if isinstance(v, Linspace) else v
        if not values or any(n < 1 for n in values):
            raise ValueError("lengths must be positive token counts")
        return v

    @field_validator("user_template")
    @classmethod
    def _placeholders(cls, v: str) -> str:
        fields = template_fields(v)
        for name in ("context", "question"):
            if name not in fields:
                raise ValueError(f"user_template must contain {{{name}}}")
        extra = [f"{{{n}}}" for n in fields if n not in ("context", "question")]
        if extra:
            raise ValueError(f"user_template can only use {{context}} and {{question}}, not {', '.join(extra)}")
        return v


class NeedleHaystack(WholeComponent):
    """Builds needle-in-a-haystack prompts: one per (length, depth) of the grid.

    Follows LongAlign's needle test. The haystack (text files, the `documents` input, or
    by default the CPython documentation topics) is repeated until it is long enough and tokenized with the
    target model's tokenizer. For each length L it is cut to `L - buffer_tokens - len(needle)` tokens. The
    insertion point at depth d is token `int(n·d/100)`. From there the needle moves back to the nearest
    sentence boundary in the decoded text: the end of a sentence ('.', '!' or '?' followed by whitespace)
    or a blank line. A single newline does not count, because hard-wrapped text (the essays, the Python
    docs) breaks lines inside sentences. When no boundary lies before the point (small depths), the needle
    moves forward to the next one. Only depth 0 puts it at the very start.

    The reference code looks for a hard-coded ChatGLM period token (id 30930). With any other tokenizer
    it walks back to position 0, so the needle starts every prompt (spec pitfall §9.3). That bug is not
    reproduced. When the text has no sentence boundary at all, the needle goes to the whitespace before
    the insertion point.

    Output records carry `messages` for a chat generation stage, `needle_char_pos` (the needle's character
    offset in the context text) and `context_tokens` (the context's token count with the needle).
    """

    type: ClassVar[str] = "generate.needle_haystack"
    Params: ClassVar[type[Params]] = NeedleParams
    # documents are optional: without them the haystack comes from files or the built-in topics. Their
    # text field is a param (`text_field`), so the port requires no fixed field.
    inputs: ClassVar[dict[str, Fields]] = {"documents": Fields()}
    optional_inputs: ClassVar[frozenset[str]] = frozenset({"documents"})
    outputs: ClassVar[Fields | None] = Fields(
        "id", "length", "depth", "needle", "question", "messages", "needle_char_pos", "context_tokens"
    )
    models: ClassVar[dict[str, ModelSlot]] = {
        "model": ModelSlot("chat", doc="the model under test; its tokenizer measures lengths and depths")
    }
    prompts: ClassVar[dict[str, str]] = {
        "system": SYSTEM,
        "user": USER,
        "needle": NEEDLE,
        "question": QUESTION,
    }

    def prompt_texts(self) -> dict[str, str]:
        p: NeedleParams = self.params  # type: ignore[assignment]
        return {
            "system": p.system_prompt,
            "user": p.user_template,
            "needle": p.needle,
            "question": p.question + p.question_suffix,
        }

    def grid(self) -> tuple[list[int], list[float]]:
        p: NeedleParams = self.params  # type: ignore[assignment]
        lengths = p.lengths.values() if isinstance(p.lengths, Linspace) else list(p.lengths)
        depths = p.depths.values() if isinstance(p.depths, Linspace) else list(p.depths)
        return [int(n) for n in lengths], depths

    def run(self, inputs: dict[str, list[dict]], ctx: Context) -> list[dict]:
        p: NeedleParams = self.params  # type: ignore[assignment]
        lengths, depths = self.grid()
        tok = model_tokenizer(ctx.model())
        needle_tokens = len(encode(tok, p.needle))
        shortest = min(lengths)
        if shortest - p.buffer_tokens - needle_tokens < 1:
            raise ValueError(
                f"length {shortest} leaves no room for a haystack: the buffer takes {p.buffer_tokens} tokens "
                "and "
                f"the needle {needle_tokens}"
            )
        haystack = haystack_ids(self._documents(inputs), tok, max(lengths), p.separator)
        out = []
        for length in lengths:
            n_ctx = length - p.buffer_tokens - needle_tokens
            ids = haystack[:n_ctx]
            text = decode(tok, ids)
            bounds = sentence_boundaries(text)
            for depth in depths:
                target = char_offset(tok, ids, text, int(n_ctx * depth / 100))
                pos = insertion_point(text, target, depth, bounds)
                context = text[:pos] + p.needle + text[pos:]
                out.append(self._record(length, depth, context, pos, len(encode(tok, context)), len(text)))
                ctx.advance(1, len(lengths) * len(depths))
        return out

    def _record(self, length: int, depth: float, context: str, pos: int, n_tokens: int, n_chars: int) -> dict:
        p: NeedleParams = self.params  # type: ignore[assignment]
        user = render(p.user_template, {"context": context, "question": p.question + p.question_suffix})
        if p.join_system:
            messages = [{"role": "user", "content": p.system_prompt + "\n" + user}]
        else:
            messages = [{"role": "system", "content": p.system_prompt}, {"role": "user", "content": user}]
        return {
            "id": f"needle-{length}-{depth:g}",
            "length": length,
            "depth": depth,
            "needle": p.needle,
            "question": p.question,
            "messages": messages,
            "needle_char_pos": pos,
            "needle_depth_actual": round(100.0 * pos / n_chars, 2) if n_chars else 0.0,
            "context_tokens": n_tokens,
        }

    def _documents(self, inputs: dict[str, list[dict]]) -> list[str]:
        p: NeedleParams = self.params  # type: ignore[assignment]
        if inputs.get("documents"):
            docs = [str(r[p.text_field]) for r in inputs["documents"]]
        elif p.haystack_files:
            docs = [
                path.read_text(encoding="utf-8", errors="replace") for path in expand_files(p.haystack_files)
            ]
        else:
            from pydoc_data.topics import topics

            docs = [topics[k] for k in sorted(topics)]
        docs = [d for d in docs if d.strip()]
        if not docs:
            raise ValueError("the haystack is empty: no text in the given documents or files")
        return docs

    def estimate(self, n_in: dict[str, int | None]) -> Estimate:
        lengths, depths = self.grid()
        return Estimate(records_out=len(lengths) * len(depths))


class WhitespaceTokenizer:
    """Fallback tokenizer: one token per word with its trailing whitespace; decoding gives the text back."""

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}
        self._pieces: list[str] = []

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        out = []
        for piece in _PIECES.findall(text):
            if piece not in self._ids:
                self._ids[piece] = len(self._pieces)
                self._pieces.append(piece)
            out.append(self._ids[piece])
        return out

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return "".join(self._pieces[i] for i in ids)


def model_tokenizer(llm: Any) -> Any:
    """The model's tokenizer when the backend knows one, else a `WhitespaceTokenizer`."""
    tok = llm.tokenizer()
    return tok if tok is not None else WhitespaceTokenizer()


def encode(tokenizer: Any, text: str) -> list[int]:
    """Token ids without special tokens (HF tokenizers return a list, `tokenizers` an Encoding)."""
    out = tokenizer.encode(text, add_special_tokens=False)
    return list(getattr(out, "ids", out))


def decode(tokenizer: Any, ids: list[int]) -> str:
    return tokenizer.decode(list(ids), skip_special_tokens=True)


def expand_files(patterns: list[str]) -> list[Path]:
    """Files named by paths or glob patterns; each pattern's matches sorted (glob order varies by system)."""
    files: list[Path] = []
    for pattern in patterns:
        if _GLOB_CHARS.search(pattern):
            matches = sorted(glob.glob(pattern))
            if not matches:
                raise FileNotFoundError(f"no haystack file matches {pattern}")
            files += [Path(m) for m in matches]
        else:
            if not Path(pattern).is_file():
                raise FileNotFoundError(f"haystack file not found: {pattern}")
            files.append(Path(pattern))
    return files


def haystack_ids(docs: list[str], tokenizer: Any, need: int, separator: str = "\n\n") -> list[int]:
    """Token ids of the documents joined (repeated from the start as needed), at least `need` long."""
    chosen: list[str] = []
    count, i = 0, 0
    while True:
        while count < need:  # per-document counts approximate the joined text's count
            doc = docs[i % len(docs)]
            chosen.append(doc)
            count += len(encode(tokenizer, doc + separator))
            i += 1
        ids = encode(tokenizer, separator.join(chosen))
        if len(ids) >= need:
            return ids
        count = len(ids)


def sentence_boundaries(text: str) -> list[int]:
    """Character offsets where a sentence starts (after '.', '!', '?' + whitespace, or after a blank line)."""
    return sorted({m.end() for m in _SENTENCE_END.finditer(text) if m.end() < len(text)})


def char_offset(tokenizer: Any, ids: list[int], text: str, n_tokens: int) -> int:
    """Where the first `n_tokens` tokens end in `text`, the decoded `ids`.

    Decoding a prefix can differ from the start of the full decoding at the cut (a byte-level token split
    inside a character, spacing rules), so the common prefix decides.
    """
    if n_tokens <= 0:
        return 0
    if n_tokens >= len(ids):
        return len(text)
    prefix = decode(tokenizer, ids[:n_tokens])
    n = 0
    for a, b in zip(prefix, text):
        if a != b:
            break
        n += 1
    return n


def insertion_point(text: str, target: int, depth: float, bounds: list[int]) -> int:
    """The sentence boundary at or before `target`; the next one when none precedes it (depth > 0)."""
    if depth <= 0:
        return 0
    if depth >= 100 or target >= len(text):
        return len(text)
    k = bisect.bisect_right(bounds, target)
    if k > 0:
        return bounds[k - 1]
    if bounds:
        return bounds[0]
    space = text.rfind(" ", 0, target)  # no sentence boundary at all: at least do not split a word
    return space + 1 if space >= 0 else target
