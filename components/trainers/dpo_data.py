"""Preference pairs → token ids for DPO, with long contexts cut in the middle to fit ``max_length``.

A pair record has ``prompt`` (chat messages, or a string taken as one user message), ``chosen`` and
``rejected`` (the assistant replies, as text or as a message list ending with the reply). Each side is
rendered with the model's chat template as ``prompt + [assistant reply]``; the reply's tokens are the
assistant span (``data.tokenize``'s code: the template's end-of-turn marker included), the prompt's are
everything before it.

Long inputs: when prompt + the longer reply exceeds ``max_length``, the record's ``context`` (the document,
found verbatim in a prompt message; without one, the longest prompt message) is cut in the middle
(``components.text.truncate_middle``) by the excess, so the instruction before it, the question after it
and both replies survive. Only when that is not enough are the replies cut at the end; a pair whose prompt
alone leaves no room is dropped. The reference-log-prob stage and the trainer tokenize with this same
code, and ``tokens_digest`` lets the trainer check that both saw the same tokens.
"""

from __future__ import annotations

import hashlib
from array import array
from dataclasses import asdict, dataclass
from typing import Any

from components.text import count_tokens, truncate_middle
from components.trainers.tokenize import IGNORE_INDEX, tokenize_messages

_UNLIMITED = 1 << 62
_FIT_ROUNDS = 4  # re-tokenizing after a cut can shift a few tokens; a few rounds always settle it


@dataclass
class PairRow:
    """One tokenized pair."""

    id: str
    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]
    context_cut: int = 0  # context tokens removed to fit
    replies_cut: bool = False

    def feature(self) -> dict[str, list[int]]:
        return {"prompt_ids": self.prompt_ids, "chosen_ids": self.chosen_ids, "rejected_ids": self.rejected_ids}


@dataclass
class PairStats:
    """What tokenizing a set of pairs did."""

    pairs_in: int = 0
    pairs_out: int = 0
    contexts_cut: int = 0
    context_tokens_removed: int = 0
    replies_cut: int = 0
    dropped: int = 0  # no room for any reply token, or an empty reply


def prompt_messages(record: dict) -> list[dict[str, str]]:
    prompt = record["prompt"]
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [{"role": m["role"], "content": m["content"]} for m in prompt]


def reply_text(value: Any) -> str:
    """A reply given as text, or as messages whose last one is the assistant's reply."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and isinstance(value[-1], dict):
        return str(value[-1]["content"])
    raise ValueError(f"a reply must be text or a list of messages, got {type(value).__name__}")


def _side(tokenizer: Any, messages: list[dict], reply: str) -> tuple[list[int], list[int]] | None:
    """(tokens before the reply, the reply's tokens), or None when the reply has no token."""
    ids, labels, _ = tokenize_messages(tokenizer, [*messages, {"role": "assistant", "content": reply}], _UNLIMITED)
    targets = [i for i, lab in enumerate(labels) if lab != IGNORE_INDEX]
    if not targets:
        return None
    return ids[: targets[0]], ids[targets[0]: targets[-1] + 1]


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def _tokenize(tokenizer: Any, messages: list[dict], chosen: str, rejected: str) -> tuple[list[int], ...] | None:
    c, r = _side(tokenizer, messages, chosen), _side(tokenizer, messages, rejected)
    if c is None or r is None:
        return None
    # the two renderings share the prompt; a template that differs there keeps only the shared part
    n = _common_prefix(c[0], r[0])
    return c[0][:n], c[0][n:] + c[1], r[0][n:] + r[1]


def _cut_target(messages: list[dict], context: Any) -> tuple[int, str]:
    """The message to shorten and the text in it to cut: the context where a message holds it, else the
    longest message."""
    if isinstance(context, str) and context:
        for i, m in enumerate(messages):
            if context in m["content"]:
                return i, context
    i = max(range(len(messages)), key=lambda j: len(messages[j]["content"]))
    return i, messages[i]["content"]


def tokenize_pair(record: dict, tokenizer: Any, max_length: int, row_id: str = "") -> PairRow | None:
    """The pair's tokens within ``max_length`` (see the module docstring); None when it cannot fit."""
    messages = prompt_messages(record)
    chosen, rejected = reply_text(record["chosen"]), reply_text(record["rejected"])
    got = _tokenize(tokenizer, messages, chosen, rejected)
    if got is None:
        return None
    where, text = _cut_target(messages, record.get("context"))
    removed = 0
    for _ in range(_FIT_ROUNDS):
        prompt, c, r = got
        over = len(prompt) + max(len(c), len(r)) - max_length
        if over <= 0 or not text:
            break
        have = count_tokens(text, tokenizer)
        shorter = truncate_middle(text, tokenizer, max(have - over, 0))
        messages[where] = {**messages[where], "content": messages[where]["content"].replace(text, shorter, 1)}
        removed += have - count_tokens(shorter, tokenizer)
        text = shorter
        got = _tokenize(tokenizer, messages, chosen, rejected)
        if got is None:
            return None
    prompt, c, r = got
    room = max_length - len(prompt)
    if room < 1:
        return None
    cut = max(len(c), len(r)) > room
    return PairRow(row_id, prompt, c[:room], r[:room], context_cut=max(removed, 0), replies_cut=cut)


def tokenize_pairs(records: list[dict], tokenizer: Any, max_length: int) -> tuple[list[PairRow], list[int], PairStats]:
    """Tokenized pairs, the positions of the records they come from, and the counts."""
    rows: list[PairRow] = []
    kept: list[int] = []
    stats = PairStats(pairs_in=len(records))
    for n, record in enumerate(records):
        row = tokenize_pair(record, tokenizer, max_length, str(record.get("id", record.get("idx", n))))
        if row is None:
            stats.dropped += 1
            continue
        rows.append(row)
        kept.append(n)
        stats.contexts_cut += row.context_cut > 0
        stats.context_tokens_removed += row.context_cut
        stats.replies_cut += row.replies_cut
    stats.pairs_out = len(rows)
    return rows, kept, stats


def tokens_digest(row: PairRow) -> str:
    """A short hash of a pair's token ids: equal digests mean the same tokens were scored."""
    h = hashlib.sha256()
    for ids in (row.prompt_ids, row.chosen_ids, row.rejected_ids):
        h.update(array("q", ids).tobytes() + b"|")
    return h.hexdigest()[:16]


def stats_dict(stats: PairStats) -> dict[str, int]:
    return asdict(stats)
