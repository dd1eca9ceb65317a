"""The component contract: what every pipeline step implements.

A component is a class with a registered ``type`` name, a docstring (what it does, where it comes from),
a ``Params`` pydantic model and one of two shapes:

* ``MapComponent`` handles a batch of records: ``process(batch, ctx) -> list[Out]``, one entry per input
  record, in order. An entry is a dict (one output record), a list of dicts (zero or more records) or a
  ``Failed`` (the record goes to the stage's failures ledger with the error and raw model text). The
  runner owns batching, concurrency, progress, the per-record write-ahead log and retries.
* ``WholeComponent`` takes all its inputs at once: ``run(inputs, ctx) -> list[dict]``.

Both may define ``summarize(records, ctx) -> dict`` (written to ``metrics.json``) and
``report(records, metrics, ctx) -> str`` (a markdown section for ``report.md``). Side statistics that
``summarize`` or the report need (counts, training curves) go through ``ctx.save_stats`` /
``ctx.load_stats``; a component never writes or reads its own side files.

Components never open another stage's files, never import a backend, and import torch/transformers
inside functions so that ``recipe validate`` stays instant.

Example::

    class Shout(MapComponent):
        '''Upper-cases the ``text`` field.'''
        type = "demo.shout"
        inputs = {"records": Fields("text")}
        outputs = Fields("text")

        class Params(Params):
            suffix: str = "!"

        def process(self, batch, ctx):
            return [{**r, "text": r["text"].upper() + self.params.suffix} for r in batch]
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:  # only for type checkers: keeps import time low
    from registry.resolved import ResolvedModel
    from runner.backends.base import LLM, Embedder


class Params(BaseModel):
    """Base of every component's parameters: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class Fields(frozenset):
    """A set of record field names: what a port requires, or what a component emits."""

    def __new__(cls, *names: str) -> Fields:
        return super().__new__(cls, names)


@dataclass(frozen=True)
class ModelSlot:
    """A model a component uses.

    ``kind`` is ``chat`` (an LLM through a backend), ``embed`` (a sentence embedder) or ``weights``
    (a trainer loads the weights itself). ``default`` is a zoo name used when the stage binds nothing.
    ``local``: the component needs what only a local backend gives (the log-probabilities of given tokens,
    ``Sampling.logprob_tokens``), so binding an API model to the slot is a recipe error.
    """

    kind: Literal["chat", "embed", "weights"] = "chat"
    required: bool = True
    default: str | None = None
    doc: str = ""
    local: bool = False


@dataclass
class Failed:
    """A record that could not be processed; lands in ``failures.jsonl`` (never silently dropped).

    ``retry``: whether the runner may try the record again (sampled model output may parse next time).
    """

    error: str
    raw: str | None = None
    retry: bool = True


@dataclass
class Estimate:
    """What ``recipe plan`` shows for a stage before it runs."""

    records_out: int | None = None
    llm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


Out = dict | list[dict] | Failed


class Context(Protocol):
    """What the runner gives a component (see ``runner.context.StageContext``)."""

    stage: str
    params: Params
    seed: int
    rng: random.Random
    scratch: Path  # private working folder of this stage run (kept across resumes)
    artifact_dir: Path  # the stage's output folder: trainers write ``model/`` here, judges PNGs, ...
    log: logging.Logger
    inputs: dict[str, list[dict]]  # all input ports, whole (map components read side inputs here)

    def model(self, slot: str | None = None) -> LLM: ...

    def embedder(self, slot: str = "embedder") -> Embedder: ...

    def model_source(self, slot: str | None = None) -> ResolvedModel: ...

    def advance(self, n: int = 1, total: int | None = None) -> None: ...

    def input_artifact(self, port: str) -> Path:
        """The artifact folder (``produces_artifact``) of the stage feeding ``port``, read-only."""

    def save_stats(self, name: str, data: Any) -> None:
        """Keep side statistics or report data (JSON-able) under ``name``; written atomically by the
        runner into the stage folder, so ``summarize`` and the report can read them back."""

    def load_stats(self, name: str, default: Any = None) -> Any:
        """What ``save_stats(name, ...)`` kept in this stage run, or ``default``."""


class Component:
    """Base class; subclass ``MapComponent`` or ``WholeComponent``."""

    type: ClassVar[str] = ""
    version: ClassVar[str] = "1"  # bump when the same inputs would now give different outputs
    shape: ClassVar[Literal["map", "whole"]]
    Params: ClassVar[type[Params]] = Params
    # input port -> fields each record on it must have. An empty dict means the component reads nothing.
    inputs: ClassVar[dict[str, Fields]] = {}
    # ports a recipe may leave unconnected
    optional_inputs: ClassVar[frozenset[str]] = frozenset()
    # a port whose record fields pass through to the output (filters, mixers): output fields are that
    # port's fields plus ``outputs``
    passthrough: ClassVar[str | None] = None
    # fields each output record has; None when they depend on the data (e.g. a loader)
    outputs: ClassVar[Fields | None] = None
    # slot name -> model slot; the first slot is the one a stage's ``model:`` binds
    models: ClassVar[dict[str, ModelSlot]] = {}
    # prompt template name -> text; hashed into the fingerprint and the lockfile
    prompts: ClassVar[dict[str, str]] = {}
    # a trainer sets this: its ``artifact_dir/model`` can be used as a model by later stages
    produces_model: ClassVar[bool] = False
    # a stage that builds a folder later stages open (e.g. a search index) names it here: it lives at
    # ``artifact_dir/<name>`` and a downstream stage reads it through ``ctx.input_artifact(port)``
    produces_artifact: ClassVar[str | None] = None
    # input port -> the artifact folder name the upstream stage on that port must produce
    artifact_inputs: ClassVar[dict[str, str]] = {}
    # prompt-template param -> the input port whose records fill it: ``recipe validate`` checks every
    # field a template names against the fields that port's records carry (when they are known)
    template_params: ClassVar[dict[str, str]] = {}
    # names a template may use that the component fills itself rather than the record (e.g. a scale)
    template_vars: ClassVar[frozenset[str]] = frozenset()
    # reply name -> kind of the format (``regex``, ``json_schema``, ``grammar``) the component enforces on
    # that model reply when its ``constrained`` param is on (``components.formats``); ``recipe validate``
    # checks that the stage's model can enforce those kinds
    reply_formats: ClassVar[dict[str, str]] = {}

    def __init__(self, params: Params | None = None) -> None:
        self.params = params if params is not None else self.Params()

    def output_fields(self) -> Fields | None:
        """Fields of the output records (may depend on params)."""
        return self.outputs

    def template_fields(self) -> dict[str, tuple[str, list[str]]]:
        """Template param -> (input port, record fields it reads), for each template set in params."""
        from components.templates import template_fields  # the one template syntax

        out: dict[str, tuple[str, list[str]]] = {}
        for param, port in self.template_params.items():
            text = getattr(self.params, param, None)
            if isinstance(text, str):
                out[param] = (port, [f for f in template_fields(text) if f not in self.template_vars])
        return out

    def prompt_texts(self) -> dict[str, str]:
        """Prompt templates in use with these params (override when params choose the prompt)."""
        return dict(self.prompts)

    def estimate(self, n_in: dict[str, int | None]) -> Estimate:
        """Records out and LLM calls for ``n_in`` records per input port (None: unknown)."""
        return Estimate()

    def summarize(self, records: list[dict], ctx: Context) -> dict[str, Any] | None:
        return None

    def report(self, records: list[dict], metrics: dict[str, Any] | None, ctx: Context) -> str | None:
        return None


class MapComponent(Component):
    shape: ClassVar[Literal["map", "whole"]] = "map"
    # the port the runner maps over; None means the only port
    map_over: ClassVar[str | None] = None
    batch_size: ClassVar[int] = 8  # default records per process() call; a stage may override

    def process(self, batch: list[dict], ctx: Context) -> list[Out]:
        raise NotImplementedError


class WholeComponent(Component):
    shape: ClassVar[Literal["map", "whole"]] = "whole"

    def run(self, inputs: dict[str, list[dict]], ctx: Context) -> list[dict]:
        raise NotImplementedError


def record_key(record: dict) -> str:
    """The key the runner files a record under: its ``id``, else its ``idx``, else a content hash."""
    for name in ("id", "idx"):
        if record.get(name) is not None:
            return str(record[name])
    import hashlib
    import json

    text = json.dumps(record, sort_keys=True, ensure_ascii=False, default=str, separators=(",", ":"))
    return "h" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
