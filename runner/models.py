"""Opens the models a run needs, lazily and once: a cached run never loads one."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from registry.model_folder import is_model_folder
from registry.resolved import ResolvedModel
from registry.secrets import register_secret_env
from runner.errors import StageFailure
from runner.load import Binding


class ModelManager:
    def __init__(self, zoo: Any, trained: Callable[[str], Path], locked: dict[str, dict] | None = None,
                 progress: Callable[[str], None] | None = None) -> None:
        self.zoo = zoo
        self.trained = trained  # stage name → its model folder
        self.locked = locked or {}
        self.progress = progress
        self._llms: dict[tuple, Any] = {}
        self._embedders: dict[str, Any] = {}
        self._resolved: dict[str, ResolvedModel] = {}
        self._lock = threading.RLock()

    def resolve(self, b: Binding) -> ResolvedModel:
        with self._lock:
            key = f"{b.kind}:{b.ref}"
            if key in self._resolved:
                return self._resolved[key]
            if b.kind == "stage":
                path = self.trained(b.ref)
                if not is_model_folder(path):
                    raise StageFailure(b.ref, f"no trained model in {path}")
                rm = ResolvedModel(name=b.ref, source=f"file://{path}", kind="chat", backend="transformers",
                                   path=path)
            else:
                rm = self.zoo.resolve(b.ref, pull=True, progress=self.progress)
                if rm.api.get("api_key_env"):
                    register_secret_env(rm.api["api_key_env"])
                want = self.locked.get(b.ref, {}).get("pin")
                if want and rm.pin and want != rm.pin:
                    raise StageFailure("models", f"model {b.ref!r} resolves to {rm.pin}, but the lockfile pins "
                                       f"{want}; pull the locked version or run the recipe instead of the lock")
            self._resolved[key] = rm
            return rm

    def llm(self, b: Binding):
        from runner.backends import open_llm

        with self._lock:
            key = (b.kind, b.ref, b.backend, repr(sorted(b.options.items())))
            if key not in self._llms:
                rm = self.resolve(b)
                if b.backend:
                    rm = rm.model_copy(update={"backend": b.backend})
                tok_path = None
                if rm.tokenizer and rm.path is None:
                    try:
                        if self.zoo.is_pulled(rm.tokenizer):
                            tok_path = self.zoo.resolve(rm.tokenizer, pull=False).path
                    except Exception:
                        tok_path = None
                self._llms[key] = open_llm(rm, options=dict(b.options), tokenizer_path=tok_path)
            return self._llms[key]

    def window(self, b: Binding) -> int | None:
        """How many requests the bound model serves at once to callers in several threads: an API model's
        ``concurrency``; None for a model in this process (one batch at a time). Nothing is opened."""
        if b.kind != "zoo" or b.slot_kind != "chat":
            return None
        try:
            rm = self._resolve_offline(b)
            if (b.backend or rm.backend) != "openai":
                return None
            from runner.backends.options import settings_for

            return int(settings_for(rm, dict(b.options), backend="openai").concurrency)
        except Exception:  # a model that cannot be resolved fails when the stage opens it, clearly
            return None

    def _resolve_offline(self, b: Binding) -> ResolvedModel:
        with self._lock:
            key = f"{b.kind}:{b.ref}"
            return self._resolved.get(key) or self.zoo.resolve(b.ref, pull=False)

    def embedder(self, b: Binding):
        from runner.backends import open_embedder

        with self._lock:
            key = f"{b.ref}:{sorted(b.options.items())!r}"
            if key not in self._embedders:
                self._embedders[key] = open_embedder(self.resolve(b), options=dict(b.options))
            return self._embedders[key]

    def pins(self) -> dict[str, dict]:
        """Source and pin of every zoo model opened so far, by the name the recipe used for it."""
        return {k.removeprefix("zoo:"): {"source": rm.source, "pin": rm.pin}
                for k, rm in self._resolved.items() if k.startswith("zoo:")}

    def close(self) -> None:
        for m in self._llms.values():
            try:
                m.close()
            except Exception:
                pass
