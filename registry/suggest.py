"""Did-you-mean suggestions for unknown names (keys, component types, zoo models, stages, profiles).

>>> did_you_mean("concurency", ["concurrency", "rpm", "timeout_s"])
['concurrency']
>>> suggestion("smolm2", ["smollm2-135m-instruct", "smollm2"])
" — did you mean 'smollm2'?"
>>> suggestion("xyz", ["abc"])
''
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(word: str, options: Iterable[str], n: int = 3) -> list[str]:
    """Close matches of ``word`` among ``options`` (case-insensitive, best first)."""
    opts = [str(o) for o in options]
    lower = {o.lower(): o for o in opts}
    hits = difflib.get_close_matches(str(word).lower(), list(lower), n=n, cutoff=0.6)
    return [lower[h] for h in hits]


def suggestion(word: str, options: Iterable[str], n: int = 3) -> str:
    """`` — did you mean 'x'?`` (or ``'x' or 'y'``), or an empty string when nothing is close."""
    hits = did_you_mean(word, options, n=n)
    if not hits:
        return ""
    return " — did you mean " + " or ".join(repr(h) for h in hits) + "?"
