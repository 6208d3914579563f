import inspect

import edgeroute
from edgeroute import _errors


def test_all_lists_exactly_the_public_names():
    public = {n for n in dir(edgeroute) if not n.startswith("_")} - {
        "answer", "assembly", "bench", "cloud", "config", "conversation", "history", "paths", "pipeline", "registry", "device", "energy", "local", "messages", "migrations", "policy", "privacy", "risk", "router", "scrub", "server", "signals", "store", "streams", "cli",
        "testing",
    }
    assert public == set(edgeroute.__all__) - {"__version__"}
    for name in edgeroute.__all__:
        assert hasattr(edgeroute, name), name


def test_every_error_is_in_the_drawn_tree_and_derives_from_the_base():
    doc = _errors.__doc__
    classes = [c for _, c in inspect.getmembers(_errors, inspect.isclass) if c.__module__ == _errors.__name__]
    assert len(classes) >= 15
    for cls in classes:
        assert issubclass(cls, edgeroute.EdgeRouteError)
        assert cls.__name__ in doc, f"{cls.__name__} missing from the tree in _errors' docstring"


def test_router_signature_has_the_documented_names():
    params = inspect.signature(edgeroute.Router).parameters
    assert params["local_only"].default is False
    for method in ("ask", "aask", "stream", "astream", "feedback"):
        assert callable(getattr(edgeroute.Router, method))
