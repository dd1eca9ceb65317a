"""Chat records → ``{id, input_ids, labels}`` with the model's own chat template (LongAlign §2.2).

The reference writes a fixed per-family template with marker tokens around each answer. Here the model's
chat template renders the conversation, and the answer spans are found by rendering growing prefixes:
assistant turn i covers the characters between the rendering of ``messages[:i]`` with the generation
prompt and the rendering of ``messages[:i+1]`` (so the template's end-of-turn marker is learned too). The
character spans are mapped to tokens through the fast tokenizer's offsets (or, for slow tokenizers, by
counting the tokens of each prefix).

As in the reference, each conversation is cut to an even number of turns (a leading system message is
kept aside), zero-width characters (U+200B/C/D, U+FEFF) are removed from assistant turns, empty
answers carry no loss, long rows are truncated on the right to ``max_length`` tokens, and rows left
without any target token are dropped (counted in the metrics).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from components.base import Context, Fields, ModelSlot, Params, WholeComponent
from components.loaders.sharegpt import normalise_conversation
from components.trainers.span_mask import passage_char_spans

if TYPE_CHECKING:
    from registry.resolved import ResolvedModel

IGNORE_INDEX = -100
ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\ufeff"))
STATS_NAME = "tokenize"  # the counts of a run, kept through the context's side-statistics channel


@dataclass
class TokenizeStats:
    """What happened to the input rows."""

    rows_in: int = 0
    rows_out: int = 0
    invalid: int = 0  # no usable messages / conversations
    dropped_no_target: int = 0  # no assistant token left (empty answers, or all cut by max_length)
    truncated: int = 0
    tokens: int = 0
    target_tokens: int = 0


def load_tokenizer(source: ResolvedModel, chat_template: str | None = None):
    """The base model's tokenizer (through the one model-folder loader); ``chat_template`` (or the zoo
    entry's) replaces its own template."""
    from registry.model_folder import load_tokenizer as load_folder_tokenizer

    if source.path is None:
        raise ValueError(f"model {source.name!r} has no local files to load a tokenizer from")
    tok = load_folder_tokenizer(source)
    template = chat_template or source.chat_template
    if template:
        tok.chat_template = template
    if not getattr(tok, "chat_template", None):
        raise ValueError(f"model {source.name!r} has no chat template; set the chat_template param")
    return tok


def prepare_messages(messages: Sequence[dict]) -> list[dict]:
    """Leading system messages kept, the rest cut to an even number of turns, zero-width chars removed
    from assistant turns."""
    n_system = 0
    while n_system < len(messages) and messages[n_system]["role"] == "system":
        n_system += 1
    turns = list(messages[n_system:])
    turns = turns[: len(turns) // 2 * 2]
    out = [dict(m) for m in messages[:n_system]]
    for m in turns:
        if m["role"] == "assistant":
            m = {**m, "content": m["content"].translate(ZERO_WIDTH)}
        out.append(dict(m))
    return out


def assistant_char_spans(
    render: Callable[[list[dict], bool], str], messages: list[dict]
) -> tuple[str, list[tuple[int, int]]]:
    """The full rendering and the character span of each non-empty assistant turn in it.

    ``render(messages, add_generation_prompt)`` renders a conversation to text. A span starts where the
    prefix before the turn (with the generation prompt) stops matching the full text, and ends where the
    prefix including the turn does.
    """
    full = render(messages, False)
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant" or not m["content"].strip():
            continue
        before = _render_or_empty(render, messages[:i], True)
        upto = render(messages[: i + 1], False)
        start, end = _common_prefix(before, full), _common_prefix(upto, full)
        if end > start:
            spans.append((start, end))
    return full, spans


def tokenize_messages(
    tokenizer: Any, messages: list[dict], max_length: int, mask: MaskSpans | None = None
) -> tuple[list[int], list[int], bool]:
    """``(input_ids, labels, truncated)``; labels are -100 outside the assistant turns and inside the
    ``mask`` spans (``components.trainers.span_mask``)."""

    def render(msgs: list[dict], gen: bool) -> str:
        return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen)

    text, spans = assistant_char_spans(render, messages)
    masked = passage_char_spans(text, mask.pairs, whole=mask.whole) if mask is not None else []
    ids, token_spans = _token_spans(tokenizer, text, spans + masked)
    labels = [IGNORE_INDEX] * len(ids)
    for a, b in token_spans[: len(spans)]:
        labels[a:b] = ids[a:b]
    for a, b in token_spans[len(spans):]:
        labels[a:b] = [IGNORE_INDEX] * (b - a)
    truncated = len(ids) > max_length
    return ids[:max_length], labels[:max_length], truncated


@dataclass(frozen=True)
class MaskSpans:
    """Marker pairs whose inner text is masked from the loss; ``whole``: one span from the first opening
    to the last closing marker (the Self-RAG reference)."""

    pairs: tuple[tuple[str, str], ...]
    whole: bool = False


def tokenize_records(
    records: Sequence[dict], tokenizer: Any, max_length: int, advance: Callable[[int], None] | None = None,
    mask: MaskSpans | None = None,
) -> tuple[list[dict], TokenizeStats]:
    """Tokenize chat records (``messages`` or ShareGPT ``conversations``); see the module docstring.

    A record without a usable conversation, or one the chat template refuses to render, counts as invalid.
    """
    from jinja2 import TemplateError

    stats = TokenizeStats(rows_in=len(records))
    out = []
    for n, rec in enumerate(records):
        if advance is not None:
            advance(1)
        messages, problem = normalise_conversation(rec, drop_empty_assistant=False)
        if problem:
            stats.invalid += 1
            continue
        try:
            ids, labels, truncated = tokenize_messages(tokenizer, prepare_messages(messages), max_length, mask)
        except TemplateError:
            stats.invalid += 1
            continue
        targets = sum(1 for lab in labels[1:] if lab != IGNORE_INDEX)
        if targets == 0:
            stats.dropped_no_target += 1
            continue
        stats.truncated += truncated
        stats.tokens += len(ids)
        stats.target_tokens += targets
        row = {"id": rec.get("id", rec.get("idx", f"row-{n}")), "input_ids": ids, "labels": labels}
        if "idx" in rec:
            row["idx"] = rec["idx"]
        out.append(row)
    stats.rows_out = len(out)
    return out, stats


class TokenizeParams(Params):
    max_length: int = Field(
        8192,
        ge=2,
        description="Rows longer than this many tokens are cut on the right "
        "(the reference truncates to its 64k window the same way).",
    )
    chat_template: str | None = Field(
        None,
        description="Jinja chat template used instead of the model's own "
        "(and instead of the zoo entry's); needed for base models without one.",
    )


class Tokenize(WholeComponent):
    """Turns chat records into token ids and loss labels with the base model's chat template.

    Follows LongAlign's pre-tokenization: even number of turns, zero-width characters
    removed from answers, loss only on assistant tokens, right truncation, rows without targets dropped.
    The reference's ``--datanum`` bug (the data-size switch is ignored) has no counterpart here: the stage
    tokenizes exactly the records it is given. Records with neither ``messages`` nor ``conversations`` are
    counted as invalid in the metrics.
    """

    type: ClassVar[str] = "data.tokenize"
    Params: ClassVar[type[Params]] = TokenizeParams
    inputs: ClassVar[dict[str, Fields]] = {"records": Fields()}
    outputs: ClassVar[Fields | None] = Fields("id", "input_ids", "labels")
    models: ClassVar[dict[str, ModelSlot]] = {
        "base": ModelSlot(kind="weights", doc="the model whose tokenizer and chat template are used"),
    }

    def run(self, inputs: dict[str, list[dict]], ctx: Context) -> list[dict]:
        p: TokenizeParams = self.params  # type: ignore[assignment]
        records = [r for port in inputs.values() for r in port]
        tok = load_tokenizer(ctx.model_source("base"), p.chat_template)
        out, stats = tokenize_records(records, tok, p.max_length, lambda n: ctx.advance(n, len(records)))
        ctx.save_stats(STATS_NAME, asdict(stats))
        ctx.log.info(
            "data.tokenize: %d of %d rows kept (%d without target, %d invalid, %d truncated)",
            stats.rows_out,
            stats.rows_in,
            stats.dropped_no_target,
            stats.invalid,
            stats.truncated,
        )
        return out

    def summarize(self, records: list[dict], ctx: Context) -> dict[str, Any]:
        saved = ctx.load_stats(STATS_NAME)
        if saved is not None:
            return saved
        return {
            "rows_out": len(records),
            "tokens": sum(len(r["input_ids"]) for r in records),
            "target_tokens": sum(sum(1 for lab in r["labels"][1:] if lab != IGNORE_INDEX) for r in records),
        }


def _render_or_empty(render: Callable[[list[dict], bool], str], messages: list[dict], gen: bool) -> str:
    if not messages:
        from jinja2 import TemplateError

        try:
            return render(messages, gen)
        except (
            TemplateError,
            IndexError,
            KeyError,
            TypeError,
            ValueError,
        ):  # templates may refuse an empty chat
            return ""
    return render(messages, gen)


def _common_prefix(a: str, b: str) -> int:
    if b.startswith(a):  # the usual case: the template renders prefixes stably
        return len(a)
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _token_spans(
    tokenizer: Any, text: str, spans: list[tuple[int, int]]
) -> tuple[list[int], list[tuple[int, int]]]:
    """Token ids of ``text`` (no special tokens added: the template has them) and the token ranges of the
    character ``spans``: a token belongs to a span when its first character does."""
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        starts = [s for s, _ in enc["offset_mapping"]]
        return list(enc["input_ids"]), [(bisect_left(starts, a), bisect_left(starts, b)) for a, b in spans]

    def count(chars: int) -> int:  # slow tokenizers: tokens of the text up to a span edge
        return len(tokenizer(text[:chars], add_special_tokens=False)["input_ids"])

    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return ids, [(count(a), count(b)) for a, b in spans]
