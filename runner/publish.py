"""Publishing a finished run: each chosen stage becomes a dataset or model repo with a card.

``publish_run(run_dir, to)`` reads the run folder the runner wrote (``runner.run_folder``) and publishes,
per artifact stage:

* a stage with ``model/`` → a **model** repo that loads on any machine (``runner.publish_model``): an
  adapter names its base by Hub id, an adapter over a base without one is merged into full weights, and
  no file holds a path of this machine;
* any other stage → a **dataset** repo: its records under ``data/``, as Parquet through ``datasets`` when
  they fit one schema, else as JSON lines (``runner.publish_data``).

Both also get ``README.md`` (the card, built with huggingface_hub's card data classes: ``runner.cards``),
``recipe.yaml``, ``recipe.lock.yaml``, ``manifest.json``, ``metrics.json`` when the stage has metrics and
the run's ``report.html`` (self-contained; the card links to it).
Cards are written by publishing only: a trainer writes its model and the metadata that the card shows.

Targets:

* ``hf://org/name`` — Hugging Face Hub repos through ``HfApi``, private by default. The token is found
  the way huggingface_hub finds it (``$HF_TOKEN``, else the login saved by ``hf auth login``). One artifact
  goes to ``org/name``; several go to ``org/name-<stage>`` each.
* ``file://folder`` — the same layout in ``folder/<name>-<stage>/`` (``<name>`` is the recipe name); a
  published model is also added to the user zoo as ``<name>-<stage>``, so the next recipe can use it by
  name. A relative folder is relative to the recipe's folder (or ``base_dir``).
* empty / None — ``file://<run_dir>/published`` (offline).

No secret is ever written: every text file that goes out passes through the same masking as logs
(values of ``*_API_KEY``/``*_TOKEN``/... env vars and the Hub token). A published text file that still
holds a folder of this machine (a record naming a local file, say) is named in a warning.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from registry.secrets import secret_values
from runner.cards import CardInputs, Evaluation, numeric_metrics, slug, stage_card
from runner.fingerprint import relative_to
from runner.publish_data import write_dataset
from runner.publish_model import leaked_paths, machine_paths, write_portable_model
from runner.report_html import REPORT_FILE
from runner.run_folder import Artifact, PublishError, StageGraph, choose, read_lock, recipe_dir, run_stages

__all__ = ["PublishError", "PublishedItem", "publish_run"]

log = logging.getLogger(__name__)

TEXT_SUFFIXES = {".json", ".jsonl", ".md", ".txt", ".yaml", ".yml", ".jinja", ".py", ".csv", ".tsv", ".html"}
MASK = "***"
JUDGE_PREFIX = "judge."  # component types whose metrics score a model


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

def hub_token() -> str | None:
    """The Hub token as huggingface_hub finds it: ``$HF_TOKEN``, else the saved login."""
    from huggingface_hub import get_token

    return get_token()


def _masker(token_env: str | None) -> Callable[[str], str]:
    """A function that masks every secret value known now (computed once: records can be many)."""
    values = set(secret_values())
    for value in (os.environ.get(token_env) if token_env else None, hub_token()):
        if value:
            values.add(value)
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


# ---------------------------------------------------------------------------------------------- layout

@dataclass
class _Publication:
    """One call of ``publish_run``: the run, and what every artifact's card needs to know of the others."""

    run_dir: Path
    name: str  # the recipe name
    recipe_dir: Path | None
    mask: Callable[[str], str]
    stages: dict[str, Artifact]
    graph: StageGraph
    hub_ids: dict[str, str]  # stage → the Hub repo it goes to (Hub publications only)
    texts: dict[str, str | None]  # recipe.yaml and recipe.lock.yaml, masked

    def card_inputs(self, stage: Artifact, title: str, load_from: str) -> CardInputs:
        """The card's view of the run: for a model, the judges that scored it and the Hub data it learned from."""
        evaluations, datasets = [], []
        if stage.kind == "model":
            models = {s.name for s in self.stages.values() if s.kind == "model"}
            for judge in self.stages.values():
                metrics = numeric_metrics(judge.metrics())
                if judge.type.startswith(JUDGE_PREFIX) and metrics and judge.manifest.get("status") == "done" \
                        and stage.name in self.graph.nearest(models, judge.name):
                    evaluations.append(Evaluation(judge.name, judge.type, metrics, self.hub_ids.get(judge.name)))
            ancestors = self.graph.ancestors(stage.name)
            datasets = [self.hub_ids[s] for s in self.stages if s in ancestors and s in self.hub_ids
                        and self.stages[s].kind == "dataset"]
        return CardInputs(title=title, recipe_name=self.name, recipe_text=self.texts["recipe.yaml"],
                          lock_text=self.texts["recipe.lock.yaml"], load_from=load_from, datasets=datasets,
                          evaluations=evaluations, report=REPORT_FILE if (self.run_dir / REPORT_FILE).is_file() else None)

    def write(self, stage: Artifact, dest: Path, title: str, load_from: str) -> list[str]:
        """Fill ``dest`` with the repo layout of one stage; returns the relative file paths."""
        data = model = None
        if stage.kind == "model":
            model = write_portable_model(stage.model_dir, dest, lambda s, d: _copy(s, d, self.mask))
        else:
            data = write_dataset(stage.records, dest, self.mask)
        for name, text in self.texts.items():
            if text is not None:
                (dest / name).write_text(text, encoding="utf-8")
        manifest = dict(stage.manifest)
        if isinstance(manifest.get("params"), dict) and self.recipe_dir is not None:
            # path params were resolved on this machine: relative to the recipe again, as in the lockfile
            manifest["params"] = {k: relative_to(v, self.recipe_dir) for k, v in manifest["params"].items()}
        (dest / "manifest.json").write_text(self.mask(json.dumps(manifest, indent=2, ensure_ascii=False)) + "\n",
                                            encoding="utf-8")
        if (stage.dir / "metrics.json").is_file():
            _copy(stage.dir / "metrics.json", dest / "metrics.json", self.mask)
        if (self.run_dir / REPORT_FILE).is_file():  # the run's report, published beside every artifact
            _copy(self.run_dir / REPORT_FILE, dest / REPORT_FILE, self.mask)
        card = stage_card(stage, self.card_inputs(stage, title, load_from), data=data, model=model)
        (dest / "README.md").write_text(self.mask(card), encoding="utf-8")
        leaks = leaked_paths(dest, machine_paths(self.run_dir, self.recipe_dir), TEXT_SUFFIXES)
        if leaks:
            log.warning("publish: %s: files holding a folder of this machine: %s", stage.name, "; ".join(leaks))
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
        description=f"trained by stage {stage.name} ({stage.type}) of recipe {recipe_name}",
    ))


def publish_run(run_dir: Path, to: str | None, *, artifacts: list[str] | None = None, private: bool = True,
                token_env: str | None = None, recipe_name: str | None = None,
                base_dir: Path | None = None) -> list[PublishedItem]:
    """Publish a finished run's artifacts (see the module docstring); returns what was published.

    ``artifacts``: stage names (default: every finished stage with records or a model). ``private``:
    Hub repos are created private. ``token_env``: an env var holding the Hub token, for a token other
    than the one huggingface_hub finds itself. ``recipe_name``: names the published folders/repos and zoo
    entries (default: the lockfile's ``recipe``). ``base_dir``: what a relative ``file://`` folder is
    relative to (default: the recipe's folder, as the lockfile records it, like every path in a recipe;
    else the current directory).
    """
    run_dir = Path(run_dir).resolve()
    stages = run_stages(run_dir)
    chosen = choose(stages, artifacts)
    if not chosen:
        log.info("publish: nothing to publish in %s", run_dir)
        return []
    lock = read_lock(run_dir)
    name = recipe_name or (lock["recipe"] if isinstance(lock.get("recipe"), str) else run_dir.name)
    mask = _masker(token_env)
    texts = {n: mask((run_dir / n).read_text(encoding="utf-8")) if (run_dir / n).is_file() else None
             for n in ("recipe.yaml", "recipe.lock.yaml")}
    pub = _Publication(run_dir=run_dir, name=name, recipe_dir=recipe_dir(run_dir, lock), mask=mask,
                       stages=stages, graph=StageGraph(lock), hub_ids={}, texts=texts)
    to = (to or "").strip() or f"file://{run_dir / 'published'}"
    if to.startswith("hf://"):
        return _publish_hub(pub, to[len("hf://"):].strip("/"), chosen, private, token_env)
    if to.startswith("file://"):
        folder = Path(to[len("file://"):]).expanduser()
        if not folder.is_absolute():
            folder = Path(base_dir or pub.recipe_dir or Path.cwd()) / folder
        return _publish_folder(pub, folder.resolve(), chosen)
    raise PublishError(f"unknown publish target {to!r}: use hf://org/name or file://folder")


def _publish_folder(pub: _Publication, folder: Path, chosen: list[Artifact]) -> list[PublishedItem]:
    items = []
    folder.mkdir(parents=True, exist_ok=True)
    for stage in chosen:
        label = f"{slug(pub.name)}-{slug(stage.name)}"
        dest = folder / label
        tmp = Path(tempfile.mkdtemp(dir=folder, prefix=f".{label}.tmp-"))
        try:
            files = pub.write(stage, tmp, label, ".")
            _replace_dir(tmp, dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        zoo_name = None
        if stage.kind == "model":
            _register_model(label, dest, stage, pub.name)
            zoo_name = label
        log.info("publish: %s %s → %s", stage.kind, stage.name, dest)
        items.append(PublishedItem(stage=stage.name, kind=stage.kind, uri=f"file://{dest}", files=files,
                                   zoo_name=zoo_name))
    return items


def _publish_hub(pub: _Publication, base_repo: str, chosen: list[Artifact], private: bool,
                 token_env: str | None) -> list[PublishedItem]:
    if base_repo.count("/") != 1 or not all(base_repo.split("/")):
        raise PublishError(f"hf://{base_repo}: expected hf://org/name")
    token = os.environ.get(token_env) if token_env else hub_token()
    if not token:
        where = f"${token_env}" if token_env else "$HF_TOKEN or a saved login (`hf auth login`)"
        raise PublishError(f"publishing to hf://{base_repo} needs a Hugging Face token: none in {where}")
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    pub.hub_ids = {s.name: base_repo if len(chosen) == 1 else f"{base_repo}-{slug(s.name)}" for s in chosen}
    items = []
    for stage in chosen:
        repo_id = pub.hub_ids[stage.name]
        with tempfile.TemporaryDirectory(prefix="recipe-publish-") as tmp:
            files = pub.write(stage, Path(tmp), repo_id, repo_id)
            try:
                api.create_repo(repo_id, repo_type=stage.kind, private=private, exist_ok=True)
                api.upload_folder(repo_id=repo_id, folder_path=tmp, repo_type=stage.kind,
                                  commit_message=f"{pub.name}: stage {stage.name} ({stage.type})")
            except Exception as e:  # Hub errors can echo request details: mask before they surface
                raise PublishError(pub.mask(f"publishing stage {stage.name!r} to hf://{repo_id} failed: "
                                            f"{type(e).__name__}: {e}")) from None
        log.info("publish: %s %s → hf://%s", stage.kind, stage.name, repo_id)
        items.append(PublishedItem(stage=stage.name, kind=stage.kind, uri=f"hf://{repo_id}", files=files))
    return items

