"""Sentence embeddings through sentence-transformers, used where it is installed and the model folder is a
sentence-transformers folder (``modules.json``): the model's own modules (pooling, normalisation, dense
layers) and its query and document prompts, applied by ``encode_query`` / ``encode_document``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runner.backends.embed import LocalEmbedder
from runner.backends.hf_loading import resolve_device


def usable(folder: Path) -> bool:
    """Whether ``folder`` is a sentence-transformers model and the package is installed."""
    import importlib.util

    return (folder / "modules.json").is_file() and importlib.util.find_spec("sentence_transformers") is not None


class STEmbedder(LocalEmbedder):
    """A ``SentenceTransformer`` over a local folder, loaded on first use; vectors L2-normalised."""

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                from sentence_transformers import SentenceTransformer

                model = SentenceTransformer(str(self.folder), device=resolve_device(self.device_name))
                if self.max_length:
                    model.max_seq_length = self.max_length
                self._model = model
            return self._model

    def _encode(self, how: str, texts: list[str]) -> Any:
        import numpy as np

        model = self._load()
        encode = getattr(model, how, model.encode)  # encode_query / encode_document since 5.0
        vectors = encode(texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True,
                         show_progress_bar=False)
        return np.asarray(vectors, dtype="float32").reshape(len(texts), -1)

    def embed(self, texts: list[str]) -> Any:
        return self._encode("encode", texts)

    def embed_queries(self, texts: list[str]) -> Any:
        return self._encode("encode_query", texts)

    def embed_documents(self, texts: list[str]) -> Any:
        return self._encode("encode_document", texts)
