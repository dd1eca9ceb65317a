"""Mix long and short instruction data into one SFT set (LongAlign)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack
from typing import Any, ClassVar

from pydantic import Field, model_validator

from components.base import Context, Estimate, Fields, Params, WholeComponent
from registry.records import Records, RecordsByPosition


class MixParams(Params):
    long_count: int | None = Field(
        None, ge=0, description="Records to take from `long`; default: all of them (or what `total` implies)."
    )
    short_count: int | None = Field(
        None,
        ge=0,
        description="Records to take from `short`; default: all of them, or what `short_ratio` implies. "
        "Cannot be combined with `short_ratio`.",
    )
    short_ratio: float | None = Field(
        None,
        ge=0.0,
        lt=1.0,
        description="Share of short records in the mixed output, in [0, 1). With `total`, the output has "
        "`total` records split by this share; without it, the long side is kept (all, or `long_count`) and "
        "short records are added until they make up this share.",
    )
    total: int | None = Field(
        None, ge=1, description="Size of the mixed output; only together with `short_ratio`."
    )
    with_replacement: bool = Field(
        False,
        description="Sample with replacement, so a count may exceed what an input holds (duplicates get "
        "distinct ids). Without it, asking for more records than an input has is an error.",
    )
    shuffle: bool = Field(
        True, description="Shuffle the mixed output (seeded); off: all long records, then short."
    )
    source_field: str = Field(
        "source", description="Field that records which input (`long`/`short`) a record came from."
    )

    @model_validator(mode="after")
    def _consistent(self) -> MixParams:
        if self.short_ratio is not None and self.short_count is not None:
            raise ValueError("give either short_ratio or short_count, not both")
        if self.total is not None and self.short_ratio is None:
            raise ValueError("total needs short_ratio (with counts, the total is long_count + short_count)")
        if self.total is not None and self.long_count is not None:
            raise ValueError("give either total or long_count, not both")
        return self


class Mix(WholeComponent):
    """Mixes the records of two inputs, `long` and `short`, into one shuffled training set.

    LongAlign trains on its long instruction data together with ShareGPT short chats. The
    amounts are set by counts (`long_count`, `short_count`) or by the share of short records (`short_ratio`,
    optionally with `total`). Sampling and shuffling use the stage's seeded RNG. Each output record keeps
    its fields and gains `source` (`long` or `short`).

    The reference `pre_tokenize.py` meant to choose how much long data to use (`--datanum`), but that
    branch is dead code (spec pitfall §9.2) and all long data is always used. Here the counts are honoured.
    To get the reference behaviour, leave `long_count` unset.

    The records stream: in memory are only the positions drawn and each input's index of line offsets
    (8 bytes a record); each record is read when its turn in the mix comes.
    """

    type: ClassVar[str] = "data.mix"
    streams: ClassVar[bool] = True
    Params: ClassVar[type[Params]] = MixParams
    inputs: ClassVar[dict[str, Fields]] = {"long": Fields(), "short": Fields()}
    passthrough: ClassVar[str | None] = "long"  # records keep their fields (both inputs carry the same kind)
    outputs: ClassVar[Fields | None] = Fields("source")

    def output_fields(self) -> Fields | None:
        return Fields(self.params.source_field)  # type: ignore[attr-defined]

    def plan_counts(self, n_long: int, n_short: int) -> tuple[int, int]:
        """How many long and short records the mix takes, given what the inputs hold."""
        p: MixParams = self.params  # type: ignore[assignment]
        if p.total is not None:
            assert p.short_ratio is not None
            k_short = round(p.total * p.short_ratio)
            k_long = p.total - k_short
        else:
            k_long = n_long if p.long_count is None else p.long_count
            if p.short_ratio is not None:
                k_short = round(k_long * p.short_ratio / (1.0 - p.short_ratio))
            else:
                k_short = n_short if p.short_count is None else p.short_count
        for port, want, have in (("long", k_long, n_long), ("short", k_short, n_short)):
            if want > have and not p.with_replacement:
                raise ValueError(
                    f"data.mix: asked for {want} records from '{port}' but it has {have}; "
                    "lower the count or ratio, or set with_replacement: true"
                )
            if want > 0 and have == 0:
                raise ValueError(f"data.mix: asked for {want} records from '{port}' but it is empty")
        return k_long, k_short

    def run(self, inputs: dict[str, Any], ctx: Context) -> Iterator[dict]:
        """The mix as a generator: the draws and the shuffle are over positions (the index of the inputs'
        lines), each record is read from its input when its turn comes."""
        p: MixParams = self.params  # type: ignore[assignment]
        with ExitStack() as open_inputs:
            sides = {port: _by_position(inputs.get(port, []), open_inputs) for port in ("long", "short")}
            k_long, k_short = self.plan_counts(len(sides["long"]), len(sides["short"]))
            picked = [("long", i) for i in self._draw(len(sides["long"]), k_long, ctx)]
            picked += [("short", i) for i in self._draw(len(sides["short"]), k_short, ctx)]
            if p.shuffle:
                ctx.rng.shuffle(picked)
            yield from _with_unique_ids({**sides[src][i], p.source_field: src} for src, i in picked)

    def _draw(self, n: int, k: int, ctx: Context) -> list[int]:
        """Positions of ``k`` of ``n`` records (the same draws as over the records themselves)."""
        if k == n and not self.params.with_replacement:  # type: ignore[attr-defined]
            return list(range(n))
        if self.params.with_replacement:  # type: ignore[attr-defined]
            return ctx.rng.choices(range(n), k=k)
        return ctx.rng.sample(range(n), k)

    def estimate(self, n_in: dict[str, int | None]) -> Estimate:
        n_long, n_short = n_in.get("long"), n_in.get("short")
        if n_long is None or n_short is None:
            return Estimate()
        try:
            k_long, k_short = self.plan_counts(n_long, n_short)
        except ValueError:
            return Estimate()
        return Estimate(records_out=k_long + k_short)

    def summarize(self, records: list[dict], ctx: Context) -> dict[str, Any]:
        field = self.params.source_field  # type: ignore[attr-defined]
        n_long = sum(1 for r in records if r.get(field) == "long")
        n_short = sum(1 for r in records if r.get(field) == "short")
        n = len(records)
        return {"n": n, "long": n_long, "short": n_short, "short_share": (n_short / n) if n else None}


def _by_position(records: Sequence[dict] | Records, stack: ExitStack) -> Sequence[dict] | RecordsByPosition:
    """Records by position: a list as it is; a ``Records`` through its index of line offsets."""
    if isinstance(records, Records):
        return stack.enter_context(records.by_position())
    return records


def _with_unique_ids(records: Iterable[dict]) -> Iterator[dict]:
    """Give repeated ids (sampling with replacement, or the same id in both inputs) a distinct suffix."""
    used: set[str] = set()
    for r in records:
        key = "id" if "id" in r else ("idx" if "idx" in r else None)
        if key is not None:
            base = new = str(r[key])
            n = 0
            while new in used:
                n += 1
                new = f"{base}-{n}"
            used.add(new)
            if new != base:
                r = {**r, "id": new}
        yield r
