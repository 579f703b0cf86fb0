"""What paid work costs: an estimate before anything is spent, the actual cost after.

Pure arithmetic over a price table that comes from settings, so a deployment with another
model or negotiated prices only changes configuration. Estimates are per image by quality
(scaled by pixel area from 1024²); the actual cost comes from the token usage the provider
reports.
"""

from __future__ import annotations

from dataclasses import dataclass

BASE_PIXELS = 1024 * 1024
DEFAULT_ESTIMATE_USD = 0.05


@dataclass(frozen=True)
class ImagePrices:
    estimate_usd: dict[str, float]  # per 1024² image, by quality
    text_input_per_m: float
    image_input_per_m: float
    output_per_m: float


@dataclass(frozen=True)
class ImageUsage:
    """Token usage of one image generation, as the Images API reports it."""

    text_input_tokens: int = 0
    image_input_tokens: int = 0
    output_tokens: int = 0


def _pixels(size: str) -> int:
    width, _, height = size.partition("x")
    if width.isdigit() and height.isdigit():
        return int(width) * int(height)
    return BASE_PIXELS  # "auto": the provider picks, usually 1024²


def estimate_images(prices: ImagePrices, *, count: int, quality: str, size: str) -> float:
    """The estimated cost of ``count`` images, shown before any is made."""
    each = prices.estimate_usd.get(quality, prices.estimate_usd.get("auto", DEFAULT_ESTIMATE_USD))
    return round(count * each * _pixels(size) / BASE_PIXELS, 4)


def image_cost(prices: ImagePrices, usage: ImageUsage) -> float:
    """The actual cost of one generation from its reported usage."""
    usd = (
        usage.text_input_tokens * prices.text_input_per_m
        + usage.image_input_tokens * prices.image_input_per_m
        + usage.output_tokens * prices.output_per_m
    ) / 1_000_000
    return round(usd, 6)


def money(usd: float) -> str:
    """``$0.17``; three decimals under ten cents so small costs don't read as $0.00."""
    return f"${usd:,.3f}" if 0 < usd < 0.1 else f"${usd:,.2f}"
