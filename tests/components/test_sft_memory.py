"""Peak memory of a whole `recipe run` doing LoRA SFT of the real SmolLM2-135M (``bench/sft_memory.py``).

Slow (a few minutes on 2 cores) and about 2 GB of memory, so it runs only when asked:
``RECIPE_ZOO_MEMORY_TEST=1 pytest -m slow tests/components/test_sft_memory.py``.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "sft_memory.py"


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("RECIPE_ZOO_MEMORY_TEST") != "1", reason="set RECIPE_ZOO_MEMORY_TEST=1")
@pytest.mark.parametrize("allocator", ["auto", "mmap"])  # tcmalloc when installed; glibc with mapped blocks
def test_lora_sft_of_smollm2_at_4_x_1024_tokens_with_checkpointing_peaks_under_2_gb(monkeypatch, allocator):
    from registry.zoo import Zoo

    monkeypatch.delenv("RECIPE_ZOO_HOME", raising=False)
    if not Zoo.load().is_pulled("smollm2-135m-instruct"):
        pytest.skip("smollm2-135m-instruct is not pulled (recipe zoo pull smollm2-135m-instruct)")
    spec = importlib.util.spec_from_file_location("sft_memory", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = bench.measure(checkpointing=True, steps=1, allocator=allocator)
    print(f"peak RSS {result['peak_rss_mb']:.0f} MB")
    assert result["peak_rss_mb"] < 2048
