"""Sentence embeddings with a plain transformers encoder (MiniLM-style), no sentence-transformers needed:
token states → pooling over the real tokens → L2 normalisation, in batches.

The pooling mode and the maximum length are read from the sentence-transformers files when the folder
has them (``1_Pooling/config.json``, ``sentence_bert_config.json``); otherwise mean pooling and the
tokenizer's limit (at most 512) are used.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from registry.resolved import ResolvedModel
from runner.backends.base import Embedder
from runner.backends.hf_loading import model_folder, resolve_device


class LocalEmbedder(Embedder):
    """An embedder over a local model folder, loaded on first use under ``_lock`` (the set-up both local
    embedders share)."""

    def __init__(self, model: ResolvedModel | Path, *, batch_size: int = 32, device: str | None = None,
                 max_length: int | None = None) -> None:
        self.folder = model_folder(model)
        self.name = model.name if isinstance(model, ResolvedModel) else self.folder.name
        self.batch_size = batch_size
        self.device_name = device
        self.max_length = max_length
        self._model: Any = None
        self._lock = threading.Lock()


class HFEmbedder(LocalEmbedder):
    """A sentence embedder over a local encoder folder. The model is loaded on first use."""

    def __init__(self, model: ResolvedModel | Path, **options: Any) -> None:
        super().__init__(model, **options)
        self._tok: Any = None

    def _pooling(self) -> str:
        config = self.folder / "1_Pooling" / "config.json"
        if config.is_file():
            modes = json.loads(config.read_text())
            if modes.get("pooling_mode_cls_token"):
                return "cls"
            if modes.get("pooling_mode_max_tokens"):
                return "max"
        return "mean"

    def prompts(self) -> dict[str, str]:
        """The model's ``query`` and ``document`` prompts from its sentence-transformers config; as
        sentence-transformers' ``encode_document``, the first of ``document``, ``passage``, ``corpus`` the
        config names (even when empty). Empty strings where it defines none."""
        config = self.folder / "config_sentence_transformers.json"
        found = (json.loads(config.read_text()).get("prompts") or {}) if config.is_file() else {}
        document = next((found[k] for k in ("document", "passage", "corpus") if k in found), "")
        return {"query": str(found.get("query") or ""), "document": str(document)}

    def embed_queries(self, texts: list[str]) -> Any:
        prompt = self.prompts()["query"]
        return self.embed([prompt + t for t in texts])

    def embed_documents(self, texts: list[str]) -> Any:
        prompt = self.prompts()["document"]
        return self.embed([prompt + t for t in texts])

    def _limit(self, tok: Any) -> int:
        if self.max_length:
            return self.max_length
        config = self.folder / "sentence_bert_config.json"
        if config.is_file():
            value = json.loads(config.read_text()).get("max_seq_length")
            if value:
                return int(value)
        return min(int(getattr(tok, "model_max_length", 512) or 512), 512)

    def _load(self) -> tuple[Any, Any]:
        with self._lock:
            if self._model is None:
                from transformers import AutoModel, AutoTokenizer

                self._tok = AutoTokenizer.from_pretrained(str(self.folder))
                model = AutoModel.from_pretrained(str(self.folder))
                model.to(resolve_device(self.device_name))
                model.eval()
                self._model = model
            return self._tok, self._model

    def embed(self, texts: list[str]) -> Any:
        import numpy as np
        import torch

        tok, model = self._load()
        limit, pooling = self._limit(tok), self._pooling()
        chunks = []
        for start in range(0, len(texts), self.batch_size):
            batch = tok(texts[start:start + self.batch_size], padding=True, truncation=True,
                        max_length=limit, return_tensors="pt").to(model.device)
            with torch.no_grad():
                states = model(**batch).last_hidden_state.float()
            chunks.append(_pool(states, batch["attention_mask"], pooling).cpu().numpy())
        if not chunks:
            dim = int(getattr(model.config, "hidden_size", 0))
            return np.zeros((0, dim), dtype="float32")
        vectors = np.concatenate(chunks).astype("float32")
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-12)


def _pool(states: Any, mask: Any, mode: str) -> Any:
    import torch

    if mode == "cls":
        return states[:, 0]
    weights = mask.unsqueeze(-1).to(states.dtype)
    if mode == "max":
        return states.masked_fill(weights == 0, torch.finfo(states.dtype).min).max(dim=1).values
    return (states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
