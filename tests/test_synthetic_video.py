"""The synthetic video benchmark: determinism, the CCVID layout, the protocol, caching, motion."""

import glob
import os.path as osp
import re

import numpy as np
import pytest
from PIL import Image

from ccreid.data.synthetic import generate
from ccreid.data.synthetic_render import (
    GARMENTS, NUM_CAMERAS, Gait, render_tracklet, sample_gait, sample_identity, sample_outfit, walk,
)
from ccreid.data.synthetic_video import LISTS, generate_video, plan_video
from ccreid.errors import CCReIDError

TINY = dict(ids=6, extra_test_ids=1, outfits=2, tracklets_per_outfit=2, frames=4, height=32, width=16)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return generate_video(tmp_path_factory.mktemp("vid") / "video", seed=3, **TINY)


def files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def reference_lists(root):
    """Transcription of Simple-CCReID's ``CCVID._process_data`` (data/datasets/ccvid.py): each list
    as ``(img_paths, pid, camid, clothes)`` with raw pids and ``"<pid>_<label>"`` clothes keys."""
    out = {}
    for name in LISTS:
        tracklets = []
        with open(osp.join(root, "CCVID", f"{name}.txt"), "r") as f:
            for line in f:
                tracklet_path, pid, clothes_label = line.rstrip().split()
                img_paths = glob.glob(osp.join(root, "CCVID", tracklet_path, "*"))
                img_paths.sort()
                session = tracklet_path.split("/")[0]
                cam = tracklet_path.split("_")[1]
                camid = int(cam) + 12 if session == "session3" else int(cam)
                tracklets.append((img_paths, int(pid), camid, f"{pid}_{clothes_label}"))
        out[name] = tracklets
    return out


def test_same_seed_same_bytes_other_seed_other_pixels(root, tmp_path):
    made = files(root)
    assert made == files(generate_video(tmp_path / "again", seed=3, **TINY))
    other = files(generate_video(tmp_path / "other", seed=4, **TINY))
    assert made.keys() != other.keys() or any(made[k] != other[k] for k in made)


def test_layout_frames_and_parsing_maps(root):
    lists = reference_lists(root)
    assert all(lists.values())
    for name, tracklets in lists.items():
        for line in (root / "CCVID" / f"{name}.txt").read_text().splitlines():
            assert re.fullmatch(r"session\d+/\d{3}_\d{2} \d{3} o\d+", line), line
        for frames, *_ in tracklets:
            names = [osp.basename(f) for f in frames]
            assert names == [f"{i:05d}.jpg" for i in range(len(frames))]
            assert TINY["frames"] - TINY["frames"] // 4 <= len(frames) <= TINY["frames"]
            for frame in frames:
                rel = osp.relpath(frame, root)
                labels = Image.open(root / "parsing" / (osp.splitext(rel)[0] + ".png"))
                assert labels.mode == "L" and labels.size == Image.open(frame).size == (16, 32)
                values = set(np.unique(np.asarray(labels)))
                assert values <= set(range(20)) and values & set(GARMENTS)
    assert not list((root / "CCVID").rglob("*.png"))  # no map inside a tracklet folder (frames = all its files)


def test_camera_numbers_follow_the_ccvid_reader():
    """The number after '_' is 1 + camera + 4k, so the reader's camid (+12 in session3) gives the camera back
    and a person's tracklets of one session never share a folder."""
    plan = list(plan_video(ids=10, outfits=4, tracklets_per_outfit=6, seed=0))
    for t in plan:
        camid = int(t.path.split("_")[1]) + (12 if t.path.startswith("session3/") else 0)
        assert (camid - 1) % NUM_CAMERAS == t.camera
    assert len({t.path for t in plan}) == len(plan)
    assert {t.path.split("/")[0] for t in plan} == {"session1", "session2", "session3", "session4"}


def test_protocol_cc_outfits_never_in_the_gallery_and_splits_disjoint(root):
    lists = reference_lists(root)
    ids = {name: {pid for _, pid, _, _ in tracklets} for name, tracklets in lists.items()}
    val, test = ids["val_query"] | ids["val_gallery"], ids["query"] | ids["gallery"]
    assert ids["query"] == ids["gallery"] and ids["val_query"] == ids["val_gallery"]
    assert not ids["train"] & val and not ids["train"] & test and not val & test
    assert (len(ids["train"]), len(val), len(test)) == (3, 2, 2)
    assert {c for _, _, _, c in lists["train"]} == {f"{p:03d}_o{o}" for p in ids["train"] for o in range(2)}
    for prefix in ("", "val_"):
        gallery = lists[prefix + "gallery"]
        gallery_clothes = {c for _, _, _, c in gallery}
        kinds = set()
        for _, pid, camid, clothes in lists[prefix + "query"]:
            same = clothes in gallery_clothes
            kinds.add(same)
            assert all(camid != g_cam for _, g_pid, g_cam, _ in gallery if g_pid == pid)  # never junk by camera
            assert same == clothes.endswith("_o0")  # SC: outfit 0, as the gallery; CC: an outfit it never shows
        assert kinds == {True, False}


def test_extra_test_ids_leave_the_other_tracklets_unchanged(root, tmp_path):
    bigger = generate_video(tmp_path / "bigger", seed=3, **{**TINY, "extra_test_ids": 2})
    small, big = files(root), files(bigger)
    assert {k: v for k, v in small.items() if k.startswith(("CCVID/session", "parsing/"))}.items() <= big.items()
    assert small["CCVID/train.txt"] == big["CCVID/train.txt"]
    assert big["CCVID/query.txt"].startswith(small["CCVID/query.txt"])


def test_reuse_and_refusal(root, tmp_path):
    meta = root / "meta.json"
    before = meta.stat().st_mtime_ns
    assert generate_video(root, seed=3, **TINY) == root and meta.stat().st_mtime_ns == before
    with pytest.raises(CCReIDError, match="other options"):
        generate_video(root, seed=3, **{**TINY, "frames": 5})
    image = generate(tmp_path / "image", ids=6, outfits=2, images_per_outfit=1, height=32, width=16)
    with pytest.raises(CCReIDError, match="other options"):
        generate_video(image, **TINY)
    with pytest.raises(CCReIDError, match="other options"):
        generate(root, ids=6, outfits=2, images_per_outfit=1, height=32, width=16)
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "mine.txt").write_text("keep me")
    with pytest.raises(CCReIDError, match="not a synthetic dataset"):
        generate_video(tmp_path / "foreign", **TINY)
    assert (tmp_path / "foreign" / "mine.txt").read_text() == "keep me"
    for bad, key in (({"outfits": 1}, "outfits"), ({"frames": 1}, "frames"), ({"ids": 3}, "--ids"),
                     ({"tracklets_per_outfit": 0}, "tracklets_per_outfit")):
        with pytest.raises(CCReIDError, match=key):
            generate_video(tmp_path / "bad", **{**TINY, **bad})
    assert not (tmp_path / "bad").exists()


def test_frames_move_while_the_outfit_stays():
    rng = np.random.default_rng(7)
    ident, outfit = sample_identity(rng), sample_outfit(rng)
    shots = render_tracklet(ident, sample_gait(rng), outfit, 0, np.random.default_rng(1), 12, 128, 64, seed=0)
    for (rgb, labels), (rgb_next, labels_next) in zip(shots, shots[1:]):
        assert (labels != labels_next).any() and (rgb != rgb_next).any()
    kind = outfit.upper_kind
    colours = [rgb[labels == kind].mean(0) for rgb, labels in shots]
    assert all((labels == kind).sum() > 50 for _, labels in shots)
    assert max(np.abs(c - colours[0]).max() for c in colours) < 12  # the same garment colours throughout


def test_clothes_are_a_shortcut(tmp_path):
    """A colour histogram of the person's pixels (no learning) re-identifies same-clothes queries far
    better than clothes-changing ones: the shortcut a clothes-changing method must resist is there."""
    root = generate_video(tmp_path / "v", ids=30, outfits=3, tracklets_per_outfit=2, frames=4, height=64, width=32)
    lists = reference_lists(root)

    def histogram(frames):
        counts = []
        for frame in frames:
            rgb = np.asarray(Image.open(frame)).reshape(-1, 3) // 64
            person = np.asarray(Image.open(frame.replace("/CCVID/", "/parsing/CCVID/")[:-4] + ".png")).ravel() > 0
            counts.append(np.bincount((rgb @ [16, 4, 1])[person], minlength=64) / person.sum())
        return np.mean(counts, 0)

    gallery = [(histogram(f), pid, cam, clothes) for f, pid, cam, clothes in lists["gallery"]]
    hits = {True: [], False: []}  # same clothes in the gallery -> rank-1 hits
    for frames, pid, cam, clothes in lists["query"]:
        feature = histogram(frames)
        same = any(g[1] == pid and g[3] == clothes for g in gallery)
        kept = [g for g in gallery if not (g[1] == pid and (g[2] == cam or (not same and g[3] == clothes)))]
        hits[same].append(min(kept, key=lambda g: np.abs(g[0] - feature).sum())[1] == pid)
    assert np.mean(hits[True]) > np.mean(hits[False]) + 0.3


def test_the_image_adapter_names_a_video_folder_for_what_it_is(root):
    from ccreid.config import DataConfig
    from ccreid.data.registry import DATASETS

    with pytest.raises(CCReIDError, match="video benchmark.*data.root"):
        DATASETS.get("synthetic")(DataConfig(name="synthetic", root=str(root)))


@pytest.mark.parametrize("gait", [Gait(8.0, 0.06, 0.02), Gait(12.0, 0.12, 0.04)])
def test_every_walk_of_a_person_keeps_their_gait(gait):
    ident = sample_identity(np.random.default_rng(0))
    for seed in range(3):
        swing = np.array([pose.swing for pose in walk(np.random.default_rng(seed), ident, gait, 60)])
        rising = np.flatnonzero((swing[:-1] < 0) & (swing[1:] >= 0))
        assert abs(np.diff(rising).mean() - gait.period) < 0.1 * gait.period  # frames per step cycle
        assert 0.85 * gait.arms < np.abs(swing).max() < 1.06 * gait.arms
