"""KV-cache sampler: greedy parity with transformers, logprobs that teacher forcing reproduces,
the truncation rules on hand-computed distributions, reproducibility, and compile reuse."""

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jalign.errors import JalignError
from jalign.interop import load_hf_model
from jalign.models import apply, create_model, from_hf_dict
from jalign.models.layers import prefix_lengths
from jalign.sampling import (
    PromptBatch,
    SamplingParams,
    generate,
    make_prompt_batch,
    sampling_logprobs,
)
from jalign.sampling.decode import _decoder, _DecodeSpec
from jalign.sampling.distribution import Knobs, Truncation

VOCAB = 64
EOS = 3
TINY = from_hf_dict(
    dict(
        model_type="llama",
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        eos_token_id=EOS,
    )
)
PROMPTS = [[5, 9, 17], [11, 4, 33, 8, 60, 21, 7], [40, 2, 19, 25, 6]]
MAX_NEW = 16
GREEDY = SamplingParams(temperature=0, max_new_tokens=MAX_NEW)
# One sampled setting with every truncation on, shared by several tests (one compiled program).
TRUNCATED = SamplingParams(
    temperature=0.7, top_k=20, top_p=0.9, min_p=0.05, n=4, max_new_tokens=MAX_NEW
)


@pytest.fixture(scope="module")
def tiny():
    graphdef, params = create_model(TINY, seed=3)
    # Larger weights than the 0.02 init: sharper, more varied next-token distributions.
    params = jax.tree.map(lambda x: x * 8 if x.ndim == 2 else x, params)
    return graphdef, params


@functools.partial(jax.jit, static_argnums=0)
def _teacher_forced_logits(graphdef, params, out):
    """Logits of apply over prompt + completion, sliced to those that predicted each completion
    token."""
    width = out.prompt_ids.shape[1]
    ids = jnp.concatenate([out.prompt_ids, out.tokens], axis=1)
    seg = jnp.concatenate([out.prompt_mask, out.mask.astype(jnp.int32)], axis=1)
    positions = jnp.maximum(jnp.cumsum(seg, axis=1) - 1, 0)
    logits, _ = apply(graphdef, params, ids, positions, seg)
    return logits[:, width - 1 : -1]


# ---------------------------------------------------------------- distribution (hand-computed)

PROBS = np.array([0.5, 0.3, 0.15, 0.05])
LOGITS = jnp.asarray(np.log(PROBS), jnp.float32)


def _dist(**kw):
    params = SamplingParams(**kw)
    logits = jnp.broadcast_to(LOGITS, (4, 4))  # one row per token asked about
    return np.exp(np.asarray(sampling_logprobs(logits, jnp.arange(4), params)))


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (dict(temperature=0.0, top_k=1, top_p=0.1), PROBS),  # greedy: raw, untruncated
        (dict(temperature=1.0), PROBS),
        (dict(temperature=2.0), np.sqrt(PROBS) / np.sqrt(PROBS).sum()),
        (dict(top_k=2), [0.5 / 0.8, 0.3 / 0.8, 0, 0]),
        (dict(top_p=0.7), [0.5 / 0.8, 0.3 / 0.8, 0, 0]),  # mass before 0.15 is 0.8 >= 0.7
        (dict(top_p=0.8), [0.5 / 0.8, 0.3 / 0.8, 0, 0]),
        (dict(top_p=0.81), [0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0]),
        (dict(top_p=1e-6), [1, 0, 0, 0]),
        (dict(min_p=0.25), [0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0]),  # keeps p >= 0.125
        # top-p acts on the renormalised top-3 distribution (0.526, 0.316, 0.158): the mass
        # before the third token is 0.842 there (0.8 in the full one).
        (dict(top_k=3, top_p=0.84), [0.5 / 0.8, 0.3 / 0.8, 0, 0]),
        (dict(top_k=3, top_p=0.85), [0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0]),
        (dict(top_k=3, top_p=0.9, min_p=0.5), [0.5 / 0.8, 0.3 / 0.8, 0, 0]),  # p >= 0.263
    ],
)
def test_sampling_distribution_hand_computed(settings, expected):
    np.testing.assert_allclose(_dist(**settings), expected, atol=1e-6)


def test_top_k_keeps_ties_and_batches():
    rows = jnp.asarray([[2.0, 1.0, 1.0, 0.0], [0.0, 3.0, 0.0, 0.0]])
    logits = jnp.repeat(rows[:, None], 2, axis=1)  # [2, 2, V]: two tokens asked per row
    logp = sampling_logprobs(logits, jnp.asarray([[0, 2], [1, 0]]), SamplingParams(top_k=2))
    # Row 0 keeps {2.0, 1.0, 1.0}; row 1 keeps the 3.0 and all three tied zeros.
    z0 = np.log(np.exp(2.0) + 2 * np.exp(1.0))
    z1 = np.log(np.exp(3.0) + 3.0)
    np.testing.assert_allclose(logp, [[2.0 - z0, 1.0 - z0], [3.0 - z1, -z1]], atol=1e-6)


# ---------------------------------------------------------------- parity with transformers


def _hf_model(model_type: str):
    import torch
    import transformers

    common = dict(vocab_size=VOCAB, initializer_range=0.2, eos_token_id=None, pad_token_id=None)
    if model_type == "gpt2":
        hf_cfg = transformers.GPT2Config(
            n_embd=32, n_layer=2, n_head=4, n_positions=64, bos_token_id=None, **common
        )
        model = transformers.GPT2LMHeadModel(hf_cfg)
    else:
        cls_cfg, cls_model = {
            "llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM),
            "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM),
        }[model_type]
        hf_cfg = cls_cfg(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=64,
            tie_word_embeddings=model_type == "qwen2",
            bos_token_id=None,
            **common,
        )
        model = cls_model(hf_cfg)
    torch.manual_seed(0)
    with torch.no_grad():  # move norms and biases off their 1 / 0 init so mapping errors show
        for p in model.parameters():
            if p.ndim == 1:
                p.add_(0.3 * torch.randn_like(p))
    return model.eval(), hf_cfg.to_dict()


def _hf_generate(model, prompts: PromptBatch, eos):
    import torch

    out = model.generate(
        input_ids=torch.as_tensor(prompts.input_ids, dtype=torch.long),
        attention_mask=torch.as_tensor(prompts.mask, dtype=torch.long),
        max_new_tokens=32,
        do_sample=False,
        pad_token_id=0,
        eos_token_id=eos,
        output_logits=True,
        return_dict_in_generate=True,
    )
    width = prompts.input_ids.shape[1]
    tokens = np.zeros((len(out.sequences), 32), np.int64)
    new = out.sequences[:, width:].numpy()
    tokens[:, : new.shape[1]] = new
    logits = torch.stack(out.logits, dim=1).numpy()
    return tokens, logits


@pytest.mark.parametrize("model_type", ["llama", "qwen2", "gpt2"])
def test_greedy_matches_transformers(model_type, tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model, _ = _hf_model(model_type)
    model.save_pretrained(tmp_path)  # the same weights, through jalign's HF loader
    _, graphdef, params = load_hf_model(tmp_path)

    prompts = make_prompt_batch(PROMPTS)
    with torch.no_grad():
        hf_free, hf_logits = _hf_generate(model, prompts, eos=None)
        eos = int(hf_free[1, 4])  # a token row 1 emits early: that row must stop there
        hf_stopped, _ = _hf_generate(model, prompts, eos=eos)

    # Without EOS: all 32 tokens of every row, and greedy logprobs = log_softmax(raw logits).
    free = generate(graphdef, params, prompts, SamplingParams(temperature=0, max_new_tokens=32))
    np.testing.assert_array_equal(free.tokens, hf_free)
    hf_logp = np.asarray(jax.nn.log_softmax(hf_logits, axis=-1))
    expected = np.take_along_axis(hf_logp, hf_free[..., None], -1)[..., 0]
    np.testing.assert_allclose(free.logprobs, expected, atol=1e-4)
    assert not free.finished_with_eos.any() and np.all(np.asarray(free.mask) == 1)

    # With EOS: same tokens up to and including the EOS, pad (0) after it on both sides.
    sampling = SamplingParams(temperature=0, max_new_tokens=32, eos_ids=(eos,))
    out = generate(graphdef, params, prompts, sampling)
    np.testing.assert_array_equal(out.tokens, hf_stopped)
    lengths = np.asarray(out.lengths)
    assert lengths[1] <= 5 and bool(out.finished_with_eos[1])
    np.testing.assert_array_equal(np.asarray(out.mask), np.arange(32)[None] < lengths[:, None])
    for row, length in enumerate(lengths):
        assert (hf_stopped[row, length - 1] == eos) == bool(out.finished_with_eos[row])
    np.testing.assert_array_equal(out.logprobs, np.where(out.mask, free.logprobs, 0))


# ---------------------------------------------------------------- jalign-only behaviour


@pytest.mark.parametrize("sampling", [GREEDY, TRUNCATED], ids=["greedy", "truncated"])
def test_logprobs_match_teacher_forcing(tiny, sampling):
    graphdef, params = tiny
    out = generate(graphdef, params, make_prompt_batch(PROMPTS), sampling, jax.random.key(1))
    logits = _teacher_forced_logits(graphdef, params, out)
    recomputed = jnp.where(out.mask, sampling_logprobs(logits, out.tokens, sampling), 0.0)
    np.testing.assert_allclose(out.logprobs, recomputed, atol=1e-4)
    assert float(out.mask.sum()) > 20 and float(out.logprobs.min()) < -0.1
    # Rows that ended: EOS last, pad and mask 0 after; the others ran to max_new_tokens.
    lengths = np.asarray(out.lengths)
    for row, length in enumerate(lengths):
        assert bool(out.finished_with_eos[row]) == (int(out.tokens[row, length - 1]) == EOS)
        assert bool(out.finished_with_eos[row]) or length == MAX_NEW
        assert np.all(np.asarray(out.tokens[row, length:]) == 0)


def test_prefix_lengths_halve_down_to_one_block():
    assert prefix_lengths(64) == [64]
    assert prefix_lengths(167) == [64, 128, 167]
    assert prefix_lengths(576) == [64, 128, 192, 320, 576]  # 576/2=288 -> 320, 320/2 -> 192, ...


def test_long_decode_reading_cache_prefixes_matches_teacher_forcing():
    """160 new tokens: the cache (167 slots) is read as its 64-, 128- and 167-slot prefix as it
    fills; tokens and logprobs must equal a cache-free forward pass of the result."""
    cfg = dataclasses.replace(TINY, max_position_embeddings=256)
    graphdef, params = create_model(cfg, seed=3)
    params = jax.tree.map(lambda x: x * 8 if x.ndim == 2 else x, params)
    sampling = SamplingParams(temperature=0, max_new_tokens=160, eos_ids=())
    out = generate(graphdef, params, make_prompt_batch(PROMPTS), sampling)
    logits = _teacher_forced_logits(graphdef, params, out)
    np.testing.assert_array_equal(out.tokens, np.argmax(logits, axis=-1))
    recomputed = sampling_logprobs(logits, out.tokens, sampling)
    np.testing.assert_allclose(out.logprobs, recomputed, atol=1e-4)
    assert len({tuple(row[100:]) for row in np.asarray(out.tokens)}) == 3  # rows still differ


def test_scanned_stack_decodes_like_the_list_of_layers(tiny):
    """The scanned model keeps its cache stacked over layers; same weights, same completions,
    greedy and with n samples per prompt."""
    graphdef, params = tiny
    scanned_graphdef, _ = create_model(dataclasses.replace(TINY, scan_layers=True))
    layers = [params["layers"][i] for i in range(TINY.num_layers)]
    scanned = {**params, "layers": jax.tree.map(lambda *xs: jnp.stack(xs), *layers)}
    prompts = make_prompt_batch(PROMPTS)
    expected = generate(graphdef, params, prompts, GREEDY)
    out = generate(scanned_graphdef, scanned, prompts, GREEDY)
    np.testing.assert_array_equal(out.tokens, expected.tokens)
    np.testing.assert_allclose(out.logprobs, expected.logprobs, atol=1e-5)
    # n = 4 samples per prompt: the stacked cache's rows (its axis 1) are copied, not its layers.
    key = jax.random.key(2)
    expected = generate(graphdef, params, prompts, TRUNCATED, key)
    out = generate(scanned_graphdef, scanned, prompts, TRUNCATED, key)
    np.testing.assert_array_equal(out.tokens, expected.tokens)
    np.testing.assert_allclose(out.logprobs, expected.logprobs, atol=1e-5)


def test_top_k_1_is_greedy(tiny):
    """(top_p -> 0 giving the one-point distribution is checked on exact numbers above.)"""
    graphdef, params = tiny
    prompts = make_prompt_batch(PROMPTS)
    greedy = generate(graphdef, params, prompts, GREEDY)
    sampling = SamplingParams(temperature=1.3, top_k=1, max_new_tokens=MAX_NEW)
    out = generate(graphdef, params, prompts, sampling, jax.random.key(7))
    np.testing.assert_array_equal(out.tokens, greedy.tokens)
    # One-token support: every reported logprob is log 1 = 0.
    np.testing.assert_array_equal(out.logprobs, np.zeros_like(out.logprobs))
    assert float(greedy.logprobs.min()) < -0.1


def test_seeds_reproduce_and_n_rows_per_prompt(tiny):
    graphdef, params = tiny
    prompts = make_prompt_batch(PROMPTS)
    sampling = dataclasses.replace(TRUNCATED, seed=5)
    a = generate(graphdef, params, prompts, sampling, jax.random.key(5))
    b = generate(graphdef, params, prompts, sampling)  # rng=None: key(seed)
    c = generate(graphdef, params, prompts, sampling, jax.random.key(6))
    np.testing.assert_array_equal(a.tokens, b.tokens)
    np.testing.assert_array_equal(a.logprobs, b.logprobs)
    assert not np.array_equal(a.tokens, c.tokens)
    assert a.tokens.shape == (12, MAX_NEW) and a.prompt_ids.shape == (12, 8)
    for i in range(3):
        rows = slice(4 * i, 4 * i + 4)
        np.testing.assert_array_equal(
            a.prompt_ids[rows], np.repeat(prompts.input_ids[i : i + 1], 4, 0)
        )
        np.testing.assert_array_equal(a.prompt_mask[rows], np.repeat(prompts.mask[i : i + 1], 4, 0))
        assert len({tuple(r) for r in np.asarray(a.tokens[rows])}) > 1  # the 4 samples differ


def test_n_samples_of_a_prompt_equal_the_prompt_repeated_n_times(tiny):
    """Each prompt is prefilled once and its n rows continue from copies of its cache and first
    logits: that must give the completions of n = 1 on the prompt list repeated n times (the
    draws depend only on the rng, the step and the row), row for row."""
    graphdef, params = tiny
    key = jax.random.key(3)
    shared = generate(graphdef, params, make_prompt_batch(PROMPTS), TRUNCATED, key)
    repeated = [p for p in PROMPTS for _ in range(TRUNCATED.n)]
    single = dataclasses.replace(TRUNCATED, n=1)
    apart = generate(graphdef, params, make_prompt_batch(repeated), single, key)
    np.testing.assert_array_equal(shared.tokens, apart.tokens)
    np.testing.assert_array_equal(shared.prompt_ids, apart.prompt_ids)
    np.testing.assert_allclose(shared.logprobs, apart.logprobs, atol=1e-6)
    assert len({tuple(r) for r in np.asarray(shared.tokens[: TRUNCATED.n])}) > 1


def test_second_call_with_same_shapes_does_not_compile(tiny):
    graphdef, params = tiny
    compiles = []

    def listener(event, duration, **kwargs):
        if event == jax._src.dispatch.BACKEND_COMPILE_EVENT:
            compiles.append(kwargs.get("fun_name"))

    def cache_listener(event, **kwargs):
        # A program loaded from the persistent compilation cache (conftest.py) skips the
        # backend compile but was still lowered and looked up: a recompilation all the same.
        if event == "/jax/compilation_cache/compile_requests_use_cache":
            compiles.append(event)

    other_params = jax.tree.map(lambda x: x * 0.5, params)
    keys = [jax.random.key(i) for i in range(2)]
    first = TRUNCATED
    # Same static parts; other temperature, top_p, min_p, EOS: traced, so no new program.
    second = dataclasses.replace(TRUNCATED, temperature=1.2, top_p=0.5, min_p=0.2, eos_ids=(9,))
    other_prompts = make_prompt_batch([[7, 7, 7, 7, 7, 7], [1], [2, 3]])
    fresh = jnp.zeros((3, 5, 7))
    jax.monitoring.register_event_duration_secs_listener(listener)
    jax.monitoring.register_event_listener(cache_listener)
    try:
        generate(graphdef, params, make_prompt_batch(PROMPTS), first, keys[0])
        compiles.clear()
        out = generate(graphdef, other_params, other_prompts, second, keys[1])
        assert compiles == []
        assert out.tokens.shape == (12, MAX_NEW)
        jax.jit(lambda x: x * 3)(fresh)  # the listener does see compilations
        assert compiles
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
        jax.monitoring.unregister_event_listener(cache_listener)


def test_sampling_loop_alone_runs_its_dots_through_ynnpack_on_cpu(tiny):
    """The sampling loop gets `decode_compiler_options` (YNNPACK dots); the prefill keeps the
    process flag that turns them off, as every other program does (the trainer's float32
    parity, and a prompt's cache independent of the batch it is prefilled in)."""
    graphdef, params = tiny
    prompts = make_prompt_batch(PROMPTS)
    _, decoder = _decoder(graphdef, params, _DecodeSpec(Truncation.of(GREEDY), 1, MAX_NEW), None)
    prefill_args = (params, prompts.input_ids, prompts.mask)
    prefill = decoder.prefill.lower(*prefill_args).compile().as_text()
    assert "dot(" in prefill and "__ynn_fusion" not in prefill
    state = decoder.prefill(*prefill_args)
    eos, knobs = np.asarray([EOS], np.int32), Knobs.of(GREEDY)
    sample = decoder.sample.lower(params, state, eos, jax.random.key(0), knobs)
    assert "__ynn_fusion" in sample.compile().as_text()


# ---------------------------------------------------------------- inputs and errors


def test_make_prompt_batch_left_pads_to_bucket():
    batch = make_prompt_batch([[4, 5], [6, 7, 8, 9, 10]], buckets=(4, 8, 16), pad_id=1)
    np.testing.assert_array_equal(
        batch.input_ids, [[1, 1, 1, 1, 1, 1, 4, 5], [1, 1, 1, 6, 7, 8, 9, 10]]
    )
    np.testing.assert_array_equal(batch.mask, [[0] * 6 + [1] * 2, [0] * 3 + [1] * 5])
    assert batch.input_ids.dtype == np.int32
    assert make_prompt_batch([[1] * 5]).input_ids.shape == (1, 8)  # default: power of two
    with pytest.raises(JalignError, match="largest prompt bucket 4"):
        make_prompt_batch([[1] * 5], buckets=(2, 4))


@pytest.mark.parametrize(
    ("field", "value", "allowed"),
    [
        ("temperature", -0.1, ">= 0"),
        ("temperature", math.inf, ">= 0"),
        ("top_k", -1, ">= 0"),
        ("top_p", 0.0, r"\(0, 1\]"),
        ("top_p", 1.5, r"\(0, 1\]"),
        ("min_p", 1.0, r"\[0, 1\)"),
        ("n", 0, ">= 1"),
        ("max_new_tokens", 0, "> 0"),
        ("max_new_tokens", -3, "> 0"),
        ("eos_ids", (2, -1), "ids >= 0"),
    ],
)
def test_sampling_params_validation(field, value, allowed):
    with pytest.raises(JalignError, match=rf"sampling\.{field}=.*allowed: .*{allowed}"):
        SamplingParams(**{field: value})


def test_bad_inputs_are_refused(tiny):
    graphdef, params = tiny
    greedy = GREEDY
    with pytest.raises(JalignError, match="no prompts given"):
        make_prompt_batch([])
    with pytest.raises(JalignError, match="prompt 1 is empty"):
        make_prompt_batch([[1], []])
    long_prompt = make_prompt_batch([list(range(1, 50))])
    with pytest.raises(JalignError, match=r"49 tokens\) \+ sampling.max_new_tokens=16 exceeds"):
        generate(graphdef, params, long_prompt, greedy)
    right_padded = PromptBatch(np.array([[5, 6, 0]], np.int32), np.array([[1, 1, 0]], np.int32))
    with pytest.raises(JalignError, match="prompt 0 is not left-padded"):
        generate(graphdef, params, right_padded, greedy)
    with pytest.raises(JalignError, match="out of range"):
        generate(graphdef, params, make_prompt_batch([[VOCAB]]), greedy)
    with pytest.raises(JalignError, match="eos_ids has id 99"):
        generate(graphdef, params, make_prompt_batch([[1]]), SamplingParams(eos_ids=(99,)))
