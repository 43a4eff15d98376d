"""`ccreid parse` throughput and reduced-precision agreement, against SCHP's own way of running.

    python benchmarks/bench_parse.py [--images 16] [--batch 8] [--threads 2] [--repeats 2] [--workers 2]

On the same images, in one process, repeats interleaved in rotating order (best reported):
- SCHP-style loop: batch 1, fp32, the unfused network in NCHW, per image decode + warp + forward +
  upsample + inverse warp + argmax + PNG (what SCHP's simple_extractor.py does per image);
- ``run_parse`` (what ``ccreid parse`` runs): batched, BN folded into the convs, channels_last, fp32 and
  bf16 autocast, images decoded and warped in ``--workers`` DataLoader processes (and, for comparison,
  with ``--workers 0``: in the main process, as before the workers existed).
Agreement: the share of pixels whose label under bf16 (and, on a GPU, fp16) equals fp32's, over the
images at their own resolution (network input 473x473, LIP). On a CUDA GPU the same file gets images/s at
``--gpu-batch`` in fp32/bf16/fp16: the network alone and the whole ``run_parse`` pipeline.
Both sides run the same network at the same input size: their FLOPs per image are counted
(FlopCounterMode) and must be equal, or no ratio is reported (benchmarks/equal_work.py).
Weights: the seed-1 LIP test checkpoint rebuilt from ../shared/schp (random, calibrated statistics: its
label maps are noise-shaped, and random networks amplify rounding more than trained ones, so agreement
here is a lower bound for the released weights). Images: synthetic 128x64 person crops.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ccreid.data.synthetic import generate
from ccreid.parsing import HumanParser, folder_items, load_schp, run_parse
from ccreid.parsing.job import default_workers
from ccreid.parsing.parser import to_labels
from ccreid.parsing.store import PALETTE
from ccreid.parsing.warp import preprocess, read_bgr, warp_back
from ccreid.runtime.device import cpu_has_native_bf16, machine_info
from ccreid.runtime.io import write_json, write_text
from equal_work import count_flops, require_equal_flops

SCHP_DATA = Path(__file__).resolve().parents[2] / "shared" / "schp"


def schp_loop(model, paths, out: Path, size=(473, 473)) -> None:
    """SCHP's extractor: one image at a time, fp32, NCHW, unfused."""
    with torch.inference_mode():
        for path in paths:
            tensor, box = preprocess(read_bgr(path), size)
            fusion = model(tensor[None])
            full = F.interpolate(fusion, size=size, mode="bilinear", align_corners=True)[0].permute(1, 2, 0)
            image = Image.fromarray(to_labels(warp_back(full.numpy(), box, size)), mode="P")
            image.putpalette(PALETTE)
            image.save(out / f"{Path(path).stem}.png")


def label_maps(parser: HumanParser, paths) -> list:
    return [m for i in range(0, len(paths), 8) for m in parser.labels([read_bgr(p) for p in paths[i:i + 8]])]


def agreement(maps: list, reference: list) -> dict:
    per_image = [float((a == b).mean()) for a, b in zip(maps, reference)]
    pixels = sum(a.size for a in maps)
    return {"pixels": float(sum((a == b).sum() for a, b in zip(maps, reference)) / pixels),
            "min_image": min(per_image)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--batch", type=int, default=1, help="ccreid parse's CPU default")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--workers", type=int, default=default_workers(), help="ccreid parse's default")
    parser.add_argument("--gpu-batch", type=int, default=32)
    parser.add_argument("--gpu-images", type=int, default=256)
    parser.add_argument("--out", default="benchmarks/results/parse_speed")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    sys.path.insert(0, str(SCHP_DATA))
    from make_checkpoint import make_state_dict

    tmp = Path(tempfile.mkdtemp())
    weights = tmp / "lip-seed1.pth"
    torch.save({"state_dict": make_state_dict("lip", 1)}, weights)
    root = generate(tmp / "synthetic", ids=max(6, args.images // 6 + 2), outfits=2, images_per_outfit=3)
    images = tmp / "images"
    images.mkdir()
    for path in sorted((root / "images").rglob("*.jpg"))[:args.images]:
        shutil.copy(path, images / path.name)
    items = folder_items(images, tmp / "maps")
    paths = [item.image for item in items]
    unfused, _ = load_schp(weights)
    runs = {"SCHP-style loop (batch 1, fp32)": lambda: schp_loop(unfused, paths, tmp / "loop")}
    (tmp / "loop").mkdir()
    parsers = {amp: HumanParser.from_checkpoint(weights, device="cpu", amp=amp) for amp in ("off", "bf16")}
    with torch.inference_mode():  # the network of both sides, one 473x473 image
        image = torch.zeros(1, 3, 473, 473)
        require_equal_flops({"SCHP-style loop": count_flops(lambda: unfused(image)),
                             "ccreid parse": count_flops(lambda: parsers["off"].model(image))}, "image")
    runs[f"ccreid parse (batch {args.batch}, fp32, workers 0)"] = \
        lambda: run_parse(parsers["off"], items, tmp / "maps", batch=args.batch, overwrite=True, workers=0)
    for amp, p in parsers.items():
        runs[f"ccreid parse (batch {args.batch}, {'fp32' if amp == 'off' else amp}, workers {args.workers})"] = \
            lambda p=p: run_parse(p, items, tmp / "maps", batch=args.batch, overwrite=True, workers=args.workers)
    runs[f"ccreid parse (batch 4, fp32, workers {args.workers})"] = \
        lambda: run_parse(parsers["off"], items, tmp / "maps", 4, overwrite=True, workers=args.workers)
    names = list(runs)
    for fn in runs.values():
        fn()  # warm-up
    seconds = {name: [] for name in names}
    for repeat in range(args.repeats):
        for name in names[repeat % len(names):] + names[:repeat % len(names)]:
            start = time.perf_counter()
            runs[name]()
            seconds[name].append(time.perf_counter() - start)
    rate = {name: len(paths) / min(v) for name, v in seconds.items()}
    loop_rate = rate[names[0]]
    fp32_maps = label_maps(parsers["off"], paths)
    loop_maps = [np.array(Image.open(tmp / "loop" / f"{p.stem}.png")) for p in paths]
    cpu_agree = {"bf16": agreement(label_maps(parsers["bf16"], paths), fp32_maps),
                 "fused fp32 vs SCHP-style loop": agreement(fp32_maps, loop_maps)}
    result = {"command": f"python benchmarks/bench_parse.py --images {args.images} --batch {args.batch} "
                         f"--threads {args.threads} --repeats {args.repeats} --workers {args.workers}",
              "images": len(paths), "input": "473x473 (LIP)", "seconds": seconds, "images_per_s": rate,
              "speedup_vs_schp_loop": {n: r / loop_rate for n, r in rate.items()},
              "cpu_bf16_native": cpu_has_native_bf16(), "agreement_cpu": cpu_agree,
              "machine": machine_info(torch.device("cpu")) | {"load_avg_start": load_before,
                                                              "load_avg": os.getloadavg()}}
    rows = "\n".join(f"| {n} | {min(seconds[n]):.1f} | {rate[n]:.2f} | {rate[n] / loop_rate:.2f}x |" for n in names)
    agree_rows = "\n".join(f"| CPU {k} | {v['pixels'] * 100:.3f} % | {v['min_image'] * 100:.3f} % |"
                           for k, v in cpu_agree.items())
    gpu_text = "No CUDA GPU on this machine: GPU figures not measured.\n"
    if torch.cuda.is_available():
        result["gpu"] = gpu_bench(weights, paths, tmp, args)
        gpu_text = gpu_table(result["gpu"])
        agree_rows += "\n" + "\n".join(f"| GPU {k} | {v['pixels'] * 100:.3f} % | {v['min_image'] * 100:.3f} % |"
                                       for k, v in result["gpu"]["agreement"].items())
    write_json(args.out + ".json", result)
    text = (f"# Parsing throughput (`ccreid parse`)\n\nCommand: `{result['command']}`  \n"
            f"Machine: {result['machine']}\n\n{len(paths)} synthetic 128x64 person images, LIP network at 473x473, "
            f"{args.threads} torch threads, {args.repeats} interleaved repeats (best shown), end to end "
            f"(decode, warp, network, inverse warp, PNG).\n\n"
            "| path | best s | images/s | vs SCHP-style loop |\n|---|---:|---:|---:|\n" + rows + "\n\n"
            "## Label agreement with fp32\n\n| precision | pixels equal | worst image |\n|---|---:|---:|\n"
            + agree_rows + "\n\n`--amp auto` picks a reduced precision only where its measured agreement is "
            ">= 99.5 % (`MEASURED_AGREEMENT` in src/ccreid/parsing/parser.py holds these figures).\n\n"
            "## GPU\n\n" + gpu_text)
    write_text(args.out + ".md", text)
    shutil.rmtree(tmp)
    print(text)


def gpu_bench(weights: Path, paths, tmp: Path, args) -> dict:
    """Network-only and end-to-end images/s on one CUDA GPU, and bf16/fp16 agreement."""
    device = torch.device("cuda")
    out = {"device": torch.cuda.get_device_name(device), "batch": args.gpu_batch, "network_images_per_s": {},
           "pipeline_images_per_s": {}, "agreement": {}}
    many = (paths * (args.gpu_images // len(paths) + 1))[:args.gpu_images]
    copies = tmp / "gpu_images"
    copies.mkdir()
    for i, path in enumerate(many):
        shutil.copy(path, copies / f"{i:05d}.jpg")
    items = folder_items(copies, tmp / "gpu_maps")
    x = torch.randn(args.gpu_batch, 3, 473, 473)
    maps = {}
    for amp in ("off", "bf16", "fp16"):
        p = HumanParser.from_checkpoint(weights, device="cuda", amp=amp)
        for _ in range(3):
            p.input_logits(x)
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(5):
            p.input_logits(x)
        torch.cuda.synchronize()
        out["network_images_per_s"][amp] = 5 * args.gpu_batch / (time.perf_counter() - start)
        start = time.perf_counter()
        run_parse(p, items, tmp / "gpu_maps", batch=args.gpu_batch, overwrite=True)
        out["pipeline_images_per_s"][amp] = len(items) / (time.perf_counter() - start)
        maps[amp] = label_maps(p, paths)
    for amp in ("bf16", "fp16"):
        out["agreement"][amp] = agreement(maps[amp], maps["off"])
    return out


def gpu_table(gpu: dict) -> str:
    rows = "\n".join(f"| {'fp32' if a == 'off' else a} | {gpu['network_images_per_s'][a]:.1f} | "
                     f"{gpu['pipeline_images_per_s'][a]:.1f} |" for a in gpu["network_images_per_s"])
    return (f"{gpu['device']}, batch {gpu['batch']}, 473x473:\n\n| precision | network images/s | "
            f"`ccreid parse` images/s |\n|---|---:|---:|\n{rows}\n")


if __name__ == "__main__":
    main()
