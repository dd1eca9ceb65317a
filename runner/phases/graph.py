"""Phase 6: the stage graph — inputs wired to upstream stages, the dependency order (and any cycle),
and the stages a ``publish:`` block names."""

from __future__ import annotations

import re
from typing import Any

from components.base import Component
from registry.suggest import suggestion
from runner.errors import Problem
from runner.schema import StageSpec


def wire_inputs(stages: dict[str, StageSpec], classes: dict[str, type[Component]], stage_names: list[str]
                ) -> tuple[dict[str, list[str]], list[Problem]]:
    """Each stage's upstream stages through its inputs (every stage named in ``stage_names`` gets an
    entry), and the problems: unknown ports and stages, a stage reading itself, a required port left
    unconnected."""
    problems: list[Problem] = []
    deps: dict[str, list[str]] = {n: [] for n in stage_names}
    for name, spec in stages.items():
        cls = classes.get(name)
        for port, up in spec.inputs.items():
            if cls is not None and port not in cls.inputs:
                problems.append(Problem(("stages", name, "inputs", port),
                                        f"{spec.type} has no input {port!r}"
                                        + (suggestion(port, cls.inputs) or
                                           f" (inputs: {', '.join(cls.inputs) or 'none'})"), at_key=True))
            if up not in stage_names:
                problems.append(Problem(("stages", name, "inputs", port),
                                        f"no stage named {up!r}" + suggestion(up, stage_names)))
            elif up == name:
                problems.append(Problem(("stages", name, "inputs", port), "a stage cannot read its own output"))
            else:
                deps[name].append(up)
                problems += _artifact_problems(name, spec, port, cls, classes.get(up))
        if cls is not None:
            for port in cls.inputs:
                if port not in spec.inputs and port not in cls.optional_inputs:
                    problems.append(Problem(("stages", name, "inputs"),
                                            f"{spec.type} needs input {port!r} (an upstream stage name)"))
    return deps, problems


def _artifact_problems(name: str, spec: StageSpec, port: str, cls: type[Component] | None,
                       up_cls: type[Component] | None) -> list[Problem]:
    """A port that needs an artifact folder (e.g. a search index) must be fed by a stage that builds one."""
    wanted = cls.artifact_inputs.get(port) if cls is not None else None
    if not wanted or up_cls is None or up_cls.produces_artifact == wanted:
        return []
    return [Problem(("stages", name, "inputs", port), f"{spec.type} reads the {wanted!r} folder of the stage on input "
                    f"{port!r}, and stage {spec.inputs[port]!r} ({up_cls.type}) builds none")]


def order_stages(deps: dict[str, list[str]], stage_names: list[str]) -> tuple[list[str], list[Problem]]:
    """The stages in dependency order (upstream first, else recipe order) and one problem per cycle."""
    order: list[str] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def visit(n: str, stack: list[str]) -> None:
        if state.get(n) == 2:
            return
        if state.get(n) == 1:
            cycles.append(stack[stack.index(n):] + [n])
            return
        state[n] = 1
        for d in deps.get(n, []):
            visit(d, stack + [n])
        state[n] = 2
        order.append(n)

    for n in stage_names:
        visit(n, [])
    return order, [Problem(("stages", cyc[0]), "dependency cycle: " + " → ".join(cyc)) for cyc in cycles]


def check_publish(publish: Any, stage_names: list[str]) -> list[Problem]:
    """A ``publish:`` block's target is hf://org/name or file://…, and its artifacts are stages."""
    problems: list[Problem] = []
    to = publish.get("to") if isinstance(publish, dict) else None
    if isinstance(to, str) and to:
        if to.startswith("hf://"):
            if not re.fullmatch(r"hf://[\w.\-]+/[\w.\-]+", to):
                problems.append(Problem(("publish", "to"), f"{to!r}: a Hub target is hf://org/name"))
        elif not to.startswith("file://"):
            problems.append(Problem(("publish", "to"), f"unknown publish target {to!r} (use hf://org/name "
                                    "or file://folder)"))
    if isinstance(publish, dict) and isinstance(publish.get("artifacts"), list):
        for i, a in enumerate(publish["artifacts"]):
            if a not in stage_names:
                problems.append(Problem(("publish", "artifacts", i),
                                        f"no stage named {a!r}" + suggestion(str(a), stage_names)))
    return problems
