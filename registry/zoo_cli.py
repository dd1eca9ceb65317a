"""``recipe zoo list | show NAME | pull NAME | verify [NAME]``: look at, fetch and check zoo models.

Each command prints with rich and returns an exit status: 0 done, 1 failed (a pull error, a file that
does not match its pull record), 2 an unknown name. ``python -m registry.zoo_cli`` runs them directly.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from registry.cache import check_manifest
from registry.sources import HfSource, OpenAISource, SourceError
from registry.zoo import UNPINNED_NOTE, UnknownModel, Zoo, ZooFileError

console = Console(highlight=False, soft_wrap=True)


def _short(pin: str | None, width: int = 12) -> str:
    if not pin:
        return "—"
    return pin if len(pin) <= width else pin[: width - 1] + "…"


def _tokens(count: int | None) -> str:
    """A context length the way papers write it: 131072 -> 128k, 128000 -> 128k, 256 -> 256."""
    if not count:
        return "—"
    if count < 1000:
        return str(count)
    if count % 1000 == 0:
        return f"{count // 1000}k"
    return f"{count // 1024}k" if count % 1024 == 0 else f"{count / 1000:.1f}k"


def _unpinned_hf(zoo: Zoo, name: str) -> bool:
    _, source = zoo.entry_for(name)
    return isinstance(source, HfSource) and source.static_pin() is None


def cmd_list(zoo: Zoo) -> int:
    """A table of every model: kind, family, context, whether it is local, and its pin."""
    table = Table(title="Recipe Zoo models (`recipe zoo show NAME` for details)", box=box.SIMPLE_HEAD)
    table.add_column("name", no_wrap=True)  # names are what people copy; never cut them
    for column in ("kind", "family", "ctx", "local"):
        table.add_column(column, no_wrap=True)
    table.add_column("pin", no_wrap=True)
    for name in zoo.names():
        entry = zoo.get(name)
        pin = zoo.pin(name)
        shown_pin = _short(pin) if pin or not _unpinned_hf(zoo, name) else "unpinned"
        local = "yes" if zoo.is_pulled(name) else "no"
        table.add_row(name, entry.kind, entry.family or "—", _tokens(entry.context_length), local, shown_pin)
    console.print(table)
    return 0


def _unknown(exc: UnknownModel) -> int:
    console.print(f"[red]error:[/red] {escape(str(exc))}")
    return 2


def cmd_show(zoo: Zoo, name: str) -> int:
    """Every field of one entry, where it was defined, and its local state."""
    try:
        entry = zoo.get(name)
    except UnknownModel as exc:
        return _unknown(exc)
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in entry.model_dump(exclude_defaults=True).items():
        if key == "api":
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        table.add_row(key, escape(str(value)))
    if entry.name in zoo.origins:
        table.add_row("defined in", escape(str(zoo.origins[entry.name])))
    record = zoo.record(entry.name)
    table.add_row("local", escape(record.path) if record and record.path else "not pulled")
    pin = zoo.pin(entry.name)
    if pin:
        table.add_row("pin", escape(pin))
    elif _unpinned_hf(zoo, entry.name):
        table.add_row("pin", UNPINNED_NOTE)
    console.print(table)
    return 0


def cmd_pull(zoo: Zoo, name: str) -> int:
    """Fetch a model into the local cache (once), printing progress."""
    try:
        entry, source = zoo.entry_for(name)
    except UnknownModel as exc:
        return _unknown(exc)
    if isinstance(source, OpenAISource):
        console.print(f"{entry.name} is an API model ({escape(source.model_id)}): nothing to pull")
        return 0
    if zoo.is_pulled(entry.name) and not source.uri.startswith("file://"):
        console.print(f"{entry.name} is already pulled: {escape(str(zoo.record(entry.name).path))}")
        return 0
    start = time.monotonic()
    try:
        resolved = zoo.resolve(entry.name, progress=lambda msg: console.print(f"  {escape(msg)}"))
    except SourceError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}")
        return 1
    console.print(f"[green]pulled[/green] {entry.name} in {time.monotonic() - start:.1f} s")
    console.print(f"  path: {escape(str(resolved.path))}\n  pin:  {escape(str(resolved.pin))}")
    return 0


def _verify_one(zoo: Zoo, name: str) -> bool:
    _, source = zoo.entry_for(name)
    if isinstance(source, OpenAISource):
        console.print(f"{name}: API model, nothing local to verify")
        return True
    record = zoo.record(name)
    if record is None:
        console.print(f"{name}: not pulled")
        return True
    problems = check_manifest(Path(record.path or ""), record.files)
    note = f" ({UNPINNED_NOTE}; pulled at {record.pin})" if _unpinned_hf(zoo, name) else ""
    if not problems:
        console.print(f"[green]ok[/green] {name}: {len(record.files)} files match the pull record{note}")
        return True
    console.print(
        f"[red]FAILED[/red] {name}: {len(problems)} problem(s) under {escape(str(record.path))}{note}"
    )
    for problem in problems:
        console.print(f"  {escape(problem)}")
    return False


def cmd_verify(zoo: Zoo, name: str | None) -> int:
    """Rehash the files of one model (or every pulled model) against the manifest written at pull."""
    if name is not None:
        try:
            zoo.get(name)
        except UnknownModel as exc:
            return _unknown(exc)
        return 0 if _verify_one(zoo, name) else 1
    pulled = [n for n in zoo.names() if zoo.record(n) is not None]
    if not pulled:
        console.print("no pulled models to verify")
    results = [_verify_one(zoo, n) for n in pulled]
    return 0 if all(results) else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="recipe zoo", description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", action="append", type=Path, default=[], help="extra zoo file (repeatable)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list every model")
    for command, helptext in (("show", "show one entry"), ("pull", "fetch a model once")):
        sub.add_parser(command, help=helptext).add_argument("name")
    sub.add_parser("verify", help="recheck pulled files").add_argument("name", nargs="?")
    args = parser.parse_args(argv)
    try:
        zoo = Zoo.load(args.zoo)
    except ZooFileError as exc:
        console.print(escape(str(exc)))
        return 2
    if args.command == "list":
        return cmd_list(zoo)
    if args.command == "show":
        return cmd_show(zoo, args.name)
    if args.command == "pull":
        return cmd_pull(zoo, args.name)
    return cmd_verify(zoo, args.name)


if __name__ == "__main__":
    sys.exit(main())
