"""Procedural part-labelled faces: the training data for the small StyleGAN and for the judge.

Every face is drawn from a random generator seeded by its index alone, so index i is the same image on any
machine. Each part (skin, hair, eyes, eyebrows, nose, mouth, ears, clothes, background) draws its colour and
shape from its own random stream, so parts vary independently: that independence is what lets a GAN trained on
these images learn disentangled parts, and what lets the judge tell whether an edit stayed local.

Rendering: shapes are polygons in a face-local frame, posed by one similarity transform (shift, scale, small
rotation) and rasterised into a *material* map at 4x the output size (`face_drawing` draws each part). A material
is one flat colour slot that belongs to one part (iris, pupil and sclera all belong to "eyes"). The colour image
is the box-filtered material colours, so edges are anti-aliased; the labels are the material map sampled at each
output pixel's centre. Smooth lighting, blush and the background gradient are applied at the output size, where
they cost little.
"""

from __future__ import annotations

import functools
import multiprocessing
from collections.abc import Mapping

import numpy as np
import torch
from PIL import Image

from localedit import viz
from localedit.face_drawing import (
    MAT,
    MATERIAL_TABLE,
    Canvas,
    Head,
    Pose,
    draw_brows,
    draw_clothes,
    draw_ears,
    draw_eyes,
    draw_hair_back,
    draw_hair_front,
    draw_mouth,
    draw_neck,
    draw_nose,
    face_outline,
)

PARTS = ("background", "skin", "hair", "eyes", "eyebrows", "nose", "mouth", "ears", "clothes")

# The random streams a face draws, one per aspect, in the order they are spawned from its seed. The parts' colours
# all come from "color"; the others draw outlines.
STREAMS = ("pose", "head", "hair", "eyes", "brows", "nose", "mouth", "color", "body")

# A fixed salt, so the face stream cannot collide with other seeded streams in the project.
SEED_BASE = 20_200_615

# Part colours for label maps in figures: one RGB per entry of PARTS.
PART_COLORS = np.array(
    [
        (30, 30, 30),
        (230, 190, 150),
        (120, 70, 30),
        (40, 140, 255),
        (250, 220, 40),
        (255, 80, 80),
        (200, 30, 160),
        (60, 200, 90),
        (150, 150, 230),
    ],
    dtype=np.uint8,
)

_MATERIAL_PART = np.array([PARTS.index(part) for _, part, _ in MATERIAL_TABLE], dtype=np.uint8)
_MATERIAL_GROUP = np.array([group for _, _, group in MATERIAL_TABLE], dtype=np.uint8)

_SKIN_TONES = np.array(
    [(255, 226, 200), (242, 198, 165), (226, 176, 134), (200, 140, 98), (165, 108, 70), (120, 78, 50), (82, 54, 38)],
    dtype=np.float32,
)
_HAIR_COLORS = np.array(
    [
        (28, 24, 22),
        (58, 40, 28),
        (98, 64, 40),
        (128, 58, 34),
        (186, 92, 44),
        (168, 138, 92),
        (222, 192, 124),
        (234, 222, 196),
        (150, 148, 146),
        (220, 220, 222),
        (60, 92, 190),
        (220, 104, 164),
        (118, 70, 168),
        (52, 140, 110),
    ],
    dtype=np.float32,
)
_HAIR_WEIGHTS = np.array([16, 16, 14, 7, 6, 8, 9, 4, 5, 3, 3, 3, 3, 3], dtype=np.float64)
_IRIS_COLORS = np.array(
    [(92, 56, 30), (48, 32, 22), (128, 98, 50), (78, 128, 70), (70, 122, 184), (118, 134, 150), (166, 110, 42)],
    dtype=np.float32,
)
_LIP_COLORS = np.array(
    [(196, 98, 106), (178, 34, 46), (226, 110, 92), (124, 40, 72), (142, 80, 70), (128, 22, 40), (214, 132, 140),
     (190, 122, 104), (150, 96, 84)],
    dtype=np.float32,
)

_HAIRSTYLES = ("short", "long", "bangs", "bald", "curly", "bun", "bob")
_HAIRSTYLE_WEIGHTS = np.array([18, 20, 14, 7, 13, 9, 19], dtype=np.float64)


def _jitter(rng: np.random.Generator, color: np.ndarray, amount: float) -> np.ndarray:
    return np.clip(color + rng.normal(0.0, amount, 3), 0, 255)


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    """One HSV colour (all in [0, 1]) as float RGB in [0, 255]."""
    k = (np.array([5.0, 3.0, 1.0]) + h * 6.0) % 6.0
    return 255.0 * (v - v * s * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0))


def _palette(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per-material colours [n_materials, 3] and the skin colour. Each part has its own draws."""
    colors = np.zeros((len(MATERIAL_TABLE), 3), dtype=np.float32)
    t = rng.uniform(0.0, len(_SKIN_TONES) - 1.0)
    i = min(int(t), len(_SKIN_TONES) - 2)
    skin = _jitter(rng, _SKIN_TONES[i] + (t - i) * (_SKIN_TONES[i + 1] - _SKIN_TONES[i]), 6.0)
    colors[MAT["skin"]] = skin
    colors[MAT["skin_shadow"]] = skin * 0.86
    colors[MAT["ear"]] = skin * 0.97
    colors[MAT["ear_inner"]] = skin * 0.78
    nose = skin * rng.uniform(0.86, 0.93) + np.array([8.0, 0.0, 0.0])
    colors[MAT["nose"]] = np.clip(nose, 0, 255)
    colors[MAT["nose_shadow"]] = nose * 0.86
    colors[MAT["nose_highlight"]] = np.clip(nose * 1.12 + 10, 0, 255)
    colors[MAT["nostril"]] = skin * 0.45

    hair = _jitter(rng, _HAIR_COLORS[rng.choice(len(_HAIR_COLORS), p=_HAIR_WEIGHTS / _HAIR_WEIGHTS.sum())], 8.0)
    colors[MAT["hair"]] = hair
    colors[MAT["hair_light"]] = np.clip(hair * 1.25 + 18, 0, 255)
    colors[MAT["hair_dark"]] = hair * 0.7

    # Brows usually follow the hair, darker, but not always: the parts must vary independently.
    if rng.random() < 0.5:
        brow = hair * rng.uniform(0.6, 0.85)
    else:
        brow = _jitter(rng, _HAIR_COLORS[rng.integers(0, 7)], 8.0) * rng.uniform(0.6, 0.9)
    colors[MAT["brow"]] = brow

    colors[MAT["sclera"]] = _jitter(rng, np.array([240.0, 236.0, 230.0]), 5.0)
    colors[MAT["iris"]] = _jitter(rng, _IRIS_COLORS[rng.integers(len(_IRIS_COLORS))], 10.0)
    colors[MAT["pupil"]] = (18, 14, 14)
    colors[MAT["lid"]] = _jitter(rng, np.array([44.0, 30.0, 26.0]), 6.0)
    colors[MAT["catchlight"]] = (255, 255, 255)

    lip = _jitter(rng, _LIP_COLORS[rng.integers(len(_LIP_COLORS))], 8.0)
    colors[MAT["lip_upper"]] = lip * 0.9
    colors[MAT["lip_lower"]] = np.clip(lip * 1.08, 0, 255)
    colors[MAT["mouth_inner"]] = (70, 22, 28)
    colors[MAT["teeth"]] = (236, 232, 220)

    cloth = _hsv(rng.random(), rng.uniform(0.15, 0.8), rng.uniform(0.2, 0.9))
    colors[MAT["cloth"]] = cloth
    detail = _hsv(rng.random(), rng.uniform(0.0, 0.6), rng.uniform(0.3, 1.0))
    colors[MAT["cloth_detail"]] = detail
    return colors, skin


@functools.lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in canvas units [0, 1], each [size, size]."""
    c = (np.arange(size, dtype=np.float32) + 0.5) / size
    return np.meshgrid(c, c, indexing="xy")


def _box_filter(materials: np.ndarray, colors: np.ndarray, ss: int) -> np.ndarray:
    """Material map [H*ss, W*ss] through colours [n, 3] (0..255), box-filtered by ss: float32 [H, W, 3]."""
    # A palette image and PIL's reduce do the lookup and the filter in C, several times faster than numpy.
    image = Image.fromarray(materials, "P")
    image.putpalette(np.round(colors).astype(np.uint8).ravel().tolist())
    return np.asarray(image.convert("RGB").reduce(ss), dtype=np.float32)


def _supersample(size: int) -> int:
    return 4 if size <= 64 else 2


def _streams(index: int) -> list[np.random.SeedSequence]:
    return np.random.SeedSequence([SEED_BASE, index]).spawn(len(STREAMS))


def render_face(index: int, size: int = 64, swap: Mapping[str, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Face number `index` as (image uint8 [size, size, 3], labels uint8 [size, size]) indexing PARTS.

    `swap` ({stream: index}) draws the named STREAMS from other faces: `swap={"nose": r}` is face `index` with
    face r's nose outline and everything else its own, the edit a perfect nose transfer would make (the nose's
    colour is a shade of the skin's).
    """
    for i in (index, *(swap or {}).values()):
        if i < 0:
            raise ValueError(f"face indices are non-negative, got {i}")
    unknown = set(swap or {}) - set(STREAMS)
    if unknown:
        raise ValueError(f"unknown streams {sorted(unknown)}; the streams are {', '.join(STREAMS)}")
    # One stream per aspect, so changing how one part is drawn leaves every other part of every face unchanged.
    streams = _streams(index)
    for name, other in (swap or {}).items():
        streams[STREAMS.index(name)] = _streams(other)[STREAMS.index(name)]
    pose_rng, head_rng, hair_rng, eye_rng, brow_rng, nose_rng, mouth_rng, color_rng, body_rng = (
        np.random.default_rng(s) for s in streams
    )

    ss = _supersample(size)
    hi = size * ss
    angle = pose_rng.uniform(-0.14, 0.14)
    scale = pose_rng.uniform(1.08, 1.24) * hi
    centre = np.array([0.5 + pose_rng.uniform(-0.04, 0.04), 0.47 + pose_rng.uniform(-0.03, 0.03)])
    c, s = np.cos(angle), np.sin(angle)
    pose = Pose(np.array([[c, -s], [s, c]]) * scale, centre * hi, scale)
    light = pose_rng.uniform(-1.0, 1.0)

    width = head_rng.uniform(0.19, 0.235)
    eye_y = head_rng.uniform(-0.025, 0.01)
    head = Head(
        width=width,
        height=width * head_rng.uniform(1.2, 1.4),
        jaw=head_rng.uniform(0.05, 0.35),
        eye_y=eye_y,
        brow_y=eye_y - head_rng.uniform(0.05, 0.07),
    )
    hairstyle = _HAIRSTYLES[hair_rng.choice(len(_HAIRSTYLES), p=_HAIRSTYLE_WEIGHTS / _HAIRSTYLE_WEIGHTS.sum())]

    canvas = Canvas(hi, pose)
    shoulder_y = draw_clothes(canvas, body_rng, head)
    draw_hair_back(canvas, hair_rng, head, hairstyle)
    draw_neck(canvas, body_rng, head, shoulder_y)
    draw_ears(canvas, head_rng, head)
    canvas.polygon(face_outline(head), "skin")
    draw_nose(canvas, nose_rng, head, light)
    draw_mouth(canvas, mouth_rng, head)
    draw_eyes(canvas, eye_rng, head)
    draw_brows(canvas, brow_rng, head)
    draw_hair_front(canvas, hair_rng, head, hairstyle)
    materials = canvas.materials()

    colors, skin = _palette(color_rng)
    colors[0] = 0  # the background is painted at the output size, as a gradient
    fg = _box_filter(materials, colors, ss)
    # Each shading group's coverage of every output pixel, filtered the same way as the colour.
    groups = np.zeros_like(colors)
    for channel, group in enumerate((0, 2, 3)):
        groups[:, channel] = 255.0 * (_MATERIAL_GROUP == group)
    coverage = _box_filter(materials, groups, ss) / 255.0
    bg_cover, cloth_cover, skin_cover = coverage[..., 0], coverage[..., 1], coverage[..., 2]

    xx, yy = _grid(size)
    # Head lighting: a sphere lit from the side, so the face darkens toward its rim and away from the light.
    dx, dy = xx - centre[0], yy - centre[1]
    lx, ly = c * dx + s * dy, -s * dx + c * dy
    scale_units = scale / hi
    rim = np.clip((lx / (head.width * scale_units)) ** 2 + (ly / (head.height * scale_units)) ** 2, 0.0, 1.3)
    head_shade = 1.05 + 0.12 * light * lx / (head.width * scale_units) - 0.16 * rim**1.5
    cloth_shade = 1.0 + 0.1 * light * dx / 0.4 - 0.25 * np.clip(yy - 0.75, 0.0, None)
    head_cover = np.clip(1.0 - bg_cover - cloth_cover, 0.0, 1.0)
    shade = (head_cover * head_shade + cloth_cover * cloth_shade) / np.maximum(head_cover + cloth_cover, 1e-6)
    image = fg * shade[..., None]

    blush_strength = color_rng.uniform(0.0, 0.25)
    cheek_x, cheek_y = head.width * 0.55, 0.07
    blush = np.zeros_like(xx)
    for side in (-1.0, 1.0):
        bx, by = lx / scale_units - side * cheek_x, ly / scale_units - cheek_y
        blush += np.exp(-(bx**2 + by**2) / (2 * 0.035**2))
    blush_delta = np.array([230.0, 90.0, 100.0], dtype=np.float32) - skin.astype(np.float32)
    image += (skin_cover * blush_strength * blush)[..., None] * blush_delta

    bg_a = _hsv(color_rng.random(), color_rng.uniform(0.08, 0.5), color_rng.uniform(0.55, 0.95))
    bg_b = np.clip(bg_a * color_rng.uniform(0.6, 1.15) + color_rng.normal(0.0, 15.0, 3), 0, 255)
    direction = color_rng.uniform(0, 2 * np.pi)
    ramp = np.clip(0.5 + (xx - 0.5) * np.cos(direction) + (yy - 0.5) * np.sin(direction), 0.0, 1.0)
    background = bg_a + ramp[..., None] * (bg_b - bg_a).astype(np.float32)
    image += bg_cover[..., None] * background

    labels = _MATERIAL_PART[materials[ss // 2 :: ss, ss // 2 :: ss]]
    return np.clip(image + 0.5, 0, 255).astype(np.uint8), labels


def _render_chunk(job: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    start, count, size = job
    faces = [render_face(start + i, size) for i in range(count)]
    return np.stack([f[0] for f in faces]), np.stack([f[1] for f in faces])


def render_arrays(
    n: int, size: int = 64, offset: int = 0, workers: int = 1, chunk: int = 500
) -> tuple[np.ndarray, np.ndarray]:
    """Faces offset..offset+n-1 as (images uint8 [N, H, W, 3], labels uint8 [N, H, W]), in index order.

    With workers > 1 the chunks are rendered in separate processes; the result is identical either way.
    """
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    labels = np.empty((n, size, size), dtype=np.uint8)
    jobs = [(offset + s, min(chunk, n - s), size) for s in range(0, n, chunk)]
    if workers <= 1:
        results = map(_render_chunk, jobs)
    else:
        # fork needs no __main__ guard in the caller's script, and the children run only numpy and PIL, so the
        # torch thread pool they inherit is never used.
        pool = multiprocessing.get_context("fork").Pool(workers)
        results = pool.imap(_render_chunk, jobs)
    try:
        for (start, count, _), (chunk_images, chunk_labels) in zip(jobs, results, strict=True):
            images[start - offset : start - offset + count] = chunk_images
            labels[start - offset : start - offset + count] = chunk_labels
    finally:
        if workers > 1:
            pool.close()
            pool.join()
    return images, labels


class FaceDataset(torch.utils.data.Dataset):
    """Faces offset..offset+n-1, rendered on access: (image float [3, H, W] in [-1, 1], labels long [H, W])."""

    def __init__(self, n: int, size: int = 64, offset: int = 0) -> None:
        self.n, self.size, self.offset = n, size, offset

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= i < self.n:
            raise IndexError(f"face {i} is outside a dataset of {self.n}")
        image, labels = render_face(self.offset + i, self.size)
        return to_tensor(image), torch.from_numpy(labels.astype(np.int64))


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 [..., H, W, 3] → float [..., 3, H, W] in [-1, 1], the generator's range."""
    return to_signed(torch.from_numpy(images).movedim(-1, -3))


def to_signed(images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels (any layout) → float in [-1, 1], the generator's range."""
    return images.float().div(127.5).sub(1.0)


def label_colors(labels: np.ndarray) -> np.ndarray:
    """Label maps [..., H, W] → RGB uint8 [..., H, W, 3] in PART_COLORS."""
    return PART_COLORS[labels]


def tile(images: np.ndarray, columns: int, factor: int = 1) -> np.ndarray:
    """Images uint8 [N, H, W, 3] → one grid image, `columns` wide, each pixel repeated `factor` times."""
    n, h, w, _ = images.shape
    rows = -(-n // columns)
    padded = np.zeros((rows * columns, h, w, 3), dtype=np.uint8)
    padded[:n] = images
    grid = padded.reshape(rows, columns, h, w, 3).transpose(0, 2, 1, 3, 4).reshape(rows * h, columns * w, 3)
    return viz.upscale(grid, factor)


def save_grid(
    path: str, labels_path: str | None = None, n: int = 64, size: int = 64, offset: int = 0, upscale: int = 4
) -> None:
    """Write faces offset..offset+n-1 as a PNG grid and, optionally, their coloured label maps as a second."""
    images, labels = render_arrays(n, size, offset)
    columns = max(1, int(np.ceil(np.sqrt(n))))
    Image.fromarray(tile(images, columns, upscale)).save(path)
    if labels_path is not None:
        Image.fromarray(tile(label_colors(labels), columns, upscale)).save(labels_path)
