"""Publishing a finished run: each chosen stage becomes a dataset or model repo with a card.

``publish_run(run_dir, to)`` reads the run folder the runner wrote (``latest.json`` → stage folders) and
publishes, per artifact stage:

* a stage with ``model/`` → a **model** repo: the model folder's files (weights or adapter, tokenizer,
  its metadata, see ``registry.model_folder``) at the top;
* any other stage → a **dataset** repo: ``data/records.jsonl``.

Both also get ``README.md`` (the card: counts, fields or base model, metrics, the recipe, the lockfile and
the one-line reproduce command ``recipe run recipe.lock.yaml``), ``recipe.yaml``, ``recipe.lock.yaml``,
``manifest.json`` and ``metrics.json`` when the stage has metrics. Cards are written by publishing only
(``runner.cards``): a trainer writes its model and the metadata (base, adapter or not, a training summary)
that the card shows.

Targets:

* ``hf://org/name`` — Hugging Face Hub repos through ``HfApi`` (token from ``$HF_TOKEN``, private by
  default). One artifact goes to ``org/name``; several go to ``org/name-<stage>`` each.
* ``file://folder`` — the same layout in ``folder/<name>-<stage>/`` (``<name>`` is the recipe name); a
  published model is also added to the user zoo as ``<name>-<stage>``, so the next recipe can use it by
  name. A relative folder is relative to the recipe's folder (or ``base_dir``).
* empty / None — ``file://<run_dir>/published`` (offline).

No secret is ever written: every text file that goes out passes through the same masking as logs
(values of ``*_API_KEY``/``*_TOKEN``/... env vars, and of ``token_env``).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field

from registry.jsonio import read_json
from registry.secrets import secret_values
from registry.suggest import suggestion
from runner.cards import slug, stage_card

log = logging.getLogger(__name__)

TEXT_SUFFIXES = {".json", ".jsonl", ".md", ".txt", ".yaml", ".yml", ".jinja", ".py", ".csv", ".tsv"}
MASK = "***"


class PublishError(RuntimeError):
    """A run cannot be published as asked (missing stage, bad target, no token, Hub failure)."""


class PublishedItem(BaseModel):
    """One published artifact."""

    stage: str
    kind: Literal["dataset", "model"]
    uri: str = Field(description="hf://org/repo or file:///abs/folder")
    files: list[str] = Field(description="paths inside the repo or folder")
    zoo_name: str | None = Field(None, description="the user-zoo name a published local model got")

    def __str__(self) -> str:
        zoo = f" (zoo: {self.zoo_name})" if self.zoo_name else ""
        return f"{self.kind} {self.stage} → {self.uri}{zoo}"


# ---------------------------------------------------------------------------------------------- secrets

def _masker(token_env: str) -> Callable[[str], str]:
    """A function that masks every secret value known now (computed once: records can be many)."""
    values = set(secret_values())
    if os.environ.get(token_env):
        values.add(os.environ[token_env])
    ordered = sorted(values, key=len, reverse=True)

    def mask(text: str) -> str:
        for v in ordered:
            if v in text:
                text = text.replace(v, MASK)
        return text

    return mask


def _copy(src: Path, dst: Path, mask: Callable[[str], str]) -> None:
    """Copy a file; text files are masked line by line, binaries copied as they are."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.suffix.lower() not in TEXT_SUFFIXES:
        shutil.copyfile(src, dst)
        return
    with src.open(encoding="utf-8", errors="surrogateescape") as fin, \
            dst.open("w", encoding="utf-8", errors="surrogateescape") as fout:
        for line in fin:
            fout.write(mask(line))


# ---------------------------------------------------------------------------------------------- run folder

@dataclass
class Artifact:
    """One stage of a finished run, as publish reads it from the run folder."""

    name: str
    dir: Path
    manifest: dict[str, Any]

    @property
    def model_dir(self) -> Path:
        return self.dir / "model"

    @property
    def records(self) -> Path:
        return self.dir / "records.jsonl"

    @property
    def kind(self) -> Literal["dataset", "model"]:
        return "model" if self.model_dir.is_dir() else "dataset"

    def publishable(self) -> str | None:
        """Why this stage cannot be published, or None."""
        if self.manifest.get("status") != "done":
            return f"stage {self.name!r} is not finished (status {self.manifest.get('status')!r})"
        has_records = self.records.is_file() and self.records.stat().st_size > 0
        if not self.model_dir.is_dir() and not has_records and not (self.dir / "metrics.json").is_file():
            return f"stage {self.name!r} has neither records, metrics nor a model"
        return None

    def metrics(self) -> dict[str, Any] | None:
        return read_json(self.dir / "metrics.json")


def _stages(run_dir: Path) -> dict[str, Artifact]:
    latest = run_dir / "latest.json"
    if not latest.is_file():
        raise PublishError(f"{run_dir}: not a run folder (no latest.json)")
    out = {}
    for name, rel in (read_json(latest, {}) or {}).get("stages", {}).items():
        out[name] = Artifact(name=name, dir=run_dir / rel, manifest=read_json(run_dir / rel / "manifest.json", {}))
    return out


def _choose(stages: dict[str, Artifact], artifacts: list[str] | None) -> list[Artifact]:
    if artifacts is None:
        chosen = []
        for s in stages.values():
            why = s.publishable()
            if why:
                log.info("publish: skipping %s: %s", s.name, why)
            else:
                chosen.append(s)
        return chosen
    problems = []
    for a in artifacts:
        if a not in stages:
            problems.append(f"no stage named {a!r} in the run" + suggestion(a, list(stages)))
        elif why := stages[a].publishable():
            problems.append(why)
    if problems:
        raise PublishError("cannot publish: " + "; ".join(problems))
    return [stages[a] for a in artifacts]


def _read_lock(run_dir: Path) -> dict[str, Any]:
    """The run's lockfile as data ({} when absent or unreadable)."""
    path = run_dir / "recipe.lock.yaml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else None
    except yaml.YAMLError:
        data = None
    return data if isinstance(data, dict) else {}


def _recipe_dir(run_dir: Path, lock: dict[str, Any]) -> Path | None:
    """The recipe's folder, from the lockfile's ``lock.recipe_dir`` (relative to the run folder)."""
    rel = (lock.get("lock") or {}).get("recipe_dir")
    return (run_dir / rel).resolve() if isinstance(rel, str) else None


# ---------------------------------------------------------------------------------------------- layout

def _write_artifact(stage: Artifact, dest: Path, title: str, recipe_name: str, run_dir: Path,
                    mask: Callable[[str], str]) -> list[str]:
    """Fill ``dest`` with the repo layout of one stage; returns the relative file paths."""
    if stage.kind == "model":
        for src in sorted(p for p in stage.model_dir.rglob("*") if p.is_file()):
            _copy(src, dest / src.relative_to(stage.model_dir), mask)
    else:
        _copy(stage.records, dest / "data" / "records.jsonl", mask)
    texts: dict[str, str | None] = {}
    for name in ("recipe.yaml", "recipe.lock.yaml"):
        src = run_dir / name
        texts[name] = mask(src.read_text(encoding="utf-8")) if src.is_file() else None
        if texts[name] is not None:
            (dest / name).write_text(texts[name], encoding="utf-8")
    for name in ("manifest.json", "metrics.json"):
        if (stage.dir / name).is_file():
            _copy(stage.dir / name, dest / name, mask)
    card = stage_card(stage, title, recipe_name, texts["recipe.yaml"], texts["recipe.lock.yaml"])
    (dest / "README.md").write_text(mask(card), encoding="utf-8")
    return sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())


def _replace_dir(tmp: Path, dest: Path) -> None:
    """Put the finished ``tmp`` folder at ``dest``, replacing an earlier publication."""
    old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
    if dest.exists():
        dest.rename(old)
    tmp.rename(dest)
    shutil.rmtree(old, ignore_errors=True)


def _register_model(zoo_name: str, folder: Path, stage: Artifact, recipe_name: str) -> None:
    from registry.zoo import ZooEntry, add_user_entry  # the zoo module is heavier; only needed here

    add_user_entry(ZooEntry(
        name=zoo_name,
        source=f"file://{folder}",
        kind="chat",
        description=f"trained by stage {stage.name} ({stage.manifest.get('type', '?')}) of recipe {recipe_name}",
    ))


def publish_run(run_dir: Path, to: str | None, *, artifacts: list[str] | None = None, private: bool = True,
                token_env: str = "HF_TOKEN", recipe_name: str | None = None,
                base_dir: Path | None = None) -> list[PublishedItem]:
    """Publish a finished run's artifacts (see the module docstring); returns what was published.

    ``artifacts``: stage names (default: every finished stage with records or a model). ``private``:
    Hub repos are created private. ``token_env``: the env var holding the Hub token. ``recipe_name``:
    names the published folders/repos and zoo entries (default: the lockfile's ``recipe``).
    ``base_dir``: what a relative ``file://`` folder is relative to (default: the recipe's folder, as
    the lockfile records it, like every path in a recipe; else the current directory).
    """
    run_dir = Path(run_dir).resolve()
    chosen = _choose(_stages(run_dir), artifacts)
    if not chosen:
        log.info("publish: nothing to publish in %s", run_dir)
        return []
    lock = _read_lock(run_dir)
    name = recipe_name or (lock["recipe"] if isinstance(lock.get("recipe"), str) else run_dir.name)
    mask = _masker(token_env)
    to = (to or "").strip() or f"file://{run_dir / 'published'}"
    if to.startswith("hf://"):
        return _publish_hub(run_dir, to[len("hf://"):].strip("/"), chosen, name, private, token_env, mask)
    if to.startswith("file://"):
        folder = Path(to[len("file://"):]).expanduser()
        if not folder.is_absolute():
            folder = Path(base_dir or _recipe_dir(run_dir, lock) or Path.cwd()) / folder
        return _publish_folder(run_dir, folder.resolve(), chosen, name, mask)
    raise PublishError(f"unknown publish target {to!r}: use hf://org/name or file://folder")


def _publish_folder(run_dir: Path, folder: Path, chosen: list[Artifact], name: str,
                    mask: Callable[[str], str]) -> list[PublishedItem]:
    items = []
    folder.mkdir(parents=True, exist_ok=True)
    for stage in chosen:
        label = f"{slug(name)}-{slug(stage.name)}"
        dest = folder / label
        tmp = Path(tempfile.mkdtemp(dir=folder, prefix=f".{label}.tmp-"))
        try:
            files = _write_artifact(stage, tmp, label, name, run_dir, mask)
            _replace_dir(tmp, dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        zoo_name = None
        if stage.kind == "model":
            _register_model(label, dest, stage, name)
            zoo_name = label
        log.info("publish: %s %s → %s", stage.kind, stage.name, dest)
        items.append(PublishedItem(stage=stage.name, kind=stage.kind, uri=f"file://{dest}", files=files,
                                   zoo_name=zoo_name))
    return items


def _publish_hub(run_dir: Path, base_repo: str, chosen: list[Artifact], name: str, private: bool, token_env: str,
                 mask: Callable[[str], str]) -> list[PublishedItem]:
    if base_repo.count("/") != 1 or not all(base_repo.split("/")):
        raise PublishError(f"hf://{base_repo}: expected hf://org/name")
    token = os.environ.get(token_env)
    if not token:
        raise PublishError(f"publishing to hf://{base_repo} needs a Hugging Face token in ${token_env}")
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    items = []
    for stage in chosen:
        repo_id = base_repo if len(chosen) == 1 else f"{base_repo}-{slug(stage.name)}"
        with tempfile.TemporaryDirectory(prefix="recipe-publish-") as tmp:
            files = _write_artifact(stage, Path(tmp), repo_id, name, run_dir, mask)
            try:
                api.create_repo(repo_id, repo_type=stage.kind, private=private, exist_ok=True)
                api.upload_folder(repo_id=repo_id, folder_path=tmp, repo_type=stage.kind,
                                  commit_message=f"{name}: stage {stage.name} ({stage.manifest.get('type', '?')})")
            except Exception as e:  # Hub errors can echo request details: mask before they surface
                raise PublishError(mask(f"publishing stage {stage.name!r} to hf://{repo_id} failed: "
                                        f"{type(e).__name__}: {e}")) from None
        log.info("publish: %s %s → hf://%s", stage.kind, stage.name, repo_id)
        items.append(PublishedItem(stage=stage.name, kind=stage.kind, uri=f"hf://{repo_id}", files=files))
    return items
