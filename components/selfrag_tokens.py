"""Self-RAG's 15 reflection tokens (spec §5.1), named once for the trainer, the data builders and the decoder.

``REFLECTION_TOKENS`` is the list ``train.sft`` adds to the tokenizer for ``special_tokens: selfrag``; the
groups below are what the decoder reads probabilities of.
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

RETRIEVE_TOKENS = (RETRIEVAL, NO_RETRIEVAL, CONTINUE)
RELEVANCE_TOKENS = (RELEVANT, IRRELEVANT)
GROUNDING_TOKENS = (FULLY, PARTIALLY, NO_SUPPORT)
UTILITY_TOKENS = UTILITY

REFLECTION_TOKENS: tuple[str, ...] = (
    *RETRIEVE_TOKENS, *RELEVANCE_TOKENS, *GROUNDING_TOKENS, *UTILITY_TOKENS, PARAGRAPH_OPEN, PARAGRAPH_CLOSE,
)

# the reflection tokens whose probabilities the decoder reads (the paragraph markers are never scored)
SCORED_TOKENS: tuple[str, ...] = (*RETRIEVE_TOKENS, *RELEVANCE_TOKENS, *GROUNDING_TOKENS, *UTILITY_TOKENS)

# named token lists for ``train.sft``'s ``special_tokens`` param
SPECIAL_TOKEN_PRESETS: dict[str, tuple[str, ...]] = {"selfrag": REFLECTION_TOKENS}


def user_content(instruction: str, input_text: str | None = None) -> str:
    """The user turn of a Self-RAG prompt: the instruction, then ``### Input:`` and the input when there is
    one. The generator's chat template wraps it as ``### Instruction:\\n…\\n\\n### Response:\\n`` (the zoo's
    Self-RAG entries), so the whole prompt is the reference's instruction format.

    >>> user_content("Answer.", "2+2?")
    'Answer.\\n\\n### Input:\\n2+2?'
    """
    return f"{instruction}\n\n### Input:\n{input_text}" if input_text else instruction


def passage_block(title: str, text: str) -> str:
    """A retrieved passage as the generator sees it: ``<paragraph>{title}\\n{text}</paragraph>``."""
    return f"{PARAGRAPH_OPEN}{title}\n{text}{PARAGRAPH_CLOSE}"
