"""Procedural part-labelled faces: the training data for the small StyleGAN and for the judge.

Every face is drawn from a random generator seeded by its index alone, so index i is the same image on any
machine. Each part (skin, hair, eyes, eyebrows, nose, mouth, ears, clothes, background) draws its colour and
shape from its own random stream, so parts vary independently: that independence is what lets a GAN trained on
these images learn disentangled parts, and what lets the judge tell whether an edit stayed local.

Rendering: shapes are polygons in a face-local frame, posed by one similarity transform (shift, scale, small
rotation) and rasterised into a *material* map at 4x the output size. A material is one flat colour slot that
belongs to one part (iris, pupil and sclera all belong to "eyes"). The colour image is the box-filtered material
colours, so edges are anti-aliased; the labels are the material map sampled at each output pixel's centre.
Smooth lighting, blush and the background gradient are applied at the output size, where they cost little.
"""

from __future__ import annotations

import functools
import multiprocessing
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw

from localedit import viz

PARTS = ("background", "skin", "hair", "eyes", "eyebrows", "nose", "mouth", "ears", "clothes")

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

# (material, part, shading group). Groups: 0 background, 1 head (lit as a sphere), 2 clothes, 3 bare skin
# (the head group plus blush), so a pixel's lighting follows what covers it.
_MATERIAL_TABLE = (
    ("background", "background", 0),
    ("skin", "skin", 3),
    ("skin_shadow", "skin", 1),
    ("hair", "hair", 1),
    ("hair_light", "hair", 1),
    ("hair_dark", "hair", 1),
    ("sclera", "eyes", 1),
    ("iris", "eyes", 1),
    ("pupil", "eyes", 1),
    ("lid", "eyes", 1),
    ("catchlight", "eyes", 1),
    ("brow", "eyebrows", 1),
    ("nose", "nose", 1),
    ("nose_shadow", "nose", 1),
    ("nostril", "nose", 1),
    ("nose_highlight", "nose", 1),
    ("lip_upper", "mouth", 1),
    ("lip_lower", "mouth", 1),
    ("mouth_inner", "mouth", 1),
    ("teeth", "mouth", 1),
    ("ear", "ears", 1),
    ("ear_inner", "ears", 1),
    ("cloth", "clothes", 2),
    ("cloth_detail", "clothes", 2),
)
_MAT = {name: i for i, (name, _, _) in enumerate(_MATERIAL_TABLE)}
_MATERIAL_PART = np.array([PARTS.index(part) for _, part, _ in _MATERIAL_TABLE], dtype=np.uint8)
_MATERIAL_GROUP = np.array([group for _, _, group in _MATERIAL_TABLE], dtype=np.uint8)

# Detail materials are drawn on a second layer and kept only where the base layer holds their parent, which
# clips an iris to its eye and a strand of hair to the hair without computing any polygon intersection.
_DETAIL_PARENT = np.zeros(len(_MATERIAL_TABLE), dtype=np.uint8)
for _detail, _parent in (
    ("iris", "sclera"),
    ("pupil", "sclera"),
    ("catchlight", "sclera"),
    ("hair_light", "hair"),
    ("hair_dark", "hair"),
    ("nose_shadow", "nose"),
    ("nose_highlight", "nose"),
    ("teeth", "mouth_inner"),
    ("ear_inner", "ear"),
    ("cloth_detail", "cloth"),
    ("skin_shadow", "skin"),
):
    _DETAIL_PARENT[_MAT[_detail]] = _MAT[_parent]
# Where the detail layer is empty (0) the comparison must fail, so its parent is a value no material has.
_DETAIL_PARENT[0] = 255

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


@dataclass(frozen=True)
class _Pose:
    """The similarity transform from the face-local frame (units of the canvas width, y down) to pixels."""

    matrix: np.ndarray  # [2, 2], includes the scale to pixels
    offset: np.ndarray  # [2], the face centre in pixels
    scale: float  # pixels per local unit


class _Canvas:
    """Two material layers (base and clipped detail) drawn through one pose."""

    def __init__(self, size: int, pose: _Pose) -> None:
        self.base = Image.new("L", (size, size), 0)
        self.detail = Image.new("L", (size, size), 0)
        self._draw = (ImageDraw.Draw(self.base), ImageDraw.Draw(self.detail))
        self.pose = pose

    def _pixels(self, points: np.ndarray) -> list[float]:
        xy = points @ self.pose.matrix.T + self.pose.offset
        # Snap to 1/16 pixel so the last bits of a platform's sin/cos cannot move a polygon edge.
        return (np.round(xy * 16.0) / 16.0).ravel().tolist()

    def polygon(self, points: np.ndarray, material: str, detail: bool = False) -> None:
        self._draw[detail].polygon(self._pixels(points), fill=_MAT[material])

    def line(self, points: np.ndarray, material: str, width: float, detail: bool = False) -> None:
        pixels = max(1, int(round(width * self.pose.scale)))
        self._draw[detail].line(self._pixels(points), fill=_MAT[material], width=pixels, joint="curve")

    def materials(self) -> np.ndarray:
        base = np.asarray(self.base)
        detail = np.asarray(self.detail)
        return np.where(_DETAIL_PARENT[detail] == base, detail, base)


@functools.lru_cache(maxsize=16)
def _unit_circle(n: int) -> tuple[np.ndarray, np.ndarray]:
    t = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    return np.cos(t), np.sin(t)


def _ellipse(cx: float, cy: float, rx: float, ry: float, angle: float = 0.0, n: int = 24) -> np.ndarray:
    """Polygon [n, 2] of an ellipse rotated by `angle` radians."""
    cos_t, sin_t = _unit_circle(n)
    x, y = rx * cos_t, ry * sin_t
    c, s = np.cos(angle), np.sin(angle)
    return np.stack([cx + c * x - s * y, cy + s * x + c * y], axis=1)


def _band(x: np.ndarray, top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    """Polygon between two curves sampled at the same x, the top left-to-right and the bottom back."""
    return np.concatenate([np.stack([x, top], 1), np.stack([x[::-1], bottom[::-1]], 1)])


def _jitter(rng: np.random.Generator, color: np.ndarray, amount: float) -> np.ndarray:
    return np.clip(color + rng.normal(0.0, amount, 3), 0, 255)


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    """One HSV colour (all in [0, 1]) as float RGB in [0, 255]."""
    k = (np.array([5.0, 3.0, 1.0]) + h * 6.0) % 6.0
    return 255.0 * (v - v * s * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0))


@dataclass(frozen=True)
class _Head:
    """The head's shape in the local frame, shared by the parts placed on it."""

    width: float  # face half-width
    height: float  # face half-height
    jaw: float  # how much the lower face narrows toward the chin
    eye_y: float
    brow_y: float


def _draw_clothes(canvas: _Canvas, rng: np.random.Generator, head: _Head) -> float:
    """Shoulders and neckline; returns the shoulder height. Drawn first, so hair and neck lie over them."""
    shoulder_y = head.height + rng.uniform(0.07, 0.12)
    half = rng.uniform(0.36, 0.46)
    t = np.linspace(0.0, 1.0, 12)
    # A rounded shoulder line: flat across the chest, falling off at the arms.
    x = np.linspace(-half, half, 12)
    y = shoulder_y + 0.10 * (2.0 * t - 1.0) ** 4
    outline = np.concatenate([np.stack([x, y], 1), [[half + 0.08, 0.9], [-half - 0.08, 0.9]]])
    canvas.polygon(outline, "cloth")
    style = rng.integers(4)
    if style == 1:  # stripes, clipped to the cloth
        gap = rng.uniform(0.04, 0.07)
        for k in range(12):
            yy = shoulder_y + 0.03 + gap * k
            canvas.line(np.array([[-0.6, yy], [0.6, yy]]), "cloth_detail", gap * 0.4, detail=True)
    elif style == 2:  # a collar
        for side in (-1.0, 1.0):
            canvas.polygon(
                np.array([[0.0, shoulder_y + 0.1], [side * 0.13, shoulder_y - 0.02], [side * 0.17, shoulder_y + 0.05]]),
                "cloth_detail",
                detail=True,
            )
    neckline = rng.integers(3)
    if neckline == 0:  # a V
        depth = rng.uniform(0.06, 0.14)
        canvas.polygon(np.array([[-0.12, shoulder_y - 0.01], [0.12, shoulder_y - 0.01], [0.0, shoulder_y + depth]]),
                       "skin")
    elif neckline == 1:  # a scoop
        canvas.polygon(_ellipse(0.0, shoulder_y, 0.15, rng.uniform(0.03, 0.08)), "skin")
    return shoulder_y


def _draw_neck(canvas: _Canvas, rng: np.random.Generator, head: _Head, shoulder_y: float) -> None:
    neck = head.width * rng.uniform(0.42, 0.52)
    canvas.polygon(
        np.array([[-neck, head.height * 0.5], [neck, head.height * 0.5], [neck * 1.15, shoulder_y + 0.01],
                  [-neck * 1.15, shoulder_y + 0.01]]),
        "skin",
    )
    # The chin's shadow on the neck; the face drawn next covers all of it but the band below the chin.
    canvas.polygon(_ellipse(0.0, head.height * 0.9, neck * 1.3, head.height * 0.3), "skin_shadow", detail=True)


def _face_outline(head: _Head) -> np.ndarray:
    t = np.linspace(0.0, 2.0 * np.pi, 40, endpoint=False)
    lower = np.maximum(np.sin(t), 0.0)
    return np.stack([head.width * np.cos(t) * (1.0 - head.jaw * lower**2), head.height * np.sin(t)], 1)


def _draw_ears(canvas: _Canvas, rng: np.random.Generator, head: _Head) -> None:
    rx, ry = rng.uniform(0.035, 0.05), rng.uniform(0.06, 0.08)
    y = rng.uniform(-0.01, 0.04)
    for side in (-1.0, 1.0):
        x = side * (head.width + rx * 0.15)
        canvas.polygon(_ellipse(x, y, rx, ry, angle=side * 0.15, n=16), "ear")
        canvas.polygon(_ellipse(x + side * rx * 0.2, y, rx * 0.5, ry * 0.6, n=12), "ear_inner", detail=True)


def _hair_outer(rng: np.random.Generator, head: _Head, volume: float, curl: float, bottom: float) -> np.ndarray:
    """The outer edge of a hairdo, from the left at height `bottom`, over the crown, to the right."""
    t = np.linspace(np.pi * 0.95, np.pi * 2.05, 28)
    bumps = 1.0 + curl * np.sin(rng.uniform(14, 20) * t + rng.uniform(0, 6.3))
    crown = head.height * rng.uniform(1.06, 1.16)
    top = np.stack([head.width * (1.0 + volume) * bumps * np.cos(t), crown * (1.0 + volume) * bumps * np.sin(t)], 1)
    side = head.width * (1.0 + volume * 0.8)
    return np.concatenate([[[-side, bottom]], top, [[side, bottom]]])


def _hairline(rng: np.random.Generator, head: _Head, style: str) -> np.ndarray:
    """The inner edge of the hair across the forehead, right to left."""
    x = np.linspace(head.width * 0.98, -head.width * 0.98, 15)
    u = x / head.width
    if style == "bangs":
        low = head.brow_y - rng.uniform(0.01, 0.035)
        slant = rng.uniform(-0.05, 0.05)
        y = low + slant * u - 0.06 * u**4
        if rng.random() < 0.5:  # a choppy fringe
            y = y + 0.012 * (np.arange(15) % 2)
        return np.stack([x, y], 1)
    height = head.height * rng.uniform(0.45, 0.7)
    y = -height * (1.0 - 0.35 * u**2)
    if rng.random() < 0.4:  # a side part pushes the hair down on one side
        y = y + rng.uniform(0.02, 0.06) * np.clip(rng.choice([-1.0, 1.0]) * u, 0.0, None)
    if rng.random() < 0.2:  # a widow's peak
        y = y + 0.03 * np.exp(-((u / 0.15) ** 2))
    return np.stack([x, y], 1)


def _hair_strands(canvas: _Canvas, rng: np.random.Generator, head: _Head, curly: bool, long_hair: bool) -> None:
    """Lighter and darker strands, clipped to the hair, so hair reads as hair rather than a flat cap."""
    for _ in range(rng.integers(8, 14)):
        material = "hair_light" if rng.random() < 0.5 else "hair_dark"
        if curly:
            c = rng.uniform([-head.width * 1.3, -head.height * 1.4], [head.width * 1.3, head.height * 0.2])
            canvas.line(_ellipse(c[0], c[1], 0.025, 0.02, n=8)[:6], material, 0.009, detail=True)
            continue
        x0 = rng.uniform(-0.08, 0.08)
        end_x = rng.uniform(-head.width * 1.3, head.width * 1.3)
        end_y = rng.uniform(0.1, 0.5) if long_hair and abs(end_x) > head.width * 0.8 else -head.height * 0.3
        t = np.linspace(0.0, 1.0, 6)[:, None]
        start = np.array([x0, -head.height * 1.15])
        bend = np.array([end_x * 1.1, -head.height * 0.9])
        end = np.array([end_x, end_y])
        curve = (1 - t) ** 2 * start + 2 * t * (1 - t) * bend + t**2 * end
        canvas.line(curve, material, 0.008, detail=True)


def _draw_hair_back(canvas: _Canvas, rng: np.random.Generator, head: _Head, style: str) -> None:
    """Hair that falls behind the neck: long hair and bobs."""
    if style == "long":
        length = rng.uniform(0.35, 0.65)
    elif style == "bob":
        length = rng.uniform(0.12, 0.22)
    elif style == "curly" and rng.random() < 0.5:
        length = rng.uniform(0.15, 0.4)
    else:
        return
    width = head.width * rng.uniform(1.15, 1.4)
    top = _hair_outer(rng, head, 0.12, 0.03 if style == "curly" else 0.0, 0.0)
    tips = np.array([[width, length], [width * 0.4, length + 0.03], [-width * 0.4, length + 0.03], [-width, length]])
    canvas.polygon(np.concatenate([top, tips]), "hair")


def _draw_hair_front(canvas: _Canvas, rng: np.random.Generator, head: _Head, style: str) -> None:
    if style == "bald":
        # A band of hair around the back of the head above the ears, so the part is rarely empty.
        for side in (-1.0, 1.0):
            t = np.linspace(-0.55, 0.05, 8)
            x, y = side * head.width * np.cos(t), head.height * np.sin(t)
            canvas.polygon(np.concatenate([np.stack([x * 1.05, y * 1.03], 1), np.stack([x * 0.96, y], 1)[::-1]]),
                           "hair")
        return
    curly = style == "curly"
    volume = {"curly": rng.uniform(0.2, 0.4), "bun": 0.04, "short": rng.uniform(0.02, 0.08)}.get(
        style, rng.uniform(0.05, 0.14)
    )
    sideburn = rng.uniform(-0.02, 0.05)
    if style in ("long", "bob"):
        sideburn = rng.uniform(0.12, 0.3)
    outer = _hair_outer(rng, head, volume, 0.05 if curly else 0.0, sideburn)
    inner = _hairline(rng, head, "bangs" if style == "bangs" else style)
    temple = 0.85 if style in ("long", "bob") else 0.97
    sides = np.array([[head.width * temple, sideburn], [-head.width * temple, sideburn]])
    canvas.polygon(np.concatenate([outer, sides[:1], inner, sides[1:]]), "hair")
    if style == "bun":
        r = rng.uniform(0.07, 0.1)
        canvas.polygon(_ellipse(rng.uniform(-0.03, 0.03), -head.height * 1.12 - r * 0.7, r, r * 0.9), "hair")
    _hair_strands(canvas, rng, head, curly, style in ("long", "bob"))


def _draw_eyes(canvas: _Canvas, rng: np.random.Generator, head: _Head) -> None:
    spacing = rng.uniform(0.085, 0.11)
    half_w = rng.uniform(0.04, 0.054)
    half_h = rng.uniform(0.018, 0.03)
    tilt = rng.uniform(-0.15, 0.15)
    iris_r = half_h * rng.uniform(1.0, 1.3)
    look = rng.uniform(-0.3, 0.3) * half_w
    x = np.linspace(-1.0, 1.0, 11)
    for side in (-1.0, 1.0):
        cx = side * spacing
        lift = side * tilt * half_w * x
        top = head.eye_y - half_h * (1.0 - x**2) ** 0.7 - lift
        bottom = head.eye_y + half_h * 0.8 * (1.0 - x**2) ** 0.9 - lift
        canvas.polygon(_band(cx + half_w * x, top, bottom), "sclera")
        ix = cx + look
        canvas.polygon(_ellipse(ix, head.eye_y, iris_r, iris_r, n=14), "iris", detail=True)
        canvas.polygon(_ellipse(ix, head.eye_y, iris_r * 0.45, iris_r * 0.45, n=10), "pupil", detail=True)
        canvas.polygon(
            _ellipse(ix + iris_r * 0.35, head.eye_y - iris_r * 0.4, iris_r * 0.2, iris_r * 0.2, n=6),
            "catchlight",
            detail=True,
        )
        canvas.line(np.stack([cx + half_w * x * 1.05, top], 1), "lid", rng.uniform(0.007, 0.012))


def _draw_brows(canvas: _Canvas, rng: np.random.Generator, head: _Head) -> None:
    spacing = rng.uniform(0.09, 0.115)
    half_w = rng.uniform(0.045, 0.062)
    thick = rng.uniform(0.016, 0.026)
    arch = rng.uniform(0.0, 0.025)
    tilt = rng.uniform(-0.02, 0.02)
    x = np.linspace(-1.0, 1.0, 9)
    for side in (-1.0, 1.0):
        # Thicker toward the nose, tapering outward.
        taper = thick * (1.0 - 0.5 * (side * x + 1.0) / 2.0)
        centre = head.brow_y - arch * (1.0 - x**2) + side * tilt * x
        canvas.polygon(_band(side * spacing + half_w * x, centre - taper / 2, centre + taper / 2), "brow")


def _draw_nose(canvas: _Canvas, rng: np.random.Generator, head: _Head, light: float) -> None:
    top = head.eye_y + rng.uniform(0.01, 0.03)
    tip = rng.uniform(0.075, 0.115)
    half_w = rng.uniform(0.028, 0.048)
    bridge = half_w * rng.uniform(0.25, 0.55)
    shape = np.array(
        [[-bridge, top], [bridge, top], [half_w * 0.8, tip - 0.02], [half_w, tip], [half_w * 0.6, tip + 0.018],
         [0.0, tip + 0.022], [-half_w * 0.6, tip + 0.018], [-half_w, tip], [-half_w * 0.8, tip - 0.02]]
    )
    canvas.polygon(shape, "nose")
    # The side away from the light is in shadow, which is what makes a nose read as a ridge.
    shadow_side = -1.0 if light > 0 else 1.0
    canvas.polygon(
        np.array([[0.0, top], [shadow_side * half_w * 1.2, top], [shadow_side * half_w * 1.2, tip + 0.03], [0.0, tip]]),
        "nose_shadow",
        detail=True,
    )
    canvas.polygon(_ellipse(-shadow_side * half_w * 0.2, tip - 0.004, half_w * 0.3, 0.008, n=8), "nose_highlight",
                   detail=True)
    for side in (-1.0, 1.0):
        canvas.polygon(_ellipse(side * half_w * 0.45, tip + 0.008, half_w * 0.22, 0.007, n=8), "nostril")


def _draw_mouth(canvas: _Canvas, rng: np.random.Generator, head: _Head) -> None:
    y = rng.uniform(0.15, 0.185)
    half_w = rng.uniform(0.055, 0.095)
    smile = rng.uniform(-0.008, 0.03)
    upper = rng.uniform(0.01, 0.02)
    lower = rng.uniform(0.014, 0.026)
    gap = 0.0 if rng.random() < 0.55 else rng.uniform(0.01, 0.035)
    x = np.linspace(-1.0, 1.0, 15)
    middle = y - smile * x**2
    round_ = np.sqrt(1.0 - x**2)
    # Cupid's bow: the upper lip dips at the centre.
    bow = upper * round_ * (1.0 - 0.35 * np.exp(-((x / 0.18) ** 2)))
    px = half_w * x
    top_inner = middle - gap / 2 * round_
    bottom_inner = middle + gap / 2 * round_
    canvas.polygon(_band(px, top_inner - bow, top_inner), "lip_upper")
    canvas.polygon(_band(px, bottom_inner, bottom_inner + lower * round_), "lip_lower")
    if gap > 0:
        canvas.polygon(_band(px, top_inner, bottom_inner), "mouth_inner")
        canvas.polygon(_band(px * 0.8, top_inner - 0.01, top_inner + gap * 0.35 * round_), "teeth", detail=True)
    else:
        canvas.line(np.stack([px, middle], 1), "mouth_inner", 0.006)


def _palette(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per-material colours [n_materials, 3] and the skin colour. Each part has its own draws."""
    colors = np.zeros((len(_MATERIAL_TABLE), 3), dtype=np.float32)
    t = rng.uniform(0.0, len(_SKIN_TONES) - 1.0)
    i = min(int(t), len(_SKIN_TONES) - 2)
    skin = _jitter(rng, _SKIN_TONES[i] + (t - i) * (_SKIN_TONES[i + 1] - _SKIN_TONES[i]), 6.0)
    colors[_MAT["skin"]] = skin
    colors[_MAT["skin_shadow"]] = skin * 0.86
    colors[_MAT["ear"]] = skin * 0.97
    colors[_MAT["ear_inner"]] = skin * 0.78
    nose = skin * rng.uniform(0.86, 0.93) + np.array([8.0, 0.0, 0.0])
    colors[_MAT["nose"]] = np.clip(nose, 0, 255)
    colors[_MAT["nose_shadow"]] = nose * 0.86
    colors[_MAT["nose_highlight"]] = np.clip(nose * 1.12 + 10, 0, 255)
    colors[_MAT["nostril"]] = skin * 0.45

    hair = _jitter(rng, _HAIR_COLORS[rng.choice(len(_HAIR_COLORS), p=_HAIR_WEIGHTS / _HAIR_WEIGHTS.sum())], 8.0)
    colors[_MAT["hair"]] = hair
    colors[_MAT["hair_light"]] = np.clip(hair * 1.25 + 18, 0, 255)
    colors[_MAT["hair_dark"]] = hair * 0.7

    # Brows usually follow the hair, darker, but not always: the parts must vary independently.
    if rng.random() < 0.5:
        brow = hair * rng.uniform(0.6, 0.85)
    else:
        brow = _jitter(rng, _HAIR_COLORS[rng.integers(0, 7)], 8.0) * rng.uniform(0.6, 0.9)
    colors[_MAT["brow"]] = brow

    colors[_MAT["sclera"]] = _jitter(rng, np.array([240.0, 236.0, 230.0]), 5.0)
    colors[_MAT["iris"]] = _jitter(rng, _IRIS_COLORS[rng.integers(len(_IRIS_COLORS))], 10.0)
    colors[_MAT["pupil"]] = (18, 14, 14)
    colors[_MAT["lid"]] = _jitter(rng, np.array([44.0, 30.0, 26.0]), 6.0)
    colors[_MAT["catchlight"]] = (255, 255, 255)

    lip = _jitter(rng, _LIP_COLORS[rng.integers(len(_LIP_COLORS))], 8.0)
    colors[_MAT["lip_upper"]] = lip * 0.9
    colors[_MAT["lip_lower"]] = np.clip(lip * 1.08, 0, 255)
    colors[_MAT["mouth_inner"]] = (70, 22, 28)
    colors[_MAT["teeth"]] = (236, 232, 220)

    cloth = _hsv(rng.random(), rng.uniform(0.15, 0.8), rng.uniform(0.2, 0.9))
    colors[_MAT["cloth"]] = cloth
    detail = _hsv(rng.random(), rng.uniform(0.0, 0.6), rng.uniform(0.3, 1.0))
    colors[_MAT["cloth_detail"]] = detail
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


def render_face(index: int, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Face number `index` as (image uint8 [size, size, 3], labels uint8 [size, size]) indexing PARTS."""
    if index < 0:
        raise ValueError(f"face indices are non-negative, got {index}")
    # One stream per aspect, so changing how one part is drawn leaves every other part of every face unchanged.
    streams = np.random.SeedSequence([SEED_BASE, index]).spawn(9)
    pose_rng, head_rng, hair_rng, eye_rng, brow_rng, nose_rng, mouth_rng, color_rng, body_rng = (
        np.random.default_rng(s) for s in streams
    )

    ss = _supersample(size)
    hi = size * ss
    angle = pose_rng.uniform(-0.14, 0.14)
    scale = pose_rng.uniform(1.08, 1.24) * hi
    centre = np.array([0.5 + pose_rng.uniform(-0.04, 0.04), 0.47 + pose_rng.uniform(-0.03, 0.03)])
    c, s = np.cos(angle), np.sin(angle)
    pose = _Pose(np.array([[c, -s], [s, c]]) * scale, centre * hi, scale)
    light = pose_rng.uniform(-1.0, 1.0)

    width = head_rng.uniform(0.19, 0.235)
    eye_y = head_rng.uniform(-0.025, 0.01)
    head = _Head(
        width=width,
        height=width * head_rng.uniform(1.2, 1.4),
        jaw=head_rng.uniform(0.05, 0.35),
        eye_y=eye_y,
        brow_y=eye_y - head_rng.uniform(0.05, 0.07),
    )
    hairstyle = _HAIRSTYLES[hair_rng.choice(len(_HAIRSTYLES), p=_HAIRSTYLE_WEIGHTS / _HAIRSTYLE_WEIGHTS.sum())]

    canvas = _Canvas(hi, pose)
    shoulder_y = _draw_clothes(canvas, body_rng, head)
    _draw_hair_back(canvas, hair_rng, head, hairstyle)
    _draw_neck(canvas, body_rng, head, shoulder_y)
    _draw_ears(canvas, head_rng, head)
    canvas.polygon(_face_outline(head), "skin")
    _draw_nose(canvas, nose_rng, head, light)
    _draw_mouth(canvas, mouth_rng, head)
    _draw_eyes(canvas, eye_rng, head)
    _draw_brows(canvas, brow_rng, head)
    _draw_hair_front(canvas, hair_rng, head, hairstyle)
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
