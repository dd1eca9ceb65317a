"""Secrets in zoo files: a key written inline is a located error; every key variable an entry names is
masked from the moment the zoo is read."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry.secrets import redact
from registry.zoo import Zoo, ZooFileError


def test_an_inline_key_in_a_zoo_file_is_a_located_error(zoo_home: Path, tmp_path: Path) -> None:
    zoo = tmp_path / "zoo.yaml"
    zoo.write_text(
        "models:\n"
        "  api-model:\n"
        "    source: openai://m\n"
        "    api: {model_id: m, api_key: sk-inline-123456, input_per_mtok: 0, output_per_mtok: 0}\n"
        "  local:\n"
        "    source: random://llama\n"
        "    serving: {hf_token: hf_inline_123456}\n")
    with pytest.raises(ZooFileError) as e:
        Zoo.load([zoo])
    assert e.value.problems == [
        f"{zoo}:4:24: models.api-model.api.api_key: a secret written in the zoo file; put it in an environment "
        "variable and name that instead (api_key_env: MY_VARIABLE)",
        f"{zoo}:7:15: models.local.serving.hf_token: a secret written in the zoo file; put it in an environment "
        "variable and name that instead (hf_token_env: MY_VARIABLE)",
    ]
    assert "sk-inline-123456" not in str(e.value)


def test_key_variables_a_zoo_names_are_masked_once_it_is_read(zoo_home: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("ACME_SERVICE_CRED_A", "value-of-entry-key")  # a name no pattern would guess
    monkeypatch.setenv("ACME_SERVING_VAR_B", "value-of-serving-key")
    assert redact("value-of-entry-key value-of-serving-key") == "value-of-entry-key value-of-serving-key"
    zoo = tmp_path / "zoo.yaml"
    zoo.write_text(
        "models:\n"
        "  api-model:\n"
        "    source: openai://m\n"
        "    api: {model_id: m, api_key_env: ACME_SERVICE_CRED_A, input_per_mtok: 0, output_per_mtok: 0}\n"
        "  served:\n"
        "    source: random://llama\n"
        "    serving: {token_env: ACME_SERVING_VAR_B}\n")
    Zoo.load([zoo])
    assert redact("value-of-entry-key value-of-serving-key") == "*** ***"
