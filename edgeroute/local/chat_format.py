"""The chat template a GGUF carries (ChatML when it has none), as llama-cpp-python's Jinja2 formatter."""

from __future__ import annotations

from typing import Any

# ChatML, used only when a GGUF carries no chat template of its own.
FALLBACK_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def chat_formatter(llama: Any) -> Any:
    """The formatter for a loaded ``llama_cpp.Llama``: its GGUF's template, BOS / EOS texts and stop token."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = llama.metadata.get("tokenizer.chat_template") or FALLBACK_TEMPLATE
    eos_id, bos_id = llama.token_eos(), llama.token_bos()
    text = llama._model.token_get_text
    return Jinja2ChatFormatter(
        template=template,
        eos_token=text(eos_id) if eos_id != -1 else "",
        bos_token=text(bos_id) if bos_id != -1 else "",
        stop_token_ids=[eos_id],
    )
