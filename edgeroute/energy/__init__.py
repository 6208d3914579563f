"""Energy per query. Every reading says how it was obtained; nothing is ever a silent zero."""

from .base import EnergyReading

__all__ = ["EnergyReading"]
