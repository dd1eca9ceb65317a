"""``hf://org/name@revision``: a Hub snapshot through huggingface_hub.

The files stay in the Hugging Face cache (``HF_HOME``), shared with every other tool; the zoo records
the snapshot folder, the commit it resolved to (the pin) and a sha256 manifest for ``verify``. With
``HF_HUB_OFFLINE`` set only the local cache is consulted. An access token, when needed (gated models),
comes from huggingface_hub's usual places (``HF_TOKEN``, ``hf auth login``) and is never logged.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from registry.cache import PullRecord, entry_dir, manifest, write_record
from registry.sources import HfSource, PullContext, SourceError

_COMMIT = re.compile(r"^[0-9a-f]{40}$")


def hf_offline() -> bool:
    """HF_HUB_OFFLINE as huggingface_hub reads it, also when it was set after that import."""
    value = os.environ.get("HF_HUB_OFFLINE", "").strip().upper()
    if value in {"1", "ON", "YES", "TRUE"}:
        return True
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _download(src: HfSource, offline: bool) -> Path:
    import huggingface_hub
    from huggingface_hub import errors

    where = f"hf://{src.repo_id}@{src.revision or 'main'}"
    try:
        return Path(
            huggingface_hub.snapshot_download(src.repo_id, revision=src.revision, local_files_only=offline)
        )
    except errors.GatedRepoError:
        raise SourceError(
            f"{where} is gated: request access on https://huggingface.co/{src.repo_id} and set HF_TOKEN"
        ) from None
    except errors.RevisionNotFoundError:
        raise SourceError(f"{where}: the repository has no revision '{src.revision}'") from None
    except errors.RepositoryNotFoundError:
        raise SourceError(
            f"{where}: no such repository on the Hub (or it is private: set HF_TOKEN)"
        ) from None
    except (errors.LocalEntryNotFoundError, errors.OfflineModeIsEnabled, OSError) as exc:
        if offline:
            raise SourceError(
                f"{where} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set: pull it "
                "where the Hub is reachable (`recipe zoo pull <name>`), or unset HF_HUB_OFFLINE"
            ) from None
        raise SourceError(
            f"{where}: could not download from the Hugging Face Hub ({type(exc).__name__}); "
            "check the network, or set HF_HUB_OFFLINE=1 to use the local cache only"
        ) from None


def pull_hf(src: HfSource, ctx: PullContext) -> PullRecord:
    offline = hf_offline()
    verb = "looking up the local Hugging Face cache (HF_HUB_OFFLINE) for" if offline else "downloading"
    ctx.progress(f"{verb} {src.repo_id}@{src.revision or 'main'}")
    snapshot = _download(src, offline)
    # Hub snapshots live in .../snapshots/<commit sha>: that folder name is the resolved commit.
    commit = snapshot.name if _COMMIT.match(snapshot.name) else None
    if src.revision and _COMMIT.match(src.revision) and commit != src.revision:
        raise SourceError(f"{src.uri}: asked for commit {src.revision}, the cache returned {snapshot.name}")
    ctx.progress(f"hashing the files of {src.repo_id} for `recipe zoo verify`")
    record = PullRecord(
        source=src.canonical,
        path=str(snapshot),
        pin=commit,
        files=manifest(snapshot),
        info={"repo_id": src.repo_id, "revision": src.revision},
    )
    write_record(entry_dir(src.canonical), record)
    return record
