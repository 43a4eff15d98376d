"""SHA-256 of the final weights (tensors in key order; the file's metadata names the run's folders) of a tiny
seeded fp32 run of every built-in preset.

A refactor of the training engine must leave every preset's weights bit-identical: record the
table before it (``--out FILE``), compare after it (``--check FILE``, exit 1 on any difference).
The runs cover the schedule (a milestone), CAL's epoch gate, validation with model selection
(``train.select_on=val``) and epoch and mid-epoch checkpoints. Hashes depend on the machine's
kernels: compare tables made on the same machine.

    PYTHONPATH=src python benchmarks/preset_hashes.py --out /tmp/before.json
    PYTHONPATH=src python benchmarks/preset_hashes.py --check /tmp/before.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Dict, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from tiny_run import TINY  # noqa: E402

import torch  # noqa: E402

from ccreid.cli import main  # noqa: E402
from ccreid.runs.checkpoint import load_weights

PRESETS = ("baseline", "baseline+bsga", "baseline+cre", "baseline+bctri", "ours-wo-bsga", "ours", "cal", "ours+cal",
           "pcb", "ps", "vit")
SETTINGS = [*TINY, "data.synthetic.ids=16", "train.epochs=2", "train.milestones=[1]", "loss.cal.start_epoch=1",
            "train.select_on=val", "train.eval_every=1", "train.checkpoint_every=1", "train.checkpoint_every_iters=2",
            "model.vit.name=vit_tiny_patch16_224"]


def preset_hash(preset: str, root: Path) -> str:
    """Train ``preset`` tiny under ``root`` and hash its final weights."""
    out = root / preset
    args = ["train", "-c", "synthetic", "--out", str(out), "--quiet", "--no-report", f"data.root={root / 'data'}",
            *SETTINGS, f"model.preset={preset}"]
    if main(args) != 0:
        raise SystemExit(f"training {preset} failed")
    digest = hashlib.sha256()
    for key, tensor in sorted(load_weights(out / "model.safetensors").state_dict.items()):
        digest.update(key.encode())
        digest.update(tensor.contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def hashes(presets: Sequence[str]) -> Dict[str, str]:
    with tempfile.TemporaryDirectory() as tmp:
        return {preset: preset_hash(preset, Path(tmp)) for preset in presets}


def main_(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--out", type=Path, help="write the table (JSON) here")
    group.add_argument("--check", type=Path, help="compare with this table")
    parser.add_argument("--presets", nargs="+", default=list(PRESETS))
    args = parser.parse_args(argv)
    table = hashes(args.presets)
    for preset, digest in table.items():
        print(f"{preset:16s} {digest}")
    if args.out:
        args.out.write_text(json.dumps(table, indent=1) + "\n")
        return 0
    expected = json.loads(args.check.read_text())
    differ = [p for p in table if expected.get(p) != table[p]]
    print("identical" if not differ else f"DIFFERENT: {', '.join(differ)}")
    return 1 if differ else 0


if __name__ == "__main__":
    raise SystemExit(main_())
