"""How messages become a prompt: the chat template a GGUF carries, or, for a GGUF without one (a base model), a plain
completion format ("Question: ...\nAnswer:") with stop strings that end the answer where a base model would go on
to write the next question. ``prompt_format``: ``auto`` (the template when there is one, else completion),
``chat`` (the template, ChatML when there is none) or ``completion``."""

from __future__ import annotations

from typing import Any

# ChatML, used only when a GGUF carries no chat template of its own.
FALLBACK_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


# A base model continues text: system text first, then each turn as a question and its answer.
COMPLETION_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'system' %}{{ message['content'] }}\n\n"
    "{% elif message['role'] == 'user' %}Question: {{ message['content'] }}\nAnswer:"
    "{% else %} {{ message['content'] }}\n{% endif %}{% endfor %}"
)
#: Where a completion-format answer ends (the model starting the next turn, or a blank line).
COMPLETION_STOPS = ("\nQuestion:", "\nAnswer:", "\n\n")
PROMPT_FORMATS = ("auto", "chat", "completion")


def resolved_format(llama: Any, prompt_format: str) -> str:
    """``chat`` or ``completion`` for this model (``auto``: completion when the GGUF has no chat template)."""
    if prompt_format not in PROMPT_FORMATS:
        from .._errors import ConfigError

        raise ConfigError(f"prompt_format must be one of {list(PROMPT_FORMATS)}, got {prompt_format!r}")
    if prompt_format == "auto":
        return "chat" if llama.metadata.get("tokenizer.chat_template") else "completion"
    return prompt_format


def chat_formatter(llama: Any, prompt_format: str = "chat") -> Any:
    """The formatter for a loaded ``llama_cpp.Llama``: its GGUF's template (ChatML when it has none), or the
    completion format (``prompt_format="completion"``), with its BOS / EOS texts and stop token."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    if prompt_format == "completion":  # starts with BOS where the model expects one (llama.cpp adds none here)
        wants_bos = str(llama.metadata.get("tokenizer.ggml.add_bos_token", "false")).lower() == "true"
        template = ("{{ bos_token }}" if wants_bos else "") + COMPLETION_TEMPLATE
    else:
        template = llama.metadata.get("tokenizer.chat_template") or FALLBACK_TEMPLATE
    eos_id, bos_id = llama.token_eos(), llama.token_bos()
    text = llama._model.token_get_text
    return Jinja2ChatFormatter(
        template=template,
        eos_token=text(eos_id) if eos_id != -1 else "",
        bos_token=text(bos_id) if bos_id != -1 else "",
        stop_token_ids=[eos_id],
    )
