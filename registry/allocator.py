"""The C allocator under PyTorch's CPU tensors, chosen so CPU training neither bloats nor crawls.

PyTorch allocates CPU tensors with ``malloc``. glibc's malloc serves blocks up to 32 MiB from its heap
and, in a training step, splits the freed blocks of one layer into the smaller blocks of the next: the
heap fills with holes too small for the next big tensor and grows by about a layer's activations per
layer. LoRA SFT of SmolLM2-135M at 4 x 1024 tokens with gradient checkpointing peaks at 6.1 GB under
glibc with 1.2 GB live. Two ways out, measured side by side in ``bench/sft_memory.py``:

- tcmalloc (``libtcmalloc-minimal4`` on Debian/Ubuntu, ``gperftools`` elsewhere) keeps blocks of one
  size together: 1.7 GB and faster steps than glibc's. ``recipe run`` and ``recipe serve`` restart
  themselves once with it preloaded when it is installed (``maybe_preload``).
- without it, training maps every block over 64 KiB on its own (``low_fragmentation``): freed blocks
  go back to the system at once, so nothing fragments, at the price of a page fault per fresh page
  (1.6 GB, but steps about 1.4x slower than glibc's own on 2 cores).

``RECIPE_ZOO_ALLOCATOR`` picks: ``auto`` (default: tcmalloc when installed, else the mapped blocks),
``tcmalloc`` (required: an error when it is not installed), ``mmap`` (the mapped blocks, never tcmalloc),
``off`` (leave malloc alone: glibc's speed and its peaks). Linux only; elsewhere nothing changes.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

ENV = "RECIPE_ZOO_ALLOCATOR"
CHOICES = ("auto", "tcmalloc", "mmap", "off")
TCMALLOC_NAMES = ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4", "libtcmalloc_minimal.so", "libtcmalloc.so")
LIB_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib",
            "/lib/x86_64-linux-gnu", "/lib64")
MMAP_THRESHOLD = 64 * 1024  # blocks above this are mapped on their own while training
GLIBC_MAX_THRESHOLD = 32 * 1024 * 1024  # where glibc's own sliding threshold ends up: restored after training
_M_MMAP_THRESHOLD = -3  # mallopt parameter numbers from glibc's malloc.h
_M_TRIM_THRESHOLD = -1

log = logging.getLogger("recipe.allocator")


class AllocatorError(RuntimeError):
    """``RECIPE_ZOO_ALLOCATOR`` asks for something this machine does not have."""


def choice(env: Mapping[str, str] | None = None) -> str:
    """The allocator setting from the environment, checked."""
    value = (os.environ if env is None else env).get(ENV, "auto").strip().lower() or "auto"
    if value not in CHOICES:
        raise AllocatorError(f"{ENV}={value!r}: expected one of {', '.join(CHOICES)}")
    return value


def find_tcmalloc(dirs: tuple[str, ...] = LIB_DIRS) -> str | None:
    """The path of an installed tcmalloc shared library in ``dirs``, or None."""
    for folder in dirs:
        for name in TCMALLOC_NAMES:
            path = Path(folder) / name
            if path.is_file():
                return str(path)
    return None


def loaded_allocator(maps: str | None = None) -> str:
    """Which malloc this process runs on: ``tcmalloc``, ``jemalloc``, ``mimalloc`` or ``system``
    (read from the shared libraries mapped into the process; ``maps``: that listing, for tests)."""
    if maps is None:
        try:
            maps = Path("/proc/self/maps").read_text()
        except OSError:
            return "system"
    for name in ("tcmalloc", "jemalloc", "mimalloc"):
        if f"lib{name}" in maps:
            return name
    return "system"


def preload_env(env: Mapping[str, str], platform: str = sys.platform,
                tcmalloc: str | None = None) -> dict[str, str] | None:
    """The environment to restart the process in with tcmalloc preloaded, or None to go on as it is.

    ``tcmalloc``: its library path (None: looked up). None when the setting is not auto/tcmalloc, off
    Linux, when tcmalloc is already preloaded, or (auto) when it is not installed; an error when the
    setting is ``tcmalloc`` and it is not installed."""
    wanted = choice(env)
    if wanted not in ("auto", "tcmalloc") or not platform.startswith("linux"):
        return None
    preloaded = env.get("LD_PRELOAD", "")
    if "tcmalloc" in preloaded or env.get("_RECIPE_ZOO_PRELOADED"):
        return None  # the restarted process, or the user preloaded it: never restart twice
    path = tcmalloc or find_tcmalloc()
    if path is None:
        if wanted == "tcmalloc":
            raise AllocatorError(f"{ENV}=tcmalloc but no tcmalloc library was found in {', '.join(LIB_DIRS)} "
                                 "(Debian/Ubuntu: apt-get install libtcmalloc-minimal4)")
        return None
    return {
        **env,
        "LD_PRELOAD": f"{path} {preloaded}".strip(),
        "_RECIPE_ZOO_PRELOADED": "1",
        # tcmalloc prints a line for every allocation over 1 GB (a model's weights): not worth the noise
        "TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD": env.get("TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD",
                                                         str(1 << 40)),
    }


def maybe_preload() -> None:
    """Restart this very command with tcmalloc preloaded when the setting and the machine allow it.

    Called by the ``recipe`` console command for ``run`` and ``serve`` before anything heavy is
    imported; the restarted process sees ``_RECIPE_ZOO_PRELOADED`` and goes on."""
    env = preload_env(os.environ)
    if env is None:
        return
    argv = list(getattr(sys, "orig_argv", [])) or [sys.executable, *sys.argv]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *argv[1:]], env)


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt  # noqa: B018 - glibc (and musl has none): the attribute lookup is the check
        libc.malloc_trim  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


@contextmanager
def low_fragmentation(logger: logging.Logger | None = None, env: Mapping[str, str] | None = None) -> Iterator[str]:
    """Around a training loop: map blocks over 64 KiB on their own when the process runs on glibc's
    malloc (see the module docstring); yields what it did: ``mmap``, ``off`` (the setting), the
    preloaded allocator's name, or ``none`` (not glibc)."""
    if choice(env) == "off":
        yield "off"
        return
    running = loaded_allocator()
    libc = _glibc() if running == "system" else None
    if libc is None:
        yield "none" if running == "system" else running
        return
    libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)  # also fixes the trim threshold: no sliding either
    (logger or log).info("training with large blocks mapped on their own (glibc malloc): low peak memory, "
                         "slower steps; install tcmalloc (apt-get install libtcmalloc-minimal4) for both")
    try:
        yield "mmap"
    finally:
        libc.mallopt(_M_MMAP_THRESHOLD, GLIBC_MAX_THRESHOLD)
        libc.mallopt(_M_TRIM_THRESHOLD, 2 * GLIBC_MAX_THRESHOLD)
        libc.malloc_trim(0)
