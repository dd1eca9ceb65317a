"""What the Self-RAG critic is asked, per aspect: the task instruction, the item's input, and a few
worked examples that a labelling model sees before the item.

One critic question is a conversation. Its user message is the aspect's instruction, then
``### Input:`` and the item (instruction, passage, sentences as the aspect needs them), so a model whose
chat template wraps the user message in Self-RAG's ``### Instruction: … ### Response:`` format sees the
reference's prompt layout. The reply is one label of ``labels.ASPECT_LABELS[aspect]``.

A labelling model (``selfrag.critic_data``) gets the worked examples first, as earlier user/assistant
turns; the trained critic (``selfrag.generator_data``) gets the bare question, as it was trained.

>>> item = {"instruction": "What does len() return?", "evidence": "len(s) returns the number of items."}
>>> print(user_message("relevance", item).split("### Input:")[1])
<BLANKLINE>
Instruction: What does len() return?
Passage: len(s) returns the number of items.
"""

from __future__ import annotations

from components.selfrag.labels import ASPECT_LABELS
from components.selfrag_tokens import user_content

INSTRUCTIONS: dict[str, str] = {
    "retrieval": (
        "Read the task below and decide whether a good answer needs facts looked up in reference "
        "documentation. Answer [Retrieval] when looking something up would make the answer more accurate "
        "or complete, and [No Retrieval] when the task can be done well without any document (creative "
        "writing, opinions, arithmetic, rewriting given text)."
    ),
    "multi_retrieval": (
        "An answer to the task below is being written sentence by sentence. You see the sentences so far, "
        "the passage they used and the next sentence. Answer [Continue to Use Evidence] when the same "
        "passage still covers the next sentence, [Retrieval] when the next sentence states facts that need "
        "a new passage, and [No Retrieval] when the next sentence states no fact that needs a source."
    ),
    "relevance": (
        "Decide whether the passage is useful for the task below. Answer [Relevant] when it contains "
        "information that helps to answer, even partly, and [Irrelevant] when it is about something else."
    ),
    "support": (
        "Decide how far the passage backs up the sentence written for the task below. Answer "
        "[Fully supported] when everything the sentence claims can be read in the passage, "
        "[Partially supported] when only part of it can, and [No support / Contradictory] when the passage "
        "does not back the sentence or says the opposite."
    ),
    "utility": (
        "Rate how useful the response is for the task below, whatever its factual accuracy: "
        "[Utility:5] a complete, focused answer; [Utility:4] a good answer with small gaps; "
        "[Utility:3] an acceptable answer that needs more detail; [Utility:2] a weak answer that only "
        "touches the task; [Utility:1] an answer that misses the task."
    ),
}

# which item fields each aspect shows, with their captions, in order
FIELDS: dict[str, tuple[tuple[str, str], ...]] = {
    "retrieval": (("instruction", "Task"),),
    "multi_retrieval": (("instruction", "Instruction"), ("preceding_sentences", "Sentences so far"),
                        ("evidence", "Passage"), ("target_output", "Next sentence")),
    "relevance": (("instruction", "Instruction"), ("evidence", "Passage")),
    "support": (("instruction", "Instruction"), ("evidence", "Passage"), ("target_output", "Sentence")),
    "utility": (("instruction", "Instruction"), ("output", "Response")),
}

# worked examples (item, label) per aspect, written for this project about the Python reference manual
EXAMPLES: dict[str, tuple[tuple[dict[str, str], str], ...]] = {
    "retrieval": (
        ({"instruction": "Which keyword starts a function definition in Python?"}, "[Retrieval]"),
        ({"instruction": "Write a two-line poem about autumn."}, "[No Retrieval]"),
        ({"instruction": "What does the `nonlocal` statement do?"}, "[Retrieval]"),
    ),
    "multi_retrieval": (
        ({"instruction": "Explain the `pass` statement.",
          "preceding_sentences": "`pass` is a null operation.",
          "evidence": "pass is a null operation: when it is executed, nothing happens. It is useful as a "
                      "placeholder when a statement is required syntactically.",
          "target_output": "It is useful as a placeholder where a statement is required."},
         "[Continue to Use Evidence]"),
        ({"instruction": "Compare `break` and `continue`.",
          "preceding_sentences": "`break` ends the nearest enclosing loop.",
          "evidence": "break may only occur syntactically nested in a for or while loop. It terminates the "
                      "nearest enclosing loop.",
          "target_output": "`continue` skips to the next cycle of the nearest enclosing loop."},
         "[Retrieval]"),
        ({"instruction": "Describe the `del` statement.",
          "preceding_sentences": "Deletion of a name removes its binding.",
          "evidence": "Deletion of a name removes the binding of that name from the local or global "
                      "namespace.",
          "target_output": "I hope this helps."},
         "[No Retrieval]"),
    ),
    "relevance": (
        ({"instruction": "What does the `global` statement do?",
          "evidence": "The global statement causes the listed identifiers to be interpreted as globals."},
         "[Relevant]"),
        ({"instruction": "What does the `global` statement do?",
          "evidence": "Integer literals are described by the following lexical definitions."},
         "[Irrelevant]"),
    ),
    "support": (
        ({"instruction": "What does `assert` do?",
          "evidence": "Assert statements are a convenient way to insert debugging assertions into a "
                      "program.",
          "target_output": "An assert statement inserts a debugging assertion into a program."},
         "[Fully supported]"),
        ({"instruction": "What does `assert` do?",
          "evidence": "Assert statements are a convenient way to insert debugging assertions into a "
                      "program.",
          "target_output": "An assert statement inserts a debugging assertion and is removed under -O."},
         "[Partially supported]"),
        ({"instruction": "What does `assert` do?",
          "evidence": "The return statement leaves the current function call.",
          "target_output": "An assert statement inserts a debugging assertion into a program."},
         "[No support / Contradictory]"),
    ),
    "utility": (
        ({"instruction": "What does the `return` statement do?",
          "output": "return leaves the current function call with the expression list (or None) as the "
                    "return value."},
         "[Utility:5]"),
        ({"instruction": "What does the `return` statement do?",
          "output": "It is a statement in Python."},
         "[Utility:2]"),
    ),
}


def question_input(aspect: str, item: dict) -> str:
    """The item as the aspect shows it: one ``Caption: value`` line per field it has."""
    lines = []
    for field, caption in FIELDS[aspect]:
        value = item.get(field)
        if value is None or value == "":
            continue
        lines.append(f"{caption}: {value}")
    return "\n".join(lines)


def user_message(aspect: str, item: dict) -> str:
    """The critic's question: the aspect's instruction, then the item after ``### Input:``."""
    return user_content(INSTRUCTIONS[aspect], question_input(aspect, item))


def conversation(aspect: str, item: dict, few_shot: bool = False) -> list[dict]:
    """The critic conversation for ``item``; with ``few_shot`` the aspect's worked examples come first as
    earlier turns."""
    if aspect not in ASPECT_LABELS:
        raise ValueError(f"unknown critic aspect {aspect!r}; known: {', '.join(ASPECT_LABELS)}")
    turns: list[dict] = []
    if few_shot:
        for example, label in EXAMPLES[aspect]:
            turns.append({"role": "user", "content": user_message(aspect, example)})
            turns.append({"role": "assistant", "content": label})
    turns.append({"role": "user", "content": user_message(aspect, item)})
    return turns


def parse_label(aspect: str, reply: str) -> str | None:
    """The aspect's label a reply gives: the first label string it contains (earliest position; the longer
    one when two start at the same place), or None."""
    found: list[tuple[int, int, str]] = []
    for label in ASPECT_LABELS[aspect]:
        at = reply.find(label)
        if at >= 0:
            found.append((at, -len(label), label))
    return min(found)[2] if found else None
