"""Writes seed_pairs.jsonl: the instruction–output pairs the Self-RAG recipe's critic and generator data
start from. Deterministic: run it with Python 3.11 to get the shipped file byte for byte.

* one pair per CPython documentation topic (``pydoc_data.topics``): the instruction asks about the topic's
  heading (three phrasings, in turn), the output is the first two sentences of the topic's running text
  (grammar blocks, lists, headings and source links skipped; line breaks unwrapped; a sentence that
  introduces a grammar block ends with a full stop instead of its colon);
* the pairs written by hand below: tasks that need no document (writing, arithmetic, rewording) and
  claims to verify, answered ``SUPPORTS`` or ``REFUTES`` as in fact-verification data.

    python recipes/data/selfrag/make_seed_pairs.py
"""

from __future__ import annotations

import json
import re
from pathlib import Path

PHRASINGS = (
    "What does the Python language reference say about {title}?",
    "Explain {title} in Python.",
    "Give a short description of {title} from the Python documentation.",
)

WRITTEN = [
    ("Write a two-line poem about a for loop.",
     "The loop walks the list from first to last. Each item gets its turn, and then the loop is past."),
    ("What is 12 times 7?", "12 times 7 is 84."),
    ("Rewrite in the passive voice: The interpreter executes the script.",
     "The script is executed by the interpreter."),
    ("Suggest a name for a function that counts the vowels in a string.",
     "A clear name is count_vowels. It says what the function does and follows the snake_case style."),
    ("Translate to French: Good morning.", "Bonjour."),
    ("Give three synonyms of the word quick.", "Three synonyms of quick are fast, rapid and swift."),
    ("What is 2 to the power of 10?", "2 to the power of 10 is 1024."),
    ("Write a friendly one-sentence reminder to drink water.",
     "Take a short break and drink a glass of water, your body will thank you."),
    ("Sort these words alphabetically: pear, apple, mango.", "apple, mango, pear."),
    ("Summarise in one sentence: The meeting moved from Monday to Tuesday because the room was booked.",
     "The meeting moved to Tuesday because the room was taken on Monday."),
    ("Is the following statement correct or not? A Python list is immutable.", "REFUTES"),
    ("Is the following statement correct or not? The with statement calls the context manager's __exit__() "
     "method when its body finishes.", "SUPPORTS"),
    ("Is the following statement correct or not? The await expression can be used at the top level of any "
     "regular function.", "REFUTES"),
    ("Is the following statement correct or not? Strings implement all of the common sequence operations.",
     "SUPPORTS"),
    ("Is the following statement correct or not? A dictionary's keys may be lists.", "REFUTES"),
    ("Is the following statement correct or not? The raise statement with no expression re-raises the "
     "exception that is currently being handled.", "SUPPORTS"),
    ("Write a short thank-you note to a colleague who reviewed your code.",
     "Thank you for reviewing my code so carefully. Your comments made the change much clearer."),
    ("Name the days of the weekend.", "The days of the weekend are Saturday and Sunday."),
    ("What is the sum of 45 and 37?", "The sum of 45 and 37 is 82."),
    ("Give one tip for writing readable code.",
     "Choose names that say what a value means. A reader should not need comments to follow the code."),
    ("Describe the colour of a clear daytime sky.", "A clear daytime sky is blue."),
]

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"*])")


def prose_paragraphs(text: str) -> list[str]:
    """The topic's paragraphs of running text, unwrapped (a word split by a line-end hyphen rejoined)."""
    out = []
    for para in text.split("\n\n")[1:]:
        lines = para.splitlines()
        if not lines or lines[0].startswith((" ", "*", "=", "-", "+")) or "::=" in para:
            continue
        if para.startswith(("**", "New in", "Changed in", "See also", "Note:")) or not para[0].isupper():
            continue
        joined = ""
        for line in (x.strip() for x in lines):
            joined += line if joined.endswith("-") or not joined else " " + line
        if len(joined.split()) >= 6:
            out.append(joined)
    return out


def summary(text: str) -> str | None:
    """The first two sentences of running text (at least 15 words), a closing colon made a full stop;
    sentences cut short by a code block (no closing punctuation, or ending in "is.") are skipped."""
    sentences: list[str] = []
    for para in prose_paragraphs(text):
        for s in _SENTENCE_END.split(para):
            s = re.sub(r":$", ".", s.strip())
            if s.endswith((".", "!", "?")) and not s.endswith(" is."):  # not a lead-in to a code block
                sentences.append(s)
        if len(sentences) >= 2 and len(" ".join(sentences[:2]).split()) >= 15:
            break
    return " ".join(sentences[:2]) if sentences else None


def doc_pairs() -> list[dict]:
    from pydoc_data.topics import topics

    out = []
    for i, name in enumerate(sorted(topics)):
        text = topics[name].strip()
        title = text.splitlines()[0].strip()
        if title.startswith("The "):
            title = "the " + title[4:]
        output = summary(text)
        if output is None:
            continue
        out.append({"id": f"doc-{name}", "instruction": PHRASINGS[i % len(PHRASINGS)].format(title=title),
                    "output": output, "source": "doc-topics", "topic": name})
    return out


def main() -> None:
    pairs = doc_pairs() + [{"id": f"written-{i:02d}", "instruction": q, "output": a, "source": "written"}
                           for i, (q, a) in enumerate(WRITTEN, 1)]
    path = Path(__file__).with_name("seed_pairs.jsonl")
    path.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs), encoding="utf-8")
    print(f"{len(pairs)} pairs -> {path}")


if __name__ == "__main__":
    main()
