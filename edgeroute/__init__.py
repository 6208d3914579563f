"""edgeroute: answer LLM queries on the device first, reach the cloud only when it pays off.

    from edgeroute import Router
    router = Router()
    answer = router.ask("What is the capital of France?")
    print(answer.text, answer.route, answer.confidence)
"""

from ._errors import (
    CalibrationError,
    CloudAuthError,
    CloudBudgetError,
    CloudError,
    CloudHTTPError,
    CloudResponseError,
    CloudStreamError,
    CloudTimeoutError,
    CloudUnreachableError,
    ConfigError,
    DatasetError,
    EdgeRouteError,
    EmptyPromptError,
    EnergyError,
    FitError,
    FitInterruptedError,
    GenerationCancelled,
    InputError,
    InvalidPromptError,
    ModelCorruptError,
    ModelError,
    ModelLoadError,
    ModelNotFoundError,
    PromptTooLongError,
    StoreError,
    UnknownAnswerError,
)
from .answer import Answer, StreamEvent
from .cloud import CloudAnswer, CloudBackend
from .config import RouterConfig
from .energy import EnergyMeter, EnergyMonitor, EnergyReading, QueryEnergy
from .local import Generation, LlamaCppModel, LocalModel
from .local.sampling import Sampling
from .policy import Decision, LinUCBPolicy, Policy, RewardWeights, ThresholdPolicy
from .privacy import PrivacyDetector
from .risk import RiskInfo
from .conversation import Conversation
from .router import AnswerStream, Router
from .signals import PerplexitySignal, ProbeSignal, Signal, TokenStatsSignal
from .store import TraceStore

__version__ = "0.1.0"


def __getattr__(name: str) -> object:  # httpx loads with the first cloud backend, not with edgeroute
    if name == "OpenAICompatBackend":
        from .cloud.openai_compat import OpenAICompatBackend

        return OpenAICompatBackend
    raise AttributeError(f"module 'edgeroute' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), "OpenAICompatBackend"})

__all__ = [
    "Answer",
    "AnswerStream",
    "CalibrationError",
    "CloudAnswer",
    "CloudAuthError",
    "CloudBudgetError",
    "CloudBackend",
    "CloudError",
    "CloudHTTPError",
    "CloudResponseError",
    "CloudStreamError",
    "CloudTimeoutError",
    "CloudUnreachableError",
    "ConfigError",
    "DatasetError",
    "Decision",
    "EdgeRouteError",
    "EmptyPromptError",
    "EnergyError",
    "EnergyMeter",
    "EnergyMonitor",
    "EnergyReading",
    "FitError",
    "FitInterruptedError",
    "Generation",
    "GenerationCancelled",
    "InputError",
    "InvalidPromptError",
    "LinUCBPolicy",
    "LlamaCppModel",
    "LocalModel",
    "ModelCorruptError",
    "ModelError",
    "ModelLoadError",
    "ModelNotFoundError",
    "OpenAICompatBackend",
    "PerplexitySignal",
    "ProbeSignal",
    "Policy",
    "PrivacyDetector",
    "PromptTooLongError",
    "QueryEnergy",
    "RewardWeights",
    "RiskInfo",
    "Sampling",
    "Router",
    "Conversation",
    "RouterConfig",
    "Signal",
    "TokenStatsSignal",
    "StoreError",
    "StreamEvent",
    "ThresholdPolicy",
    "TraceStore",
    "UnknownAnswerError",
    "__version__",
]
