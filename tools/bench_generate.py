"""Generation throughput: jalign's KV-cache sampler vs transformers' `generate` (PyTorch, same
weights, same batch and lengths, KV cache on), measured in one run.

    .venv/bin/python tools/bench_generate.py [--quick]

For each model it prints tokens/s for both and their ratio, then jalign's decode-step time
against this machine's roofline (parameter + KV-cache bytes over the measured memory bandwidth;
FLOPs over the measured matmul peak, both measured here in the same run) and the decode time per
token at 128 and 512 new tokens (a KV cache should keep it near-flat). Both sides' decode-step
times (prefill subtracted) are set against the roofline, which bounds the ratio any decoder could
reach against transformers on this machine. A last line times the decode step's matmuls alone
(its weight matrices, in a compiled loop with nothing else): the part of a step no change
outside those kernels can remove.

Greedy decoding with no EOS (every row decodes all new tokens) so both sides do the same work.
Each side's time is its best of a few runs, the two sides' runs alternated.
Both run in this one process without the huge-page restart of the `jalign` command, as
transformers' users run it; jalign's decode step measured the same with it (3.42 vs 3.48 ms per
step at 128 new tokens, `--quick`).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax
import jax.numpy as jnp
import numpy as np
import torch
from peer_process import quiet_peer_libraries
from transformers import AutoModelForCausalLM, LlamaConfig

from jalign.interop import load_hf_model, smollm2_hf_folder
from jalign.models import head_kernel
from jalign.runtime import configure_xla_flags, decode_compiler_options
from jalign.sampling import SamplingParams, generate, make_prompt_batch


def _best_of(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def measure_memory_bandwidth(n_bytes: int = 256 * 2**20) -> float:
    """Bytes/s of a large in-place add (read 2 buffers, write 1). The first buffer is donated
    and overwritten, so no fresh output memory is page-faulted in while timing (that cost a
    4-7x underestimate here)."""
    y = jnp.ones(n_bytes // 4, jnp.float32)
    add = jax.jit(lambda a, b: a + b, donate_argnums=0)
    acc = [add(jnp.ones(n_bytes // 4, jnp.float32), y).block_until_ready()]

    def step() -> None:
        acc[0] = add(acc[0], y).block_until_ready()

    seconds = _best_of(step, 10)
    return 3 * n_bytes / seconds


def measure_matmul_peak(n: int = 1024) -> float:
    """FLOP/s of a large fp32 matmul (best of 10: other processes on the machine lower it)."""
    a = jnp.ones((n, n), jnp.float32)
    mm = jax.jit(lambda a: a @ a)
    mm(a).block_until_ready()
    seconds = _best_of(lambda: mm(a).block_until_ready(), 10)
    return 2 * n**3 / seconds


def decode_kernels(graphdef, params) -> list[jax.Array]:
    """The weight matrices of a decode step, as the sampler multiplies them on CPU: per layer
    q|k|v and gate|up concatenated (`jalign.models.layers.project_together`), o and down, then
    the LM head (a Llama-family model with its layers as a list)."""
    kernels = []
    for layer in params["layers"].values():
        attn, mlp = layer["attn"], layer["mlp"]
        kernels += [
            jnp.concatenate([attn[n]["kernel"][...] for n in ("q_proj", "k_proj", "v_proj")], 1),
            attn["o_proj"]["kernel"][...],
            jnp.concatenate([mlp[n]["kernel"][...] for n in ("gate_proj", "up_proj")], 1),
            mlp["down_proj"]["kernel"][...],
        ]
    return [*kernels, head_kernel(graphdef, params)]


def time_decode_dots(kernels: list[jax.Array], rows: int, repeats: int) -> float:
    """Seconds a step of the decode program's dots takes with nothing else in the step: each
    kernel times a [rows, K] input, one after the other, 32 steps in a compiled loop with the
    decoder's compiler options (`decode_compiler_options`), so that, as in a decode step, every
    weight comes round again only after all the others (out of cache when they exceed it)."""
    steps = 32
    inputs = {k.shape[0]: jnp.ones((rows, k.shape[0]), jnp.float32) for k in kernels}

    def loop(kernels, inputs):
        def body(i, carry):
            for kernel in kernels:  # each product depends on the previous one, as in a step
                y = (inputs[kernel.shape[0]] * (1 + 1e-9 * carry)) @ kernel
                carry = carry + 1e-9 * y[0, 0]
            return carry

        return jax.lax.fori_loop(0, steps, body, jnp.float32(0))

    run = jax.jit(loop, compiler_options=decode_compiler_options("cpu"))
    run(kernels, inputs).block_until_ready()
    return _best_of(lambda: run(kernels, inputs).block_until_ready(), repeats + 2) / steps


def demo_size_folder(root: str) -> str:
    """A random-init Llama-family model of a few million parameters, saved as an HF folder."""
    cfg = LlamaConfig(
        vocab_size=8192,
        hidden_size=256,
        intermediate_size=688,
        num_hidden_layers=4,
        num_attention_heads=8,
        num_key_value_heads=4,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    folder = os.path.join(root, "demo-size")
    model.save_pretrained(folder)
    return folder


def bench_model(name: str, folder: str, batch: int, prompt: int, new_tokens: int, repeats: int):
    cfg, graphdef, params = load_hf_model(folder)
    rng = np.random.default_rng(0)
    prompt_ids = rng.integers(10, cfg.vocab_size, size=(batch, prompt)).tolist()
    prompts = make_prompt_batch(prompt_ids, buckets=[prompt])

    def jalign_run(n_new: int):
        sp = SamplingParams(temperature=0.0, max_new_tokens=n_new, eos_ids=())
        return lambda: jax.block_until_ready(generate(graphdef, params, prompts, sp).tokens)

    run = jalign_run(new_tokens)
    run()  # compile

    hf = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    hf.generation_config.eos_token_id = None
    ids = torch.tensor(prompt_ids)
    attn = torch.ones_like(ids)

    def hf_runner(n_new: int):
        def hf_run():
            with torch.no_grad():
                hf.generate(
                    input_ids=ids,
                    attention_mask=attn,
                    max_new_tokens=n_new,
                    min_new_tokens=n_new,
                    do_sample=False,
                    use_cache=True,
                    pad_token_id=0,
                )

        return hf_run

    hf_run, hf_first = hf_runner(new_tokens), hf_runner(1)
    hf_run()
    # Alternated, so that a slow spell of the machine hits both sides alike.
    t_jalign, t_hf = float("inf"), float("inf")
    for _ in range(repeats):
        t_jalign = min(t_jalign, _best_of(run, 1))
        t_hf = min(t_hf, _best_of(hf_run, 1))
    hf_step = (t_hf - _best_of(hf_first, repeats)) / (new_tokens - 1)
    tokens = batch * new_tokens
    print(f"\n== {name}: batch {batch}, prompt {prompt}, {new_tokens} new tokens, fp32")
    print(f"jalign        {tokens / t_jalign:10.1f} tok/s  ({t_jalign:.3f} s)")
    print(f"transformers  {tokens / t_hf:10.1f} tok/s  ({t_hf:.3f} s)")
    print(f"ratio (jalign / transformers): {t_hf / t_jalign:.2f}x  (load {os.getloadavg()[0]:.2f})")

    # Decode time per token at two lengths: (t(N) - t(1)) / (N - 1) removes the prefill.
    per_token = {}
    for n_new in (128, 512):
        if prompt + n_new > cfg.max_position_embeddings:
            continue
        first, full = jalign_run(1), jalign_run(n_new)
        first(), full()
        per_token[n_new] = (_best_of(full, repeats) - _best_of(first, repeats)) / (n_new - 1)
    for n_new, seconds in per_token.items():
        print(f"decode time per step at {n_new} new tokens: {seconds * 1e3:.3f} ms")
    if len(per_token) == 2:
        print(f"per-step ratio 512 / 128: {per_token[512] / per_token[128]:.2f}")

    n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
    step = per_token.get(128) or (t_jalign / new_tokens)
    cache_bytes = (
        2 * cfg.num_layers * batch * (prompt + new_tokens) * cfg.num_kv_heads * cfg.head_dim * 4
    )
    step_bytes = 4 * n_params + cache_bytes
    step_flops = (
        2 * n_params * batch
        + 4 * cfg.num_layers * batch * (prompt + new_tokens) * cfg.num_heads * cfg.head_dim
    )
    dots = time_decode_dots(decode_kernels(graphdef, params), batch, repeats)
    return step_bytes, step_flops, step, hf_step, dots


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, demo-size model only")
    args = parser.parse_args()
    configure_xla_flags()  # jalign's CPU settings, as the CLI applies them (before any jax work)
    quiet_peer_libraries()
    repeats = 1 if args.quick else 3
    bandwidth = measure_memory_bandwidth()
    peak = measure_matmul_peak()
    print(
        f"machine: {bandwidth / 1e9:.1f} GB/s memory bandwidth, {peak / 1e9:.1f} GFLOP/s fp32 "
        f"matmul, load average {os.getloadavg()[0]:.2f} (other processes skew every number here)"
    )
    with tempfile.TemporaryDirectory() as root:
        runs = [("demo-size llama", demo_size_folder(root), 8, 64, 128)]
        if not args.quick:
            runs.append(("SmolLM2-135M", str(smollm2_hf_folder()), 8, 64, 128))
        for name, folder, batch, prompt, new in runs:
            step_bytes, step_flops, step, hf_step, dots = bench_model(
                name, folder, batch, prompt, new, repeats
            )
            bound = max(step_bytes / bandwidth, step_flops / peak)
            print(
                f"roofline: {step_bytes / 1e6:.1f} MB and {step_flops / 1e6:.1f} MFLOP per decode "
                f"step -> bound {bound * 1e3:.3f} ms; jalign {step * 1e3:.3f} ms "
                f"= {bound / step:.0%} of roofline; transformers {hf_step * 1e3:.3f} ms = "
                f"{bound / hf_step:.0%} (no decoder can beat it by more than "
                f"{hf_step / bound:.2f}x here)"
            )
            print(
                f"the decode step's dots alone (weights as out of cache as in a step): "
                f"{dots * 1e3:.3f} ms = {dots / step:.0%} of jalign's step; a decoder whose step "
                f"were only these dots: {hf_step / dots:.2f}x transformers' decode step"
            )
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
