"""The cards (``README.md``) of published artifacts (see ``runner.publish``); no other code writes cards.

The metadata block is built with huggingface_hub's card data classes, so the Hub reads it as it reads any
card: a model card (``ModelCardData``) names ``base_model`` by its Hub id, ``library_name`` (peft for an
adapter, else transformers), ``pipeline_tag``, the base's ``license`` from its zoo entry, the Hub
``datasets`` it was trained on (those published with it), and the metrics of the recipe's judges of the
model as evaluation results (``EvalResult``, the card's ``model-index``). A dataset card
(``DatasetCardData``) has a ``configs:`` entry pointing at the data file (Parquet, or JSON lines; see
``runner.publish_data``). The text holds the stage's counts and the table of its record fields, or the
base model, adapter or full weights and the trainer's summary (``registry.model_folder``) with the lines
that load the model; then the stage's metrics, the one-line reproduce command, the recipe and the lockfile.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from registry.model_folder import TrainingSummary

if TYPE_CHECKING:
    from runner.publish_data import PublishedData
    from runner.publish_model import PortableModel
    from runner.run_folder import Artifact

REPRODUCE = "recipe run recipe.lock.yaml"
PIPELINE_TAG = "text-generation"  # every trainer of the project makes a causal LM

# License ids the Hub knows (its license list); any other license is written as `other` with its name
HUB_LICENSES = {
    "apache-2.0", "mit", "bsd-3-clause", "bsd-2-clause", "cc-by-4.0", "cc-by-sa-4.0", "cc-by-nc-4.0",
    "cc-by-nc-sa-4.0", "cc0-1.0", "gpl-3.0", "lgpl-3.0", "agpl-3.0", "openrail", "bigscience-openrail-m",
    "creativeml-openrail-m", "llama2", "llama3", "llama3.1", "llama3.2", "llama3.3", "llama4", "gemma",
    "afl-3.0", "artistic-2.0", "bsl-1.0", "mpl-2.0", "unlicense", "wtfpl",
}


def slug(text: str) -> str:
    """A repo-name-safe version of a stage or recipe name (also the recipe's tag on a card)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "artifact"


@dataclass
class Evaluation:
    """The numeric metrics of a judge stage that scored the published model."""

    stage: str
    type: str
    metrics: dict[str, float]
    dataset_id: str | None = None  # the Hub id of the judge's published records, when published with it


@dataclass
class CardInputs:
    """What the card of one artifact says besides the stage itself."""

    title: str  # the repo id or folder name
    recipe_name: str
    recipe_text: str | None
    lock_text: str | None
    load_from: str = "."  # what the loading lines load: the repo id on the Hub, "." (this folder) in a folder
    datasets: list[str] = field(default_factory=list)  # Hub ids of the data the model was trained on
    evaluations: list[Evaluation] = field(default_factory=list)
    report: str | None = None  # the run's report.html in the repo (a relative path), when it has one


def numeric_metrics(metrics: dict[str, Any] | None) -> dict[str, float]:
    """The top-level finite numbers of a stage's metrics (no bools, no nested tables)."""
    out = {}
    for k, v in (metrics or {}).items():
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
            out[k] = v
    return out


def hub_license(license_text: str | None) -> dict[str, str]:
    """The card's license fields for a zoo entry's license: a Hub id as is, anything else as ``other``
    with its name (``glm-4``; ``llama2 (base weights)`` is ``llama2``)."""
    if not license_text:
        return {}
    first = re.split(r"[\s(]", license_text.strip(), maxsplit=1)[0].lower()
    if first in HUB_LICENSES:
        return {"license": first}
    return {"license": "other", "license_name": slug(first).lower()}


def _fenced(text: str, lang: str) -> str:
    """A code block whose fence is longer than any backtick run inside ``text``."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{lang}\n{text.rstrip()}\n{fence}"


def _field_table(rows: list[dict]) -> str:
    """A markdown table: field, in how many records, value types."""
    seen: dict[str, int] = {}
    types: dict[str, set[str]] = {}
    for r in rows:
        for key, value in r.items():
            seen[key] = seen.get(key, 0) + 1
            types.setdefault(key, set()).add("null" if value is None else type(value).__name__)
    lines = ["| field | records | types |", "| --- | ---: | --- |"]
    lines += [f"| `{k}` | {c} | {', '.join(sorted(types[k]))} |" for k, c in seen.items()]
    return "\n".join(lines)


def _training_notes(t: TrainingSummary) -> list[str]:
    """The trainer's summary as card lines: what was trained, the run's size and loss, its settings."""
    loss = f", loss {t.first_loss:.4f} → {t.final_loss:.4f}" if t.first_loss is not None and t.final_loss is not None \
        else ""
    lines = [t.description, ""] if t.description else []
    lines += [f"Training: {t.steps} optimizer steps, {t.tokens} tokens{loss}.", ""]
    if t.settings:
        lines += ["| setting | value |", "| --- | --- |", *(f"| {k} | {v} |" for k, v in t.settings.items()), ""]
    return lines


def _use(model: PortableModel, load_from: str) -> list[str]:
    """How to load the published model, from the Hub or from the folder holding this card."""
    where = "" if load_from != "." else "  # this folder; give its path when running elsewhere"
    if model.adapter:
        code = (
            "from peft import AutoPeftModelForCausalLM\n"
            "from transformers import AutoTokenizer\n\n"
            f'model = AutoPeftModelForCausalLM.from_pretrained("{load_from}"){where}\n'
            f'tokenizer = AutoTokenizer.from_pretrained("{load_from}")'
        )
        note = f"The adapter loads over `{model.base_hub_id}` (from the Hub, or the Hugging Face cache offline)."
    else:
        code = (
            "from transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
            f'model = AutoModelForCausalLM.from_pretrained("{load_from}"){where}\n'
            f'tokenizer = AutoTokenizer.from_pretrained("{load_from}")'
        )
        note = ("The adapter was merged into its base at publishing (the base has no Hub id), so these are "
                "full weights." if model.merged else "")
    return ["## Use", "", *([note, ""] if note else []), _fenced(code, "python")]


def _model_card(stage: Artifact, inputs: CardInputs, model: PortableModel) -> tuple[str, list[str]]:
    from huggingface_hub import EvalResult, ModelCardData

    info, m = model.info, stage.manifest
    tags = ["recipe-zoo", slug(inputs.recipe_name)]
    if info.training is not None:
        tags += [t for t in info.training.tags if t not in tags]
    results = [
        EvalResult(task_type=PIPELINE_TAG, dataset_type=e.dataset_id or e.stage, dataset_name=e.stage,
                   metric_type=k, metric_name=f"{e.stage}: {k}", metric_value=v)
        for e in inputs.evaluations for k, v in e.metrics.items()
    ]
    data = ModelCardData(
        base_model=model.base_hub_id, library_name="peft" if model.adapter else "transformers",
        pipeline_tag=PIPELINE_TAG, datasets=inputs.datasets or None, tags=tags, model_name=inputs.title,
        eval_results=results or None, **hub_license(info.base_license))
    weights = ("a PEFT adapter over the base model" if model.adapter else
               "the full model (the adapter merged into its base)" if model.merged else "the full model")
    body = [
        f"Model trained by stage `{stage.name}` (`{m.get('type', '?')}`) of the recipe `{inputs.recipe_name}`.",
        "",
        f"- base model: `{info.base or '?'}` (`{info.base_source or '?'}`)",
        f"- weights: {weights}",
    ]
    if info.base_license:
        body.append(f"- license of the base weights: {info.base_license}")
    if info.training is not None:
        body += ["", "## Training notes", "", *_training_notes(info.training)]
    body += ["", *_use(model, inputs.load_from)] if body[-1] else _use(model, inputs.load_from)
    if inputs.evaluations:
        body += ["", "## Evaluation", "", "| judge stage | metric | value |", "| --- | --- | ---: |"]
        body += [f"| `{e.stage}` | {k} | {v:g} |" for e in inputs.evaluations for k, v in e.metrics.items()]
    return data.to_yaml(), body


def _dataset_card(stage: Artifact, inputs: CardInputs, data: PublishedData) -> tuple[str, list[str]]:
    from huggingface_hub import DatasetCardData

    m = stage.manifest
    tags = ["recipe-zoo", slug(inputs.recipe_name)]
    configs = [{"config_name": "default", "data_files": [{"split": "train", "path": data.file}]}] if data.file \
        else None
    card = DatasetCardData(pretty_name=inputs.title, tags=tags, configs=configs)
    counts = m.get("counts", {})
    where = f"in `{data.file}`" + (" (JSON lines: the records have no common schema)" if data.format == "json"
                                   else "") if data.file else "(no records)"
    body = [
        (f"Dataset written by stage `{stage.name}` (`{m.get('type', '?')}`) of the recipe `{inputs.recipe_name}`: "
         f"{len(data.rows)} records {where}."),
        "",
        "| in | out | failed |",
        "| ---: | ---: | ---: |",
        f"| {counts.get('in', '?')} | {counts.get('out', '?')} | {counts.get('failed', '?')} |",
    ]
    if data.rows:
        body += ["", "## Fields", "", _field_table(data.rows)]
    return card.to_yaml(), body


def stage_card(stage: Artifact, inputs: CardInputs, *, data: PublishedData | None = None,
               model: PortableModel | None = None) -> str:
    """The card of one published stage: a model card when ``model`` is given, else a dataset card."""
    m = stage.manifest
    if model is not None:
        head, body = _model_card(stage, inputs, model)
    else:
        from runner.publish_data import PublishedData

        head, body = _dataset_card(stage, inputs, data or PublishedData(None, None, []))
    body = [f"# {inputs.title}", "", *body]
    if inputs.report:
        body += ["", f"The whole run — stages, plots, examples — is in [`{inputs.report}`]({inputs.report}), one "
                 "self-contained page: download it and open it in a web browser."]
    body += ["", f"Stage fingerprint: `{m.get('fingerprint', '?')}`.", "", "## Metrics", ""]
    metrics = stage.metrics()
    body.append(_fenced(json.dumps(metrics, indent=2, ensure_ascii=False), "json") if metrics else "None.")
    body += ["", "## Reproduce", "", "With `recipe-zoo` installed:", "", _fenced(REPRODUCE, "bash"), ""]
    for heading, text, name in (("Recipe", inputs.recipe_text, "recipe.yaml"),
                                ("Lockfile", inputs.lock_text, "recipe.lock.yaml")):
        body += [f"## {heading}", ""]
        if text is None:
            body += [f"`{name}` was not found in the run folder.", ""]
        else:
            body += [f"<details><summary>{name}</summary>", "", _fenced(text, "yaml"), "", "</details>", ""]
    return f"---\n{head.rstrip()}\n---\n\n" + "\n".join(body).rstrip() + "\n"
