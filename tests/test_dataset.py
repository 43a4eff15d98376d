import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from ccreid.data.dataset import ReIDImageDataset, read_parsing
from ccreid.data.records import ImageRecord
from ccreid.data.transforms import build_test_transform
from ccreid.errors import CCReIDError

H, W = 8, 4


def write_image(path, height=H, width=W, seed=0):
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return pixels


def write_palette_png(path, labels):
    img = Image.fromarray(labels.astype(np.uint8), mode="P")
    img.putpalette([255 - (i % 256) for i in range(768)])  # colours unrelated to indices
    img.save(path)


def labels_map(height=H, width=W):
    return (np.arange(height * width).reshape(height, width) % 20).astype(np.int64)


def make(records, need_parsing=True, missing="error"):
    return ReIDImageDataset(records, build_test_transform(H, W), need_parsing, missing)


def test_item_follows_batch_contract(tmp_path):
    pixels = write_image(tmp_path / "a.png")
    write_palette_png(tmp_path / "a_map.png", labels_map())
    record = ImageRecord(str(tmp_path / "a.png"), 3, 1, 7, parsing_path=str(tmp_path / "a_map.png"))
    item = make([record])[0]
    assert set(item) == {"image", "parsing", "has_parsing", "pid", "camid", "clothes", "index"}
    assert item["image"].shape == (3, H, W) and item["image"].dtype == torch.float32
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    restored = ((item["image"] * std + mean) * 255).round().to(torch.uint8)
    assert torch.equal(restored, torch.from_numpy(pixels).permute(2, 0, 1))
    assert torch.equal(item["parsing"], torch.from_numpy(labels_map()))
    assert item["parsing"].dtype == torch.long and item["has_parsing"].item() is True
    assert [item[k].item() for k in ("pid", "camid", "clothes", "index")] == [3, 1, 7, 0]


def test_png_palette_is_ignored_and_rgb_map_rejected(tmp_path):
    write_palette_png(tmp_path / "p.png", labels_map())
    assert torch.equal(read_parsing(str(tmp_path / "p.png")), torch.from_numpy(labels_map()))
    Image.fromarray(labels_map().astype(np.uint8), mode="L").save(tmp_path / "l.png")
    assert torch.equal(read_parsing(str(tmp_path / "l.png")), torch.from_numpy(labels_map()))
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(CCReIDError, match="rgb.png.*single-channel"):
        read_parsing(str(tmp_path / "rgb.png"))


def test_npy_labels_and_probabilities(tmp_path):
    labels = labels_map()
    np.save(tmp_path / "labels.npy", labels.astype(np.int32))
    assert torch.equal(read_parsing(str(tmp_path / "labels.npy")), torch.from_numpy(labels))
    probs = np.random.default_rng(0).random((H, W, 20)).astype(np.float32)
    np.save(tmp_path / "probs.npy", probs)
    assert torch.equal(read_parsing(str(tmp_path / "probs.npy")), torch.from_numpy(probs.argmax(-1)))
    np.save(tmp_path / "bad.npy", np.zeros((H, W), np.float32))
    with pytest.raises(CCReIDError, match="bad.npy"):
        read_parsing(str(tmp_path / "bad.npy"))


def test_missing_image_and_unreadable_image(tmp_path):
    record = ImageRecord(str(tmp_path / "gone.jpg"), 0, 0, 0)
    with pytest.raises(CCReIDError) as err:
        make([record], need_parsing=False)[0]
    assert "gone.jpg: not found" in str(err.value) and "\n" not in str(err.value)
    (tmp_path / "junk.jpg").write_bytes(b"not an image at all")
    with pytest.raises(CCReIDError, match="cannot decode image .*junk.jpg"):
        make([ImageRecord(str(tmp_path / "junk.jpg"), 0, 0, 0)], need_parsing=False)[0]


def test_missing_map_error_versus_skip(tmp_path):
    write_image(tmp_path / "a.png")
    expected = str(tmp_path / "maps" / "a.png")
    record = ImageRecord(str(tmp_path / "a.png"), 0, 0, 0, parsing_path=expected)
    with pytest.raises(CCReIDError) as err:
        make([record], missing="error")[0]
    assert expected in str(err.value) and "data.parsing.missing=skip" in str(err.value)
    with pytest.raises(CCReIDError, match="data.parsing.root"):
        make([ImageRecord(str(tmp_path / "a.png"), 0, 0, 0)], missing="error")[0]
    skipping = make([record, ImageRecord(str(tmp_path / "a.png"), 0, 0, 0)], missing="skip")
    for item in skipping:
        assert item["has_parsing"].item() is False and (item["parsing"] == -1).all()
    assert (skipping.parsing_stats.found, skipping.parsing_stats.missing) == (0, 2)
    not_needed = make([record], need_parsing=False)
    assert (not_needed[0]["parsing"] == -1).all() and not_needed.parsing_stats.missing == 0


def test_resized_map_counted_and_aligned(tmp_path):
    write_image(tmp_path / "big.png", height=2 * H, width=2 * W)
    write_image(tmp_path / "ok.png")
    small = labels_map()
    write_palette_png(tmp_path / "big_map.png", small)
    write_palette_png(tmp_path / "ok_map.png", small)
    records = [
        ImageRecord(str(tmp_path / "big.png"), 0, 0, 0, str(tmp_path / "big_map.png")),
        ImageRecord(str(tmp_path / "ok.png"), 0, 0, 0, str(tmp_path / "ok_map.png")),
    ]
    dataset = make(records)
    # map (H,W) -> image size (2H,2W) nearest, then the test transform back to (H,W)
    assert torch.equal(dataset[0]["parsing"], torch.from_numpy(small))
    dataset[1]
    assert dataset.parsing_stats.found == 2 and dataset.parsing_stats.resized == 1


def test_stats_count_items_loaded_in_worker_processes(tmp_path):
    write_image(tmp_path / "a.png")
    write_palette_png(tmp_path / "m.png", labels_map(H // 2, W // 2))
    records = [ImageRecord(str(tmp_path / "a.png"), i, 0, i, str(tmp_path / "m.png")) for i in range(3)]
    records.append(ImageRecord(str(tmp_path / "a.png"), 3, 0, 3, None))
    dataset = make(records, missing="skip")
    batches = list(DataLoader(dataset, batch_size=2, num_workers=1))
    assert torch.equal(torch.cat([b["has_parsing"] for b in batches]), torch.tensor([True, True, True, False]))
    assert torch.cat([b["index"] for b in batches]).tolist() == [0, 1, 2, 3]
    stats = dataset.parsing_stats
    assert (stats.found, stats.missing, stats.resized) == (3, 1, 3)


def test_bmp_images_decode_and_damaged_ones_are_named(tmp_path):
    from PIL import Image

    from ccreid.data.dataset import read_image

    Image.new("RGB", (8, 4), (10, 20, 30)).save(tmp_path / "a.bmp")  # torchvision has no BMP decoder
    image = read_image(str(tmp_path / "a.bmp"))
    assert image.shape == (3, 4, 8) and image[:, 0, 0].tolist() == [10, 20, 30]
    (tmp_path / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 30)
    with pytest.raises(CCReIDError, match=r"cannot decode image .*b.png: damaged, or not a JPEG/PNG/BMP/WebP"):
        read_image(str(tmp_path / "b.png"))


def test_unreadable_images_are_named_as_such(tmp_path, monkeypatch):
    """Permission denied (tests run as root, who may read anything: the OS answer is simulated
    where torchvision and Pillow open the file) and decompression bombs are not called damaged."""
    import errno

    from PIL import Image

    from ccreid.data import dataset

    path = tmp_path / "a.png"
    Image.new("RGB", (8, 4)).save(path)

    def torchvision_refuses(name):
        raise RuntimeError("torch_call_dispatcher( \"aten::from_file\", ...) API call failed")

    def denied(name, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(name))

    monkeypatch.setattr(dataset, "read_file", torchvision_refuses)
    monkeypatch.setattr(Image, "open", denied)
    with pytest.raises(CCReIDError, match=r"cannot read image .*a.png: permission denied; make it readable"):
        dataset.read_image(str(path))
    monkeypatch.undo()
    monkeypatch.setattr(dataset, "read_file", torchvision_refuses)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)  # 32 pixels: over twice the limit
    with pytest.raises(CCReIDError, match=r"cannot read image .*a.png: too many pixels, .*decompression bomb"):
        dataset.read_image(str(path))
