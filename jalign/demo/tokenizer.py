"""The demo's word-level tokenizer: one token per whitespace-separated word.

The vocabulary is the special tokens, the chat markers, the prompt word ``sort:``, the digits 0-9
and reserved words that pad it to `VOCAB_SIZE` = 24 (a multiple of 8), so every id a model of
that vocabulary can sample decodes to a visible word. Splitting on whitespace only (the
`WhitespaceSplit` pre-tokenizer) and decoding by joining tokens with single spaces (the
`tokenizers` default when no decoder is set) makes ``decode(encode(text)) == text`` for
single-spaced text, and the tokens of a prompt followed by a completion are exactly the
prompt's tokens followed by the completion's: there is no merge across the boundary.

Like Llama tokenizers, plain encoding prepends ``<bos>`` (encode completions with
``add_special_tokens=False``); the chat template writes its own ``<bos>`` and ends each
assistant turn with ``<eos>``.
"""

from __future__ import annotations

from typing import Any

from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers, processors

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
USER, ASSISTANT = "<|user|>", "<|assistant|>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK, USER, ASSISTANT)
WORDS = ("sort:", *(str(d) for d in range(10)), "=")  # "=" ends a prompt (see demo.task)
VOCAB_SIZE = 24
RESERVED_WORDS = tuple(
    f"<reserved_{i}>" for i in range(VOCAB_SIZE - len(SPECIAL_TOKENS) - len(WORDS))
)
VOCAB = (*SPECIAL_TOKENS, *WORDS, *RESERVED_WORDS)

# Renders "<bos><|user|> sort: 7 3 <|assistant|> 3 7 <eos> "; with add_generation_prompt the
# text ends in "<|assistant|> ", a string prefix of the rendered full conversation.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}"
    "{{ '" + USER + " ' + message['content'] + ' ' }}"
    "{% elif message['role'] == 'assistant' %}"
    "{{ '" + ASSISTANT + " ' + message['content'] + ' ' + eos_token + ' ' }}"
    "{% else %}"
    "{{ raise_exception('the demo chat template supports only user and assistant roles') }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '" + ASSISTANT + " ' }}{% endif %}"
)


def token_id(token: str) -> int:
    """Id of a vocabulary token."""
    return VOCAB.index(token)


def build_tokenizer() -> Tokenizer:
    """The demo tokenizer as a `tokenizers.Tokenizer` (WordLevel model)."""
    tokenizer = Tokenizer(
        models.WordLevel(vocab={token: i for i, token in enumerate(VOCAB)}, unk_token=UNK)
    )
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.add_special_tokens(
        [AddedToken(token, special=True, normalized=False) for token in SPECIAL_TOKENS]
    )
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS}:0 $A:0",
        pair=f"{BOS}:0 $A:0 {BOS}:1 $B:1",
        special_tokens=[(BOS, token_id(BOS))],
    )
    return tokenizer


def tokenizer_config(model_max_length: int) -> dict[str, Any]:
    """Contents of ``tokenizer_config.json`` for `transformers.AutoTokenizer`."""
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": BOS,
        "eos_token": EOS,
        "pad_token": PAD,
        "unk_token": UNK,
        "add_bos_token": True,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": model_max_length,
        "chat_template": CHAT_TEMPLATE,
    }
