"""`recipe zoo list | show | pull | verify`: output and exit status, and verify catching tampered files."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from registry import zoo_cli
from registry.zoo import UNPINNED_NOTE, Zoo

SHA = "89abcdef0123456789abcdef0123456789abcdef"


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Print wide and without colour, so whole names and paths reach the captured output."""
    monkeypatch.setattr(zoo_cli, "console", Console(width=300, color_system=None, soft_wrap=True))


def test_list_shows_every_model_and_what_is_unpinned(zoo_home: Path, capsys: pytest.CaptureFixture) -> None:
    zoo = Zoo.load()
    assert zoo_cli.cmd_list(zoo) == 0
    out = capsys.readouterr().out
    for name in zoo.names():
        assert name in out
    glm_row = next(line for line in out.splitlines() if " glm-4-9b " in line)
    assert "unpinned" in glm_row
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    assert rows["llama-2-7b-hf"][-3:] == ["4k", "no", "01c7f73d771…"]  # the pin from '@sha', shortened
    assert rows["longcite-glm4-9b"][3] == "128k"  # 131072 tokens
    assert rows["gpt-4o-2024-05-13"][3] == "128k"  # 128000 tokens
    assert rows["longalign-7b-64k"][3] == "64k"
    assert rows["all-minilm-l6-v2"][3] == "256"


def test_show_explains_an_unpinned_entry_and_rejects_unknown_names(
    zoo_home: Path, capsys: pytest.CaptureFixture
) -> None:
    zoo = Zoo.load()
    assert zoo_cli.cmd_show(zoo, "glm-4-9b") == 0
    out = capsys.readouterr().out
    assert UNPINNED_NOTE in out and "hf://THUDM/glm-4-9b" in out and "not pulled" in out
    assert zoo_cli.cmd_show(zoo, "glm-4-9bb") == 2
    assert "did you mean 'glm-4-9b'?" in capsys.readouterr().out
    assert zoo_cli.cmd_pull(zoo, "glm4-9b") == 2
    assert zoo_cli.cmd_verify(zoo, "nope-model-x") == 2


def test_pull_then_verify_catches_changed_missing_and_extra_files(
    zoo_home: Path, capsys: pytest.CaptureFixture
) -> None:
    zoo = Zoo.load()
    assert zoo_cli.cmd_pull(zoo, "tiny-random-llama") == 0
    out = capsys.readouterr().out
    assert "pulled tiny-random-llama" in out and "pin:  sha256:" in out
    assert zoo_cli.cmd_pull(zoo, "tiny-random-llama") == 0
    assert "already pulled" in capsys.readouterr().out

    assert zoo_cli.cmd_verify(zoo, "tiny-random-llama") == 0
    assert "ok tiny-random-llama" in capsys.readouterr().out

    folder = zoo.resolve("tiny-random-llama", pull=False).path
    config = folder / "config.json"
    config.write_text(config.read_text().replace('"hidden_size": 64', '"hidden_size": 65'))  # same size
    (folder / "tokenizer_config.json").unlink()
    (folder / "stray.bin").write_bytes(b"x")
    assert zoo_cli.cmd_verify(zoo, "tiny-random-llama") == 1
    out = capsys.readouterr().out
    assert "FAILED tiny-random-llama: 3 problem(s)" in out
    assert "changed: config.json" in out
    assert "missing: tokenizer_config.json" in out
    assert "unexpected file: stray.bin" in out
    assert zoo_cli.cmd_verify(zoo, None) == 1  # every pulled model; this one fails


def test_verify_of_an_unpinned_hub_model_names_the_commit_it_pulled(
    zoo_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    import huggingface_hub

    def fake_snapshot(repo_id: str, *, revision: str | None = None, local_files_only: bool = False) -> str:
        snapshot = tmp_path / "hf" / "snapshots" / SHA
        snapshot.mkdir(parents=True, exist_ok=True)
        (snapshot / "config.json").write_text("{}")
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    zoo = Zoo.load()
    assert zoo_cli.cmd_verify(zoo, "glm-4-9b") == 0
    assert "glm-4-9b: not pulled" in capsys.readouterr().out
    assert zoo_cli.cmd_pull(zoo, "glm-4-9b") == 0
    capsys.readouterr()
    assert zoo_cli.cmd_verify(zoo, "glm-4-9b") == 0
    out = capsys.readouterr().out
    assert f"{UNPINNED_NOTE}; pulled at {SHA}" in out
    assert zoo_cli.cmd_show(zoo, "glm-4-9b") == 0
    assert SHA in capsys.readouterr().out


def test_api_models_have_nothing_to_pull(zoo_home: Path, capsys: pytest.CaptureFixture) -> None:
    zoo = Zoo.load()
    assert zoo_cli.cmd_pull(zoo, "gpt-4o") == 0
    assert "nothing to pull" in capsys.readouterr().out
    assert zoo_cli.main(["verify", "glm-4-0520"]) == 0
    assert "API model" in capsys.readouterr().out
