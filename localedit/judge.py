"""The judge: a small U-Net (Ronneberger et al. 2015) that segments procedural faces into PARTS.

It measures what the paper measures with its own cluster masks, but independently of the GAN: which parts an
edit changed (Sec. 4.2's In/Out split, with the judge's masks as the region of interest), and, through its
pooled encoder features, a Fréchet distance between image sets in the spirit of FID (Sec. 4.3) for a domain
where Inception features mean little. It is trained on faces.py's images only, whose labels are exact.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from tqdm.auto import tqdm

from localedit.faces import PARTS, render_arrays, to_tensor
from localedit.hub import check_state

# Held-out faces start here; training uses indices from 0, so the two never overlap.
HELDOUT_OFFSET = 1_000_000


@dataclass(frozen=True)
class JudgeConfig:
    """Architecture hyperparameters; round-trips through config.json."""

    channels: tuple[int, ...] = (24, 48, 64, 96)  # per resolution level, full size first
    size: int = 64
    parts: tuple[str, ...] = PARTS

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> JudgeConfig:
        return cls(channels=tuple(d["channels"]), size=int(d["size"]), parts=tuple(d["parts"]))


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class Judge(nn.Module):
    """U-Net: images [B, 3, H, W] in [-1, 1] → part logits [B, len(parts), H, W]."""

    def __init__(self, config: JudgeConfig = JudgeConfig()) -> None:
        super().__init__()
        self.config = config
        c = config.channels
        self.down = nn.ModuleList([_block(3, c[0])] + [_block(c[i], c[i + 1]) for i in range(len(c) - 1)])
        self.up = nn.ModuleList([nn.ConvTranspose2d(c[i + 1], c[i], 2, stride=2) for i in range(len(c) - 1)])
        self.merge = nn.ModuleList([_block(2 * c[i], c[i]) for i in range(len(c) - 1)])
        self.head = nn.Conv2d(c[0], len(config.parts), 1)

    def _encode(self, images: Tensor) -> list[Tensor]:
        skips = []
        x = images
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        return skips

    def forward(self, images: Tensor) -> Tensor:
        skips = self._encode(images)
        x = skips[-1]
        for i in reversed(range(len(self.up))):
            x = self.merge[i](torch.cat([self.up[i](x), skips[i]], dim=1))
        return self.head(x)

    def _check(self, images: Tensor) -> None:
        s = self.config.size
        if images.ndim != 4 or images.shape[1:] != (3, s, s):
            raise ValueError(f"the judge takes images [B, 3, {s}, {s}] in [-1, 1], got {list(images.shape)}")

    @torch.no_grad()
    def segment(self, images: Tensor) -> Tensor:
        """Images [B, 3, H, W] in [-1, 1] → labels long [B, H, W], indices into config.parts."""
        self._check(images)
        return self(images).argmax(dim=1)

    def resized(self, images: Tensor) -> Tensor:
        """Generated images at the judge's resolution (models of other sizes are resampled)."""
        size = self.config.size
        if images.shape[-1] == size:
            return images
        return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)

    def labels(self, images: Tensor) -> Tensor:
        """`segment` for images of any size: labels long [B, H, W] at the images' own resolution."""
        return self.labels_at(self.segment(self.resized(images)), images.shape[-2:])

    @staticmethod
    def labels_at(labels: Tensor, shape: tuple[int, int]) -> Tensor:
        """Labels long [B, h, w] at the judge's resolution → [B, *shape], nearest neighbour."""
        if tuple(labels.shape[-2:]) == tuple(shape):
            return labels
        return F.interpolate(labels[:, None].float(), size=tuple(shape), mode="nearest")[:, 0].long()

    @torch.no_grad()
    def features(self, images: Tensor) -> Tensor:
        """Images [B, 3, H, W] in [-1, 1] → [B, sum(channels)]: every encoder level, average-pooled.

        Pooling every level keeps both colour statistics (early levels) and part layout (late levels), which
        is what a Fréchet distance between face sets should see.
        """
        self._check(images)
        return torch.cat([f.mean(dim=(2, 3)) for f in self._encode(images)], dim=1)


def _batch_iou(pred: Tensor, target: Tensor, n_classes: int) -> tuple[Tensor, Tensor]:
    """Per-class intersection and union counts [n_classes] for label maps of equal shape."""
    pred, target = pred.flatten(), target.flatten()
    intersection = torch.bincount(target[pred == target], minlength=n_classes)
    union = torch.bincount(pred, minlength=n_classes) + torch.bincount(target, minlength=n_classes) - intersection
    return intersection, union


def train_judge(
    steps: int = 1500,
    batch: int = 32,
    lr: float = 3e-3,
    n_train: int = 12_000,
    seed: int = 0,
    config: JudgeConfig = JudgeConfig(),
    workers: int = 2,
    progress: bool = True,
) -> Judge:
    """Train a judge on faces 0..n_train-1 with Adam and a one-cycle schedule; returns it in eval mode."""
    torch.manual_seed(seed)
    images, labels = render_arrays(n_train, config.size, offset=0, workers=workers)
    x_all, y_all = to_tensor(images), torch.from_numpy(labels).long()
    model = Judge(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.15)
    # Thin parts (eyebrows, lids) are few pixels; weighting classes by inverse sqrt frequency stops the loss
    # from trading them away for background accuracy, which mean IoU would punish.
    freq = torch.bincount(y_all.flatten(), minlength=len(config.parts)).float()
    weight = (freq.sum() / freq.clamp(min=1)).sqrt()
    weight = weight / weight.mean()
    generator = torch.Generator().manual_seed(seed)
    model.train()
    bar = tqdm(range(steps), desc="judge", disable=not progress)
    for _ in bar:
        idx = torch.randint(len(x_all), (batch,), generator=generator)
        x, y = x_all[idx], y_all[idx]
        # Horizontal flips are free extra data: no part is left/right specific.
        flip = torch.rand(batch, generator=generator) < 0.5
        x[flip], y[flip] = x[flip].flip(-1), y[flip].flip(-1)
        loss = F.cross_entropy(model(x), y, weight=weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
    return model.eval()


@torch.no_grad()
def evaluate_judge(model: Judge, n: int = 1000, offset: int = HELDOUT_OFFSET, batch: int = 100) -> dict[str, float]:
    """IoU per part over faces offset..offset+n-1 (counts pooled over all images), plus their "mean"."""
    images, labels = render_arrays(n, model.config.size, offset=offset)
    k = len(model.config.parts)
    intersection, union = torch.zeros(k, dtype=torch.long), torch.zeros(k, dtype=torch.long)
    for s in range(0, n, batch):
        pred = model.segment(to_tensor(images[s : s + batch]))
        i, u = _batch_iou(pred, torch.from_numpy(labels[s : s + batch]).long(), k)
        intersection += i
        union += u
    iou = {part: float(intersection[j]) / max(int(union[j]), 1) for j, part in enumerate(model.config.parts)}
    iou["mean"] = float(np.mean([iou[p] for p in model.config.parts]))
    return iou


def _sqrtm_psd(m: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix by its eigen-decomposition."""
    values, vectors = np.linalg.eigh(m)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(feats_a: np.ndarray | Tensor, feats_b: np.ndarray | Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets [N, F] and [M, F].

    FD = |mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr(sqrt(sqrt(S_a) S_b sqrt(S_a))). The inner product is
    symmetric PSD, so symmetric eigen-decompositions suffice and no complex sqrtm is needed.
    """
    a = np.asarray(feats_a, dtype=np.float64)
    b = np.asarray(feats_b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(f"features must be [N, F] and [M, F] with N, M ≥ 2, got {a.shape} and {b.shape}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root_a = _sqrtm_psd(s_a)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ s_b @ root_a), 0.0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a) + np.trace(s_b) - 2.0 * cross)


def save_judge(model: Judge, folder: str | Path) -> None:
    """Weights (float16 safetensors) and config.json into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # float16 halves the file; the model card's IoU is measured on the reloaded float16 weights.
    state = {k: v.detach().to(torch.float16 if v.is_floating_point() else v.dtype).contiguous()
             for k, v in model.state_dict().items()}
    save_file(state, str(folder / "judge.safetensors"))
    (folder / "config.json").write_text(json.dumps(model.config.to_dict(), indent=2) + "\n")


def load_judge(folder: str | Path = "assets/judge") -> Judge:
    """The judge saved in `folder`, in eval mode; every key and shape must match its config exactly."""
    folder = Path(folder)
    config = JudgeConfig.from_dict(json.loads((folder / "config.json").read_text()))
    model = Judge(config)
    state = load_file(str(folder / "judge.safetensors"))
    expected = model.state_dict()
    check_state(expected, state, f"{folder} does not match its config")
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=True)
    return model.eval()


def model_card(record: dict) -> str:
    """The judge's README.md from a training record (command, settings, wall time, hardware, IoU)."""
    rows = "\n".join(f"| {part} | {record['iou'][part]:.3f} |" for part in record["parts"])
    return f"""# localedit judge

A {record['parameters']:,}-parameter U-Net that segments localedit's procedural 64×64 faces into
{len(record['parts'])} parts: {', '.join(record['parts'])}. It judges whether an edit stayed inside its part, and its
pooled encoder features give a Fréchet distance between face sets (`localedit.judge.frechet_distance`).

## How it was made

```
{record['command']}
```

- Data: faces 0..{record['n_train'] - 1} of `localedit.faces` (rendered once, horizontal flips), exact labels.
- {record['steps']} steps of batch {record['batch']}, Adam with a one-cycle schedule (max lr {record['lr']}),
  cross-entropy weighted by inverse square-root class frequency, seed {record['seed']}.
- Wall time: {record['seconds']:.0f} s, rendering included, on {record['hardware']}.
- Weights are stored in float16 ({record['file_bytes'] / 1e6:.2f} MB); they load into float32.

## The data

Faces 0–63 and their part labels, as the judge and the embedded generator learn them:

![64 procedural faces](faces.png)
![their part labels](faces_labels.png)

`python -m localedit render-faces --out assets/judge/faces.png --upscale 2`

## Held-out IoU

Faces {record['eval_offset']}..{record['eval_offset'] + record['eval_n'] - 1}, disjoint from training, with
intersection and union pooled over all images:

| part | IoU |
|---|---|
{rows}
| **mean** | **{record['iou']['mean']:.3f}** |

## Limits

The judge has only seen procedural faces. On GAN samples it is as good as the samples are close to them.
"""

