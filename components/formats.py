"""Reply formats: what a component expects a model to write, enforced while decoding.

A component that parses a model's reply declares the reply's format: ``Component.reply_formats`` names
each reply it parses with the kind of its format (so ``recipe validate`` can check that the stage's model
can enforce it), and the component builds the ``Format`` (``runner.backends.base``) for the params and
record at hand with the builders here. Its ``constrained`` param (the ``Constrained`` mixin) decides
whether the format goes on the request; the backend then enforces it (``runner.backends``).

The formats are regular expressions in the subset that llguidance, xgrammar, vLLM and Python's ``re``
read alike, so a test can check with ``re.fullmatch`` that a reply in the format parses. Judges use
``verdict``: optional free analysis, bounded so that the verdict still fits in ``max_new_tokens`` whatever
the tokenizer (``bounded_text``), then the verdict in brackets.

>>> import re
>>> fmt = verdict(integers(1, 10), analysis_chars=20)
>>> bool(re.fullmatch(fmt.spec, "Close to it. [[7]]")), bool(re.fullmatch(fmt.spec, "[[11]]"))
(True, False)
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field

from components.base import Params
from runner.backends.base import LLM, LOCAL_BACKENDS, ChatResult, Format, Sampling
from runner.backends.base import regex_escape as escape


class Constrained(Params):
    """The ``constrained`` param of a component whose replies have a declared format."""

    constrained: bool | None = Field(None, description=(
        "enforce the reply format while decoding (the backend only lets the model write replies that "
        "parse); default: on for local backends (transformers, vllm), off for API endpoints. true on an "
        "API model needs the endpoint to declare the format kind (its `structured_outputs` option), "
        "else the recipe does not validate"))


def constrained(llm: LLM, flag: bool | None) -> bool:
    """Whether to send formats to ``llm``: the stage's ``constrained`` param, by default on for the
    local backends."""
    return flag if flag is not None else llm.backend in LOCAL_BACKENDS


def choice(options: Sequence[str]) -> str:
    """A group matching exactly one of ``options`` (literals)."""
    if not options:
        raise ValueError("a choice needs at least one option")
    return "(" + "|".join(escape(o) for o in options) + ")"


def integers(lo: int, hi: int) -> list[str]:
    """The whole numbers ``lo..hi`` as strings, largest first."""
    if hi < lo:
        raise ValueError(f"empty range {lo}..{hi}")
    return [str(n) for n in range(hi, lo - 1, -1)]


def bounded_text(chars: int, exclude: str = "") -> str:
    r"""A group matching text of at most ``chars`` characters, none of them in ``exclude`` (ASCII), that a
    model writes in at most ``chars`` tokens: ASCII text of up to ``chars`` characters, or text with
    other characters of up to ``chars // 4`` (a character takes at most 4 bytes, a token at least one).

    >>> print(bounded_text(8, "[]"))
    ([\x00-\x5a\x5c\x5e-\x7f]{0,8}|[^\[\]]{0,2})
    """
    codes = [c for c in range(128) if chr(c) not in exclude]
    ranges: list[tuple[int, int]] = []
    for c in codes:
        if ranges and ranges[-1][1] == c - 1:
            ranges[-1] = (ranges[-1][0], c)
        else:
            ranges.append((c, c))
    ascii_class = "[" + "".join(f"\\x{a:02x}" if a == b else f"\\x{a:02x}-\\x{b:02x}" for a, b in ranges) + "]"
    wide = chars // 4
    if not wide:
        return f"({ascii_class}{{0,{chars}}})"
    other = "[^" + "".join(escape(c) for c in exclude) + "]"
    return f"({ascii_class}{{0,{chars}}}|{other}{{0,{wide}}})"


def analysis_chars(max_new_tokens: int, verdicts: Sequence[str], reserve: int = 2) -> int:
    """Characters of free analysis (``bounded_text``) that leave room for the longest ``[[verdict]]``
    (ASCII: a token per character at most) and ``reserve`` tokens within ``max_new_tokens``."""
    longest = max(len(v) for v in verdicts) + 4
    return max(0, max_new_tokens - longest - reserve)


def verdict(verdicts: Sequence[str], analysis_chars: int = 0) -> Format:
    """Free text without brackets, bounded by ``analysis_chars`` (``bounded_text``), then ``[[v]]`` for
    one of ``verdicts``; nothing after it (with ``analysis_chars=0`` the reply is the verdict alone)."""
    analysis = bounded_text(analysis_chars, "[]") if analysis_chars > 0 else ""
    return Format.regex(analysis + r"\[\[" + choice(verdicts) + r"\]\]")


def number_verdict(lo: float, hi: float, max_new_tokens: int) -> Format:
    """Bounded free analysis, then a ``[[n]]`` rating in ``lo..hi``, within ``max_new_tokens``: whole
    numbers when both ends are whole (at most 1000 of them); otherwise any decimal number with up to 4
    decimals (the parser then checks the range)."""
    if lo == int(lo) and hi == int(hi) and hi - lo <= 1000:
        choices = integers(int(lo), int(hi))
        return verdict(choices, analysis_chars(max_new_tokens, choices))
    number = r"[0-9]{1,6}(\.[0-9]{1,4})?"
    room = analysis_chars(max_new_tokens, ["0" * 11])
    return Format.regex((bounded_text(room, "[]") if room else "") + r"\[\[" + number + r"\]\]")


def group_by_sampling(samplings: Sequence[Sampling], todo: Sequence[int] | None = None) -> list[list[int]]:
    """The indices ``todo`` (default: all) split by equal sampling, groups in order of first appearance,
    each in input order."""
    keys: list[Sampling] = []
    groups: list[list[int]] = []
    for i in range(len(samplings)) if todo is None else todo:
        for k, key in enumerate(keys):
            if key == samplings[i]:
                groups[k].append(i)
                break
        else:
            keys.append(samplings[i])
            groups.append([i])
    return groups


def chat_each(llm: LLM, conversations: Sequence[list[dict]], samplings: Sequence[Sampling]) -> list[ChatResult]:
    """Chat every conversation with its own sampling (e.g. a format made for its record): one ``chat``
    call per distinct sampling, results in input order."""
    if len(samplings) != len(conversations):
        raise ValueError(f"{len(samplings)} samplings for {len(conversations)} conversations")
    out: list[ChatResult | None] = [None] * len(conversations)
    for group in group_by_sampling(samplings):
        for i, result in zip(group, llm.chat([conversations[i] for i in group], samplings[group[0]]), strict=True):
            out[i] = result
    return out  # type: ignore[return-value]


def span_pairs(n: int) -> str:
    """A group matching ``s-e`` for every ``0 ≤ s ≤ e < n`` (a span of numbered sentences).

    >>> import re
    >>> [bool(re.fullmatch(span_pairs(3), t)) for t in ("0-2", "2-2", "2-1", "3-3")]
    [True, True, False, False]
    """
    if n < 1:
        raise ValueError("span_pairs needs at least one sentence")
    return "(" + "|".join(f"{s}-{choice(integers(s, n - 1))}" for s in range(n)) + ")"


def spans(n: int, ordered_up_to: int = 64) -> str:
    """A group matching a span ``s-e`` of ``n`` numbered sentences: ``s ≤ e`` enforced up to
    ``ordered_up_to`` sentences (the pairs grow quadratically); past that any two numbers below ``n``."""
    if n <= ordered_up_to:
        return span_pairs(n)
    number = choice(integers(0, n - 1))
    return f"({number}-{number})"
