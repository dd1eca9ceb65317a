"""Atomic file writes: a temp file in the same folder, fsync, rename — a reader never sees half a file.

Text is passed through ``registry.secrets.redact`` first, so no secret value reaches a file we write.

>>> import tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "sub" / "m.json"
>>> atomic_write_json(p, {"a": 1})
>>> p.read_text()
'{\\n  "a": 1\\n}\\n'
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from registry.secrets import redact


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (parents created). An ``OSError`` (a full disk) names
    ``path`` in its ``filename``, whichever step failed."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and e.filename != str(path):
            raise OSError(e.errno, e.strerror or str(e), str(path)) from e
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` (secrets masked) to ``path`` atomically, as UTF-8."""
    atomic_write_bytes(path, redact(text).encode("utf-8"))


def atomic_write_json(path: Path, data: Any) -> None:
    """Pretty JSON (2-space indent, UTF-8 kept, unknown types as ``str``), written atomically."""
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")
