"""`jalign` command line: one subcommand per job.

    jalign convert SRC DST                 GGUF file or HF folder -> HF folder
    jalign shard-plan MODEL --mesh data=2,fsdp=2,tensor=2
    jalign generate MODEL --prompt "..." [--chat] [--max-new-tokens N] [--temperature T] [--json]
    jalign generate MODEL --prompt "..." --temperature 1 --best-of 8 --reward module:fn|RM_DIR
    jalign eval --policy DIR --reference DIR --baseline DIR --prompts FILE --reward module:fn|RM_DIR
    jalign sft --config configs/sft_demo.py [--config.optimizer.lr=1e-4 ...]
    jalign rm  --config configs/rm_demo.py
    jalign dpo --config configs/dpo_demo.py [--config.dpo.loss_type=ipo]
    jalign rft --config configs/rft_demo.py   rejection-sampling fine-tuning (RAFT / ReST)
    jalign ppo --config configs/ppo_demo.py
    jalign grpo --config configs/grpo_demo.py [--config.rl.estimator=rloo]
    jalign pipeline --config configs/pipeline_demo.py   SFT, RM, DPO, semi-online DPO, PPO, GRPO
    jalign judge --judge MODEL --pairs FILE --out FILE  label response pairs (RLAIF)
    jalign constitutional --model MODEL --prompts FILE --out DIR   critique-and-revise data

User errors (`JalignError`) print as one line on stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence

from jalign.errors import JalignError
from jalign.runtime import configure_xla_flags, prepare_command_process

TRAINERS = ("sft", "rm", "dpo", "rft")
RL_TRAINERS = ("ppo", "grpo")
CONFIGURED = (*TRAINERS, *RL_TRAINERS, "pipeline")  # commands that take --config.* overrides


def _split_overrides(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Separate `--config.a.b=v` overrides from the other arguments."""
    overrides = [a for a in argv if a.startswith("--config.")]
    rest = [a for a in argv if not a.startswith("--config.")]
    return rest, overrides


def _cmd_convert(args: argparse.Namespace) -> None:
    from jalign.interop import convert

    out = convert(args.src, args.dst)
    print(f"wrote {out}")


def _cmd_shard_plan(args: argparse.Namespace) -> None:
    from jalign.commands.shard_plan import shard_plan_text

    print(shard_plan_text(args.model, args.mesh, args.devices, args.scan_layers))


def _cmd_generate(args: argparse.Namespace) -> None:
    from jalign.commands.generate import run_generate

    results = run_generate(
        args.model,
        prompts=args.prompt,
        chat=args.chat,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        min_p=args.min_p,
        n=args.n,
        seed=args.seed,
        best_of=args.best_of,
        reward=args.reward,
    )
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for result in results:
            for completion in result["completions"]:
                print(completion["text"])


def _cmd_eval(args: argparse.Namespace) -> None:
    from jalign.commands.eval import run_eval
    from jalign.sampling import SamplingParams

    _, table = run_eval(
        args.policy,
        args.prompts,
        rewards=args.reward,
        reference=args.reference,
        baseline=args.baseline,
        judge=args.judge,
        refusal_markers=args.refusal_marker,
        refusal_detector=args.refusal_detector,
        sampling=SamplingParams(
            temperature=args.temperature,
            top_k=args.top_k,
            top_p=args.top_p,
            min_p=args.min_p,
            n=args.n,
            max_new_tokens=args.max_new_tokens,
            seed=args.seed,
        ),
        batch_size=args.batch_size,
        limit=args.limit,
        tokenizer=args.tokenizer,
        out=args.out,
        mesh=args.mesh,
    )
    print(table)


def _add_sampling_args(p: argparse.ArgumentParser, temperature: float) -> None:
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--temperature", type=float, default=temperature, help="0 = greedy")
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--min-p", type=float, default=0.0)
    p.add_argument("--n", type=int, default=1, help="samples per prompt")
    p.add_argument("--seed", type=int, default=0)


def _cmd_train(name: str) -> Callable[[argparse.Namespace], None]:
    def run(args: argparse.Namespace) -> None:
        from jalign.train.trainers import run_trainer

        result = run_trainer(name, args.config, args.overrides)
        print(json.dumps({"run_dir": str(result.run_dir), **result.summary()}, indent=2))

    return run


def _cmd_rl(name: str) -> Callable[[argparse.Namespace], None]:
    def run(args: argparse.Namespace) -> None:
        from jalign.rl import run_rl

        run_dir, metrics = run_rl(name, args.config, args.overrides)
        print(json.dumps({"run_dir": str(run_dir), "train": metrics}, indent=2))

    return run


def _cmd_pipeline(args: argparse.Namespace) -> None:
    from jalign.eval.evaluate import format_table
    from jalign.pipeline import load_pipeline_config, run_pipeline

    summary = run_pipeline(load_pipeline_config(args.config, args.overrides))
    print(format_table(summary["table"]))
    print(f"reward model held-out accuracy vs gold: {summary['rm_gold_accuracy']:.1%}")
    print("plots: " + ", ".join(summary["plots"]))


def _cmd_judge(args: argparse.Namespace) -> None:
    from jalign.commands.feedback import run_judge
    from jalign.feedback import DEFAULT_CRITERIA

    stats = run_judge(
        args.judge,
        args.pairs,
        args.out,
        args.criteria or DEFAULT_CRITERIA,
        args.batch_size,
        args.keep_inconsistent,
    )
    print(json.dumps(stats, indent=2))


def _cmd_constitutional(args: argparse.Namespace) -> None:
    from jalign.commands.feedback import run_constitutional

    counts = run_constitutional(
        args.model,
        args.prompts,
        args.out,
        args.principles,
        args.max_new_tokens,
        args.temperature,
        args.batch_size,
        args.seed,
    )
    print(json.dumps(counts, indent=2))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jalign", description=__doc__.split("\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    parser.add_argument(
        "--distributed",
        action="store_true",
        help="join a multi-host job (jax.distributed.initialize; see jalign/distributed.py); "
        "also on with JALIGN_DISTRIBUTED=1 or JAX_COORDINATOR_ADDRESS set",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("convert", help="GGUF file or HF folder -> HF folder (safetensors)")
    p.add_argument("src")
    p.add_argument("dst")
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser("shard-plan", help="print each parameter's sharding and bytes per device")
    p.add_argument("model", help="HF folder, .gguf file, or 'smollm2' for the bundled model")
    p.add_argument("--mesh", default="data=1,fsdp=1,tensor=1", help="e.g. data=2,fsdp=2,tensor=2")
    p.add_argument(
        "--devices", type=int, default=None, help="plan for this many devices (default: all)"
    )
    p.add_argument("--scan-layers", action="store_true", help="plan a scanned layer stack")
    p.set_defaults(func=_cmd_shard_plan)

    p = sub.add_parser("generate", help="sample completions with the KV-cache sampler")
    p.add_argument("model", help="HF folder, .gguf file, or 'smollm2' for the bundled model")
    p.add_argument("--prompt", action="append", required=True, help="repeat for a batch")
    p.add_argument("--chat", action="store_true", help="apply the tokenizer's chat template")
    _add_sampling_args(p, temperature=0.0)
    p.add_argument("--best-of", type=int, default=1, help="sample N, keep the best by --reward")
    p.add_argument("--reward", help="module:function(prompts, completions) or reward-model folder")
    p.add_argument("--json", action="store_true", help="print ids and logprobs as JSON")
    p.set_defaults(func=_cmd_generate)

    p = sub.add_parser("eval", help="rewards, KL, length, win rate of policies on a prompt set")
    p.add_argument("--policy", action="append", required=True, help="[NAME=]DIR; repeatable")
    p.add_argument("--prompts", required=True, help="JSONL/parquet of {'prompt': ...} records")
    p.add_argument("--reward", action="append", default=[], help="[NAME=]module:fn or RM folder")
    p.add_argument("--reference", help="policy folder the KL is measured to")
    p.add_argument("--baseline", help="policy folder the win rate is measured against")
    p.add_argument("--judge", help="a --reward NAME, or module:fn(prompts, a, b) -> [0, 1]")
    p.add_argument(
        "--refusal-marker",
        action="append",
        nargs="?",
        const=None,
        help="regex marking a refusal (repeatable; bare flag: English defaults)",
    )
    p.add_argument("--refusal-detector", help="module:fn(completions) -> bools")
    _add_sampling_args(p, temperature=1.0)
    p.add_argument("--batch-size", type=int, default=32, help="prompts per sampler call")
    p.add_argument("--limit", type=int, default=None, help="evaluate the first N prompts")
    p.add_argument("--tokenizer", help="tokenizer folder (default: the first policy's)")
    p.add_argument("--out", help="write the report as JSON here")
    p.add_argument("--mesh", help="shard the models over a mesh, e.g. data=2,fsdp=4,tensor=1")
    p.set_defaults(func=_cmd_eval)

    for name in TRAINERS:
        p = sub.add_parser(name, help=f"train ({name}) from a config file")
        p.add_argument("--config", required=True, help="configs/*.py with get_config()")
        p.set_defaults(func=_cmd_train(name))
    for name in RL_TRAINERS:
        p = sub.add_parser(name, help=f"online RL ({name}) from a config file")
        p.add_argument("--config", required=True, help="configs/*.py with get_config()")
        p.set_defaults(func=_cmd_rl(name))

    p = sub.add_parser("pipeline", help="the whole alignment pipeline and its eval table")
    p.add_argument("--config", required=True, help="e.g. configs/pipeline_demo.py")
    p.set_defaults(func=_cmd_pipeline)

    p = sub.add_parser("judge", help="label response pairs with a judge model (RLAIF)")
    p.add_argument("--judge", required=True, help="judge model: HF folder, .gguf or 'smollm2'")
    p.add_argument("--pairs", required=True, help="records {'prompt', 'responses': [a, b]}")
    p.add_argument("--out", required=True, help="preference JSONL to write")
    p.add_argument("--criteria", help="what 'better' means (default: helpful, correct, ...)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument(
        "--keep-inconsistent",
        action="store_true",
        help="keep pairs whose verdict flips when the responses swap places",
    )
    p.set_defaults(func=_cmd_judge)

    p = sub.add_parser("constitutional", help="critique-and-revise SFT and preference data")
    p.add_argument("--model", required=True, help="HF folder, .gguf or 'smollm2'")
    p.add_argument("--prompts", required=True, help="records {'prompt': str}")
    p.add_argument("--out", required=True, help="folder for sft.jsonl and preference.jsonl")
    p.add_argument("--principles", default="", help="file with one principle per line")
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_constitutional)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:  # the `jalign` command itself (not a call from Python code)
        prepare_command_process()
    else:
        configure_xla_flags()
    argv = list(sys.argv[1:] if argv is None else argv)
    rest, overrides = _split_overrides(argv)
    parser = build_parser()
    args = parser.parse_args(rest)
    args.overrides = overrides
    if overrides and args.command not in CONFIGURED:
        parser.error(f"--config.* overrides apply only to {', '.join(CONFIGURED)}")
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    try:
        from jalign.distributed import initialize_from_env

        initialize_from_env(args.distributed)
        args.func(args)
    except JalignError as exc:
        print(f"jalign {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
