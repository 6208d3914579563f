"""`edgeroute serve` through the clients people use: the `openai` SDK, LangChain's ChatOpenAI and LiteLLM, over
real HTTP, with the real model locally and a real `llama_cpp.server` on 127.0.0.1 as the cloud. An escalated
streaming answer, assembled by each client, is the cloud's answer alone (never local text glued to it)."""

from __future__ import annotations

import os

import httpx
import openai
import pytest

from edgeroute import Router
from edgeroute.server import EdgerouteServer

pytestmark = [pytest.mark.slow, pytest.mark.server]
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # LiteLLM must not reach the internet on import

QUESTION = "Name three colours."
MAX_TOKENS = 24


@pytest.fixture
def endpoint(real_model, llama_server, tmp_path):
    router = Router(local_model=real_model, cloud_url=llama_server.base_url, cloud_model="stand-in-cloud",
                    threshold=1.0, trace_path=str(tmp_path / "t.db"), read_timeout_s=60.0)  # always escalates
    server = EdgerouteServer(router, port=0)
    server.start_background()
    cloud_alone = httpx.post(llama_server.base_url + "/chat/completions", timeout=60, json={
        "model": "stand-in-cloud", "messages": [{"role": "user", "content": QUESTION}], "max_tokens": MAX_TOKENS,
        "temperature": 0.0}).json()["choices"][0]["message"]["content"]
    yield server, cloud_alone
    server.shutdown()
    server.server_close()
    router.close()


def test_openai_sdk_streaming_and_not(endpoint):
    server, cloud_alone = endpoint
    c = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    msgs = [{"role": "user", "content": QUESTION}]
    reply = c.chat.completions.create(model="edgeroute", messages=msgs, max_tokens=MAX_TOKENS)
    assert reply.choices[0].message.content == cloud_alone and reply.model_extra["edgeroute"]["route"] == "cloud"
    chunks = list(c.chat.completions.create(model="edgeroute", messages=msgs, max_tokens=MAX_TOKENS, stream=True))
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == cloud_alone
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_langchain_chat_openai(endpoint):
    from langchain_openai import ChatOpenAI

    server, cloud_alone = endpoint
    llm = ChatOpenAI(base_url=server.url + "/v1", api_key="unused", model="edgeroute", max_retries=0,
                     max_tokens=MAX_TOKENS, temperature=0)
    assert llm.invoke(QUESTION).content == cloud_alone
    assert "".join(part.content for part in llm.stream(QUESTION)) == cloud_alone


def test_litellm(endpoint):
    import litellm

    server, cloud_alone = endpoint
    kw = dict(model="openai/edgeroute", api_base=server.url + "/v1", api_key="unused",
              messages=[{"role": "user", "content": QUESTION}], max_tokens=MAX_TOKENS, temperature=0)
    assert litellm.completion(**kw).choices[0].message.content == cloud_alone
    pieces = [ch.choices[0].delta.content or "" for ch in litellm.completion(stream=True, **kw) if ch.choices]
    assert "".join(pieces) == cloud_alone
