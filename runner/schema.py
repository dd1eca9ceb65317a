"""The recipe file format (pydantic). Component ``params`` are validated separately, per component."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from runner.cluster.options import ExecutorOptions
from runner.launch.config import LaunchConfig
from runner.schema_errors import SAFE_NAME_PATTERN


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


MAX_FAILED_DOC = ("failed records a stage may end with and still count as finished: a count (3) or a fraction "
                  "of its input records (0.05); beyond it the run exits 3, later stages wait and a plain re-run "
                  "tries the failed records again")


def check_max_failed(v: int | float | None) -> int | float | None:
    """A count is a whole number (``3``); a fraction is written with a point and lies in [0, 1] (``0.05``)."""
    if isinstance(v, float) and not 0 <= v <= 1:
        raise ValueError("a fraction of the input records lies between 0.0 and 1.0 (0.05 = 5 %); "
                         "a count is a whole number")
    if isinstance(v, int) and v < 0:
        raise ValueError("a count of failed records is 0 or more")
    return v


class ModelSpec(Strict):
    """A model role bound to a zoo entry (or an inline source URI), with optional backend options."""

    name: str = Field(description="zoo name, or a source URI (hf://, file://, random://, openai://, pypi://)")
    backend: str | None = Field(None, description="transformers | openai | vllm | embed; default: the zoo entry's")
    options: dict[str, Any] = Field(default_factory=dict,
                                    description="the backend's options (runner.backends.options), checked "
                                    "against the backend that serves the model")


class StageSpec(Strict):
    type: str = Field(description="component type name, or module:Class for a user component")
    inputs: dict[str, str] = Field(default_factory=dict, description="input port → upstream stage name")
    model: str | None = Field(None, description="role, zoo name or trainer stage bound to the main model slot")
    models: dict[str, str] = Field(default_factory=dict, description="slot → role / zoo name / trainer stage")
    params: dict[str, Any] = Field(default_factory=dict, description="the component's parameters")
    batch_size: int | None = Field(None, ge=1, description="records per process() call (map components)")
    concurrency: int = Field(1, ge=1, description="batches processed at once (map components)")
    retries: int = Field(2, ge=0, description="extra attempts for a failed record before the failures ledger")
    launch: LaunchConfig | None = Field(None, description="multi-process launch for trainers (accelerate)")
    max_failed: int | float | None = Field(None, description=MAX_FAILED_DOC + "; default: the recipe's")
    allow_empty: bool = Field(False, description="let the stage run on an input with no records (by default an "
                              "empty input stops the stage)")

    _max_failed = field_validator("max_failed")(check_max_failed)


class PublishSpec(Strict):
    to: str | None = Field(None, description="hf://org/name or file://folder; default file://<run>/published")
    artifacts: list[str] | None = Field(None, description="stages to publish; default: all with outputs")
    private: bool = Field(True, description="Hub repos are private unless set to false")


# names that become folder names: letters, digits, `_ . -`, not starting with a dot (no `..`, no `/`)
SafeName = Annotated[str, StringConstraints(pattern=rf"^{SAFE_NAME_PATTERN}$", max_length=128)]


class Recipe(Strict):
    recipe: SafeName = Field(description="recipe name (letters, digits, _ . -); the run folder is runs/<recipe>")
    description: str = ""
    seed: int = Field(0, description="seed for every stage (each stage derives its own from it)")
    max_failed: int | float = Field(0, description=MAX_FAILED_DOC + "; each stage may set its own")
    zoo: list[str] = Field(default_factory=list, description="extra zoo files, relative to the recipe")
    models: dict[str, str | ModelSpec] = Field(default_factory=dict, description="role → model")
    profiles: dict[str, dict[str, Any]] = Field(default_factory=dict,
                                                description="named overlays deep-merged by --profile")
    stages: dict[SafeName, StageSpec]
    publish: PublishSpec | None = None
    executor: ExecutorOptions | None = Field(None, description="resources of the shard jobs of "
                                             "`recipe run --executor slurm --shards N` (runner.cluster)")
    lock: dict[str, Any] | None = Field(None, description="written in recipe.lock.yaml; pins a reproduction")

    _max_failed = field_validator("max_failed")(check_max_failed)

    def failure_limit(self, stage: str) -> int | float:
        """The stage's ``max_failed``, else the recipe's."""
        own = self.stages[stage].max_failed
        return self.max_failed if own is None else own

    def model_spec(self, role: str) -> ModelSpec:
        m = self.models[role]
        return m if isinstance(m, ModelSpec) else ModelSpec(name=m)
