"""The cards (``README.md``) of published artifacts (see ``runner.publish``); no other code writes cards.

A dataset card holds the stage's counts and the table of its record fields; a model card the base model,
adapter or full weights and the trainer's summary from the model's metadata (``registry.model_folder``:
what was trained and how, steps, tokens, loss, settings, how to load it). Both hold the stage's metrics,
the one-line reproduce command, the recipe and the lockfile.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from registry.model_folder import TrainedModel, TrainingSummary, read_trained

if TYPE_CHECKING:
    from runner.publish import Artifact

REPRODUCE = "recipe run recipe.lock.yaml"


def slug(text: str) -> str:
    """A repo-name-safe version of a stage or recipe name (also the recipe's tag on a card)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "artifact"


def _fenced(text: str, lang: str) -> str:
    """A code block whose fence is longer than any backtick run inside ``text``."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{lang}\n{text.rstrip()}\n{fence}"


def _field_table(records: Path) -> tuple[int, str]:
    """(number of records, a markdown table: field, in how many records, value types)."""
    seen: dict[str, int] = {}
    types: dict[str, set[str]] = {}
    n = 0
    with records.open(encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            n += 1
            for key, value in json.loads(line).items():
                seen[key] = seen.get(key, 0) + 1
                types.setdefault(key, set()).add("null" if value is None else type(value).__name__)
    rows = ["| field | records | types |", "| --- | ---: | --- |"]
    rows += [f"| `{k}` | {c} | {', '.join(sorted(types[k]))} |" for k, c in seen.items()]
    return n, "\n".join(rows)


def _hub_id(source: str | None) -> str | None:
    if source and source.startswith("hf://"):
        return source[len("hf://"):].split("@", 1)[0]
    return None


def _training_notes(t: TrainingSummary, adapter: bool) -> list[str]:
    """The trainer's summary as card lines: what was trained, the run's size and loss, its settings, and
    how to load the folder."""
    loss = f", loss {t.first_loss:.4f} → {t.final_loss:.4f}" if t.first_loss is not None and t.final_loss is not None \
        else ""
    lines = [t.description, ""] if t.description else []
    lines += [f"Training: {t.steps} optimizer steps, {t.tokens} tokens{loss}.", ""]
    if t.settings:
        lines += ["| setting | value |", "| --- | --- |", *(f"| {k} | {v} |" for k, v in t.settings.items()), ""]
    load = (
        "from peft import AutoPeftModelForCausalLM\n"
        'model = AutoPeftModelForCausalLM.from_pretrained("<this folder>")'
        if adapter
        else "from transformers import AutoModelForCausalLM\n"
        'model = AutoModelForCausalLM.from_pretrained("<this folder>")'
    )
    return [*lines, "### Use", "", _fenced(load, "python")]


def stage_card(stage: Artifact, title: str, recipe_name: str, recipe_text: str | None, lock_text: str | None) -> str:
    """The card of one published stage (see the module docstring); ``title`` names the repo or folder."""
    m = stage.manifest
    front: dict[str, Any] = {"tags": ["recipe-zoo", slug(recipe_name)]}
    body = [f"# {title}", ""]
    if stage.kind == "model":
        info = read_trained(stage.model_dir) or TrainedModel()
        front["library_name"] = "peft" if info.adapter else "transformers"
        if base := _hub_id(info.base_source):
            front["base_model"] = base
        body += [
            f"Model trained by stage `{stage.name}` (`{m.get('type', '?')}`) of the recipe `{recipe_name}`.",
            "",
            f"- base model: `{info.base or '?'}` (`{info.base_source or '?'}`)",
            f"- weights: {'a PEFT adapter over the base model' if info.adapter else 'the full model'}",
        ]
        if info.training is not None:
            front["tags"] += [t for t in info.training.tags if t not in front["tags"]]
            body += ["", "## Training notes", "", *_training_notes(info.training, info.adapter)]
    else:
        front["configs"] = [{"config_name": "default", "data_files": "data/records.jsonl"}]
        n, table = _field_table(stage.records)
        counts = m.get("counts", {})
        body += [
            (f"Dataset written by stage `{stage.name}` (`{m.get('type', '?')}`) of the recipe `{recipe_name}`: "
             f"{n} records in `data/records.jsonl`."),
            "",
            "| in | out | failed |",
            "| ---: | ---: | ---: |",
            f"| {counts.get('in', '?')} | {counts.get('out', '?')} | {counts.get('failed', '?')} |",
            "",
            "## Fields",
            "",
            table,
        ]
    body += ["", f"Stage fingerprint: `{m.get('fingerprint', '?')}`.", "", "## Metrics", ""]
    metrics = stage.metrics()
    body.append(_fenced(json.dumps(metrics, indent=2, ensure_ascii=False), "json") if metrics else "None.")
    body += ["", "## Reproduce", "", "With `recipe-zoo` installed:", "", _fenced(REPRODUCE, "bash"), ""]
    for heading, text, name in (("Recipe", recipe_text, "recipe.yaml"), ("Lockfile", lock_text, "recipe.lock.yaml")):
        body += [f"## {heading}", ""]
        if text is None:
            body += [f"`{name}` was not found in the run folder.", ""]
        else:
            body += [f"<details><summary>{name}</summary>", "", _fenced(text, "yaml"), "", "</details>", ""]
    head = yaml.safe_dump(front, sort_keys=False, allow_unicode=True)
    return f"---\n{head}---\n\n" + "\n".join(body).rstrip() + "\n"
