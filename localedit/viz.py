"""Pictures people look at: diff heatmaps with the ROI outline, edit strips, Fig. 3 grids, contact sheets.

All functions take and return uint8 numpy arrays [H, W, 3] (or PIL images for annotated sheets), so the CLI,
the app and the evaluation share one look.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

# A perceptual dark-to-bright ramp (black → purple → orange → pale yellow), sampled at 256 steps.
_RAMP = np.array([[0, 0, 4], [40, 11, 84], [101, 21, 110], [159, 42, 99], [212, 72, 66], [245, 125, 21],
                  [250, 193, 39], [252, 255, 164]], dtype=np.float32)
_LUT = np.stack([np.interp(np.linspace(0, len(_RAMP) - 1, 256), np.arange(len(_RAMP)), _RAMP[:, c])
                 for c in range(3)], axis=1).round().astype(np.uint8)

# Distinct colours for cluster maps: these first, then generated ones (see `palette`).
_BASE_PALETTE = np.array([
    [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48], [145, 30, 180],
    [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212], [0, 128, 128], [220, 190, 255],
    [170, 110, 40], [255, 250, 200], [128, 0, 0], [170, 255, 195], [128, 128, 0], [255, 215, 180],
    [0, 0, 128], [128, 128, 128]], dtype=np.uint8)


def palette(k: int) -> np.ndarray:
    """k colours [k, 3] uint8, none repeated: the base palette, then hues a golden angle apart at alternating
    brightness, so that no two clusters of a catalog share a colour."""
    extra = []
    for i in range(max(0, k - len(_BASE_PALETTE))):
        hue = (0.07 + 0.618034 * i) % 1.0
        value = (0.55, 0.95, 0.75)[i % 3]
        extra.append(colorsys.hsv_to_rgb(hue, 0.75, value))
    generated = (np.array(extra, dtype=np.float64).reshape(-1, 3) * 255).round().astype(np.uint8)
    return np.concatenate([_BASE_PALETTE, generated])[:k]


def hex_to_rgb(color: str) -> tuple[int, int, int]:
    c = color.lstrip("#")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


def upscale(image: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour upscaling: pixels stay crisp instead of blurring into a postage stamp."""
    return image.repeat(factor, axis=0).repeat(factor, axis=1)


def outline(mask: np.ndarray) -> np.ndarray:
    """The boundary pixels of a boolean mask [H, W] (inside pixels with an outside 4-neighbour)."""
    padded = np.pad(mask, 1, mode="edge")
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~interior


def heatmap(values: np.ndarray, vmax: float | None = None) -> np.ndarray:
    """[H, W] non-negative values → uint8 [H, W, 3] on the ramp; vmax defaults to the 99th percentile."""
    top = float(np.percentile(values, 99)) if vmax is None else vmax
    idx = np.clip(values / max(top, 1e-8), 0, 1) * 255
    return _LUT[idx.round().astype(np.uint8)]


def diff_image(diff: np.ndarray, regions: Sequence[tuple[np.ndarray, str]], scale: int = 1,
               vmax: float | None = None) -> np.ndarray:
    """The squared-error heatmap, upscaled, with each region's outline drawn in its colour: regions are
    (bool mask [H, W], '#rrggbb') pairs, one per edited part."""
    image = upscale(heatmap(diff, vmax), scale)
    for roi, color in regions:
        image[outline(upscale(roi, scale))] = hex_to_rgb(color)
    return image


def cluster_overlay(image: np.ndarray, clusters: np.ndarray, colours: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """Blend each pixel with its cluster's colour; clusters [H, W] at the image's resolution, colours [K, 3]."""
    return (image * (1 - alpha) + colours[clusters].astype(np.float32) * alpha).round().astype(np.uint8)


def spotlight(image: np.ndarray, mask: np.ndarray, dim: float = 0.25) -> np.ndarray:
    """The image where mask [H, W] is set; elsewhere a dim grey version of it, so the region stands out."""
    grey = image.mean(axis=2, keepdims=True) * dim + 255 * (1 - dim) * 0.15
    return np.where(mask[..., None], image, grey.round().astype(np.uint8))


def labelled_row(images: list[np.ndarray], captions: list[str], pad: int = 4) -> Image.Image:
    """Images side by side with a caption above each."""
    h = max(i.shape[0] for i in images)
    w = sum(i.shape[1] for i in images) + pad * (len(images) + 1)
    sheet = Image.new("RGB", (w, h + 18 + pad), "white")
    draw = ImageDraw.Draw(sheet)
    x = pad
    for image, caption in zip(images, captions, strict=True):
        draw.text((x, 3), caption, fill="black")
        sheet.paste(Image.fromarray(image), (x, 18))
        x += image.shape[1] + pad
    return sheet


def with_row_labels(sheet: Image.Image, labels: list[str], row_height: int, pad: int = 2,
                    width: int = 96) -> Image.Image:
    """A grid with a caption left of each row (rows of `row_height` pixels after a `pad`, as `grid` lays them)."""
    out = Image.new("RGB", (sheet.width + width, sheet.height), "white")
    out.paste(sheet, (width, 0))
    draw = ImageDraw.Draw(out)
    for r, label in enumerate(labels):
        y = pad + r * (row_height + pad) + row_height // 2 - 6 * len(label.splitlines())
        draw.multiline_text((4, y), label, fill="black", spacing=2)
    return out


def grid(cells: list[list[np.ndarray]], pad: int = 2, background: str = "white") -> Image.Image:
    """A rows × columns grid of equally sized images."""
    h, w = cells[0][0].shape[:2]
    rows, cols = len(cells), max(len(r) for r in cells)
    sheet = Image.new("RGB", (cols * (w + pad) + pad, rows * (h + pad) + pad), background)
    for r, row in enumerate(cells):
        for c, cell in enumerate(row):
            sheet.paste(Image.fromarray(cell), (pad + c * (w + pad), pad + r * (h + pad)))
    return sheet


def legend(colours: np.ndarray, names: dict[int, str] | None = None, height: int | None = None,
           swatch: int = 14) -> Image.Image:
    """A numbered colour legend, one entry per colour, with part names where clusters are labelled; in as many
    columns as it takes to stay within `height` pixels."""
    names = names or {}
    k, step = len(colours), swatch + 4
    per_column = max(1, ((height or step * k + 4) - 4) // step)
    columns = -(-k // per_column)
    sheet = Image.new("RGB", (120 * columns, step * min(k, per_column) + 4), "white")
    draw = ImageDraw.Draw(sheet)
    for i, colour in enumerate(colours):
        x, y = 4 + 120 * (i // per_column), 4 + step * (i % per_column)
        draw.rectangle([x, y, x + swatch, y + swatch], fill=tuple(int(v) for v in colour))
        draw.text((x + 4 + swatch, y + 1), f"{i}" + (f"  {names[i]}" if i in names else ""), fill="black")
    return sheet


def beside(left: Image.Image, right: Image.Image, pad: int = 6) -> Image.Image:
    sheet = Image.new("RGB", (left.width + right.width + pad, max(left.height, right.height)), "white")
    sheet.paste(left, (0, 0))
    sheet.paste(right, (left.width + pad, 0))
    return sheet


def above(top: Image.Image, bottom: Image.Image, pad: int = 6) -> Image.Image:
    sheet = Image.new("RGB", (max(top.width, bottom.width), top.height + bottom.height + pad), "white")
    sheet.paste(top, (0, 0))
    sheet.paste(bottom, (0, top.height + pad))
    return sheet


def triples_sheet(rows: list[tuple[str, list[np.ndarray]]], scale: int = 2, pad: int = 4) -> Image.Image:
    """One row per caption, its images in groups of three (target | reference | edited), a gap between groups,
    upscaled without smoothing; a header names the columns."""
    cells = [upscale(c, scale) for _, row in rows for c in row]
    if not cells:
        return Image.new("RGB", (160, 20), "white")
    h, w = cells[0].shape[:2]
    label_w, header, gap = 80, 16, 3 * pad
    groups = max(len(row) for _, row in rows) // 3
    width = label_w + groups * (3 * (w + pad) + gap)
    sheet = Image.new("RGB", (width, header + len(rows) * (h + pad) + pad), "white")
    draw = ImageDraw.Draw(sheet)
    for g in range(groups):
        for j, name in enumerate(("target", "reference", "edited")):
            draw.text((label_w + g * (3 * (w + pad) + gap) + j * (w + pad) + 2, 2), name, fill="black")
    for r, (caption, row) in enumerate(rows):
        y = header + r * (h + pad)
        draw.text((4, y + h // 2 - 6), caption, fill="black")
        for i, cell in enumerate(row):
            x = label_w + (i // 3) * (3 * (w + pad) + gap) + (i % 3) * (w + pad)
            sheet.paste(Image.fromarray(upscale(cell, scale)), (x, y))
    return sheet


def line_plot(values: Sequence[float], width: int, height: int, title: str = "") -> Image.Image:
    """A small line chart of `values` (a log scale when they span more than a factor of 10); blank when empty."""
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((4, 2), title, fill="black")
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size < 2:
        return sheet
    log = v.min() > 0 and v.max() / v.min() > 10
    y = np.log10(v) if log else v
    lo, hi = float(y.min()), float(y.max())
    span = hi - lo or 1.0
    left, top, right, bottom = 6, 16, width - 6, height - 14
    xs = left + (right - left) * np.arange(v.size) / (v.size - 1)
    ys = bottom - (bottom - top) * (y - lo) / span
    draw.rectangle((left, top, right, bottom), outline=(200, 200, 200))
    draw.line(list(zip(xs.tolist(), ys.tolist(), strict=True)), fill=(31, 119, 180), width=2)
    draw.text((left, bottom + 1), f"{v[-1]:.3g}" + (" (log scale)" if log else ""), fill="black")
    return sheet
