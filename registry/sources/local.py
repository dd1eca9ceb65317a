"""``file://path``: a local model folder, pinned by the hash of its content.

The pin is ``sha256:`` over the sorted list of (relative file name, size, sha256 of the file) of every
file in the folder, so any change to any file changes the pin. Files whose size and modification time
are unchanged since the last resolve keep their recorded hash, so re-resolving a large unchanged folder
does not reread it; ``recipe zoo verify`` always rereads everything.
"""

from __future__ import annotations

from registry.cache import PullRecord, entry_dir, manifest, manifest_digest, read_record, write_record
from registry.model_folder import MODEL_MARKERS, is_model_folder
from registry.sources import FileSource, PullContext, SourceError


def pin_folder(src: FileSource, ctx: PullContext) -> PullRecord:
    folder = src.path
    if not folder.is_dir():
        raise SourceError(f"{src.uri}: no such folder")
    if not is_model_folder(folder):
        raise SourceError(f"{src.uri}: not a model folder (it holds none of {', '.join(MODEL_MARKERS)})")
    previous = read_record(src.canonical)
    files = manifest(folder, previous.files if previous else None)
    if previous is None:
        ctx.progress(f"hashed {len(files)} files of {folder}")
    record = PullRecord(source=src.canonical, path=str(folder), pin=manifest_digest(files), files=files)
    if previous is None or previous.pin != record.pin or previous.files != files:
        write_record(entry_dir(src.canonical), record)
    return record
