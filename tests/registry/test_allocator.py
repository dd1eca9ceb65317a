"""The allocator choice: when `recipe run` restarts itself with tcmalloc, and what training does on glibc."""

from __future__ import annotations

import ctypes
import subprocess
import sys
from pathlib import Path

import pytest

from registry import allocator
from registry.allocator import (
    AllocatorError,
    choice,
    find_tcmalloc,
    loaded_allocator,
    low_fragmentation,
    preload_env,
)

ROOT = Path(__file__).resolve().parents[2]
TC = "/opt/lib/libtcmalloc_minimal.so.4"


def test_the_setting_defaults_to_auto_and_rejects_unknown_values():
    assert choice({}) == "auto"
    assert choice({"RECIPE_ZOO_ALLOCATOR": " MMAP "}) == "mmap"
    with pytest.raises(AllocatorError, match="RECIPE_ZOO_ALLOCATOR='jemalloc': expected one of auto, tcmalloc"):
        choice({"RECIPE_ZOO_ALLOCATOR": "jemalloc"})


def test_tcmalloc_is_found_in_the_library_folders(tmp_path):
    empty, lib = tmp_path / "empty", tmp_path / "lib"
    empty.mkdir()
    lib.mkdir()
    assert find_tcmalloc((str(empty),)) is None
    (lib / "libtcmalloc.so.4").write_bytes(b"")
    assert find_tcmalloc((str(empty), str(lib))) == str(lib / "libtcmalloc.so.4")
    (lib / "libtcmalloc_minimal.so.4").write_bytes(b"")  # the minimal build (no profiler) comes first
    assert find_tcmalloc((str(lib),)) == str(lib / "libtcmalloc_minimal.so.4")


def test_the_running_allocator_is_read_from_the_mapped_libraries():
    glibc = "7f00-7f01 r-xp 0 08:01 1 /usr/lib/x86_64-linux-gnu/libc.so.6\n"
    assert loaded_allocator(glibc) == "system"
    assert loaded_allocator(glibc + "7f02-7f03 r-xp 0 08:01 2 /usr/lib/libtcmalloc_minimal.so.4.5.10\n") == "tcmalloc"
    assert loaded_allocator(glibc + "7f02-7f03 r-xp 0 08:01 2 /usr/lib/libjemalloc.so.2\n") == "jemalloc"


def test_auto_restarts_with_tcmalloc_preloaded_before_what_the_user_preloads():
    env = preload_env({"PATH": "/bin", "LD_PRELOAD": "/x/libmine.so"}, "linux", TC)
    assert env["LD_PRELOAD"] == f"{TC} /x/libmine.so"
    assert env["_RECIPE_ZOO_PRELOADED"] == "1"
    assert env["PATH"] == "/bin"
    assert int(env["TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD"]) >= 1 << 40  # no line per model-sized allocation


@pytest.mark.parametrize("env", [
    {"_RECIPE_ZOO_PRELOADED": "1"},  # the restarted process itself
    {"LD_PRELOAD": "/usr/lib/libtcmalloc.so.4"},  # the user preloaded it already
    {"RECIPE_ZOO_ALLOCATOR": "off"},
    {"RECIPE_ZOO_ALLOCATOR": "mmap"},
])
def test_no_restart_when_already_preloaded_or_not_wanted(env):
    assert preload_env(env, "linux", TC) is None


def test_no_restart_off_linux_or_without_tcmalloc(monkeypatch):
    assert preload_env({}, "darwin", TC) is None
    monkeypatch.setattr(allocator, "find_tcmalloc", lambda: None)
    assert preload_env({}, "linux") is None  # auto: glibc, with the mapped blocks while training
    with pytest.raises(AllocatorError, match="apt-get install libtcmalloc-minimal4"):
        preload_env({"RECIPE_ZOO_ALLOCATOR": "tcmalloc"}, "linux")


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = _MallInfo2
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    return libc


def _beyond_the_free_heap() -> int:
    """A size no free block of the heap can hold (glibc maps a block only when the heap must grow for it)."""
    return _libc().mallinfo2().fordblks + (1 << 20)


def _mapped_after_malloc(size: int) -> int:
    """Bytes glibc holds in separately mapped blocks while one ``size``-byte block is allocated, minus before."""
    libc = _libc()
    before = libc.mallinfo2().hblkhd
    block = libc.malloc(size)
    try:
        return libc.mallinfo2().hblkhd - before
    finally:
        libc.free(block)


@pytest.mark.skipif(not sys.platform.startswith("linux") or loaded_allocator() != "system"
                    or not hasattr(ctypes.CDLL(None), "mallinfo2"), reason="glibc malloc (2.33+) only")
def test_training_on_glibc_maps_large_blocks_on_their_own_and_restores_the_heap_afterwards():
    with low_fragmentation(env={}) as what:
        assert what == "mmap"
        size = _beyond_the_free_heap()
        assert _mapped_after_malloc(size) >= size  # over 64 KiB: a mapping of its own, not a bigger heap
        assert _mapped_after_malloc(16 << 10) == 0  # small blocks stay on the heap
    size = _beyond_the_free_heap()
    if size < 31 << 20:
        assert _mapped_after_malloc(size) == 0  # the heap grows again (threshold back at 32 MiB)
    with low_fragmentation(env={"RECIPE_ZOO_ALLOCATOR": "off"}) as what:
        assert what == "off"
        size = _beyond_the_free_heap()
        if size < 31 << 20:
            assert _mapped_after_malloc(size) == 0  # left alone


@pytest.mark.skipif(find_tcmalloc() is None or not sys.platform.startswith("linux"), reason="tcmalloc not installed")
def test_the_console_command_restarts_itself_on_tcmalloc(tmp_path):
    code = ("import sys; from registry.allocator import maybe_preload, loaded_allocator; "
            "maybe_preload(); print(loaded_allocator(), sys.argv[1:])")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code, "run", "x.yaml"], env=env, capture_output=True, text=True,
                         timeout=60, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "tcmalloc ['run', 'x.yaml']"  # restarted once, same arguments
    env["RECIPE_ZOO_ALLOCATOR"] = "mmap"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "system []"


def test_a_bad_setting_stops_recipe_run_with_a_clear_error(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "RECIPE_ZOO_ALLOCATOR": "fast"}
    out = subprocess.run([sys.executable, "-c", "import sys; from runner.cli import main; sys.exit(main())", "run",
                          "r.yaml"], env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 2
    assert "RECIPE_ZOO_ALLOCATOR='fast': expected one of auto, tcmalloc, mmap, off" in out.stderr
