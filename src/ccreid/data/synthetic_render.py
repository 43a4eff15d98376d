"""Procedural rendering of person-like images with pixel-exact LIP parsing maps.

Every primitive is drawn twice with the same geometry, once into the RGB image and once
into the label image (no anti-aliasing), so the parsing map is exact. Identity traits
(body shape, skin, hair, facial marks) are constant per person; outfit traits (garment
colours, patterns, lengths, shoes, hat, scarf) per outfit; camera and per-image
nuisances (background, illumination, resolution, noise, pose, scale, position) vary.
:func:`render_tracklet` renders a walk (:func:`walk`): the frames of one person in one
outfit before one camera, with the person's gait, approach, drift and a slowly turning view.
"""

from __future__ import annotations

import colorsys
from functools import lru_cache
from dataclasses import dataclass
from typing import List, Tuple

import numpy as np
from PIL import Image, ImageDraw

# LIP labels used here (METHOD.md)
HAT, HAIR, UPPER, DRESS, COAT, PANTS, SCARF, SKIRT, FACE = 1, 2, 5, 6, 7, 9, 11, 12, 13
L_ARM, R_ARM, L_LEG, R_LEG, L_SHOE, R_SHOE = 14, 15, 16, 17, 18, 19
GARMENTS = (UPPER, DRESS, COAT, PANTS, SKIRT)
NUM_CAMERAS = 4

SKIN_TONES = np.array([[255, 224, 196], [234, 192, 160], [205, 160, 124], [170, 120, 90], [125, 85, 60], [90, 60, 42]])
HAIR_COLOURS = np.array([[25, 20, 18], [70, 45, 30], [120, 80, 45], [200, 170, 110], [150, 60, 30], [150, 150, 150]])
HAIR_STYLES = ("short", "long", "bun", "bald")


@dataclass(frozen=True)
class Identity:
    """Clothes-irrelevant traits of one person (fractions of the person's height/width)."""

    height: float
    shoulder: float
    hip: float
    limb: float
    leg: float
    head: float
    skin: Tuple[int, int, int]
    hair: Tuple[int, int, int]
    hair_style: str
    marks: Tuple[Tuple[float, float], ...]


@dataclass(frozen=True)
class Outfit:
    """Clothes-relevant traits of one outfit."""

    upper_kind: int  # UPPER, COAT or DRESS
    upper: Tuple[int, int, int]
    upper2: Tuple[int, int, int]
    pattern: str  # plain | stripes | checks | dots
    long_sleeves: bool
    lower_kind: int  # PANTS or SKIRT (ignored under a dress)
    lower: Tuple[int, int, int]
    long_legs: bool
    shoes: Tuple[int, int, int]
    hat: Tuple[int, int, int] | None
    scarf: Tuple[int, int, int] | None


def _colour(rng: np.random.Generator, saturated: bool = True) -> Tuple[int, int, int]:
    sat = rng.uniform(0.55, 1.0) if saturated else rng.uniform(0.0, 0.3)
    val = rng.uniform(0.45, 0.95)
    r, g, b = colorsys.hsv_to_rgb(rng.uniform(0, 1), sat, val)
    return int(r * 255), int(g * 255), int(b * 255)


def sample_identity(rng: np.random.Generator) -> Identity:
    """Body shape, skin tone, hair and facial marks of a new person."""
    skin = SKIN_TONES[rng.integers(len(SKIN_TONES))] + rng.integers(-12, 13, 3)
    hair = HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))] + rng.integers(-10, 11, 3)
    marks = tuple((float(rng.uniform(-0.5, 0.5)), float(rng.uniform(-0.2, 0.6))) for _ in range(rng.integers(0, 3)))
    return Identity(
        height=float(rng.uniform(0.80, 0.96)), shoulder=float(rng.uniform(0.26, 0.42)),
        hip=float(rng.uniform(0.22, 0.36)), limb=float(rng.uniform(0.07, 0.12)), leg=float(rng.uniform(0.10, 0.16)),
        head=float(rng.uniform(0.075, 0.10)), skin=tuple(int(v) for v in np.clip(skin, 0, 255)),
        hair=tuple(int(v) for v in np.clip(hair, 0, 255)), hair_style=HAIR_STYLES[rng.integers(len(HAIR_STYLES))],
        marks=marks,
    )


def sample_outfit(rng: np.random.Generator) -> Outfit:
    """Garments of a new outfit: large, mostly saturated colour regions."""
    kind = (UPPER, UPPER, COAT, DRESS)[rng.integers(4)]
    return Outfit(
        upper_kind=kind, upper=_colour(rng, rng.uniform() < 0.85), upper2=_colour(rng),
        pattern=("plain", "plain", "stripes", "checks", "dots")[rng.integers(5)],
        long_sleeves=bool(rng.uniform() < 0.5), lower_kind=(PANTS, PANTS, SKIRT)[rng.integers(3)],
        lower=_colour(rng, rng.uniform() < 0.6), long_legs=bool(rng.uniform() < 0.7),
        shoes=_colour(rng, rng.uniform() < 0.4),
        hat=_colour(rng) if rng.uniform() < 0.2 else None, scarf=_colour(rng) if rng.uniform() < 0.15 else None,
    )


@lru_cache(maxsize=64)
def camera_background(camera: int, height: int, width: int, seed: int) -> np.ndarray:
    """The fixed scene of a camera: wall colour, vertical gradient, floor and texture."""
    rng = np.random.default_rng([seed, 7919, camera])
    wall = np.array(_colour(rng, saturated=False), dtype=np.float32)
    floor = np.array(_colour(rng, saturated=False), dtype=np.float32) * 0.8
    ys = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    img = wall * (0.85 + 0.3 * ys) * np.ones((1, width, 1), np.float32)
    horizon = int(height * rng.uniform(0.7, 0.85))
    img[horizon:] = floor
    texture = rng.normal(0, 10, (height // 4 + 1, width // 4 + 1, 1)).repeat(4, 0).repeat(4, 1)[:height, :width]
    out = np.clip(img + texture, 0, 255)
    out.flags.writeable = False  # cached: shared between images
    return out


@lru_cache(maxsize=8)
def sensor_noise(height: int, width: int) -> np.ndarray:
    """A fixed bank of Gaussian pixel noise (sigma 4); each image takes a random window."""
    bank = np.random.default_rng(65537).standard_normal((2 * height, 2 * width, 3), np.float32) * 4
    bank.flags.writeable = False
    return bank


@lru_cache(maxsize=64)
def camera_cast(camera: int, seed: int) -> np.ndarray:
    """The fixed colour cast (per-channel gain) of a camera."""
    cast = np.random.default_rng([seed, 104729, camera]).uniform(0.8, 1.2, 3).astype(np.float32)
    cast.flags.writeable = False
    return cast


@lru_cache(maxsize=8)
def _grid(height: int, width: int) -> Tuple[np.ndarray, np.ndarray]:
    """Row and column index of every pixel."""
    yy, xx = np.mgrid[0:height, 0:width]
    yy.flags.writeable = xx.flags.writeable = False
    return yy, xx


class Canvas:
    """An RGB image and its label map drawn with identical primitives."""

    def __init__(self, height: int, width: int) -> None:
        self.rgb = Image.new("RGB", (width, height))
        self.labels = Image.new("L", (width, height))
        self._rgb = ImageDraw.Draw(self.rgb)
        self._lab = ImageDraw.Draw(self.labels)

    def polygon(self, points, colour, label: int) -> None:
        self._rgb.polygon(points, fill=tuple(colour))
        self._lab.polygon(points, fill=label)

    def ellipse(self, box, colour, label: int) -> None:
        self._rgb.ellipse(box, fill=tuple(colour))
        self._lab.ellipse(box, fill=label)

    def rectangle(self, box, colour, label: int) -> None:
        self._rgb.rectangle(box, fill=tuple(colour))
        self._lab.rectangle(box, fill=label)


def _limb(x0: float, y0: float, x1: float, y1: float, thick: float):
    """A quadrilateral of width ``thick`` from (x0, y0) to (x1, y1)."""
    dx, dy = x1 - x0, y1 - y0
    norm = max((dx * dx + dy * dy) ** 0.5, 1e-6)
    ox, oy = -dy / norm * thick / 2, dx / norm * thick / 2
    return [(x0 + ox, y0 + oy), (x1 + ox, y1 + oy), (x1 - ox, y1 - oy), (x0 - ox, y0 - oy)]


@dataclass(frozen=True)
class Pose:
    """Where and how a person stands in one image (fractions; see :func:`draw_pose`).

    ``scale``: person height / image height (capped at 0.98); ``view``: width factor (< 1
    turned sideways); ``shift``: horizontal offset of the centre / image width; ``top``:
    where the head lies in the free vertical space (0 top, 1 bottom); ``swing``: arm swing,
    ``stride``: feet spread and ``lift``: raised foot (> 0 left, < 0 right), / person height.
    """

    scale: float
    view: float
    shift: float
    top: float
    swing: float
    stride: float
    lift: float = 0.0


def sample_pose(rng: np.random.Generator, ident: Identity) -> Pose:
    """A random still pose of ``ident`` (the image generator's nuisance draw)."""
    scale = ident.height * rng.uniform(0.9, 1.04)
    view, shift, top = rng.uniform(0.7, 1.0), rng.uniform(-0.08, 0.08), rng.uniform(0.2, 0.8)
    return Pose(float(scale), float(view), float(shift), float(top), float(rng.uniform(-0.12, 0.12)),
                float(rng.uniform(-0.06, 0.06)))


def draw_person(canvas: Canvas, ident: Identity, outfit: Outfit, rng: np.random.Generator, width: int, height: int) -> None:
    """Draw one person (pose, viewpoint, scale and position drawn from ``rng``)."""
    draw_pose(canvas, ident, outfit, sample_pose(rng, ident), width, height)


def _place(pose: Pose, width: int, height: int) -> Tuple[float, float, float]:
    """A person's height, centre column and top row in pixels."""
    ph = height * min(pose.scale, 0.98)
    return ph, width / 2 + pose.shift * width, (height - ph) * pose.top


def person_origin(pose: Pose, width: int, height: int) -> Tuple[int, int]:
    """The pixel ``(row, column)`` of the top centre of a person in ``pose`` (patterns move with it)."""
    _, cx, top = _place(pose, width, height)
    return int(top), int(cx)


def draw_pose(canvas: Canvas, ident: Identity, outfit: Outfit, pose: Pose, width: int, height: int) -> None:
    """Draw one person in ``pose``."""
    ph, cx, top = _place(pose, width, height)
    pw = ph / 2.4  # reference width
    view = pose.view
    y = lambda f: top + f * ph  # noqa: E731
    sh, hp = ident.shoulder * pw * view, ident.hip * pw * view
    limb, leg = ident.limb * pw, ident.leg * pw
    head_r = ident.head * ph
    swing = pose.swing * ph
    stride = pose.stride * ph
    lifts = {-1: max(pose.lift, 0.0) * ph, 1: max(-pose.lift, 0.0) * ph}
    skin, sleeve_end, leg_end = ident.skin, (0.47 if outfit.long_sleeves else 0.30), (0.93 if outfit.long_legs else 0.70)

    # legs (skin), then lower garment over them, then shoes
    hip_y = y(0.52)
    for label, sign, shoe in ((L_LEG, -1, L_SHOE), (R_LEG, 1, R_SHOE)):
        foot_y = y(0.95) - lifts[sign]
        x_hip, x_foot = cx + sign * (hp - leg / 2), cx + sign * (hp * 0.6) + sign * stride * 0.3
        canvas.polygon(_limb(x_hip, hip_y, x_foot, foot_y, leg), skin, label)
        if outfit.upper_kind != DRESS and outfit.lower_kind == PANTS:
            end = hip_y + (leg_end - 0.52) / 0.43 * (foot_y - hip_y)
            xe = x_hip + (x_foot - x_hip) * (end - hip_y) / (foot_y - hip_y)
            canvas.polygon(_limb(x_hip, hip_y - 2, xe, end, leg * 1.15), outfit.lower, PANTS)
        canvas.rectangle([x_foot - leg * 0.7, foot_y - 1, x_foot + leg * 0.7, y(1.0) - lifts[sign]], outfit.shoes,
                         shoe)
    if outfit.upper_kind != DRESS and outfit.lower_kind == SKIRT:
        canvas.polygon([(cx - hp, hip_y - 2), (cx + hp, hip_y - 2), (cx + hp * 1.5, y(0.72)), (cx - hp * 1.5, y(0.72))],
                       outfit.lower, SKIRT)
    # arms (skin) with sleeves
    for label, sign in ((L_ARM, -1), (R_ARM, 1)):
        xs, ys_ = cx + sign * (sh - limb / 2), y(0.19)
        xh, yh = cx + sign * (sh + limb * 0.3) + sign * abs(swing) * 0.3, y(0.52) + swing * sign * 0.2
        canvas.polygon(_limb(xs, ys_, xh, yh, limb), skin, label)
        ye = ys_ + (sleeve_end - 0.19) / 0.33 * (yh - ys_)
        xe = xs + (xh - xs) * (ye - ys_) / (yh - ys_)
        canvas.polygon(_limb(xs, ys_ - 1, xe, ye, limb * 1.2), outfit.upper, outfit.upper_kind)
    # torso garment
    bottom = {UPPER: 0.54, COAT: 0.66, DRESS: 0.76}[outfit.upper_kind]
    flare = 1.35 if outfit.upper_kind == DRESS else 1.0
    canvas.polygon([(cx - sh, y(0.17)), (cx + sh, y(0.17)), (cx + hp * flare, y(bottom)), (cx - hp * flare, y(bottom))],
                   outfit.upper, outfit.upper_kind)
    # neck, head, hair
    canvas.rectangle([cx - head_r * 0.35, y(0.13), cx + head_r * 0.35, y(0.18)], skin, FACE)
    hy = top + head_r * 1.05
    hair_behind = ident.hair_style == "long"
    if hair_behind:
        canvas.rectangle([cx - head_r * 1.05, hy, cx + head_r * 1.05, y(0.24)], ident.hair, HAIR)
    canvas.ellipse([cx - head_r * 0.85, hy - head_r, cx + head_r * 0.85, hy + head_r], skin, FACE)
    if ident.hair_style != "bald":
        canvas.ellipse([cx - head_r * 0.9, hy - head_r * 1.08, cx + head_r * 0.9, hy - head_r * 0.15], ident.hair, HAIR)
    if ident.hair_style == "bun":
        canvas.ellipse([cx - head_r * 0.4, hy - head_r * 1.6, cx + head_r * 0.4, hy - head_r * 0.8], ident.hair, HAIR)
    for mx, my in ident.marks:
        px, py = cx + mx * head_r, hy + my * head_r
        canvas.rectangle([px - 0.5, py - 0.5, px + 0.5, py + 0.5], tuple(int(v * 0.55) for v in skin), FACE)
    if outfit.scarf is not None:
        canvas.rectangle([cx - sh * 0.6, y(0.15), cx + sh * 0.6, y(0.21)], outfit.scarf, SCARF)
    if outfit.hat is not None:
        canvas.rectangle([cx - head_r * 1.0, hy - head_r * 1.25, cx + head_r * 1.0, hy - head_r * 0.55], outfit.hat, HAT)


def pattern_period(outfit: Outfit, rng: np.random.Generator) -> int:
    """The period in pixels of the upper garment's pattern (0 for a plain one: ``rng`` is left untouched)."""
    return 0 if outfit.pattern == "plain" else int(rng.integers(4, 8))


def apply_pattern(rgb: np.ndarray, labels: np.ndarray, outfit: Outfit, period: int,
                  origin: Tuple[int, int] = (0, 0)) -> None:
    """Stripes / checks / dots in the secondary colour on the upper garment (in place), their grid
    anchored at pixel ``origin`` (row, column)."""
    if outfit.pattern == "plain":
        return
    yy, xx = _grid(*labels.shape)
    yy, xx = yy - origin[0], xx - origin[1]
    if outfit.pattern == "stripes":
        on = (yy // (period // 2)) % 2 == 0
    elif outfit.pattern == "checks":
        on = ((yy // period) + (xx // period)) % 2 == 0
    else:
        on = ((yy % period) < 2) & ((xx % period) < 2)
    rgb[on & (labels == outfit.upper_kind)] = outfit.upper2


def _clean(canvas: Canvas, outfit: Outfit, camera: int, seed: int, period: int,
           origin: Tuple[int, int] = (0, 0)) -> Tuple[np.ndarray, np.ndarray]:
    """The drawn person with its pattern over the camera background: ``float32 [H, W, 3]`` and labels."""
    labels = np.asarray(canvas.labels).copy()
    rgb = np.asarray(canvas.rgb).astype(np.float32)
    apply_pattern(rgb, labels, outfit, period, origin)
    background = camera_background(camera, *labels.shape, seed)
    return np.where(labels[..., None] == 0, background, rgb), labels


def degrade(rgb: np.ndarray, labels: np.ndarray, camera: int, seed: int, gain: float, noise_at: Tuple[int, int],
            low_res: bool) -> Tuple[np.ndarray, np.ndarray]:
    """Camera colour cast times illumination ``gain``, the sensor-noise window at ``noise_at`` and,
    when ``low_res``, the same nearest down/up sampling of the pixels and the labels."""
    height, width = labels.shape
    cast = camera_cast(camera, seed)
    oy, ox = noise_at
    noise = sensor_noise(height, width)[oy:oy + height, ox:ox + width]
    rgb = rgb * (cast * np.float32(gain)) + noise
    if low_res:
        rgb, labels = rgb[::2, ::2].repeat(2, 0).repeat(2, 1)[:height, :width], \
            labels[::2, ::2].repeat(2, 0).repeat(2, 1)[:height, :width]
    return rgb, labels


def render(ident: Identity, outfit: Outfit, camera: int, rng: np.random.Generator, height: int, width: int,
           seed: int, nuisances: bool = True) -> Tuple[np.ndarray, np.ndarray]:
    """One image ``uint8 [H, W, 3]`` and its LIP parsing map ``uint8 [H, W]``.

    With ``nuisances=False`` the pixels are the clean render: background pixels equal
    the camera background and garment pixels their outfit colours exactly.
    """
    canvas = Canvas(height, width)
    draw_person(canvas, ident, outfit, rng, width, height)
    rgb, labels = _clean(canvas, outfit, camera, seed, pattern_period(outfit, rng))
    if nuisances:
        noise_at = int(rng.integers(0, height)), int(rng.integers(0, width))
        gain = rng.uniform(0.8, 1.2)
        rgb, labels = degrade(rgb, labels, camera, seed, gain, noise_at, camera == 2 or rng.uniform() < 0.2)
    return np.clip(rgb, 0, 255).astype(np.uint8), labels


@dataclass(frozen=True)
class Gait:
    """How a person walks, in every outfit: frames per step cycle, arm swing and foot lift
    (fractions of the person's height); each walk varies them by a few percent."""

    period: float
    arms: float
    feet: float


def sample_gait(rng: np.random.Generator) -> Gait:
    """The gait of a new person."""
    return Gait(float(rng.uniform(8, 12)), float(rng.uniform(0.06, 0.12)), float(rng.uniform(0.02, 0.04)))


def walk(rng: np.random.Generator, ident: Identity, gait: Gait, frames: int) -> List[Pose]:
    """The poses of ``ident`` walking towards a camera for ``frames`` frames.

    Each gait cycle swings the arms, lifts the feet in turn and bobs the body; across the
    tracklet the person grows (approaches), drifts sideways and slowly turns (``view``),
    with a little per-frame jitter of position and scale.
    """
    scale, growth = ident.height * rng.uniform(0.85, 0.96), rng.uniform(0.0, 0.1)
    view, turn = rng.uniform(0.7, 1.0), rng.uniform(-0.15, 0.15)
    shift, drift, top = rng.uniform(-0.06, 0.06), rng.uniform(-0.05, 0.05), rng.uniform(0.3, 0.6)
    period, arms, feet = (value * rng.uniform(0.95, 1.05) for value in (gait.period, gait.arms, gait.feet))
    phase, spread = rng.uniform(0, 2 * np.pi), rng.uniform(-0.03, 0.03)
    jitter = rng.normal(0, 1, (frames, 3))
    poses = []
    for t in range(frames):
        progress, cycle = t / max(frames - 1, 1), np.sin(phase + 2 * np.pi * t / period)
        poses.append(Pose(
            scale=float(scale * (1 + growth * progress) * (1 + 0.01 * jitter[t, 0])),
            view=float(np.clip(view + turn * progress, 0.6, 1.0)),
            shift=float(shift + drift * progress + 0.004 * jitter[t, 1]),
            top=float(np.clip(top + 0.25 * abs(cycle) + 0.03 * jitter[t, 2], 0.0, 1.0)),
            swing=float(arms * cycle), stride=float(spread), lift=float(feet * cycle)))
    return poses


def render_tracklet(ident: Identity, gait: Gait, outfit: Outfit, camera: int, rng: np.random.Generator, frames: int,
                    height: int, width: int, seed: int) -> List[Tuple[np.ndarray, np.ndarray]]:
    """The frames of one walk (:func:`walk`): ``(uint8 [H, W, 3], LIP labels uint8 [H, W])`` each.

    Outfit, pattern period, illumination and resolution hold for the whole tracklet; the
    pattern moves with the body; the sensor noise is new in every frame.
    """
    poses = walk(rng, ident, gait, frames)
    period, gain = pattern_period(outfit, rng), rng.uniform(0.8, 1.2)
    low_res = camera == 2 or rng.uniform() < 0.2
    out = []
    for pose in poses:
        canvas = Canvas(height, width)
        draw_pose(canvas, ident, outfit, pose, width, height)
        rgb, labels = _clean(canvas, outfit, camera, seed, period, person_origin(pose, width, height))
        noise_at = int(rng.integers(0, height)), int(rng.integers(0, width))
        rgb, labels = degrade(rgb, labels, camera, seed, gain, noise_at, low_res)
        out.append((np.clip(rgb, 0, 255).astype(np.uint8), labels))
    return out
