"""The cloud's side of a query's energy: an estimate per input and output token, by model class, always labelled.

No hosted LLM API reports the energy of a request, so the figure is an estimate from published numbers, and wide:
``method`` is always ``estimated``, ``scope`` ``datacenter``, ``source`` names the table row (or the config), and
``attribution`` gives the tokens, the rates and the row's range. Units: joules (J) per token.

The rows (central value, then the low-high range the sources allow):

- ``frontier`` (hosted models of ~100B+ active parameters: GPT-4o, Claude Sonnet, Gemini Pro class): 2.0 J per
  output token (0.5-6), 0.2 J per input token (0.05-0.8). Epoch AI (J. You, "How much energy does ChatGPT use?",
  Feb 2025) puts a typical GPT-4o query at ~0.3 Wh (1,080 J) for ~500 output tokens on H100s and calls that
  pessimistic, and a 10k-token input at ~2.5 Wh; OpenAI (S. Altman, "The Gentle Singularity", June 2025) gave
  0.34 Wh per average ChatGPT query; Jegham et al. ("How Hungry is AI?", arXiv 2505.09598, 2025) estimate several
  times more for long prompts and reasoning models once datacenter overhead (PUE) is included.
- ``medium`` (~10-70B, or a small mixture of experts: GPT-4o-mini, Claude Haiku, Gemini Flash, Llama-3-70B
  class): 0.5 J per output token (0.1-4), 0.05 J per input token (0.01-0.4). Samsi et al. ("From Words to Watts",
  arXiv 2310.03003, 2023) measured ~3-4 J per output token for LLaMA-65B on V100/A100 at small batch; batched
  serving on newer GPUs is several times cheaper. Google (Elsner et al., arXiv 2508.15734, 2025) reports 0.24 Wh
  for the median Gemini Apps text prompt, idle machines and PUE included.
- ``small`` (<= ~8B: GPT-4.1-nano, Llama-3-8B, Gemma-2B class): 0.1 J per output token (0.02-1), 0.01 J per
  input token (0.002-0.1). Husom et al. (MELODI, arXiv 2407.16893, 2024) measure 70B models at about two orders
  of magnitude more energy per token than small ones.

The class comes from ``cloud_energy_class``, else from the cloud model's name (``guess_class``: "mini", "haiku",
"flash", "70b" mean ``medium``; "nano", "lite", "8b", "135m" ``small``; an unknown name counts as ``frontier``, the conservative choice
for a green objective); ``cloud_energy_j_per_output_token`` / ``..._input_token`` replace the row's rates.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from .base import EnergyReading


@dataclass(frozen=True)
class CloudEnergyRate:
    """J per output and per input token, with the low-high range behind them (J per output token), and where they
    come from."""

    name: str
    j_per_output_token: float
    j_per_input_token: float
    low: float
    high: float
    source: str

    def estimate(self, prompt_tokens: int, completion_tokens: int, *, input_counted: str = "") -> EnergyReading:
        """The datacenter energy of one request of these sizes (tokens), labelled ``estimated``; ``input_counted``
        says how the input tokens were counted when the provider did not report them."""
        joules = self.j_per_output_token * completion_tokens + self.j_per_input_token * prompt_tokens
        scale = (self.low / self.j_per_output_token, self.high / self.j_per_output_token)
        note = f", input tokens {input_counted}" if input_counted else ""
        return EnergyReading(
            joules=joules, method="estimated", source=self.source, scope="datacenter",
            relative_uncertainty=1.0,
            attribution=(f"{prompt_tokens} input x {self.j_per_input_token:g} J + {completion_tokens} output x "
                         f"{self.j_per_output_token:g} J ({self.name}; range x{scale[0]:.2g}-x{scale[1]:.2g}{note})"))


#: The default table (see the module docstring for each row's sources).
CLOUD_ENERGY_TABLE: dict[str, CloudEnergyRate] = {
    # Epoch AI 2025 (GPT-4o ~0.3 Wh / ~500 output tokens), OpenAI 2025 (0.34 Wh per query), Jegham et al. 2025.
    "frontier": CloudEnergyRate("frontier", 2.0, 0.2, 0.5, 6.0,
                                "cloud energy table: frontier (Epoch AI 2025; OpenAI 2025; Jegham et al. 2025)"),
    # Samsi et al. 2023 (LLaMA-65B ~3-4 J per output token, unbatched), Google / Elsner et al. 2025 (0.24 Wh median).
    "medium": CloudEnergyRate("medium", 0.5, 0.05, 0.1, 4.0,
                              "cloud energy table: medium (Samsi et al. 2023; Elsner et al. 2025)"),
    # Husom et al. 2024 (MELODI: small models ~100x less per token than 70B ones).
    "small": CloudEnergyRate("small", 0.1, 0.01, 0.02, 1.0, "cloud energy table: small (Husom et al. 2024)"),
}

_SMALL = re.compile(r"nano|tiny|lite|smol|(?<![0-9.])[1-8](\.[0-9])?b\b|[0-9]{2,3}m\b", re.IGNORECASE)
_MEDIUM = re.compile(r"mini|haiku|flash|small|medium|(?<![0-9.])([1-7][0-9])(\.[0-9])?b\b", re.IGNORECASE)


def guess_class(model: Optional[str]) -> str:
    """The table row for a cloud model name: ``small``, ``medium``, or ``frontier`` (unknown names too)."""
    name = model or ""
    if _SMALL.search(name):
        return "small"
    if _MEDIUM.search(name):
        return "medium"
    return "frontier"


def cloud_rate(model: Optional[str], energy_class: Optional[str] = None, j_per_output_token: Optional[float] = None,
               j_per_input_token: Optional[float] = None) -> CloudEnergyRate:
    """The rates for ``model``: the named class's row (``energy_class``, else ``guess_class``), with either rate
    replaced by a configured one (then the source says ``config``)."""
    row = CLOUD_ENERGY_TABLE[energy_class or guess_class(model)]
    if j_per_output_token is None and j_per_input_token is None:
        return row
    out = row.j_per_output_token if j_per_output_token is None else j_per_output_token
    inp = row.j_per_input_token if j_per_input_token is None else j_per_input_token
    return CloudEnergyRate(f"{row.name}, configured", out, inp, out * row.low / row.j_per_output_token,
                           out * row.high / row.j_per_output_token,
                           f"cloud energy: config (cloud_energy_j_per_output_token {out:g}, "
                           f"cloud_energy_j_per_input_token {inp:g}); unmeasured by any provider")


__all__ = ["CLOUD_ENERGY_TABLE", "CloudEnergyRate", "cloud_rate", "guess_class"]
