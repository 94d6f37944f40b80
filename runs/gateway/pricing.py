"""Model prices from litellm's (local) cost map."""

from __future__ import annotations

import functools

import litellm


@functools.lru_cache(maxsize=4096)
def _unit_prices(model: str, provider: str) -> tuple[float, float]:
    try:
        info = litellm.get_model_info(model=model, custom_llm_provider=provider or None)
    except Exception:  # litellm raises a bare Exception for models outside its catalogue: they are unpriced
        return 0.0, 0.0
    return float(info.get("input_cost_per_token") or 0.0), float(info.get("output_cost_per_token") or 0.0)


def cost_of(model: str, provider: str, prompt_tokens: int, completion_tokens: int) -> float:
    prompt_price, completion_price = _unit_prices(model, provider)
    return prompt_tokens * prompt_price + completion_tokens * completion_price
