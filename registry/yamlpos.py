"""YAML loading that remembers where every key and value came from (file, line, column).

PyYAML's composer gives nodes with start marks; we build plain Python data from the node tree and a
``SourceMap`` from key paths to positions, so any later error can point at the YAML line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

Path_ = tuple  # a key path: ("stages", "qa", "params", "n")


@dataclass(frozen=True)
class Pos:
    file: str
    line: int  # 1-based
    col: int  # 1-based

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}" if self.line else self.file


@dataclass
class SourceMap:
    """Key path → position of the value, and of the key itself (for unknown-key errors)."""

    values: dict[Path_, Pos] = field(default_factory=dict)
    keys: dict[Path_, Pos] = field(default_factory=dict)
    default: Pos | None = None

    def find(self, path: Path_, *, key: bool = False) -> Pos | None:
        """Position of ``path`` or of its closest ancestor that has one."""
        table = self.keys if key else self.values
        p = tuple(path)
        while p:
            if p in table:
                return table[p]
            if not key and p in self.keys:
                return self.keys[p]
            p = p[:-1]
        return self.values.get((), self.default)

    def move(self, src: Path_, dst: Path_) -> SourceMap:
        """The entries under ``src`` re-keyed under ``dst`` (used when a profile overlays the recipe)."""
        out = SourceMap()
        n = len(src)
        for table, target in ((self.values, out.values), (self.keys, out.keys)):
            for p, pos in table.items():
                if p[:n] == tuple(src):
                    target[tuple(dst) + p[n:]] = pos
        return out

    def update(self, other: SourceMap) -> None:
        """Let ``other``'s positions win where both have one."""
        self.values.update(other.values)
        self.keys.update(other.keys)


class YamlSyntaxError(Exception):
    def __init__(self, pos: Pos, message: str) -> None:
        super().__init__(f"{pos}: {message}")
        self.pos = pos
        self.message = message


def _mark(file: str, mark: Any) -> Pos:
    return Pos(file, mark.line + 1, mark.column + 1)


class _Builder:
    """Plain data + source map from a node graph, within a budget of values.

    Aliases make the node graph a DAG that a tree expands exponentially (a few hundred bytes of nested
    aliases become billions of values), so every value built counts against ``max_values``.
    """

    def __init__(self, file: str, smap: SourceMap, merge: bool, max_values: int) -> None:
        self.file, self.smap, self.merge, self.left = file, smap, merge, max_values
        self.max_values = max_values

    def build(self, node: yaml.Node, path: Path_) -> Any:
        self.left -= 1
        if self.left < 0:
            raise YamlSyntaxError(_mark(self.file, node.start_mark),
                                  f"the file expands to more than {self.max_values} values "
                                  "(aliases that nest aliases?)")
        self.smap.values[path] = _mark(self.file, node.start_mark)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, path + (i,)) for i, item in enumerate(node.value)]
        return _scalar(node)

    def _mapping(self, node: yaml.MappingNode, path: Path_) -> dict:
        out: dict[Any, Any] = {}
        merged: list[dict] = []
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                if not self.merge:
                    raise YamlSyntaxError(_mark(self.file, key_node.start_mark), "'<<' merge keys are not supported")
                sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                for src in sources:
                    if not isinstance(src, yaml.MappingNode):
                        raise YamlSyntaxError(_mark(self.file, src.start_mark),
                                              "'<<' takes a mapping or a list of them")
                    merged.append(self.build(src, path))
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                raise YamlSyntaxError(_mark(self.file, key_node.start_mark), "keys must be plain scalars")
            key = _scalar(key_node)
            if key in out:
                raise YamlSyntaxError(_mark(self.file, key_node.start_mark), f"duplicate key {key!r}")
            self.smap.keys[path + (key,)] = _mark(self.file, key_node.start_mark)
            out[key] = self.build(value_node, path + (key,))
        for extra in merged:  # explicit keys win over merged ones, earlier merges over later ones
            for key, value in extra.items():
                out.setdefault(key, value)
        return out


# Bounds for files a person writes: recipes, zoo files, lockfiles.
MAX_YAML_BYTES = 8 * 2**20
MAX_YAML_VALUES = 200_000


_LOADER = yaml.SafeLoader("")
# libyaml's parser when PyYAML was built with it: several times faster, same nodes and marks
FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _scalar(node: yaml.Node) -> Any:
    return _LOADER.construct_object(node, deep=True)


def load_yaml(path: Path, *, merge_keys: bool = False) -> tuple[Any, SourceMap]:
    """Parse ``path``; return the data and its source map. Raises YamlSyntaxError with a position."""
    path = Path(path)
    size = path.stat().st_size
    if size > MAX_YAML_BYTES:
        raise YamlSyntaxError(Pos(str(path), 1, 1), f"file of {size} bytes is over the {MAX_YAML_BYTES}-byte limit")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        col = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise YamlSyntaxError(Pos(str(path), line, col), "not UTF-8 text") from None
    return loads_yaml(text, str(path), merge_keys=merge_keys)


def loads_yaml(text: str, file: str = "<string>", *, merge_keys: bool = False,
               max_values: int = MAX_YAML_VALUES) -> tuple[Any, SourceMap]:
    """Parse ``text``; ``merge_keys`` allows YAML ``<<`` merges (the zoo file uses them for shared fields).

    At most ``max_values`` values are built, aliases counted as the values they produce.
    """
    smap = SourceMap(default=Pos(file, 1, 1))
    if len(text) > MAX_YAML_BYTES:
        raise YamlSyntaxError(Pos(file, 1, 1), f"text of {len(text)} characters is over the {MAX_YAML_BYTES} limit")
    try:
        node = yaml.compose(text, Loader=FAST_LOADER)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        pos = _mark(file, mark) if mark else Pos(file, 1, 1)
        raise YamlSyntaxError(pos, f"invalid YAML: {e.problem or e}") from None
    if node is None:
        return {}, smap
    return _Builder(file, smap, merge_keys, max_values).build(node, ()), smap
