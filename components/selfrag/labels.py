"""The reflection-token label strings of Self-RAG (§5.1), grouped by the critic aspect that emits them.

The critic predicts these strings as plain text; the generator learns them as added special tokens.
"""

from __future__ import annotations

RETRIEVAL = "[Retrieval]"
NO_RETRIEVAL = "[No Retrieval]"
CONTINUE = "[Continue to Use Evidence]"
RELEVANT = "[Relevant]"
IRRELEVANT = "[Irrelevant]"
FULLY = "[Fully supported]"
PARTIALLY = "[Partially supported]"
NO_SUPPORT = "[No support / Contradictory]"
UTILITY = tuple(f"[Utility:{k}]" for k in range(1, 6))
PARAGRAPH_OPEN = "<paragraph>"
PARAGRAPH_CLOSE = "</paragraph>"

# aspect -> the labels the critic may answer, in the order its prompt lists them
ASPECT_LABELS: dict[str, tuple[str, ...]] = {
    "retrieval": (RETRIEVAL, NO_RETRIEVAL),
    "multi_retrieval": (RETRIEVAL, NO_RETRIEVAL, CONTINUE),
    "relevance": (RELEVANT, IRRELEVANT),
    "support": (FULLY, PARTIALLY, NO_SUPPORT),
    "utility": tuple(reversed(UTILITY)),
}
ASPECTS: tuple[str, ...] = tuple(ASPECT_LABELS)
