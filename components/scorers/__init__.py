"""Scorers: components that score records with a model's weights (perplexities, attention), e.g. GATEAU's
HMG and CAM."""
