"""How to call an API model and what it costs: the zoo's ``api:`` block.

This is the one declaration of these fields. The openai backend's settings
(``runner.backends.options.OpenAISettings``) extend it with the client's own knobs (timeouts, retries,
budget), so a zoo entry and a recipe's ``options:`` name and default every API field the same way.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

PRICE_FIELDS = ("input_per_mtok", "output_per_mtok")


class ApiSpec(BaseModel):
    """Endpoint, key variable, limits and prices of an OpenAI-compatible model. Prices are USD per
    million tokens; a zoo entry must state them (``ZooEntry``), since with a price of 0 a ``budget_usd``
    could never stop a run."""

    model_config = ConfigDict(extra="forbid")

    model_id: str = Field(description="Model name sent to the API (e.g. 'gpt-4o-2024-05-13').")
    base_url: str | None = Field(
        default=None, description="OpenAI-compatible endpoint root (e.g. http://127.0.0.1:8000/v1); "
        "None means the openai client's default."
    )
    api_key_env: str = Field(
        default="OPENAI_API_KEY",
        description="Name of the environment variable holding the key (never the key).",
    )
    input_per_mtok: float = Field(default=0.0, ge=0, description="USD per 1M prompt tokens.")
    output_per_mtok: float = Field(default=0.0, ge=0, description="USD per 1M completion tokens.")
    price_note: str | None = Field(
        default=None, description="Where the prices come from (e.g. a conversion)."
    )
    rpm: float | None = Field(
        default=None, gt=0, description="Requests per minute allowed (retries count too); None = no limit."
    )
    tpm: float | None = Field(
        default=None, gt=0, description="Tokens per minute allowed; None = no limit. A request is charged "
        "its prompt plus max_new_tokens up front, corrected to the real usage when the response arrives."
    )
    concurrency: int = Field(default=16, ge=1, description="Requests in flight at once.")
