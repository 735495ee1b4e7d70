"""How each part of a procedural face is drawn (`faces.render_face` composes them and colours the result).

Shapes are polygons in a face-local frame (units of the canvas width, y down), posed by one similarity transform
and rasterised into two *material* layers: a base, and details clipped to their parent material. A material is
one flat colour slot that belongs to one part (iris, pupil and sclera all belong to "eyes"); `MATERIAL_TABLE`
lists them. Every function takes the random stream of its own aspect, so drawing one part differently leaves the
others as they were.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

# (material, part, shading group). Groups: 0 background, 1 head (lit as a sphere), 2 clothes, 3 bare skin
# (the head group plus blush), so a pixel's lighting follows what covers it.
MATERIAL_TABLE = (
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
MAT = {name: i for i, (name, _, _) in enumerate(MATERIAL_TABLE)}

# Detail materials are drawn on a second layer and kept only where the base layer holds their parent, which
# clips an iris to its eye and a strand of hair to the hair without computing any polygon intersection.
_DETAIL_PARENT = np.zeros(len(MATERIAL_TABLE), dtype=np.uint8)
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
    _DETAIL_PARENT[MAT[_detail]] = MAT[_parent]
# Where the detail layer is empty (0) the comparison must fail, so its parent is a value no material has.
_DETAIL_PARENT[0] = 255


@dataclass(frozen=True)
class Pose:
    """The similarity transform from the face-local frame (units of the canvas width, y down) to pixels."""

    matrix: np.ndarray  # [2, 2], includes the scale to pixels
    offset: np.ndarray  # [2], the face centre in pixels
    scale: float  # pixels per local unit


class Canvas:
    """Two material layers (base and clipped detail) drawn through one pose."""

    def __init__(self, size: int, pose: Pose) -> None:
        self.base = Image.new("L", (size, size), 0)
        self.detail = Image.new("L", (size, size), 0)
        self._draw = (ImageDraw.Draw(self.base), ImageDraw.Draw(self.detail))
        self.pose = pose

    def _pixels(self, points: np.ndarray) -> list[float]:
        xy = points @ self.pose.matrix.T + self.pose.offset
        # Snap to 1/16 pixel so the last bits of a platform's sin/cos cannot move a polygon edge.
        return (np.round(xy * 16.0) / 16.0).ravel().tolist()

    def polygon(self, points: np.ndarray, material: str, detail: bool = False) -> None:
        self._draw[detail].polygon(self._pixels(points), fill=MAT[material])

    def line(self, points: np.ndarray, material: str, width: float, detail: bool = False) -> None:
        pixels = max(1, int(round(width * self.pose.scale)))
        self._draw[detail].line(self._pixels(points), fill=MAT[material], width=pixels, joint="curve")

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


@dataclass(frozen=True)
class Head:
    """The head's shape in the local frame, shared by the parts placed on it."""

    width: float  # face half-width
    height: float  # face half-height
    jaw: float  # how much the lower face narrows toward the chin
    eye_y: float
    brow_y: float


def draw_clothes(canvas: Canvas, rng: np.random.Generator, head: Head) -> float:
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


def draw_neck(canvas: Canvas, rng: np.random.Generator, head: Head, shoulder_y: float) -> None:
    neck = head.width * rng.uniform(0.42, 0.52)
    canvas.polygon(
        np.array([[-neck, head.height * 0.5], [neck, head.height * 0.5], [neck * 1.15, shoulder_y + 0.01],
                  [-neck * 1.15, shoulder_y + 0.01]]),
        "skin",
    )
    # The chin's shadow on the neck; the face drawn next covers all of it but the band below the chin.
    canvas.polygon(_ellipse(0.0, head.height * 0.9, neck * 1.3, head.height * 0.3), "skin_shadow", detail=True)


def face_outline(head: Head) -> np.ndarray:
    t = np.linspace(0.0, 2.0 * np.pi, 40, endpoint=False)
    lower = np.maximum(np.sin(t), 0.0)
    return np.stack([head.width * np.cos(t) * (1.0 - head.jaw * lower**2), head.height * np.sin(t)], 1)


def draw_ears(canvas: Canvas, rng: np.random.Generator, head: Head) -> None:
    rx, ry = rng.uniform(0.035, 0.05), rng.uniform(0.06, 0.08)
    y = rng.uniform(-0.01, 0.04)
    for side in (-1.0, 1.0):
        x = side * (head.width + rx * 0.15)
        canvas.polygon(_ellipse(x, y, rx, ry, angle=side * 0.15, n=16), "ear")
        canvas.polygon(_ellipse(x + side * rx * 0.2, y, rx * 0.5, ry * 0.6, n=12), "ear_inner", detail=True)


def _hair_outer(rng: np.random.Generator, head: Head, volume: float, curl: float, bottom: float) -> np.ndarray:
    """The outer edge of a hairdo, from the left at height `bottom`, over the crown, to the right."""
    t = np.linspace(np.pi * 0.95, np.pi * 2.05, 28)
    bumps = 1.0 + curl * np.sin(rng.uniform(14, 20) * t + rng.uniform(0, 6.3))
    crown = head.height * rng.uniform(1.06, 1.16)
    top = np.stack([head.width * (1.0 + volume) * bumps * np.cos(t), crown * (1.0 + volume) * bumps * np.sin(t)], 1)
    side = head.width * (1.0 + volume * 0.8)
    return np.concatenate([[[-side, bottom]], top, [[side, bottom]]])


def _hairline(rng: np.random.Generator, head: Head, style: str) -> np.ndarray:
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


def _hair_strands(canvas: Canvas, rng: np.random.Generator, head: Head, curly: bool, long_hair: bool) -> None:
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


def draw_hair_back(canvas: Canvas, rng: np.random.Generator, head: Head, style: str) -> None:
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


def draw_hair_front(canvas: Canvas, rng: np.random.Generator, head: Head, style: str) -> None:
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


def draw_eyes(canvas: Canvas, rng: np.random.Generator, head: Head) -> None:
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


def draw_brows(canvas: Canvas, rng: np.random.Generator, head: Head) -> None:
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


def draw_nose(canvas: Canvas, rng: np.random.Generator, head: Head, light: float) -> None:
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


def draw_mouth(canvas: Canvas, rng: np.random.Generator, head: Head) -> None:
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
