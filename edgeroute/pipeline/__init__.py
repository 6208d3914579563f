"""The pipeline for one query: check the prompt, maybe skip local generation, generate locally, judge, maybe
escalate, record. ``run`` orchestrates; each step is one module taking the parts it needs explicitly."""

from .run import Pipeline, Verifier
from .work import Work

__all__ = ["Pipeline", "Verifier", "Work"]
