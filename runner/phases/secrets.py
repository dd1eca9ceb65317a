"""Phase 2b: secrets — a key, token or password written inline anywhere in the recipe (profiles and
overrides included) is a problem pointing at it; every variable the recipe names as holding one
(``api_key_env: MY_VAR`` in a model's options, ``token_env``...) is registered as secret, with the
backends' and publishing's default variables, before the run writes anything."""

from __future__ import annotations

from typing import Any

from registry.api_spec import ApiSpec
from registry.secrets import inline_secrets, register_secret_env, secret_env_names
from runner.errors import Problem

# variables read when nothing names one: the openai backend's key, publishing's Hub token
DEFAULT_SECRET_ENVS = (ApiSpec.model_fields["api_key_env"].default, "HF_TOKEN")


def check_secrets(data: dict[str, Any]) -> list[Problem]:
    """A problem per inline secret in ``data``; registers the secret variables ``data`` names."""
    for name in (*DEFAULT_SECRET_ENVS, *secret_env_names(data)):
        register_secret_env(name)
    return [Problem(path, f"{path[-1]!r} holds a secret written into the recipe; put it in an environment "
                          f"variable and name that instead ({path[-1]}_env: MY_VARIABLE)")
            for path in inline_secrets(data)]
