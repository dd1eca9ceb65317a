"""Load ShareGPT-style chats as `{id, messages}` records (LongAlign short data)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from components.base import Context, Fields, Params, WholeComponent
from registry.jsonio import read_json_records

# ShareGPT speaker names -> chat roles
ROLE_NAMES: dict[str, str] = {
    "system": "system",
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "chatgpt": "assistant",
    "bard": "assistant",
    "bing": "assistant",
    "model": "assistant",
}


class ShareGPTParams(Params):
    path: str = Field(
        description="A .jsonl file (one conversation per line) or a .json file holding a list of "
        "conversations. A relative path is relative to the recipe file.",
        json_schema_extra={"path": True},
    )
    limit: int | None = Field(
        None, ge=1, description="Keep at most this many conversations (after filtering)."
    )
    drop_empty_assistant: bool = Field(
        True,
        description="Drop a conversation when one of its assistant turns is empty or whitespace, as "
        "LongAlign's ShareGPT data does; dropped conversations are counted in the metrics.",
    )


class ShareGPTLoader(WholeComponent):
    """Reads ShareGPT-style conversations and emits `{id, messages: [{role, content}]}`.

    Both layouts are accepted: `{"messages": [{"role", "content"}]}` and
    `{"conversations": [{"from", "value"}]}` (speaker names such as `human`/`gpt` become `user`/`assistant`).
    LongAlign mixes its long data with ShareGPT chats whose empty assistant turns were
    filtered out. Here a conversation with an empty assistant turn, no assistant turn at all, or a speaker
    that is not a chat role is dropped. The metrics count the dropped conversations by reason.
    """

    type: ClassVar[str] = "load.sharegpt"
    Params: ClassVar[type[Params]] = ShareGPTParams
    inputs: ClassVar[dict[str, Fields]] = {}
    outputs: ClassVar[Fields | None] = Fields("id", "messages")

    def __init__(self, params: Params | None = None) -> None:
        super().__init__(params)
        self._dropped: Counter[str] | None = None
        self._read = 0

    def run(self, inputs: dict[str, list[dict]], ctx: Context) -> list[dict]:
        records, dropped, n_read = self._load()
        self._dropped, self._read = dropped, n_read
        if dropped:
            ctx.log.info(
                "load.sharegpt: dropped %d of %d conversations (%s)",
                sum(dropped.values()),
                n_read,
                ", ".join(f"{k}: {v}" for k, v in sorted(dropped.items())),
            )
        return records

    def _load(self) -> tuple[list[dict], Counter[str], int]:
        p: ShareGPTParams = self.params  # type: ignore[assignment]
        raw = read_json_records(Path(p.path))
        used: set[str] = set()
        records: list[dict] = []
        dropped: Counter[str] = Counter()
        for i, item in enumerate(raw):
            messages, problem = normalise_conversation(item, p.drop_empty_assistant)
            if problem:
                dropped[problem] += 1
                continue
            if p.limit is not None and len(records) >= p.limit:
                break
            records.append({"id": _unique_id(item, i, used), "messages": messages})
        return records, dropped, len(raw)

    def summarize(self, records: list[dict], ctx: Context) -> dict[str, Any]:
        if self._dropped is None:  # summary of a stage reused from an earlier run: count again
            _, self._dropped, self._read = self._load()
        return {
            "n": len(records),
            "read": self._read,
            "dropped": sum(self._dropped.values()),
            "dropped_by_reason": dict(sorted(self._dropped.items())),
        }


def normalise_conversation(item: Any, drop_empty_assistant: bool = True) -> tuple[list[dict], str | None]:
    """`(messages, None)` for a usable conversation, else `([], reason)`."""
    if not isinstance(item, dict):
        return [], "not an object"
    if isinstance(item.get("messages"), list):
        turns = [(m.get("role"), m.get("content")) for m in item["messages"] if isinstance(m, dict)]
    elif isinstance(item.get("conversations"), list):
        turns = [(m.get("from"), m.get("value")) for m in item["conversations"] if isinstance(m, dict)]
    else:
        return [], "no messages"
    messages = []
    for speaker, content in turns:
        role = ROLE_NAMES.get(str(speaker).lower())
        if role is None:
            return [], "unknown role"
        messages.append({"role": role, "content": _text(content)})
    assistant = [m["content"] for m in messages if m["role"] == "assistant"]
    if not assistant:
        return [], "no assistant turn"
    if drop_empty_assistant and any(not c.strip() for c in assistant):
        return [], "empty assistant turn"
    return messages, None


def _text(content: Any) -> str:
    """Message content as text; OpenAI-style lists of parts are joined."""
    if content is None:
        return ""
    if isinstance(content, list):
        return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    return str(content)


def _unique_id(item: dict, i: int, used: set[str]) -> str:
    base = str(item.get("id", item.get("idx", f"sharegpt-{i}")))
    new, n = base, 0
    while new in used:
        n += 1
        new = f"{base}-{n}"
    used.add(new)
    return new
