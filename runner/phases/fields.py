"""Phase 7: record fields — what each stage's records carry (when the components say), checked against
what each downstream port needs and what each prompt template reads."""

from __future__ import annotations

from components.base import Component, Fields
from runner.errors import Problem
from runner.schema import StageSpec


def record_fields(order: list[str], stages: dict[str, StageSpec], comps: dict[str, Component]
                  ) -> tuple[dict[str, Fields | None], list[Problem]]:
    """The fields of each stage's output records (None when they depend on the data), walking ``order``
    (upstream first), and a problem for each port whose records lack fields the component needs."""
    problems: list[Problem] = []
    fields_of: dict[str, Fields | None] = {}
    for n in order:
        comp = comps.get(n)
        if comp is None:
            fields_of[n] = None
            continue
        own = comp.output_fields()
        pt = type(comp).passthrough
        spec = stages[n]
        if pt and pt in spec.inputs:
            up = fields_of.get(spec.inputs[pt])
            fields_of[n] = None if up is None else Fields(*(set(up) | set(own or ())))
        else:
            fields_of[n] = own
        for port, up in spec.inputs.items():
            need = type(comp).inputs.get(port)
            have = fields_of.get(up)
            if need and have is not None:
                missing = sorted(set(need) - set(have))
                if missing:
                    problems.append(Problem(
                        ("stages", n, "inputs", port),
                        f"{spec.type} needs record fields {missing} on {port!r}, but stage {up!r} "
                        f"({stages[up].type}) gives {sorted(have)}"))
    return fields_of, problems


def check_templates(stages: dict[str, StageSpec], comps: dict[str, Component],
                    fields_of: dict[str, Fields | None]) -> list[Problem]:
    """A problem for each prompt template (a param the component declares in ``template_params``) that
    reads fields the records on its port do not carry; skipped where those fields are not known."""
    problems: list[Problem] = []
    for name, comp in comps.items():
        spec = stages[name]
        for param, (port, used) in comp.template_fields().items():
            up = spec.inputs.get(port)
            have = fields_of.get(up) if up is not None else None
            if have is None:
                continue
            missing = [f for f in used if f not in have]
            if missing:
                problems.append(Problem(
                    ("stages", name, "params", param),
                    f"the template reads {_names(missing)}, which no record on input {port!r} has "
                    f"(stage {up!r} ({stages[up].type}) gives {', '.join(sorted(have)) or 'no fields'})"))
    return problems


def _names(fields: list[str]) -> str:
    quoted = [repr(f) for f in fields]
    return ("field " if len(quoted) == 1 else "fields ") + ", ".join(quoted)
