"""Self-RAG (Asai et al., 2023): the critic's training data, the generator's training data with
reflection tokens, and the prompts they share."""
