import torch
import torch.nn.functional as F

from ccreid.data.transforms import build_test_transform, build_train_transform
from ccreid.imagenet import IMAGENET_MEAN, IMAGENET_STD

H, W = 32, 16
MEAN = torch.tensor(IMAGENET_MEAN)[:, None, None]
STD = torch.tensor(IMAGENET_STD)[:, None, None]


def to_uint8(normalised: torch.Tensor) -> torch.Tensor:
    """Undo the normalisation (float, 0..255 scale)."""
    return (normalised * STD + MEAN) * 255


def label_of(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    return 1 + (rows // 3 + 2 * (cols // 4)) % 19


def position_image():
    """R encodes the row, G the column, B = 255 marks a real (not padded) pixel."""
    rows, cols = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    image = torch.stack([rows * 7, cols * 15, torch.full_like(rows, 255)]).to(torch.uint8)
    return image, label_of(rows, cols)


def test_map_follows_flip_pad_crop_pixel_by_pixel():
    image, parsing = position_image()
    transform = build_train_transform(H, W, flip_p=0.5, pad=10, erasing_p=0.5)
    flips, offsets, erased_runs = 0, set(), 0
    for seed in range(40):
        torch.manual_seed(seed)
        out, out_map = transform(image, parsing)
        assert out.shape == (3, H, W) and out.dtype == torch.float32
        assert out_map.shape == (H, W) and out_map.dtype == torch.long
        erased = (out == 0).all(0)  # fill 0 = ImageNet mean, never hit by a uint8 pixel
        erased_runs += bool(erased.any())
        pixels = to_uint8(out).round().long()
        real = (pixels[2] == 255) & ~erased
        padded = (pixels[2] == 0) & ~erased
        assert (real | padded | erased).all()
        assert (out_map[padded] == 0).all()
        rows, cols = pixels[0] // 7, pixels[1] // 15
        assert torch.equal(out_map[real], label_of(rows, cols)[real])
        # the map under erased pixels is still a real label or padding
        assert (out_map[erased] >= 0).all()
        real_cols = torch.where(real, cols, -1)
        row = real.sum(1).argmax()
        seen = real_cols[row][real[row]]
        flips += bool(seen[0] > seen[-1])
        offsets.add((int(rows[real].min()), int(cols[real].min())))
    assert 5 < flips < 35 and len(offsets) > 5 and 5 < erased_runs < 35


def palette(labels: torch.Tensor) -> torch.Tensor:
    """Distinct colours per label, black for 0 (which is also the padding colour)."""
    return torch.stack([(labels * 13) % 256, (labels * 29) % 256, (labels * 53) % 256]).float() * (labels > 0)


def block_sample(height: int, width: int, block: int):
    rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    parsing = label_of(rows // block * 3, cols // block * 4)
    return palette(parsing).to(torch.uint8), parsing


def uniform_neighbourhood(label_map: torch.Tensor, radius: int) -> torch.Tensor:
    """Pixels whose (2r+1)^2 neighbourhood holds a single label."""
    x = label_map[None, None].float()
    k = 2 * radius + 1
    hi = F.max_pool2d(x, k, 1, radius)
    lo = -F.max_pool2d(-x, k, 1, radius)
    inside = torch.zeros_like(label_map, dtype=torch.bool)
    inside[radius:-radius, radius:-radius] = True
    return (hi == lo)[0, 0] & inside


def test_map_follows_resize_up_and_down():
    for height, width, block in [(H // 2, W // 2, 3), (H * 2, W * 2, 10)]:
        image, parsing = block_sample(height, width, block)
        transform = build_train_transform(H, W, flip_p=0.5, pad=10, erasing_p=0.0)
        for seed in range(10):
            torch.manual_seed(seed)
            out, out_map = transform(image, parsing)
            assert set(out_map.unique().tolist()) <= set(parsing.unique().tolist()) | {0}
            checked = uniform_neighbourhood(out_map, 1)
            assert checked.sum() > H * W // 4
            diff = (to_uint8(out) - palette(out_map)).abs().amax(0)
            assert diff[checked].max() < 1.5


def test_erasing_touches_the_image_only():
    image, parsing = position_image()
    plain = build_train_transform(H, W, flip_p=0.0, pad=0, erasing_p=0.0)(image, parsing)[0]
    transform = build_train_transform(H, W, flip_p=0.0, pad=0, erasing_p=1.0)
    for seed in range(10):
        torch.manual_seed(seed)
        out, out_map = transform(image, parsing)
        erased = (out == 0).all(0)
        assert erased.any()
        assert torch.equal(out_map, parsing)
        assert torch.equal(out[:, ~erased], plain[:, ~erased])


def test_test_transform_resizes_normalises_and_fills_missing_map():
    image = torch.full((3, 10, 5), 200, dtype=torch.uint8)
    parsing = torch.arange(50).view(10, 5) % 20
    transform = build_test_transform(H, W)
    out, out_map = transform(image, parsing)
    expected = (200 / 255 - MEAN) / STD
    assert torch.allclose(out, expected.expand(3, H, W), atol=1e-5)
    rows = torch.arange(H) * 10 // H
    cols = torch.arange(W) * 5 // W
    assert torch.equal(out_map, parsing[rows[:, None], cols[None, :]])
    out2, no_map = transform(image, None)
    assert torch.equal(out2, out)
    assert no_map.shape == (H, W) and (no_map == -1).all() and no_map.dtype == torch.long
    train_out, train_no_map = build_train_transform(H, W)(image, None)
    assert train_out.shape == (3, H, W) and (train_no_map == -1).all()


def test_color_jitter_changes_the_image_colours_only_and_is_off_by_default():
    image, parsing = position_image()
    assert "ColorJitter" not in repr(build_train_transform(H, W))
    plain = build_train_transform(H, W, flip_p=0.0, pad=0, erasing_p=0.0)
    jitter = build_train_transform(H, W, flip_p=0.0, pad=0, erasing_p=0.0, color_jitter=0.1)
    torch.manual_seed(0)
    out, out_map = jitter(image, parsing)
    reference, reference_map = plain(image, parsing)
    assert torch.equal(out_map, reference_map) and not torch.equal(out, reference)
