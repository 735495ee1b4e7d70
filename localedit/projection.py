"""Projection: a picture → a W+ latent of the generator, so that an upload can be edited like a seed.

The paper names real images as its extension (§1, §5), embedded by Image2StyleGAN (its ref. [1]): Adam on a W+
latent (one w per style input, [n_latent, style_dim]), started from `latent_avg`, on a pixel loss plus a
perceptual loss. Here the start is the model's encoder when it has one (encoder.py, one or two passes), and a
refinement follows, by L-BFGS rather than Adam unless asked (`refine`); noise stays const, as in every edit, so
a projection is a point of the same space the seeds live in.

- `read_image` turns a file's bytes into RGB pixels, refusing what cannot be one (not an image, truncated, huge,
  no colour channels, an alpha channel) with an error that says so;
- `fit_image` centre-crops to a square and resizes to the model's resolution, and reports the crop;
- `project` returns the latent, its styles, the reconstruction and its PSNR, and the loss at each of the
  refinement's gradient evaluations.

The perceptual loss compares the judge's encoder features (judge.py), which exist offline for the embedded
genre; without a judge the loss is the pixel loss alone. Everything is deterministic for the same pixels and
settings on the same machine.

Procedural faces for measuring projections come from `EVAL_FACES`, and settings are chosen on `TUNING_FACES`;
the encoder trains on faces below both.
"""

from __future__ import annotations

import io
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from localedit.edit import Latent, to_uint8
from localedit.encoder import PROJECTION_EVAL_OFFSET, Encoder, encode
from localedit.faces import to_tensor
from localedit.hub import write_atomic
from localedit.judge import Judge
from localedit.stylegan2 import Generator

EVAL_FACES = range(PROJECTION_EVAL_OFFSET, PROJECTION_EVAL_OFFSET + 100_000)
TUNING_FACES = range(EVAL_FACES.stop, EVAL_FACES.stop + 100_000)
MAX_PIXELS = 40_000_000  # a 40-megapixel photo is the largest picture read
MAX_BYTES = 50 * 2**20


@dataclass(frozen=True)
class Crop:
    """The square taken from the input, in its pixels: left, top and side; and the input's width and height."""

    left: int
    top: int
    side: int
    width: int
    height: int


DEFAULT_RATES = {"lbfgs": 1.0, "adam": 0.06}  # L-BFGS: the first trial step of its line search; Adam: its rate
OPTIMIZERS = tuple(DEFAULT_RATES)


@dataclass(frozen=True)
class ProjectSettings:
    """How a picture is projected. The defaults are the app's, chosen on TUNING_FACES."""

    steps: int = 100  # gradient evaluations after the start (0: the encoder's answer, or the average face)
    lr: float | None = None  # None: the optimizer's own (DEFAULT_RATES)
    perceptual: float = 0.1  # weight of the judge-feature loss against the pixel loss (0: pixels only)
    use_encoder: bool = True
    perceptual_every: int = 1  # Adam only: the judge's loss on every k-th step (the others are cheaper pixel steps)
    optimizer: str = "lbfgs"  # L-BFGS (strong-Wolfe line search) or Adam (cosine-decayed rate), see `refine`
    history: int = 50  # L-BFGS: the curvature pairs it keeps

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        for name, low in (("steps", 0), ("perceptual_every", 1), ("history", 1)):
            value = getattr(self, name)
            if not (isinstance(value, int) and low <= value <= 5000):
                raise ValueError(f"{name} must be a whole number from {low} to 5000, got {value!r}")
        if self.optimizer == "lbfgs" and self.perceptual_every != 1:
            raise ValueError("perceptual_every is Adam's: L-BFGS's line search needs the same loss at every "
                             "evaluation")
        for name in ("lr", "perceptual"):
            value = getattr(self, name)
            if name == "lr" and value is None:
                continue
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number ≥ 0, got {value!r}")

    @property
    def rate(self) -> float:
        """`lr`, or the optimizer's own when it is None."""
        return DEFAULT_RATES[self.optimizer] if self.lr is None else float(self.lr)


DEFAULT = ProjectSettings()


@dataclass(frozen=True)
class Projection:
    latent: Tensor  # W+ [n_latent, style_dim]
    image: np.ndarray  # uint8 [size, size, 3], the generator's rendering of the latent
    target: np.ndarray  # uint8 [size, size, 3], the input as fitted to the model
    crop: Crop
    losses: tuple[float, ...]  # the loss at each gradient evaluation of the refinement
    psnr: float  # of `image` against `target`, dB


def read_picture_file(path: str | Path) -> bytes:
    """A picture file's bytes, refused (ValueError) when it is missing or too large to read, before reading it."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no such picture file: {path.name}")
    _check_size(path.stat().st_size)
    return path.read_bytes()


def _check_size(n_bytes: int) -> None:
    if n_bytes > MAX_BYTES:
        raise ValueError(f"the picture is {n_bytes / 2**20:.0f} MB; pictures up to {MAX_BYTES // 2**20} MB are read")


def read_image(data: bytes | str | Path) -> np.ndarray:
    """A picture file (its bytes or its path) → uint8 [H, W, 3] RGB. Raises ValueError saying what is wrong."""
    if isinstance(data, (str, Path)):
        data = read_picture_file(data)
    if not isinstance(data, (bytes, bytearray)):
        raise ValueError(f"a picture is a file's bytes or its path, got {type(data).__name__}")
    _check_size(len(data))
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.width * im.height > MAX_PIXELS:
                raise ValueError(f"the picture is {im.width}×{im.height}, over {MAX_PIXELS // 10**6} megapixels; "
                                 "scale it down first")
            if im.mode in ("1", "L", "I", "I;16", "F"):
                raise ValueError(f"the picture has no colour channels (mode {im.mode}); the model needs an RGB "
                                 "picture")
            im.load()
            if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
                # An alpha channel that is opaque everywhere (a browser's webcam capture, say) hides nothing.
                rgba = im.convert("RGBA")
                if rgba.getextrema()[3][0] < 255:
                    raise ValueError("the picture has transparent pixels (an alpha channel); save it without "
                                     "transparency, e.g. as a JPEG or an RGB PNG")
                rgb = rgba.convert("RGB")
            else:
                rgb = im.convert("RGB")
    except ValueError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError):
        raise ValueError("not a picture this app can read: use a PNG, JPEG or WebP file") from None
    except (OSError, SyntaxError) as e:  # a truncated or damaged file fails while decoding
        raise ValueError(f"the picture file is damaged or truncated ({_plain(e)})") from None
    return np.asarray(rgb, dtype=np.uint8).copy()


def _plain(error: Exception) -> str:
    """PIL's message without the object reprs some of them carry ("<_io.BytesIO object at 0x…>")."""
    return re.sub(r" ?<[^<>]* object at 0x[0-9a-f]+>", "", str(error)).strip() or type(error).__name__


def fit_image(image: np.ndarray, size: int) -> tuple[np.ndarray, Crop]:
    """uint8 [H, W, 3] → the centred square, resized to size × size (Lanczos), and the crop it took."""
    if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3):
        raise ValueError(f"an image is uint8 [H, W, 3], got {getattr(image, 'dtype', type(image).__name__)} "
                         f"{list(getattr(image, 'shape', []))}")
    height, width = image.shape[:2]
    side = min(height, width)
    if side < 8:
        raise ValueError(f"the picture is {width}×{height}; it needs at least 8 pixels on each side")
    left, top = (width - side) // 2, (height - side) // 2
    square = Image.fromarray(image[top:top + side, left:left + side])
    if side != size:
        square = square.resize((size, size), Image.Resampling.LANCZOS)
    return np.asarray(square, dtype=np.uint8).copy(), Crop(left, top, side, width, height)


def psnr(a: Tensor, b: Tensor) -> Tensor:
    """PSNR in dB of images [B, 3, H, W] in [-1, 1] (a peak-to-peak range of 2) → [B]."""
    mse = (a.clamp(-1, 1) - b.clamp(-1, 1)).square().mean(dim=(1, 2, 3))
    return 10 * torch.log10(4 / mse.clamp_min(1e-12))


def _features(judge: Judge, images: Tensor) -> list[Tensor]:
    return judge._encode(judge.resized(images))


def start_latents(generator: Generator, images: Tensor, encoder: Encoder | None) -> Tensor:
    """The refinement's start for images [B, 3, H, W]: the encoder's W+, or `latent_avg` in every slot."""
    if encoder is not None:
        with torch.no_grad():
            return encode(encoder, generator, images)
    return generator.latent_avg.detach()[None, None].expand(len(images), generator.n_latent, -1).clone()


def refine(generator: Generator, targets: Tensor, start: Tensor, settings: ProjectSettings,
           judge: Judge | None = None, progress: Callable[[int, int], None] | None = None
           ) -> tuple[Tensor, list[float]]:
    """W+ latents [B, n_latent, style_dim] from `start` towards targets [B, 3, H, W]. The loss is the mean squared
    pixel error plus `settings.perceptual` × the judge-feature error; each image is its own problem, and
    settings.steps bounds its gradient evaluations (each a synthesis forward and backward pass). Returns the latents
    and the loss at each evaluation (the batch's mean).

    - "lbfgs": L-BFGS with a strong-Wolfe line search, one image at a time; the answer is the lowest-loss point
      it evaluated. W+ of one image is a few thousand numbers and the loss is smooth, so a curvature model
      should need fewer evaluations than Adam (the model card compares them).
    - "adam": Image2StyleGAN's optimizer, the whole batch at once (its per-coordinate steps keep the images
      apart), at a cosine-decayed rate; the judge's loss may run on every `perceptual_every`-th step only.

    progress(done, total) is called after each evaluation: for L-BFGS counted over the batch's images one after
    another (total = B × steps), for Adam in steps of the whole batch (total = steps)."""
    if settings.steps == 0:
        return start.detach().clone(), []
    use_judge = judge is not None and settings.perceptual > 0
    with torch.no_grad():
        goal = [f.detach() for f in _features(judge, targets)] if use_judge else []

    def loss_of(latent: Tensor, targets: Tensor, goal: list[Tensor], perceptual: bool = True) -> Tensor:
        """The loss of each image, summed over the batch."""
        image = generator.synthesize(generator.styles(latent))
        loss = (image - targets).square().mean(dim=(1, 2, 3)).sum()
        if use_judge and perceptual:
            loss = loss + settings.perceptual * sum((f - g).square().mean(dim=(1, 2, 3)) for f, g in
                                                    zip(_features(judge, image), goal, strict=True)).sum()
        return loss

    if settings.optimizer == "adam":
        return _adam(loss_of, targets, start, goal, settings, progress)
    latents, losses = [], []
    for i in range(len(targets)):
        def report(step: int, i: int = i) -> None:
            if progress is not None:
                progress(i * settings.steps + step, len(targets) * settings.steps)

        target, goal_i = targets[i:i + 1], [g[i:i + 1] for g in goal]  # sliced once, not at every evaluation
        latent, trace = _lbfgs(lambda w, t=target, q=goal_i: loss_of(w, t, q), start[i:i + 1], settings, report)
        latents.append(latent)
        losses.append(trace)  # always settings.steps long
    return torch.cat(latents), [float(v) for v in np.mean(losses, axis=0)]


def _adam(loss_of: Callable, targets: Tensor, start: Tensor, goal: list[Tensor], settings: ProjectSettings,
          progress: Callable[[int, int], None] | None) -> tuple[Tensor, list[float]]:
    latent = start.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([latent], lr=settings.rate, betas=(0.9, 0.999))
    losses, every = [], settings.perceptual_every
    for step in range(settings.steps):
        for group in opt.param_groups:
            group["lr"] = settings.rate * 0.5 * (1 + math.cos(math.pi * step / settings.steps))
        loss = loss_of(latent, targets, goal, perceptual=step % every == every - 1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()) / len(targets))
        if progress is not None:
            progress(step + 1, settings.steps)
    return latent.detach(), losses


class _Spent(Exception):
    """The evaluation budget is used up (raised inside L-BFGS's closure, which has no other way out)."""


def _lbfgs(loss_of: Callable[[Tensor], Tensor], start: Tensor, settings: ProjectSettings,
           report: Callable[[int], None]) -> tuple[Tensor, list[float]]:
    """One image's L-BFGS within settings.steps evaluations → the lowest-loss latent it evaluated, and the losses."""
    latent = start.detach().clone().requires_grad_(True)
    opt = torch.optim.LBFGS([latent], lr=settings.rate, max_iter=settings.steps, max_eval=2 * settings.steps,
                            history_size=settings.history, tolerance_grad=0.0, tolerance_change=0.0,
                            line_search_fn="strong_wolfe")
    losses: list[float] = []
    best = (math.inf, latent.detach().clone())

    def closure() -> Tensor:
        nonlocal best
        if len(losses) == settings.steps:
            raise _Spent
        opt.zero_grad(set_to_none=True)
        loss = loss_of(latent)
        loss.backward()
        losses.append(float(loss.detach()))
        if losses[-1] < best[0]:
            best = (losses[-1], latent.detach().clone())
        report(len(losses))
        return loss

    try:
        # A step also ends early on an exactly zero gradient or step; the next one evaluates again, so the loop
        # ends when the budget does.
        while len(losses) < settings.steps:
            opt.step(closure)
    except _Spent:
        pass
    return best[1], losses


def project(generator: Generator, image: np.ndarray, encoder: Encoder | None = None, judge: Judge | None = None,
            settings: ProjectSettings = DEFAULT,
            progress: Callable[[int, int], None] | None = None) -> Projection:
    """Project one picture (uint8 [H, W, 3], any size) into `generator`'s W+; see the module docstring.

    progress(done, total) is called after each of the refinement's gradient evaluations."""
    fitted, crop = fit_image(image, generator.config.size)
    generator = generator.eval().requires_grad_(False)
    judge = judge.eval().requires_grad_(False) if judge is not None else None
    target = to_tensor(fitted)[None]
    start = start_latents(generator, target, encoder if settings.use_encoder else None)
    latent, losses = refine(generator, target, start, settings, judge, progress)
    with torch.inference_mode():
        rendered = generator.synthesize(generator.styles(latent))
        quality = float(psnr(rendered, target)[0])
    return Projection(latent=latent[0], image=to_uint8(rendered), target=fitted, crop=crop, losses=tuple(losses),
                      psnr=quality)


def reconstruction_psnr(generator: Generator, latents: Tensor, targets: Tensor) -> Tensor:
    """PSNR [B] of the generator's renderings of latents [B, n_latent, style_dim] against targets [B, 3, H, W]."""
    with torch.inference_mode():
        return psnr(generator.synthesize(generator.styles(latents)), targets)


# --- latent files ------------------------------------------------------------------------------------------


def save_latent(path: str | Path, projection: Projection, model: str) -> Path:
    """latent.safetensors: the W+ latent under "latent", and in the metadata the model it belongs to, the crop
    and the PSNR."""
    path = Path(path)
    meta = {"model": model, "psnr": f"{projection.psnr:.3f}", "crop": json.dumps(projection.crop.__dict__)}
    write_atomic(path, lambda p: save_file({"latent": projection.latent.contiguous()}, str(p), metadata=meta))
    return path


def load_latent(path: str | Path) -> Latent:
    """A latent file written by `project` → a Latent source for the Editor; raises ValueError saying what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no such latent file: {path} (make one with `python -m localedit project IMAGE`)")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"{path} is not a latent file (safetensors): {e}") from None
    if "latent" not in tensors:
        raise ValueError(f"{path} holds no 'latent' tensor (it has {sorted(tensors)})")
    return Latent.of(tensors["latent"])
