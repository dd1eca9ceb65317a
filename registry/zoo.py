"""The model zoo: names → sources, with the facts a recipe needs about each model.

Entries are data in YAML files, read in this order, later files adding or replacing entries by name:

1. ``zoo.yaml`` at the repository root (built in);
2. ``$RECIPE_ZOO_HOME/zoo.yaml`` (the user zoo; ``add_user_entry`` writes it, e.g. when a recipe
   publishes a model to ``file://`` so the next recipe can use it by name);
3. the ``extra_files`` given to ``Zoo.load``.

A zoo file looks like::

    models:
      tiny-random-llama:
        source: random://llama?hidden_size=64&layers=2&heads=4&kv_heads=2&intermediate=128&seed=0
        family: llama
        context_length: 2048

``Zoo.resolve`` turns a name (or an inline source URI) into a ``ResolvedModel``, pulling the model on
first use. Importing this module is cheap (pydantic and PyYAML only): ``recipe validate`` checks names
through it without loading any model library.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from registry.api_spec import PRICE_FIELDS, ApiSpec
from registry.atomic import atomic_write_text
from registry.cache import PullRecord, read_record, zoo_home
from registry.model_folder import read_trained
from registry.resolved import ResolvedModel
from registry.secrets import inline_secrets, register_secret_env, secret_env_names
from registry.sources import (
    FileSource,
    OpenAISource,
    PullContext,
    RandomSource,
    Source,
    SourceError,
    parse_source,
)
from registry.suggest import did_you_mean
from registry.yamlpos import YamlSyntaxError, load_yaml


def _builtin_zoo() -> Path:
    """zoo.yaml at the repository root (a source checkout or editable install), else the copy a wheel
    installs under ``<prefix>/share/recipe-zoo/``."""
    import sys

    here = Path(__file__).resolve().parent.parent / "zoo.yaml"
    if here.is_file():
        return here
    return Path(sys.prefix) / "share" / "recipe-zoo" / "zoo.yaml"


BUILTIN_ZOO = _builtin_zoo()
USER_ZOO_NAME = "zoo.yaml"
UNPINNED_NOTE = "unpinned: the lockfile records the commit resolved at pull"
_log = logging.getLogger(__name__)


class ZooEntry(BaseModel):
    """One model of the zoo."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="The name recipes use (the key in the zoo file).")
    source: str = Field(
        description="Where the model comes from: hf://, pypi://, file://, openai:// or random:// (see "
        "registry/sources). hf:// sources are pinned by '@<commit sha>'; without it the first pull's "
        "commit is recorded and reported."
    )
    kind: Literal["chat", "embed", "base"] = Field(
        default="chat",
        description="chat: instruction-tuned; base: pretrained only; embed: sentence embeddings.",
    )
    family: str | None = Field(
        default=None, description="Architecture family (llama, glm4, chatglm3, bert, ...)."
    )
    context_length: int | None = Field(
        default=None, gt=0, description="Tokens the model was trained to attend over."
    )
    chat_template: str | None = Field(
        default=None,
        description="Jinja chat template overriding the tokenizer's own; None keeps the tokenizer's.",
    )
    tokenizer: str | None = Field(
        default=None, description="For API models: a zoo name whose tokenizer estimates token counts."
    )
    license: str | None = Field(
        default=None, description="License of the weights (SPDX id or the vendor's name)."
    )
    paper: str | None = Field(default=None, description="The paper introducing the model (URL).")
    description: str = Field(
        default="", description="One or two sentences: what the model is and where it is used."
    )
    aliases: list[str] = Field(default_factory=list, description="Other names that resolve to this entry.")
    base_model: str | None = Field(
        default=None, description="Zoo or Hub name of the model this one was tuned from."
    )
    sha256: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{64}$",
        description="Expected sha256 of the downloaded artifact (the wheel of a pypi:// source).",
    )
    serving: dict[str, Any] = Field(
        default_factory=dict,
        description="Backend options: 'backend' (transformers | vllm | embed | openai) overrides the "
        "default; others (dtype, max_model_len, trust_remote_code, ...) go to the backend as given.",
    )
    api: ApiSpec | None = Field(
        default=None, description="Endpoint, key variable and prices of an API model."
    )

    @model_validator(mode="after")
    def _api_only_for_api_models(self) -> ZooEntry:
        is_api = self.source.startswith("openai://")
        if is_api and self.api is None:
            raise ValueError("an openai:// model needs an 'api' block (model_id and prices)")
        if is_api and self.api is not None and not set(PRICE_FIELDS) <= self.api.model_fields_set:
            missing = " and ".join(f for f in PRICE_FIELDS if f not in self.api.model_fields_set)
            raise ValueError(f"the 'api' block needs {missing} (USD per 1M tokens; 0 for a free endpoint)")
        if not is_api and self.api is not None:
            raise ValueError("'api' is only for openai:// sources")
        return self


class UnknownModel(KeyError):
    """A name that is neither a zoo entry nor an alias; ``suggestions`` are the closest names."""

    def __init__(self, name: str, suggestions: list[str]) -> None:
        super().__init__(name)
        self.name = name
        self.suggestions = suggestions

    def __str__(self) -> str:
        if self.suggestions:
            return f"unknown model '{self.name}' — did you mean '{self.suggestions[0]}'?"
        return f"unknown model '{self.name}' (`recipe zoo list` shows the zoo)"


class ZooFileError(ValueError):
    """A zoo file with problems; ``problems`` holds every one as 'file:line:col: where: what'."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def read_zoo_file(path: Path) -> list[ZooEntry]:
    """Read and check one zoo file; raise ZooFileError listing every problem at once."""
    try:
        data, smap = load_yaml(path, merge_keys=True)
    except YamlSyntaxError as exc:
        raise ZooFileError([f"{path}: not valid YAML: {exc}"]) from None
    data = data or {}
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, dict) or set(data) - {"models"}:
        raise ZooFileError([f"{path}: expected a mapping with one key, 'models: {{name: entry, ...}}'"])

    def at(*key: str) -> str:
        """file:line:col of the key ``models.<key...>`` (or of its closest parent)."""
        return str(smap.find(("models", *key), key=True) or f"{path}:1:1")

    entries, problems = [], []
    for name, body in models.items():
        where = at(str(name))
        if not isinstance(body, dict):
            problems.append(f"{where}: models.{name}: expected a mapping of fields")
            continue
        secrets = inline_secrets(body)
        for key in secrets:  # the value must not be read, copied or echoed: only where it is
            dotted = ".".join(map(str, key))
            problems.append(f"{at(str(name), *map(str, key))}: models.{name}.{dotted}: a secret written in the "
                            f"zoo file; put it in an environment variable and name that instead "
                            f"({key[-1]}_env: MY_VARIABLE)")
        if secrets:
            continue
        for env in secret_env_names(body):
            register_secret_env(env)
        try:
            entry = ZooEntry(name=str(name), **body)
            source = parse_source(entry.source, base_dir=path.parent)
        except ValidationError as exc:
            for err in exc.errors():
                loc = [str(p) for p in err["loc"]]
                key = (str(name), loc[0]) if loc else (str(name),)
                problems.append(f"{at(*key)}: models.{'.'.join([str(name), *loc])}: {err['msg']}")
            continue
        except SourceError as exc:
            problems.append(f"{at(str(name), 'source')}: models.{name}.source: {exc}")
            continue
        if isinstance(source, FileSource):  # relative to this file, made absolute once here
            entry = entry.model_copy(update={"source": source.uri})
        if entry.api is not None:  # the default variable too, when the entry names none
            register_secret_env(entry.api.api_key_env)
        entries.append(entry)
    if problems:
        raise ZooFileError(problems)
    return entries


class Zoo:
    """The merged zoo. Build it with ``Zoo.load()``."""

    def __init__(self, entries: dict[str, ZooEntry], origins: dict[str, Path] | None = None) -> None:
        self._entries = dict(entries)
        self.origins = dict(origins or {})
        # Aliases of later entries win over earlier ones; a real name always wins over an alias.
        self._aliases = {
            a: e.name for e in self._entries.values() for a in e.aliases if a not in self._entries
        }

    @classmethod
    def load(cls, extra_files: Sequence[Path] = ()) -> Zoo:
        """The built-in zoo, then the user zoo, then ``extra_files``; later entries replace earlier ones."""
        files = [p for p in (BUILTIN_ZOO, zoo_home() / USER_ZOO_NAME) if p.is_file()]
        for extra in extra_files:
            if not Path(extra).is_file():
                raise ZooFileError([f"{extra}: zoo file not found"])
            files.append(Path(extra))
        entries: dict[str, ZooEntry] = {}
        origins: dict[str, Path] = {}
        problems: list[str] = []
        for path in files:
            try:
                for entry in read_zoo_file(path):
                    entries[entry.name] = entry
                    origins[entry.name] = path
            except ZooFileError as exc:
                problems.extend(exc.problems)
        if problems:
            raise ZooFileError(problems)
        return cls(entries, origins)

    def names(self) -> list[str]:
        """Entry names in the order the zoo files define them."""
        return list(self._entries)

    def get(self, name: str) -> ZooEntry:
        """The entry called ``name`` (or aliased so); UnknownModel with did-you-mean suggestions otherwise."""
        if name in self._entries:
            return self._entries[name]
        if name in self._aliases:
            return self._entries[self._aliases[name]]
        raise UnknownModel(name, did_you_mean(name, [*self._entries, *self._aliases]))

    def entry_for(self, name_or_uri: str) -> tuple[ZooEntry, Source]:
        """The entry and parsed source for a zoo name or an inline source URI.

        An inline URI that some entry uses as its source gets that entry; any other URI gets an unnamed
        entry (kind from the source, API parameters from the URI's query, prices 0 unless given).
        """
        if "://" not in name_or_uri:
            entry = self.get(name_or_uri)
            return entry, parse_source(entry.source)
        source = parse_source(name_or_uri)
        for entry in self._entries.values():
            if parse_source(entry.source).canonical == source.canonical:
                return entry, source
        fields: dict[str, Any] = {"name": name_or_uri, "source": source.uri}
        if isinstance(source, RandomSource):
            fields |= {
                "kind": source.kind,
                "family": source.family,
                "context_length": source.params["max_len"],
            }
        if isinstance(source, OpenAISource):
            p = source.params
            fields["api"] = ApiSpec(
                model_id=source.model_id,
                base_url=p.get("base_url"),
                api_key_env=p.get("api_key_env", "OPENAI_API_KEY"),
                input_per_mtok=float(p.get("input_per_mtok", 0)),
                output_per_mtok=float(p.get("output_per_mtok", 0)),
            )
        return ZooEntry(**fields), source

    def resolve(
        self, name_or_uri: str, *, pull: bool = True, progress: Callable[[str], None] | None = None
    ) -> ResolvedModel:
        """Everything a backend or trainer needs to open the model, pulling it on first use.

        With ``pull=False`` nothing is fetched: ``path`` and ``pin`` are filled only if already known.
        """
        entry, source = self.entry_for(name_or_uri)
        say = progress or _log.info
        record = self._record(source)
        if pull and (record is None or isinstance(source, FileSource)):
            record = source.pull(
                PullContext(
                    progress=say,
                    expected_sha256=entry.sha256,
                    tokenizer_path=lambda name: self._local_path(name, say),
                )
            )
        elif record is None and isinstance(source, FileSource) and source.path.is_dir():
            record = PullRecord(source=source.uri, path=str(source.path))
        return self._resolved(entry, source, record)

    def is_pulled(self, name_or_uri: str) -> bool:
        """Whether the model's files are already local (always True for API models). No network."""
        _, source = self.entry_for(name_or_uri)
        if isinstance(source, OpenAISource):
            return True
        if isinstance(source, FileSource):
            return source.path.is_dir()
        return self._record(source) is not None

    def pin(self, name_or_uri: str) -> str | None:
        """The pin recorded at pull time, else the pin the URI itself fixes (commit sha, query hash,
        API model id); None for a model never pulled whose source does not fix one. No network."""
        _, source = self.entry_for(name_or_uri)
        record = self._record(source)
        return (record.pin if record else None) or source.static_pin()

    def record(self, name_or_uri: str) -> PullRecord | None:
        """The pull record of a model, or None before its first pull."""
        return self._record(self.entry_for(name_or_uri)[1])

    @staticmethod
    def _record(source: Source) -> PullRecord | None:
        return read_record(source.canonical)

    def _local_path(self, name: str, progress: Callable[[str], None]) -> Path:
        resolved = self.resolve(name, progress=progress)
        if resolved.path is None:
            raise SourceError(f"'{name}' has no local files (an API model); it cannot lend a tokenizer")
        return resolved.path

    def _resolved(self, entry: ZooEntry, source: Source, record: PullRecord | None) -> ResolvedModel:
        path = Path(record.path) if record and record.path else None
        facts = entry.model_dump(include={"kind", "family", "context_length", "chat_template", "license"})
        base = self._trained_base(path)
        if base is not None:  # a trained model folder: unset facts come from the model it was tuned from
            facts |= {k: v for k, v in base.model_dump(include=set(facts)).items() if facts[k] is None}
            if entry.name == entry.source:
                facts["kind"] = base.kind
        default_backend = "openai" if isinstance(source, OpenAISource) else None
        default_backend = default_backend or ("embed" if facts["kind"] == "embed" else "transformers")
        return ResolvedModel(
            name=entry.name,
            source=entry.source,
            backend=entry.serving.get("backend", default_backend),
            path=path,
            pin=(record.pin if record else None) or source.static_pin(),
            tokenizer=entry.tokenizer,
            api=entry.api.model_dump() if entry.api else {},
            serving={k: v for k, v in entry.serving.items() if k != "backend"},
            **facts,
        )

    def _trained_base(self, path: Path | None) -> ZooEntry | None:
        info = read_trained(path) if path else None
        if info is None or info.base is None:
            return None
        try:
            return self.get(info.base)
        except UnknownModel:
            return None


def add_user_entry(entry: ZooEntry) -> Path:
    """Add or replace ``entry`` in the user zoo file and return that file's path.

    A relative file:// source is made absolute (relative to the working directory) first.
    """
    source = parse_source(entry.source)
    if isinstance(source, FileSource):
        entry = entry.model_copy(update={"source": source.uri})
    path = zoo_home() / USER_ZOO_NAME
    data: dict[str, Any] = {"models": {}}
    if path.is_file():
        data = yaml.safe_load(path.read_text()) or {"models": {}}
        data.setdefault("models", {})
    data["models"][entry.name] = entry.model_dump(mode="json", exclude={"name"}, exclude_defaults=True)
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return path
