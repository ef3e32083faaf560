"""The `jalign` command line: shard plans, generation (greedy parity with transformers on the
bundled SmolLM2-135M-Instruct) and one-line errors."""

import json

import pytest

from jalign.cli import main


def test_shard_plan_of_bundled_model(capsys):
    assert main(["shard-plan", "smollm2", "--mesh", "data=1,fsdp=1,tensor=8"]) == 0
    out = capsys.readouterr().out
    assert "parameters: 272" in out and "model: 513.13 MiB" in out
    assert "per device: 64.26 MiB" in out  # every matrix split 8 ways, norms replicated
    q_line = next(line for line in out.splitlines() if line.startswith("layers/0/attn/q_proj"))
    assert "[fsdp, tensor]" in q_line and "[576, 72]" in q_line


def test_generate_greedy_matches_transformers_on_padded_batch(capsys):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from jalign.interop import smollm2_hf_folder

    prompts = ["What is the capital of France?", "Write one word."]
    assert (
        main(
            [
                "generate",
                "smollm2",
                "--chat",
                "--json",
                "--max-new-tokens",
                "32",
                *[a for p in prompts for a in ("--prompt", p)],
            ]
        )
        == 0
    )
    results = json.loads(capsys.readouterr().out)

    folder = smollm2_hf_folder()
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    rows = [r["prompt_ids"] for r in results]
    width = max(len(r) for r in rows)
    ids = torch.tensor([[tok.pad_token_id] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    with torch.no_grad():
        out = model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=32,
            do_sample=False,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
        )
    for i, result in enumerate(results):
        expected = out[i, width:].tolist()
        if tok.eos_token_id in expected:  # HF pads after EOS; jalign stops there
            expected = expected[: expected.index(tok.eos_token_id) + 1]
        assert result["completions"][0]["token_ids"] == expected


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["shard-plan", "smollm2", "--mesh", "data=3,fsdp=x"], "size of axis 'fsdp' is 'x'"),
        (["generate", "/no/such/model", "--prompt", "hi"], "/no/such/model: no such model folder"),
        (["convert", "/no/such.gguf", "/tmp/out"], "/no/such.gguf: no such GGUF file"),
    ],
)
def test_user_errors_are_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
