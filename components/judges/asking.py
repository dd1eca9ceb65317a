"""Ask a judge model until its verdict parses: the one re-ask loop every judge uses.

A judge sends conversations to a chat model and reads a verdict out of each reply (a ``[[rating]]``, a
label, a score). Sampled or small judges sometimes reply without one, so the conversations whose reply
did not parse are asked again. ``ask_until_parsed`` does that for a whole batch:

* round 1 sends every conversation; each later round re-sends only those still without a verdict, all
  of them together (one ``llm.chat`` call per distinct ``Sampling`` per round, in order of first
  appearance, so API backends run them concurrently);
* a conversation is asked at most ``tries`` times (``tries`` counts the first ask);
* re-ask ``k`` (k = 1 … tries − 1) uses ``retry_temperature`` (None: the first ask's temperature; a greedy
  re-ask repeats itself, so sampled judges pass a positive one) and, when the sampling has a seed,
  seed ``+ k``;
* a backend error (``ChatResult.error``) is re-asked like an unparsed reply when ``reask_errors`` is true;
  otherwise the conversation stops there and its verdict carries the error.

Every conversation gets a ``Verdict``: the parsed ``value`` (None when no reply parsed), the last reply
that came back (kept for the failures ledger or a ``*_raw`` field), the number of calls made and the last
call's backend error. What a judge does with an unparsed verdict is its own decision (fail the record
with ``Verdict.failure``, keep it with a null score, score it 0): the helper only asks.

A judge whose verdict format is enforced while decoding (``Sampling.format``, see ``components.formats``)
gets a parsable reply on the first ask; re-asks then only follow backend errors or a reply cut short.

A judge declares the two settings under these names: ``tries`` (asks per conversation, at least 1) and
``retry_temperature``. Typical use in a judge's ``process``::

    verdicts = ask_until_parsed(ctx.model("judge"), conversations, sampling, parse_rating,
                                tries=p.tries, retry_temperature=p.retry_temperature)
    return [{**r, "score": v.value, "judge_output": v.reply} if v.parsed else v.failure("[[rating]]")
            for r, v in zip(batch, verdicts, strict=True)]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from components.base import Failed
from components.formats import group_by_sampling
from runner.backends.base import LLM, Sampling

V = TypeVar("V")


@dataclass(frozen=True)
class Verdict(Generic[V]):
    """What asking one conversation gave: the parsed value (None: never parsed), the last reply text
    (``""`` when no call answered), the calls made, and the last call's backend error (None: it answered)."""

    value: V | None
    reply: str
    calls: int
    error: str | None = None

    @property
    def parsed(self) -> bool:
        return self.value is not None

    def failure(self, expected: str = "verdict") -> Failed:
        """The ledger entry for a verdict that never parsed: a backend error may be retried by the runner;
        a reply without ``expected`` after every try is final. Keeps the raw reply."""
        if self.error is not None:
            return Failed(error=f"judge call failed after {self.calls} tries: {self.error}",
                          raw=self.reply or None)
        return Failed(error=f"no {expected} in the judge reply after {self.calls} tries", raw=self.reply,
                      retry=False)


def retry_sampling(sampling: Sampling, attempt: int, retry_temperature: float | None) -> Sampling:
    """The sampling of ask number ``attempt`` (0 = the first): re-asks switch to ``retry_temperature``
    (when given) and move a given seed by ``attempt``."""
    if attempt == 0:
        return sampling
    update: dict = {}
    if retry_temperature is not None:
        update["temperature"] = retry_temperature
    if sampling.seed is not None:
        update["seed"] = sampling.seed + attempt
    return sampling.model_copy(update=update) if update else sampling


def ask_until_parsed(
    llm: LLM,
    conversations: Sequence[list[dict]],
    sampling: Sampling | Sequence[Sampling],
    parse: Callable[[str], V | None] | Sequence[Callable[[str], V | None]],
    *,
    tries: int,
    retry_temperature: float | None = None,
    reask_errors: bool = True,
) -> list[Verdict[V]]:
    """Ask every conversation, re-asking those whose reply ``parse`` rejects (returns None), up to ``tries``
    asks each; one ``Verdict`` per conversation, in order.

    ``sampling`` and ``parse`` are one for all conversations or one per conversation (judges that mix
    questions, e.g. citation verdicts and correctness ratings). See the module docstring for the rounds,
    the retry sampling and backend errors.
    """
    if tries < 1:
        raise ValueError(f"tries must be at least 1, got {tries}")
    n = len(conversations)
    samplings = [sampling] * n if isinstance(sampling, Sampling) else list(sampling)
    parsers = list(parse) if isinstance(parse, Sequence) else [parse] * n
    if len(samplings) != n or len(parsers) != n:
        raise ValueError("give one sampling and one parser for all conversations or one per conversation")
    verdicts: list[Verdict[V]] = [Verdict(None, "", 0)] * n
    pending = list(range(n))
    for attempt in range(tries):
        if not pending:
            break
        for group in group_by_sampling(samplings, pending):
            sent = retry_sampling(samplings[group[0]], attempt, retry_temperature)
            results = llm.chat([conversations[i] for i in group], sent)
            for i, res in zip(group, results, strict=True):
                old = verdicts[i]
                if res.error:
                    verdicts[i] = Verdict(None, old.reply, old.calls + 1, res.error)
                else:
                    verdicts[i] = Verdict(parsers[i](res.text), res.text, old.calls + 1)
        pending = [i for i in pending
                   if not verdicts[i].parsed and (reask_errors or verdicts[i].error is None)]
    return verdicts

