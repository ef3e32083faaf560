"""Regenerate the committed demo assets, and optionally write the demo datasets.

    python tools/build_demo_assets.py                      # rewrite jalign/demo/assets/
    python tools/build_demo_assets.py --data-dir runs/demo # also write the JSONL datasets

The output is deterministic: rerunning it leaves the committed files byte-for-byte unchanged.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from jalign.demo import paths, write_assets, write_datasets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets-dir", type=Path, default=paths(), help="where to write assets")
    parser.add_argument("--data-dir", type=Path, help="also write the datasets here")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed")
    parser.add_argument("--chat", action="store_true", help="write datasets in chat form")
    args = parser.parse_args()
    written = write_assets(args.assets_dir)
    if args.data_dir is not None:
        written += write_datasets(args.data_dir, seed=args.seed, chat=args.chat).values()
    for path in written:
        print(f"{path}  {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
