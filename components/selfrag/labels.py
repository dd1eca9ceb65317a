"""The critic's label sets: which reflection tokens (``components.selfrag_tokens``, spec §5.1) each critic
aspect answers with. The critic predicts them as plain text; the generator learns them as added tokens."""

from __future__ import annotations

from components.selfrag_tokens import (
    CONTINUE,
    FULLY,
    IRRELEVANT,
    NO_RETRIEVAL,
    NO_SUPPORT,
    PARTIALLY,
    RELEVANT,
    RETRIEVAL,
    UTILITY,
)

# aspect -> the labels the critic may answer, in the order its prompt lists them
ASPECT_LABELS: dict[str, tuple[str, ...]] = {
    "retrieval": (RETRIEVAL, NO_RETRIEVAL),
    "multi_retrieval": (RETRIEVAL, NO_RETRIEVAL, CONTINUE),
    "relevance": (RELEVANT, IRRELEVANT),
    "support": (FULLY, PARTIALLY, NO_SUPPORT),
    "utility": tuple(reversed(UTILITY)),
}
ASPECTS: tuple[str, ...] = tuple(ASPECT_LABELS)
