"""CoF (Coarse to Fine), LongCite's pipeline that builds citation SFT data from long documents (§1.2):
``cof.qa_generation`` → ``cof.chunk_citation`` → ``cof.sentence_citation`` → ``cof.filter``."""
