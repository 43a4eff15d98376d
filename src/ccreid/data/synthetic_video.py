"""The synthetic clothes-changing *video* benchmark: procedural tracklets in the CCVID layout.

Folder layout written by :func:`generate_video` (read by the ``ccvid`` adapter)::

    root/CCVID/session<o+1>/<pid:03d>_<cam:02d>/<frame:05d>.jpg   frames (JPEG, quality 95)
    root/CCVID/{train,query,gallery,val_query,val_gallery}.txt     lines "tracklet_path pid clothes_label"
    root/parsing/CCVID/session<o+1>/<pid:03d>_<cam:02d>/<frame:05d>.png   LIP labels of each frame
    root/meta.json                                                 generation options (the cache key)

A session is an outfit (``session1`` = outfit 0, label ``o0``). The camera number of a path
is ``1 + camera + 4 k`` (the k-th tracklet of that person, outfit and camera); as the third
session's numbers gain 12 in the CCVID reader, the number modulo 4 always tells the camera
(background, colour cast), and two tracklets of a person never share a number in one session.
People and outfits are those of the image benchmark with the same seed (:mod:`ccreid.data.synthetic`);
each person also has a gait (step period, arm swing, foot lift) that holds in every outfit, a
clothes-independent cue that only motion shows. The protocol is the image benchmark's:
identities split train 50 % / val 10 % (at least 2) / test (the rest, plus ``extra_test_ids``);
for val and test identities the gallery is outfit 0 from cameras 0 and 1, the queries are
outfit 0 from camera 2 (same clothes) and the other outfits from camera 3 (clothes
changing), so a CC query's outfit never appears in that person's gallery. Training
identities walk in every outfit before random cameras. Each tracklet has between
``frames - frames // 4`` and ``frames`` frames.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterator, NamedTuple

import numpy as np
from PIL import Image
from tqdm import tqdm

from ccreid.config import DataConfig
from ccreid.data.datasets.ccvid import eval_protocols, train_split
from ccreid.data.datasets.common import ParsingIndex, mirror_bases
from ccreid.data.records import ReIDDataset
from ccreid.data.registry import DATASETS, VIDEO_DATASETS
from ccreid.data.synthetic import read_json, cast, render_cached, split_identities, training_cameras
from ccreid.data.synthetic_render import NUM_CAMERAS, render_tracklet, sample_gait
from ccreid.errors import CCReIDError

FORMAT_VERSION = 1
DATASET = "CCVID"  # the folder the ccvid adapter reads
LISTS = ("train", "query", "gallery", "val_query", "val_gallery")
STREAM = 24  # last word of a tracklet's random seed: its stream differs from every image's


class Tracklet(NamedTuple):
    """One tracklet to render: person, outfit, camera, its index among those of the same
    person, outfit and camera, and the list it belongs to (one of :data:`LISTS`)."""

    pid: int
    outfit: int
    camera: int
    k: int
    split: str

    @property
    def path(self) -> str:
        """``session<outfit+1>/<pid>_<camera number>``, relative to ``root/CCVID``."""
        return f"session{self.outfit + 1}/{self.pid:03d}_{1 + self.camera + NUM_CAMERAS * self.k:02d}"

    @property
    def line(self) -> str:
        """Its line in the list file: ``tracklet_path pid clothes_label``."""
        return f"{self.path} {self.pid:03d} o{self.outfit}"


def plan_video(ids: int, outfits: int, tracklets_per_outfit: int, seed: int,
               extra_test_ids: int = 0) -> Iterator[Tracklet]:
    """Every tracklet to render, in list order."""
    train, val, test = split_identities(ids, extra_test_ids)
    per = tracklets_per_outfit
    n_query = max(1, per // 2)
    for pid in range(test.stop):
        if pid in train:
            cams = training_cameras(seed, pid, outfits * per)
            for o in range(outfits):
                seen: Dict[int, int] = {}
                for cam in (int(c) for c in cams[o * per:(o + 1) * per]):
                    seen[cam] = seen.get(cam, -1) + 1
                    yield Tracklet(pid, o, cam, seen[cam], "train")
            continue
        prefix = "val_" if pid in val else ""
        for n in range(per):
            yield Tracklet(pid, 0, n % 2, n // 2, prefix + "gallery")
        for n in range(n_query):
            yield Tracklet(pid, 0, 2, n, prefix + "query")
        for o in range(1, outfits):
            for n in range(n_query):
                yield Tracklet(pid, o, 3, n, prefix + "query")


def generate_video(root: str | Path, ids: int = 60, outfits: int = 3, tracklets_per_outfit: int = 2,
                   frames: int = 16, height: int = 128, width: int = 64, seed: int = 0, progress: bool = False,
                   extra_test_ids: int = 0) -> Path:
    """Render the video benchmark into ``root`` (reused when it exists with the same options,
    refused when made with others); returns ``root``.

    ``ids``, ``extra_test_ids``, ``outfits``, ``height``, ``width`` and ``seed`` mean what they
    mean for the image benchmark (``data.synthetic.*``); ``tracklets_per_outfit`` (training
    tracklets of a person per outfit, and gallery tracklets of a test person) and ``frames``
    (the longest tracklet) are the video ones. The defaults (30 train, 6 val and 24 test
    identities; 330 tracklets, about 4,600 frames of 128x64) render in seconds.
    """
    root = Path(root)
    split_identities(ids, extra_test_ids)
    if outfits < 2:
        raise CCReIDError(f"option data.synthetic.outfits: {outfits} is too few (clothes changing needs at least 2)")
    if tracklets_per_outfit < 1 or frames < 2 or height < 32 or width < 16:
        raise CCReIDError("options data.synthetic.tracklets_per_outfit >= 1, data.synthetic.frames >= 2 and a size "
                          "(data.synthetic.height x width) of at least 32x16 are required")
    options = {"format": FORMAT_VERSION, "kind": "video", "ids": ids, "extra_test_ids": extra_test_ids,
               "outfits": outfits, "tracklets_per_outfit": tracklets_per_outfit, "frames": frames,
               "height": height, "width": width, "seed": seed}
    return render_cached(root, options, lambda out: _render_all(out, options, progress))


def _render_all(out: Path, options: dict, progress: bool) -> None:
    ids, outfits, seed, frames = options["ids"], options["outfits"], options["seed"], options["frames"]
    people, wardrobe = cast(seed, ids + options["extra_test_ids"], outfits)
    gaits = [sample_gait(np.random.default_rng([seed, pid, 3])) for pid in range(len(people))]
    jobs = list(plan_video(ids, outfits, options["tracklets_per_outfit"], seed, options["extra_test_ids"]))
    for job in tqdm(jobs, desc="synth video", disable=not progress, unit="tracklet"):
        rng = np.random.default_rng([seed, job.pid, job.outfit, job.camera, job.k, STREAM])
        length = int(rng.integers(frames - frames // 4, frames + 1))
        shots = render_tracklet(people[job.pid], gaits[job.pid], wardrobe[job.pid][job.outfit], job.camera, rng,
                                length, options["height"], options["width"], seed)
        images, maps = out / DATASET / job.path, out / "parsing" / DATASET / job.path
        images.mkdir(parents=True)
        maps.mkdir(parents=True)
        for i, (rgb, labels) in enumerate(shots):
            Image.fromarray(rgb).save(images / f"{i:05d}.jpg", quality=95)
            Image.fromarray(labels).save(maps / f"{i:05d}.png", compress_level=1)
    for name in LISTS:
        lines = "".join(job.line + "\n" for job in jobs if job.split == name)
        (out / DATASET / f"{name}.txt").write_text(lines)


#: the generation options a video folder's ``meta.json`` records -> the ``data.synthetic`` keys they fill
META_KEYS = ("ids", "extra_test_ids", "outfits", "tracklets_per_outfit", "frames", "height", "width", "seed")


@DATASETS.register("synthetic_video")
def load_synthetic_video(cfg: DataConfig) -> ReIDDataset:
    """The video benchmark at ``cfg.root``: a folder that holds one is used as it is (its options copied
    into ``cfg.synthetic``, so the run's config records them); only a missing one is generated. Its maps
    (``root/parsing``) are always found; validation identities come from ``val_query/val_gallery.txt``."""
    s, meta = cfg.synthetic, Path(cfg.root) / "meta.json"
    if meta.is_file():
        made = read_json(meta)
        if isinstance(made, dict) and made.get("kind") == "video":
            for key in META_KEYS:
                setattr(s, key, made.get(key, getattr(s, key)))
    root = generate_video(cfg.root, s.ids, s.outfits, s.tracklets_per_outfit, s.frames, s.height, s.width, s.seed,
                          extra_test_ids=s.extra_test_ids)
    base = root / DATASET
    parsing = ParsingIndex(str(root / "parsing"), mirror_bases(base, (DATASET,)))
    protocols = eval_protocols(base, "query.txt", "gallery.txt", parsing)
    val = eval_protocols(base, "val_query.txt", "val_gallery.txt", parsing)
    return ReIDDataset("synthetic_video", train_split(base, "train.txt", parsing), protocols, val, "lip",
                       maps_base=str(parsing.base))


VIDEO_DATASETS.add("synthetic_video")
