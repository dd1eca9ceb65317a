"""Short-answer QA metrics of Self-RAG (spec §5.6), ``judge.qa``: the reference's ``match``, accuracy on
closed tasks, SQuAD-style normalised exact match and F1, and the retrieval frequency, per task and mode.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from typing import Any, ClassVar

from pydantic import Field

from components.base import Context, Estimate, Fields, MapComponent, Out, Params

CLOSED_TYPES = ("multiple_choice", "true_false")
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)


def match(prediction: str, golds: list[str] | str) -> int:
    """1 when any gold answer is a substring of the prediction, case-sensitive and unnormalised (the
    reference's ``match``), else 0; 0 without gold answers, 1 for an empty gold answer.

    ``golds`` is a list of answers or one answer string. The reference's loop, given a bare string, tests its
    characters one by one (its script turns a string gold into a one-item list first, so that never counts
    there); here a string is one whole answer. Non-string golds are compared as ``str``.

    >>> match("It was Paris.", ["Paris", "paris"]), match("it was paris", ["Paris"]), match("Lyon", "Ly")
    (1, 0, 1)
    """
    golds = [golds] if isinstance(golds, str) else golds
    return int(any(str(g) in prediction for g in golds))


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lower case, no punctuation, no articles, single spaces.

    >>> normalize_answer("The  Eiffel-Tower!")
    'eiffeltower'
    """
    text = "".join(c for c in text.lower() if c not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, golds: list[str]) -> int:
    """1 when the normalised prediction equals some normalised gold answer.

    A gold answer that normalisation empties (an option letter "A" is an article to SQuAD's rules) is
    compared as written, case and surrounding space aside, so an empty prediction does not match it.

    >>> exact_match("", ["A"]), exact_match(" a ", ["A"]), exact_match("The cat", ["cat"])
    (0, 1, 1)
    """
    pred = normalize_answer(prediction)
    return int(any(pred == gold if (gold := normalize_answer(g))
                   else prediction.strip().lower() == g.strip().lower() for g in golds))


def f1_score(prediction: str, golds: list[str]) -> float:
    """The best token-level F1 (SQuAD) of the normalised prediction against each gold answer.

    >>> f1_score("the cat sat", ["a cat sat down"])
    0.8
    """
    pred = normalize_answer(prediction).split()
    best = 0.0
    for gold in golds:
        ref = normalize_answer(gold).split()
        same = sum((Counter(pred) & Counter(ref)).values())
        if same:
            precision, recall = same / len(pred), same / len(ref)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


def true_false_prediction(prediction: str) -> str:
    """A true/false prediction with FEVER's labels mapped first (``SUPPORTS`` → true, ``REFUTES`` → false),
    as the reference does for PubHealth."""
    if "SUPPORTS" in prediction:
        return "true"
    if "REFUTES" in prediction:
        return "false"
    return prediction


_LETTER = re.compile(r"\b([A-J])\b")
_TRUTH = re.compile(r"\b(true|false)\b", re.IGNORECASE)


def closed_answer(prediction: str, task: str) -> str | None:
    """The label a closed-task prediction gives: the first standalone option letter A–J (multiple choice)
    or the first "true" / "false" word, lower-cased (true/false); None when there is none.

    >>> closed_answer("B: it loops", "multiple_choice"), closed_answer("It is False.", "true_false")
    ('B', 'false')
    """
    found = (_LETTER if task == "multiple_choice" else _TRUTH).search(prediction)
    if found is None:
        return None
    return found.group(1) if task == "multiple_choice" else found.group(1).lower()


class QAParams(Params):
    prediction_field: str = Field("prediction", description="record field with the predicted answer")
    gold_field: str = Field("answers", description=(
        "record field with the gold answers (a list or one string); when absent, answer, answerKey or label"))
    task_field: str = Field("task_type", description="record field with the task type (open, multiple_choice, "
                            "true_false); records without one count as open")
    task_type: str | None = Field(None, description="the task type of every record, instead of task_field")
    group_field: str = Field("mode", description="record field that splits the results side by side "
                             "(decode.selfrag writes its retrieval mode there)")


class QAJudge(MapComponent):
    """Scores short answers against gold answers (no model): per record ``match`` (the reference's
    case-sensitive substring test, which for a one-letter gold such as ARC's "A" matches any capital A),
    ``em`` and ``f1`` (SQuAD-normalised, best over the gold answers) and, for closed tasks, ``accuracy``
    (the first option letter, or the first true / false word, of the prediction is the gold label; FEVER's
    SUPPORTS / REFUTES read as true / false first).

    Metrics per group (``mode``) and task: ``n``, ``match`` (the reference's "accuracy" is its mean × 100),
    ``em``, ``f1``, ``accuracy`` (closed tasks) and ``retrieval_frequency`` (share of records whose
    ``retrieve`` is true); the report shows the groups side by side.
    """

    type = "judge.qa"
    inputs: ClassVar[dict[str, Fields]] = {"predictions": Fields()}
    outputs = Fields("match", "em", "f1")
    Params = QAParams
    batch_size = 64

    def estimate(self, n_in: dict[str, int | None]) -> Estimate:
        return Estimate(records_out=n_in.get("predictions"))

    def _golds(self, record: dict) -> list[str]:
        for key in (self.params.gold_field, "answer", "answerKey", "label"):
            if record.get(key) is not None:
                value = record[key]
                return [str(v) for v in value] if isinstance(value, list) else [str(value)]
        return []

    def process(self, batch: list[dict], ctx: Context) -> list[Out]:
        p = self.params
        out: list[Out] = []
        for record in batch:
            task = p.task_type or str(record.get(p.task_field) or "open")
            prediction = str(record.get(p.prediction_field) or "")
            golds = self._golds(record)
            if task == "true_false":
                prediction = true_false_prediction(prediction)
            scored: dict[str, Any] = {"task_type": task, "match": match(prediction, golds),
                                      "em": exact_match(prediction, golds), "f1": f1_score(prediction, golds)}
            if task in CLOSED_TYPES:
                label = closed_answer(prediction, task)
                scored["accuracy"] = int(label is not None and any(label == g.strip() for g in golds))
            out.append({**record, **scored})
        return out

    def summarize(self, records: list[dict], ctx: Context) -> dict[str, Any]:
        groups: dict[str, dict[str, list[dict]]] = {}
        for r in records:
            group = str(r.get(self.params.group_field, "all"))
            groups.setdefault(group, {}).setdefault(r["task_type"], []).append(r)
            groups[group].setdefault("all", []).append(r)
        return {"n": len(records), "groups": {g: {t: _metrics(rs) for t, rs in tasks.items()}
                                              for g, tasks in groups.items()}}

    def report(self, records: list[dict], metrics: dict[str, Any] | None, ctx: Context) -> str | None:
        if not metrics or not metrics.get("groups"):
            return None
        groups = metrics["groups"]
        names = list(groups)
        tasks = sorted({t for g in groups.values() for t in g}, key=lambda t: (t == "all", t))
        lines = ["| task | metric | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
        for task in tasks:
            for key in ("n", "match", "accuracy", "em", "f1", "retrieval_frequency"):
                cells = [groups[g].get(task, {}).get(key) for g in names]
                if all(c is None for c in cells):
                    continue
                shown = ["" if c is None else (str(c) if key == "n" else f"{c:.3f}") for c in cells]
                lines.append(f"| {task} | {key} | " + " | ".join(shown) + " |")
        return "QA results (match: a gold answer is a substring of the prediction, case-sensitive):\n\n" + \
            "\n".join(lines) + "\n"


def _metrics(records: list[dict]) -> dict[str, Any]:
    n = len(records)
    out: dict[str, Any] = {"n": n}
    for key in ("match", "em", "f1"):
        out[key] = sum(float(r[key]) for r in records) / n
    closed = [r for r in records if "accuracy" in r]
    if closed:
        out["accuracy"] = sum(float(r["accuracy"]) for r in closed) / len(closed)
    out["retrieval_frequency"] = sum(1 for r in records if r.get("retrieve")) / n
    return out
