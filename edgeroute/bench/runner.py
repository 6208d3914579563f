"""Running the local model (and optionally a real cloud) over labelled items, cached on disk.

The local side goes through ``Router(local_only=True)``, so the benchmark sees exactly the signals, latency and
energy a user gets. Each answer is appended to a JSONL cache as soon as it is produced, keyed by the model file's
hash and the generation parameters: a re-run only generates what is missing, an interrupted run resumes, and a
different model file gets a different cache. Grading and the confidence (``rescore``: the current confidence map
applied to the cached features) happen at report time, so a grader fix or a refitted map never needs a re-run.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, TextIO

import numpy as np

from .. import paths
from ..cloud.base import CloudBackend
from ..local.base import Generation, LocalModel
from ..messages import Message

@dataclass(frozen=True)
class RunParams:
    """Generation parameters that change the answers (and so the cache key)."""

    max_tokens: int = 64
    temperature: float = 0.0


def cache_key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


class ResultCache:
    """Append-only JSONL of records keyed by ``id``. A torn last line (a killed run) is skipped with a warning."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        if not self.path.exists():
            return out
        bad = 0
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
                out[record["id"]] = record
            except (json.JSONDecodeError, KeyError, TypeError):
                bad += 1
        if bad:
            warnings.warn(f"edgeroute: skipped {bad} unreadable line(s) in {self.path}", RuntimeWarning, stacklevel=2)
        return out

    def append(self, record: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record, allow_nan=False) + "\n")
            f.flush()


class Progress:
    """A one-line progress bar on ``stream`` (stderr by default); silent when ``stream`` is None."""

    def __init__(self, total: int, label: str, stream: Optional[TextIO] = sys.stderr) -> None:
        self.total, self.label, self.stream, self.t0, self.done = total, label, stream, time.perf_counter(), 0

    def step(self) -> None:
        self.done += 1
        if self.stream is None:
            return
        rate = self.done / max(time.perf_counter() - self.t0, 1e-9)
        width = 30
        filled = int(width * self.done / max(self.total, 1))
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        self.stream.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} "
                          f"{rate:.1f}/s eta {eta:.0f}s")
        if self.done == self.total:
            self.stream.write("\n")
        self.stream.flush()


def encode_vector(v: Optional[np.ndarray]) -> Optional[str]:
    """float32 vector -> base64 text (for the JSONL cache); None stays None."""
    return None if v is None else base64.b64encode(np.asarray(v, dtype="<f4").tobytes()).decode("ascii")


def decode_vector(s: Optional[str]) -> Optional[np.ndarray]:
    return None if s is None else np.frombuffer(base64.b64decode(s), dtype="<f4").astype(np.float32)


class _Capture(LocalModel):
    """Delegates to ``inner`` and keeps the last ``Generation`` (its hidden states go into the cache)."""

    def __init__(self, inner: LocalModel) -> None:
        super().__init__()
        self.inner = inner
        self.name, self.n_ctx, self.uses_gpu = inner.name, inner.n_ctx, inner.uses_gpu
        self.last: Optional[Generation] = None

    @property
    def fingerprint(self) -> str:
        return self.inner.fingerprint

    def count_prompt_tokens(self, messages: Sequence[Message]) -> int:
        return self.inner.count_prompt_tokens(messages)

    def stream(self, messages, *, max_tokens, temperature=0.0, cancel=None):  # type: ignore[no-untyped-def]
        self.last = None
        self.last = yield from self.inner.stream(messages, max_tokens=max_tokens, temperature=temperature,
                                                 cancel=cancel)
        return self.last


def raw_generation(gen: Optional[Generation]) -> dict[str, Any]:
    """What a cache record keeps of a ``Generation`` so that every feature can be recomputed from it: the token
    ids, texts, logprobs, entropies and margins, the finish reason, and every captured hidden state (base64)."""
    if gen is None:
        return {}
    return {
        "token_ids": list(gen.token_ids),
        "token_texts": list(gen.token_texts),
        "token_logprobs": [float(x) for x in gen.token_logprobs],
        "token_entropies": [float(x) for x in gen.token_entropies],
        "token_margins": [float(x) for x in gen.token_margins],
        "finish_reason": gen.finish_reason,
        "truncated": gen.truncated,
        "hidden": {k: encode_vector(v) for k, v in gen.hidden.items()},
        "selfref_logits": list(gen.selfref_logits) if gen.selfref_logits is not None else None,
    }


def generation_of(record: dict[str, Any]) -> Generation:
    """The ``Generation`` a cache record was made from (texts, token evidence and hidden states; times are 0)."""
    hidden = {k: decode_vector(v) for k, v in (record.get("hidden") or {}).items() if v is not None}
    return Generation(
        text=record.get("text", ""),
        token_ids=list(record.get("token_ids", [])),
        token_logprobs=np.asarray(record.get("token_logprobs", []), dtype=np.float64),
        token_entropies=np.asarray(record.get("token_entropies", []), dtype=np.float64),
        prompt_tokens=int(record.get("prompt_tokens", 0)),
        prefill_s=0.0,
        decode_s=0.0,
        finish_reason=record.get("finish_reason", "stop"),
        prompt_hidden=decode_vector(record.get("prompt_hidden")),
        answer_hidden=decode_vector(record.get("answer_hidden")),
        answer_hidden_mean=decode_vector(record.get("answer_hidden_mean")),
        truncated=bool(record.get("truncated", False)),
        token_margins=np.asarray(record.get("token_margins", []), dtype=np.float64),
        token_texts=list(record.get("token_texts", [])),
        hidden={k: v for k, v in hidden.items() if v is not None},  # type: ignore[misc]
        selfref_logits=_selfref_logits(record),
    )


def _selfref_logits(record: dict[str, Any]) -> Optional[tuple[float, float]]:
    """The record's Self-REF slot logits, or logits that give its cached ``selfref`` score (older records)."""
    if record.get("selfref_logits"):
        cn, un = record["selfref_logits"]
        return float(cn), float(un)
    p = record.get("signals", {}).get("selfref")
    if p is None:
        return None
    p = min(max(float(p), 1e-12), 1.0 - 1e-12)
    return float(np.log(p / (1.0 - p))), 0.0


def run_local(
    items: Sequence[dict[str, Any]],
    model: LocalModel,
    params: RunParams = RunParams(),
    *,
    use_cache: bool = True,
    progress: Optional[TextIO] = sys.stderr,
    on_generate: Optional[Callable[[str], None]] = None,
    need_hidden: bool = False,
    need_selfref: bool = False,
    generate: bool = True,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One record per item (``id``, ``text``, ``signals``, ``confidence``, ``latency_ms``, ``completion_tokens``,
    ``joules``, ``energy_method``, ``energy_source``, and base64 ``prompt_hidden`` / ``answer_hidden`` /
    ``answer_hidden_mean`` with their ``hidden_layer`` when the engine provides them) and run info (cache path, how
    many were generated). ``need_hidden`` regenerates cached records without hidden states from the model's
    ``hidden_layer`` (made before they were cached, or read from another block); ``need_selfref`` regenerates
    records not scored by the model's current Self-REF adapter (the answer text is the same: the adapter only
    touches the slot). ``generate=False`` generates nothing: only the items already cached get a record (the list
    is then shorter than ``items``; match by ``id``)."""
    from ..router import Router

    capture = _Capture(model)
    router = Router(local_only=True, local_model=capture, trace=False)
    try:
        key = cache_key("local", model.fingerprint, asdict(params))
        cache = ResultCache(paths.bench_cache_dir() / f"local-{key}.jsonl")
        have = cache.load() if use_cache else {}
        have = {k: v for k, v in have.items() if "token_logprobs" in v}  # older records lack the raw evidence
        if need_hidden:
            want = {f"{kind}@{layer}" for layer in getattr(model, "hidden_layers", ()) or ()
                    for kind in ("prompt", "answer_mean")}
            layer = getattr(model, "hidden_layer", None)
            have = {k: v for k, v in have.items()
                    if v.get("prompt_hidden") is not None and v.get("hidden_layer") == layer
                    and want <= set(v.get("hidden") or {})}
        adapter = getattr(model, "selfref", None)
        adapter_sha = adapter.sha256 if adapter is not None else None
        if need_selfref and adapter_sha:
            have = {k: v for k, v in have.items() if v.get("selfref_adapter") == adapter_sha}
        question = {i["id"]: i["question"] for i in items}
        have = {k: v for k, v in have.items() if v.get("question") == question.get(k, v.get("question"))}
        todo = [i for i in items if i["id"] not in have] if generate else []
        bar = Progress(len(todo), "local", progress if todo else None)
        for item in todo:
            if on_generate is not None:
                on_generate(item["id"])
            a = router.ask(item["question"], max_tokens=params.max_tokens)
            gen = capture.last
            record = {
                "id": item["id"],
                "question": item["question"],
                "text": a.text,
                "signals": a.signals,
                "confidence": a.confidence,
                "latency_ms": a.latency_ms.get("total", 0.0),
                "completion_tokens": a.tokens.get("completion", 0),
                "prompt_tokens": a.tokens.get("prompt", 0),
                "joules": a.energy.joules,
                "energy_method": a.energy.method,
                "energy_source": a.energy.source,
                "prompt_hidden": encode_vector(capture.last.prompt_hidden if capture.last else None),
                "answer_hidden": encode_vector(capture.last.answer_hidden if capture.last else None),
                "answer_hidden_mean": encode_vector(capture.last.answer_hidden_mean if capture.last else None),
                "hidden_layer": getattr(model, "hidden_layer", None),
                "selfref_adapter": adapter_sha,
                **raw_generation(gen),
            }
            have[item["id"]] = record
            if use_cache:
                cache.append(record)
            bar.step()
    finally:
        router.close()
    info = {"cache": str(cache.path), "generated": len(todo), "cached": len(items) - len(todo),
            "model": model.fingerprint, "params": asdict(params)}
    return [have[i["id"]] for i in items if i["id"] in have], info


def rescore(
    records: list[dict[str, Any]], items: Sequence[dict[str, Any]], signals: Sequence[Any],
    *, confidence: Optional[str] = None,
) -> list[dict[str, Any]]:
    """Run every signal's two stages again on each record's cached ``Generation`` (``generation_of``) with the
    current files (the perplexity map, the ONNX probe, blends), and take the confidence as the Router would
    (``confidence_of``), or the value named ``confidence``."""
    from ..signals.base import confidence_of, evaluate, floats

    out = []
    for item, r in zip(items, records):
        messages = [{"role": "user", "content": item["question"]}]
        values = evaluate(signals, generation_of(r), messages)
        sig = {**r["signals"], **floats(values)}
        value = sig.get(confidence) if confidence is not None else confidence_of(signals, values)
        out.append({**r, "signals": sig, "confidence": value})
    return out


def cloud_cache(identity: str, params: RunParams = RunParams()) -> ResultCache:
    """The cache of a cloud's answers (``identity``: its endpoint and model) for these generation parameters."""
    return ResultCache(paths.bench_cache_dir() / f"cloud-{cache_key('cloud', identity, asdict(params))}.jsonl")


def run_cloud(
    items: Sequence[dict[str, Any]],
    cloud: CloudBackend,
    params: RunParams = RunParams(),
    *,
    identity: str,
    use_cache: bool = True,
    progress: Optional[TextIO] = sys.stderr,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The cloud's answer to every item (``id``, ``text``, ``latency_ms``, ``completion_tokens``, ``error``), cached
    by ``identity`` (endpoint and model). A failed request is recorded with its error and retried on the next run."""
    from .._errors import CloudError

    cache = cloud_cache(identity, params)
    have = {k: v for k, v in (cache.load() if use_cache else {}).items() if not v.get("error")}
    todo = [i for i in items if i["id"] not in have]
    bar = Progress(len(todo), "cloud", progress if todo else None)
    for item in todo:
        t = time.perf_counter()
        try:
            reply = cloud.complete([{"role": "user", "content": item["question"]}], max_tokens=params.max_tokens,
                                   temperature=params.temperature)
            record = {"id": item["id"], "text": reply.text, "completion_tokens": reply.completion_tokens,
                      "prompt_tokens": reply.prompt_tokens, "error": None}
        except CloudError as exc:
            record = {"id": item["id"], "text": "", "completion_tokens": 0, "prompt_tokens": 0,
                      "error": f"{type(exc).__name__}: {exc}"}
        record["latency_ms"] = (time.perf_counter() - t) * 1000.0
        have[item["id"]] = record
        if use_cache:
            cache.append(record)
        bar.step()
    return [have[i["id"]] for i in items], {"cache": str(cache.path), "generated": len(todo), "identity": identity}
