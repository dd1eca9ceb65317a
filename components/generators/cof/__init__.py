"""CoF (Coarse to Fine), LongCite's pipeline that builds citation SFT data from long documents (§1.2):
``cof.qa_generation`` → ``cof.chunk_citation`` → ``cof.sentence_citation`` → ``cof.filter``.

``fallback.py`` holds the retrieval fallback of stages 2 and 3 (``fallback: retrieval``), which is not the
paper's method: it lets models too small to follow the citation markup still produce data, and the stages
count what came from it."""
