"""Offline fallback: the cloud is configured but unreachable, so the local answer comes back flagged.

The cloud URL points at a port on this machine where nothing listens, as when a laptop loses its network.

    python examples/offline_fallback.py
"""

import socket

from edgeroute import Router


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # released on close: nothing listens there


with Router(
    cloud_url=f"http://127.0.0.1:{closed_port()}/v1",
    cloud_model="gpt-4o-mini",
    threshold=0.99,  # demand near-certainty so that this answer wants the cloud
    connect_timeout_s=1.0,
) as router:
    answer = router.ask("Who wrote the novel Moby-Dick?", max_tokens=48)
    print(answer.text)
    print(f"route={answer.route} flags={answer.flags}")
    print(f"reason: {answer.reason}")
    assert answer.route == "local-offline"
