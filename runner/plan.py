"""``recipe plan``: what is cached, what will run, records, LLM calls and estimated API cost per stage."""

from __future__ import annotations

from dataclasses import dataclass

from runner.failures import within_limit
from runner.folders import StageFolders


@dataclass
class PlanRow:
    stage: str
    type: str
    status: str  # cached | run
    records_in: dict[str, int | None]
    records_out: int | None
    llm_calls: int | None  # None: unknown until the inputs exist
    cost_usd: float | None
    model: str
    priced: bool = False  # the stage's model is an API model with per-token prices


def _price(folders: StageFolders, stage: str) -> tuple[float, float] | None:
    b = next(iter(folders.loaded.bindings.get(stage, {}).values()), None)
    if b is None or b.kind != "zoo":
        return None
    try:
        entry = folders.zoo.get(b.ref)
    except KeyError:
        return None
    api = getattr(entry, "api", None)
    if not api:
        return None
    return float(api.input_per_mtok), float(api.output_per_mtok)


def make_plan(folders: StageFolders) -> list[PlanRow]:
    """One row per stage of the recipe, from what its run folder already holds; nothing is run."""
    loaded = folders.loaded
    n_out: dict[str, int | None] = {}
    rows = []
    for s in loaded.order:
        comp = loaded.components[s]
        spec = loaded.recipe.stages[s]
        # a finished stage with more failed records than it allows runs again (for those records)
        cached = folders.is_done(s) and within_limit(folders.manifest(s).get("counts", {}),
                                                     loaded.recipe.failure_limit(s))
        n_in = {p: n_out.get(u) for p, u in spec.inputs.items()}
        est = comp.estimate(n_in)
        if cached:
            n_out[s] = folders.manifest(s).get("counts", {}).get("out")
        else:
            n_out[s] = est.records_out
        price = _price(folders, s)
        uses_llm = any(m.kind == "chat" for m in type(comp).models.values())
        unknown = uses_llm and any(v is None for v in n_in.values())
        cost = None  # unknown: no price (local model) or no token estimate for an API stage
        if price and not cached and not unknown and (est.prompt_tokens or est.completion_tokens
                                                     or not est.llm_calls):
            cost = (est.prompt_tokens * price[0] + est.completion_tokens * price[1]) / 1e6
        b = loaded.bindings.get(s, {})
        model = ", ".join(f"{slot}={x.ref}" for slot, x in b.items())
        rows.append(PlanRow(s, comp.type, "cached" if cached else "run", n_in, n_out[s],
                            0 if cached else (None if unknown else est.llm_calls), 0.0 if cached else cost,
                            model, price is not None))
    return rows
