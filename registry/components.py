"""Component registry: type name → class.

Built-ins are found by importing every module under ``components/`` (their top level is light by
contract: no torch), user components by ``module:Class`` in a stage's ``type``, and installed plugins
through the entry-point group ``recipe_zoo.components`` (``name = "pkg.module:Class"``).
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import lru_cache
from importlib.metadata import entry_points

from components.base import Component

ENTRY_POINT_GROUP = "recipe_zoo.components"


class UnknownComponent(KeyError):
    def __init__(self, name: str, suggestions: list[str], reason: str = "") -> None:
        super().__init__(name)
        self.name = name
        self.suggestions = suggestions
        self.reason = reason


def _subclasses(cls: type) -> list[type]:
    out = []
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_subclasses(sub))
    return out


@lru_cache(maxsize=1)
def builtins() -> dict[str, type[Component]]:
    """Every built-in component, by type name."""
    import components

    for mod in pkgutil.walk_packages(components.__path__, prefix="components."):
        importlib.import_module(mod.name)
    table: dict[str, type[Component]] = {}
    for cls in _subclasses(Component):
        if cls.type and cls.__module__.startswith("components."):
            if cls.type in table and table[cls.type] is not cls:
                raise RuntimeError(
                    f"component type {cls.type!r} is defined twice: "
                    f"{table[cls.type].__module__} and {cls.__module__}"
                )
            table[cls.type] = cls
    return table


@lru_cache(maxsize=1)
def plugins() -> dict[str, str]:
    """Entry-point components (not imported until used): type name → 'module:Class'."""
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def _import_target(target: str) -> type[Component]:
    module, _, attr = target.partition(":")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not (isinstance(obj, type) and issubclass(obj, Component)):
        raise TypeError(f"{target} is not a Component subclass")
    if not obj.type:  # a user component is known by the name the recipe gives it
        obj.type = target
    return obj


def names() -> list[str]:
    return sorted(set(builtins()) | set(plugins()))


def get(type_name: str) -> type[Component]:
    """The class for a stage ``type``: a registered name or ``module:Class``."""
    table = builtins()
    if type_name in table:
        return table[type_name]
    plug = plugins()
    if type_name in plug:
        return _import_target(plug[type_name])
    if ":" in type_name:
        try:
            return _import_target(type_name)
        except (ImportError, AttributeError, TypeError) as e:
            raise UnknownComponent(type_name, [], reason=f"cannot import {type_name}: {e}") from None
    from registry.suggest import did_you_mean

    raise UnknownComponent(type_name, did_you_mean(type_name, names()))


def summary(cls: type[Component]) -> str:
    doc = (cls.__doc__ or "").strip()
    return doc.splitlines()[0] if doc else ""
