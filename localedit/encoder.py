"""An encoder for a generator: image → W+ in one or two passes, the instant start of a projection (projection.py).

A small residual CNN reads the image at the model's resolution and predicts each of the generator's n_latent
w vectors as an offset from `latent_avg`; its last layer starts at zero, so an untrained encoder answers the
average face. It is trained here, for one generator:

- on the generator's own samples (z at ψ = 1, half of them style-mixed at a random layer, so W+ is covered), where
  the true latent is known: a latent loss pulls the prediction towards it;
- on procedural faces (faces.py, training indices only), the images users' pictures will resemble: for them,
  and for the samples, a pixel loss compares the generator's rendering of the prediction with the input.

A refiner (`EncoderConfig.refine`, trained afterwards with the first stage fixed) is a second network that reads
the image beside the generator's rendering of the first answer and corrects it: two encoder passes and one more
synthesis, less than one gradient step of refinement costs.

Held-out evaluation faces start at `PROJECTION_EVAL_OFFSET`; training refuses any face index at or above it.
The files live in the model folder beside the generator: encoder.json (config and how it was trained) and
encoder.safetensors.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from tqdm.auto import tqdm

from localedit.faces import render_arrays, to_tensor
from localedit.hub import ENCODER_META_FILE as CONFIG_FILE
from localedit.hub import ENCODER_TENSORS_FILE as WEIGHTS_FILE
from localedit.hub import check_state, write_atomic
from localedit.stylegan2 import Generator

PROJECTION_EVAL_OFFSET = 2_000_000  # held-out faces for measuring projections; nothing trains on them


@dataclass(frozen=True)
class EncoderConfig:
    size: int  # the generator's resolution
    n_latent: int
    style_dim: int
    channels: tuple[int, ...] = (32, 64, 96, 128, 192)  # at size, size/2, ..., size/16
    head: int = 48  # channels of the last feature map before the linear layer that outputs W+
    refine: bool = False  # a second stage that reads the image and the first answer's rendering (see Encoder)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> EncoderConfig:
        return cls(size=int(d["size"]), n_latent=int(d["n_latent"]), style_dim=int(d["style_dim"]),
                   channels=tuple(int(c) for c in d["channels"]), head=int(d["head"]),
                   refine=bool(d.get("refine", False)))

    @classmethod
    def for_generator(cls, generator: Generator, **kwargs) -> EncoderConfig:
        c = generator.config
        return cls(size=c.size, n_latent=generator.n_latent, style_dim=c.style_dim, **kwargs)


class _Residual(nn.Module):
    def __init__(self, c_in: int, c_out: int, down: bool):
        super().__init__()
        stride = 2 if down else 1
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.norm1, self.norm2 = nn.GroupNorm(8, c_out), nn.GroupNorm(8, c_out)
        self.skip = nn.Conv2d(c_in, c_out, 1, stride=stride) if down or c_in != c_out else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        h = F.leaky_relu(self.norm1(self.conv1(x)), 0.2)
        h = self.norm2(self.conv2(h))
        return F.leaky_relu(h + self.skip(x), 0.2)


class Encoder(nn.Module):
    """images [B, 3, size, size] in [-1, 1] → offsets from latent_avg [B, n_latent, style_dim].

    With `config.refine` it also holds `refiner`, a second network of the same shape that reads the image beside
    the generator's rendering of the first answer ([B, 6, size, size]) and answers a correction to it: the two
    stages of `encode`, after ReStyle's iterative encoding (Alaluf et al., 2021), which sees what the first answer
    got wrong."""

    def __init__(self, config: EncoderConfig, inputs: int = 3):
        super().__init__()
        self.config, self.inputs = config, inputs
        c = config.channels
        self.stem = nn.Conv2d(inputs, c[0], 3, padding=1)
        self.blocks = nn.Sequential(*[_Residual(c[max(i - 1, 0)], c[i], down=i > 0) for i in range(len(c))])
        self.reduce = nn.Conv2d(c[-1], config.head, 1)
        side = config.size >> (len(c) - 1)
        self.out = nn.Linear(config.head * side * side, config.n_latent * config.style_dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.refiner = Encoder(replace(config, refine=False), inputs=2 * inputs) if config.refine else None

    def forward(self, images: Tensor) -> Tensor:
        s, k = self.config.size, self.inputs
        if images.ndim != 4 or images.shape[1:] != (k, s, s):
            raise ValueError(f"the encoder takes images [B, {k}, {s}, {s}] in [-1, 1], got {list(images.shape)}")
        h = F.leaky_relu(self.reduce(self.blocks(self.stem(images))), 0.2)
        return self.out(h.flatten(1)).view(-1, self.config.n_latent, self.config.style_dim)

    def add_refiner(self) -> Encoder:
        """A copy of this one-stage encoder with a refiner that starts from its weights: the image's half of the
        refiner's first layer is this encoder's, the rendering's half is zero, and its last layer is zero, so
        until trained the two stages answer what this encoder answers."""
        if self.refiner is not None:
            raise ValueError("this encoder already has a refiner")
        two = Encoder(replace(self.config, refine=True))
        two.load_state_dict(self.state_dict(), strict=False)
        body = {k: v for k, v in self.state_dict().items() if not k.startswith("out.")}
        body["stem.weight"] = torch.cat([body["stem.weight"], torch.zeros_like(body["stem.weight"])], dim=1)
        two.refiner.load_state_dict(body, strict=False)
        return two


def encode(encoder: Encoder, generator: Generator, images: Tensor) -> Tensor:
    """images [B, 3, H, W] → W+ [B, n_latent, style_dim]: the first stage's answer, then, where the encoder has a
    refiner, that answer plus the refiner's correction (one more synthesis pass)."""
    w = generator.latent_avg + encoder(images)
    if encoder.refiner is not None:
        w = w + encoder.refiner(torch.cat([images, generator.synthesize(generator.styles(w)).clamp(-1, 1)], 1))
    return w


# --- training ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EncoderTrainConfig:
    steps: int = 6000
    batch: int = 16
    face_share: float = 0.5  # of each batch: procedural faces; the rest are generator samples
    refiner: bool = False  # train a refiner on top of a trained encoder (`init`), whose first stage stays fixed
    lr: float = 1e-3
    latent_weight: float = 1.0  # of the mean squared latent error, against the pixel loss (mean squared error)
    mixing: float = 0.5
    n_faces: int = 20_000  # procedural training faces 0..n_faces-1, rendered once
    seed: int = 0


def _sample_latents(generator: Generator, n: int, mixing: float, rng: torch.Generator) -> Tensor:
    """n W+ latents [n, n_latent, style_dim] of the generator's samples at ψ = 1, a share style-mixed."""
    z = torch.randn(2, n, generator.style_dim, generator=rng)
    w = generator.mapping(z.flatten(0, 1)).view(2, n, 1, -1).expand(-1, -1, generator.n_latent, -1)
    cut = torch.randint(1, generator.n_latent, (n,), generator=rng)
    mixed = torch.rand(n, generator=rng) < mixing
    use_second = (torch.arange(generator.n_latent)[None] >= cut[:, None]) & mixed[:, None]
    return torch.where(use_second[..., None], w[1], w[0])


def train_encoder(generator: Generator, config: EncoderTrainConfig, checkpoint: Path | None = None,
                  progress: bool = True, threads: int | None = None, init: Encoder | None = None
                  ) -> tuple[Encoder, dict]:
    """Train an encoder for `generator`, from `init`'s weights when given (a further phase of training); resumes
    from `checkpoint` when it exists and saves there as it goes. Returns the encoder and a record of the run
    (steps, losses, seconds)."""
    if config.n_faces > PROJECTION_EVAL_OFFSET:
        raise ValueError(f"training faces must stay below the held-out index {PROJECTION_EVAL_OFFSET}")
    if checkpoint is not None:  # now, not at the first save minutes later
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
    if threads:
        torch.set_num_threads(threads)
    if config.refiner and init is None:
        raise ValueError("a refiner trains on top of a trained encoder: pass init")
    if not 0 <= config.face_share <= 1:
        raise ValueError(f"face_share must be within 0..1, got {config.face_share}")
    generator = generator.eval().requires_grad_(False)
    encoder = Encoder(init.config if init is not None else EncoderConfig.for_generator(generator))
    if init is not None:
        encoder.load_state_dict(init.state_dict())
    if config.refiner:
        encoder = encoder.add_refiner().requires_grad_(False)
        encoder.refiner.requires_grad_(True)
    trained = encoder.refiner if config.refiner else encoder
    opt = torch.optim.Adam(trained.parameters(), lr=config.lr, betas=(0.9, 0.99))
    rng = torch.Generator().manual_seed(config.seed)
    step, losses, seconds = 0, [], 0.0
    if checkpoint is not None and checkpoint.exists():
        state = torch.load(checkpoint, weights_only=False)
        if state["config"] != asdict(config):
            raise ValueError(f"{checkpoint} was trained with {state['config']}, not {asdict(config)}")
        encoder.load_state_dict(state["encoder"])
        opt.load_state_dict(state["opt"])
        rng.set_state(state["rng"])
        step, losses, seconds = state["step"], state["losses"], state["seconds"]
    faces = to_tensor(render_arrays(config.n_faces, generator.config.size, workers=2)[0])
    half = config.batch - round(config.batch * config.face_share)  # generator samples
    from localedit.train import native_bf16  # training only: the app loads encoders without the trainer

    bf16 = native_bf16(torch.device("cpu"))  # where it is emulated, bf16 is many times slower than fp32
    bar = tqdm(total=config.steps, initial=step, desc="encoder", disable=not progress)
    while step < config.steps:
        start = time.perf_counter()
        # Cosine decay to a tenth, so a resumed run follows the same schedule.
        for group in opt.param_groups:
            group["lr"] = config.lr * (0.55 + 0.45 * math.cos(math.pi * step / config.steps))
        with torch.no_grad():
            w_true = _sample_latents(generator, half, config.mixing, rng)
            samples = generator.synthesize(generator.styles(w_true)).clamp(-1, 1)
        x = torch.cat([samples, faces[torch.randint(len(faces), (config.batch - half,), generator=rng)]])
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            w = encode(encoder, generator, x)  # a fixed first stage builds no graph
            pixel = F.mse_loss(generator.synthesize(generator.styles(w)).float(), x)
            latent = F.mse_loss(w[:half].float(), w_true) if half else torch.zeros(())
            loss = pixel + config.latent_weight * latent
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        seconds += time.perf_counter() - start
        losses.append((pixel.item(), latent.item()))
        bar.update()
        if step % 20 == 0:
            recent = np.mean(losses[-100:], axis=0)
            bar.set_postfix(pixel=f"{recent[0]:.4f}", latent=f"{recent[1]:.4f}",
                            psnr=f"{10 * math.log10(4 / recent[0]):.1f}")
        if checkpoint is not None and (step % 200 == 0 or step == config.steps):
            state = {"config": asdict(config), "encoder": encoder.state_dict(), "opt": opt.state_dict(),
                     "rng": rng.get_state(), "step": step, "losses": losses, "seconds": seconds}
            write_atomic(checkpoint, lambda path, state=state: torch.save(state, path))
    bar.close()
    return encoder.eval(), {"train": asdict(config), "steps": step, "seconds": seconds, "bf16": bf16,
                            "final_pixel_mse": float(np.mean([p for p, _ in losses[-200:]])) if losses else math.nan}


# --- files -------------------------------------------------------------------------------------------------


def save_encoder(folder: str | Path, encoder: Encoder, record: dict) -> None:
    """encoder.json (config and `record`, how it was made) and encoder.safetensors, the weights in float16 (half
    the bytes; the encoder only gives refinement its start, and it computes in float32 when loaded)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in encoder.state_dict().items()}
    write_atomic(folder / WEIGHTS_FILE, lambda path: save_file(state, str(path)))
    data = {"config": encoder.config.to_dict(), **record}
    write_atomic(folder / CONFIG_FILE, lambda path: path.write_text(json.dumps(data, indent=2) + "\n"))


def load_encoder(folder: str | Path, generator: Generator) -> Encoder | None:
    """The model folder's encoder, or None when it has none. Raises ValueError when it doesn't fit `generator`."""
    folder = Path(folder)
    if not (folder / CONFIG_FILE).exists():
        return None
    config = EncoderConfig.from_dict(json.loads((folder / CONFIG_FILE).read_text())["config"])
    expected = EncoderConfig.for_generator(generator, channels=config.channels, head=config.head,
                                           refine=config.refine)
    if config != expected:
        raise ValueError(f"{folder / CONFIG_FILE} is for a generator of size {config.size}, n_latent "
                         f"{config.n_latent}, style_dim {config.style_dim}; this one is {expected.size}, "
                         f"{expected.n_latent}, {expected.style_dim}")
    encoder = Encoder(config)
    state = load_file(str(folder / WEIGHTS_FILE))
    check_state(encoder.state_dict(), state, str(folder / WEIGHTS_FILE))
    encoder.load_state_dict({k: v.float() for k, v in state.items()})
    return encoder.eval()
