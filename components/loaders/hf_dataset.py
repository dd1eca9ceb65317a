"""``load.hf_dataset``: records from a Hugging Face dataset (Hub name or local files)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from components.base import Context, Fields, Params, WholeComponent

# local file suffix -> the `datasets` builder that reads it
_BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv", ".arrow": "arrow"}
_OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
HF_SCHEME = "hf://"


def _offline_var() -> str | None:
    """The offline switch that is set, if any."""
    for name in _OFFLINE_VARS:
        if os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}:
            return name
    return None


def _network_trouble(exc: BaseException) -> bool:
    """Whether an exception (or one it came from) is a failure to reach the Hub."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, (ConnectionError, TimeoutError)) or type(seen).__name__ in {
            "OfflineModeIsEnabled", "LocalEntryNotFoundError", "ConnectError", "ConnectTimeout"
        }:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class LoadHfDataset(WholeComponent):
    """Loads one split of a Hugging Face dataset with ``datasets.load_dataset``.

    ``path`` is a Hub dataset (``hf://org/name``), a local dataset folder, or a local ``.json``/``.jsonl``/
    ``.parquet``/``.csv`` file (read with the matching builder); local paths are relative to the recipe
    file, which is why a Hub name needs the ``hf://`` prefix in a recipe. Hub datasets need the network or the local
    cache; with ``HF_HUB_OFFLINE``/``HF_DATASETS_OFFLINE`` set or no network, the error says so and points
    to ``load.jsonl`` or a local path. ``columns`` keeps only those columns (original names), then
    ``rename`` renames them.
    """

    type = "load.hf_dataset"

    class Params(Params):
        path: str = Field(description="hf://org/name for a Hub dataset, else a local dataset folder or data file")
        name: str | None = Field(None, description="dataset configuration (subset) name")
        split: str = Field("train", description="which split to load")
        revision: str | None = Field(None, description="Hub revision (branch, tag or commit) to pin")
        limit: int | None = Field(None, ge=0, description="keep at most this many records (the first ones)")
        columns: list[str] | None = Field(None, description="keep only these columns (original names)")
        rename: dict[str, str] = Field(
            default_factory=dict, description="old column name -> new name, applied after `columns`"
        )

        @model_validator(mode="after")
        def _renames_kept_columns(self) -> LoadHfDataset.Params:
            if self.columns is not None:
                lost = sorted(set(self.rename) - set(self.columns))
                if lost:
                    raise ValueError(f"rename names columns that `columns` drops: {', '.join(lost)}")
            return self

    def output_fields(self) -> Fields | None:
        cols = self.params.columns
        return Fields(*(self.params.rename.get(c, c) for c in cols)) if cols is not None else None

    def _load_args(self) -> tuple[str, dict[str, Any], bool]:
        """What to pass to ``datasets.load_dataset`` (a Hub name, a local folder, or a builder with a data
        file), and whether it is local."""
        p = self.params
        kwargs: dict[str, Any] = {"name": p.name, "split": p.split, "revision": p.revision}
        if p.path.startswith(HF_SCHEME):
            return p.path[len(HF_SCHEME):], kwargs, False
        local = Path(p.path).expanduser()
        if not local.exists():
            if local.is_absolute():
                raise FileNotFoundError(
                    f"no such local dataset: {local} (for a Hub dataset write path: hf://org/name)"
                )
            return p.path, kwargs, False  # a bare Hub name, given outside a recipe
        builder = _BUILDERS.get(local.suffix.lower())
        if local.is_file() and builder:
            return builder, {**kwargs, "data_files": str(local)}, True
        return str(local), kwargs, True

    def _load(self) -> Any:
        import datasets

        path, kwargs, local = self._load_args()
        try:
            return datasets.load_dataset(path, **kwargs)
        except Exception as e:
            if local:
                raise RuntimeError(f"could not load local dataset {self.params.path!r}: {e}") from e
            offline = _offline_var()
            if offline or _network_trouble(e):
                why = f"{offline} is set (offline mode)" if offline else "the Hugging Face Hub cannot be reached"
                raise RuntimeError(
                    f"could not load dataset {self.params.path!r}: {why} and it is not in the local cache. "
                    "Use load.jsonl with a local file, or point load.hf_dataset's path at a local dataset "
                    "folder or .jsonl/.parquet file."
                ) from e
            raise RuntimeError(f"could not load dataset {self.params.path!r}: {e}") from e

    def run(self, inputs: dict[str, list[dict]], ctx: Context) -> list[dict]:
        p = self.params
        ds = self._load()
        if p.columns is not None:
            missing = [c for c in p.columns if c not in ds.column_names]
            if missing:
                raise ValueError(
                    f"dataset {p.path!r} has no column(s) {', '.join(missing)}"
                    f" (columns: {', '.join(ds.column_names)})"
                )
            ds = ds.select_columns(p.columns)
        if p.rename:
            missing = [c for c in p.rename if c not in ds.column_names]
            if missing:
                raise ValueError(
                    f"cannot rename column(s) {', '.join(missing)}: not in dataset {p.path!r}"
                    f" (columns: {', '.join(ds.column_names)})"
                )
            ds = ds.rename_columns(p.rename)
        if p.limit is not None and p.limit < len(ds):
            ds = ds.select(range(p.limit))
        return ds.to_list()
