"""Quickstart: ask the local model, read where the answer came from and how sure it is, give feedback.

    python examples/quickstart.py
"""

from edgeroute import Router

with Router(local_only=True) as router:  # drop local_only and set EDGEROUTE_CLOUD_URL to allow escalation
    answer = router.ask("What is the capital of France?", max_tokens=48)
    print(answer.text)
    print(f"route={answer.route} confidence={answer.confidence:.2f} threshold={answer.threshold}")
    print(f"latency: {answer.latency_ms['total']:.0f} ms, tokens: {answer.tokens}")
    e = answer.energy  # always labelled: measured (a device counter) or estimated (CPU time x a per-core figure)
    print(f"energy: {e.joules:.2f} J {e.kind} via {e.source}, {e.joules_per_token:.3f} J per output token")

    # Streaming: local tokens arrive as they are decoded.
    for event in router.stream("Name three primary colours.", max_tokens=32):
        if event.type == "token":
            print(event.text, end="", flush=True)
    print()

    # Tell edgeroute whether the answer was right; it is stored in the trace against the answer's id.
    router.feedback(answer.id, correct="paris" in answer.text.lower())
    print(f"feedback stored for {answer.id} in {router.store.path}")
