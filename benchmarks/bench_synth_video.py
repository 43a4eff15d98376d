"""Synthetic video benchmark generation speed (the default set of ``generate_video``: frames
written as JPEG, their LIP maps as PNG; wall and CPU seconds per render, frames/s).

    python benchmarks/bench_synth_video.py [--ids 60] [--repeats 3]

Target (issue 24): the default set renders in seconds on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

from ccreid.data.synthetic_video import DATASET, generate_video
from ccreid.runtime.device import machine_info
from ccreid.runtime.io import write_json, write_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ids", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/synth_video_speed")
    args = parser.parse_args()
    seconds, cpu, frames = [], [], []
    for repeat in range(args.repeats):
        Path("data").mkdir(exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir="data"))  # where datasets go (data.root), not a RAM /tmp
        start, start_cpu = time.perf_counter(), time.process_time()
        root = generate_video(tmp / "video", ids=args.ids, seed=repeat)
        seconds.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
        frames.append(sum(1 for _ in (root / DATASET).rglob("*.jpg")))
        tracklets = sum(1 for _ in (root / DATASET).glob("session*/*"))
        shutil.rmtree(tmp)
    mean, rate = sum(seconds) / len(seconds), sum(frames) / sum(seconds)
    result = {"command": f"python benchmarks/bench_synth_video.py --ids {args.ids}", "tracklets": tracklets,
              "frames": frames, "seconds": seconds, "cpu_seconds": cpu, "mean_s": mean, "frames_per_s": rate,
              "machine": machine_info(torch.device("cpu")) | {"load_avg": os.getloadavg()}}
    write_json(args.out + ".json", result)
    text = (f"# Synthetic video generation speed\n\nCommand: `{result['command']}`  \n"
            f"Machine: {result['machine']}\n\n{tracklets} tracklets, {min(frames)}-{max(frames)} frames at 128x64 "
            f"(seeds 0-{args.repeats - 1}; a JPEG frame and a PNG map each), one process: mean "
            f"**{mean:.1f} s** ({rate:.0f} frames/s), runs {', '.join(f'{s:.1f}' for s in seconds)} s, of which CPU time "
            f"{', '.join(f'{s:.1f}' for s in cpu)} s (the rest: waiting for the cores the machine's other processes "
            f"hold, see load_avg, and for the disk).\n")
    write_text(args.out + ".md", text)
    print(text)


if __name__ == "__main__":
    main()
