"""Synthetic-dataset generation speed (images/s on one core, PNG maps + JPEG images written).

    python benchmarks/bench_synth.py [--ids 120] [--size 128x64]

Target (issue 2): at least 500 images/s per core at 128x64.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

from ccreid.data.synthetic import generate
from ccreid.runtime.device import machine_info
from ccreid.runtime.io import write_json, write_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ids", type=int, default=120)
    parser.add_argument("--size", default="128x64")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/synth_speed")
    args = parser.parse_args()
    height, width = (int(v) for v in args.size.split("x"))
    rates = []
    for repeat in range(args.repeats):
        tmp = Path(tempfile.mkdtemp())
        start = time.perf_counter()
        root = generate(tmp / "synthetic", ids=args.ids, height=height, width=width, seed=repeat)
        seconds = time.perf_counter() - start
        images = sum(1 for _ in open(root / "manifest.csv")) - 1
        rates.append(images / seconds)
        shutil.rmtree(tmp)
    best, mean = max(rates), sum(rates) / len(rates)
    result = {"command": f"python benchmarks/bench_synth.py --ids {args.ids} --size {args.size}",
              "images": images, "size": [height, width], "images_per_s": rates, "best": best, "mean": mean,
              "target_per_core": 500, "process": "single process (one core)",
              "machine": machine_info(torch.device("cpu")) | {"load_avg": os.getloadavg()}}
    write_json(args.out + ".json", result)
    text = (f"# Synthetic generation speed\n\nCommand: `{result['command']}`  \n"
            f"Machine: {result['machine']}\n\n{images} images at {height}x{width} (JPEG image + PNG map each), "
            f"one process: mean **{mean:.0f} images/s**, best {best:.0f} images/s over {args.repeats} runs "
            f"(target >= 500 per core).\n")
    write_text(args.out + ".md", text)
    print(text)


if __name__ == "__main__":
    main()
