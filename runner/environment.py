"""The software a run ran on, as the lockfile records it, and how the current environment differs from it.

``lock.packages`` holds every installed distribution (name → version) and ``lock.torch`` the torch build
(its version and whether it is a CUDA, ROCm or CPU build). Replaying a lockfile compares both with the
environment at hand (``differences``); the runner warns, naming the packages, when they differ, since a
different version of torch, transformers or peft can change what a stage computes.

Example::

    >>> differences({"packages": {"Torch": "2.5.1", "peft": "0.12.0"}},
    ...             {"packages": {"torch": "2.5.1"}})
    ['peft missing (locked 0.12.0)']
"""

from __future__ import annotations

import ast
import functools
import re
import sys
from importlib.metadata import distributions
from importlib.util import find_spec
from pathlib import Path
from typing import Any

SHOWN = 12  # differences named in the warning; the rest are counted


def normalize(name: str) -> str:
    """A distribution name as pip compares them (PEP 503): lower case, runs of ``-_.`` as one ``-``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _name_version(dist: Any) -> tuple[str | None, str | None]:
    """A distribution's ``Name`` and ``Version`` from the head of its metadata file (the e-mail parser
    that ``dist.metadata`` runs over the whole file takes most of a second for a few hundred packages)."""
    text = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""
    found: dict[str, str] = {}
    for line in text.split("\n\n", 1)[0].splitlines():
        key, sep, value = line.partition(":")
        if sep and key in ("Name", "Version") and key not in found:
            found[key] = value.strip()
    return found.get("Name"), found.get("Version")


def installed_packages() -> dict[str, str]:
    """Every installed distribution, name → version, sorted by name; the first one on ``sys.path`` wins
    when a name is installed twice (as ``importlib.metadata.version`` does). Read once per process."""
    return dict(_installed())


@functools.cache
def _installed() -> dict[str, str]:
    out: dict[str, str] = {}
    seen: set[str] = set()
    for dist in distributions():
        name, version = _name_version(dist)
        if not name or not version or normalize(name) in seen:
            continue
        seen.add(normalize(name))
        out[name] = version
    return dict(sorted(out.items(), key=lambda kv: normalize(kv[0])))


def torch_build() -> dict[str, Any] | None:
    """The torch build: ``{version, build}`` with build ``cuda <ver>``, ``rocm <ver>`` or ``cpu``; None
    without torch. Read from ``torch/version.py`` when torch is not imported yet (importing it takes
    seconds)."""
    facts: dict[str, Any]
    if "torch" in sys.modules:
        v = sys.modules["torch"].version
        facts = {"__version__": v.__version__, "cuda": v.cuda, "hip": getattr(v, "hip", None)}
    else:
        spec = find_spec("torch")
        if spec is None or not spec.origin:
            return None
        facts = _assignments(Path(spec.origin).parent / "version.py")
        if "__version__" not in facts:
            return None
    build = f"cuda {facts['cuda']}" if facts.get("cuda") else f"rocm {facts['hip']}" if facts.get("hip") else "cpu"
    return {"version": str(facts["__version__"]), "build": build}


def _assignments(path: Path) -> dict[str, Any]:
    """The constant assignments of a Python file (``name = 'x'`` / ``name: T = 'x'``), without running it."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError):
        return {}
    out: dict[str, Any] = {}
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else \
            node.target if isinstance(node, ast.AnnAssign) else None
        value = getattr(node, "value", None)
        if isinstance(target, ast.Name) and isinstance(value, ast.Constant):
            out[target.id] = value.value
    return out


def environment() -> dict[str, Any]:
    """What the lockfile records of the environment: ``packages`` and ``torch``."""
    return {"packages": installed_packages(), "torch": torch_build()}


def differences(locked: dict[str, Any], current: dict[str, Any] | None = None) -> list[str]:
    """How ``current`` (default: this environment) differs from a lockfile's ``lock`` section: one entry
    per locked package that is missing or at another version, and the torch build when it changed.
    Packages installed now but not locked are not differences (the lock of an older version of this
    project recorded only the main packages)."""
    current = environment() if current is None else current
    now = {normalize(k): (k, v) for k, v in (current.get("packages") or {}).items()}
    out = []
    locked_torch, now_torch = locked.get("torch"), current.get("torch")
    if isinstance(locked_torch, dict) and isinstance(now_torch, dict) and locked_torch.get("build") \
            and locked_torch.get("build") != now_torch.get("build"):
        out.append(f"torch build {now_torch.get('build')} (locked {locked_torch['build']})")
    for name, version in (locked.get("packages") or {}).items():
        have = now.get(normalize(str(name)))
        if have is None:
            out.append(f"{name} missing (locked {version})")
        elif str(have[1]) != str(version):
            out.append(f"{have[0]} {have[1]} (locked {version})")
    return out


def difference_warning(locked: dict[str, Any], current: dict[str, Any] | None = None) -> str | None:
    """One warning naming the packages that differ from the lockfile's (None when nothing differs)."""
    found = differences(locked, current)
    if not found:
        return None
    more = f", and {len(found) - SHOWN} more" if len(found) > SHOWN else ""
    return (f"this environment differs from the lockfile's: {', '.join(found[:SHOWN])}{more}; "
            "results may differ from the locked run")
