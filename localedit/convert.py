"""Checkpoints → model folders: `python -m localedit convert CHECKPOINT OUT_DIR`. The app never imports this.

Two sources, both StyleGAN2 generators, both mapped onto rosinality's `g_ema` layout (localedit.stylegan2):

* **rosinality `.pt`** (`{"g_ema": state_dict, "latent_avg": w̄, "g", "d", "args", ...}`), read with
  `torch.load(weights_only=True)`. size, style_dim, n_mlp and the channel table are inferred from the shapes.
  Training checkpoints carry no `latent_avg`: it is then estimated as the mean w of 4096 z (seed 0), as
  rosinality's `mean_latent(4096)` does, and the model card says so.
* **NVIDIA stylegan2-ada-pytorch / stylegan3 `.pkl`** (`G_ema`, a StyleGAN2 generator), read by a restricted
  unpickler. Their modules are "persistent objects": `torch_utils.persistence._reconstruct_persistent_obj(meta)`
  where meta holds the module's source code (`module_src`), which NVIDIA's loader `exec`s, and its `__dict__`
  (`state`). Here a persistent object becomes a record of its class name and state; `module_src` is never run,
  and any global outside a short allowlist of data types (dicts, tensors, storages, numpy scalars) is refused.

What was checked against the NVlabs source (training/networks.py, torch_utils/ops/conv2d_resample.py):
* FullyConnectedLayer stores weight ~ N(0, 1/lr²) with weight gain lr/√in and bias gain lr, like rosinality's
  EqualLinear; lr is stored as `bias_gain` and becomes `lr_mlp`. Affines use lr 1 and bias_init 1 in both.
* The mapping normalises z with normalize_2nd_moment (= PixelNorm) and uses lrelu(0.2)·√2 (= fused_leaky_relu).
  Only unconditional models (c_dim 0) with z_dim = w_dim map onto this generator.
* SynthesisLayer modulates the *raw* weight and demodulates it, so rosinality's 1/√(in·k²) scale cancels
  (up to the 1e-8 inside the rsqrt); ToRGBLayer multiplies the styles by 1/√in where rosinality scales the weight:
  the same product. Weights therefore copy over unscaled; only shapes change ([O,I,k,k] → [1,O,I,k,k]).
* The up-sampling conv is a transposed conv with the weight's in/out swapped and *not* flipped, followed by the
  [1,3,3,1] filter with gain 4 and padding 1 — rosinality's order, padding and orientation exactly.
* Noise (noise_const · noise_strength) is added after demodulation and before the bias, as in rosinality.
Known difference: NVIDIA clamps activations to ±conv_clamp (256 in the official configs); this generator does
not, so pixels whose activations pass ±256 can differ. The card records the clamp when the model had one.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import io
import json
import pickle
import re
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from localedit.hub import build_generator, save_generator
from localedit.stylegan2 import GeneratorConfig

_N_AVG = 4096  # z samples for an estimated latent_avg, as in rosinality's generate.py


class UnsafePickleError(pickle.UnpicklingError, ValueError):
    """The pickle asks for something a StyleGAN2 checkpoint never needs; nothing from it has been run."""


# --- inferring the config ----------------------------------------------------------------------------------


def infer_config(state: Mapping[str, Tensor], **fields: object) -> GeneratorConfig:
    """The GeneratorConfig a rosinality-layout state dict was built with, from its key names and shapes alone.

    size from the number of to_rgbs, n_mlp from style.N, style_dim from style.1; channel_multiplier when the
    channels follow rosinality's table for one, else an explicit channel table. `fields` sets the rest
    (name, description, lr_mlp, truncation).
    """
    mlp = sorted(int(m[1]) for k in state if (m := re.fullmatch(r"style\.(\d+)\.weight", k)))
    rgbs = sorted(int(m[1]) for k in state if (m := re.fullmatch(r"to_rgbs\.(\d+)\.conv\.weight", k)))
    if not mlp or mlp != list(range(1, len(mlp) + 1)) or rgbs != list(range(len(rgbs))) or not rgbs:
        raise ValueError("not a rosinality StyleGAN2 generator: expected mapping layers style.1…N and "
                         f"to_rgbs.0…M (found style {mlp}, to_rgbs {rgbs})")
    size = 2 ** (len(rgbs) + 2)
    channels = [state["conv1.conv.weight"].shape[1]] + [state[f"convs.{2 * j}.conv.weight"].shape[1]
                                                        for j in range(len(rgbs))]
    base = dict(size=size, style_dim=state["style.1.weight"].shape[1], n_mlp=len(mlp), **fields)
    for multiplier in _multipliers(size, channels):
        table = GeneratorConfig(**base, channel_multiplier=multiplier)
        if [table.channel(r) for r in table.resolutions] == channels:
            return table
    return GeneratorConfig(**base, channels=tuple(channels))


def _multipliers(size: int, channels: list[int]) -> list[int]:
    """Candidate channel multipliers: rosinality's table only depends on one from 64×64 up (256·cm there)."""
    if size > 1024:  # beyond rosinality's table
        return []
    if size < 64:
        return [GeneratorConfig.channel_multiplier]
    at64 = channels[4]
    return [at64 // 256] if at64 % 256 == 0 and at64 >= 256 else []


# --- rosinality .pt ----------------------------------------------------------------------------------------


def load_rosinality(path: Path) -> tuple[dict[str, Tensor], Tensor | None]:
    """(g_ema state dict, latent_avg or None) from a rosinality checkpoint, with torch's weights-only loader."""
    try:
        # Training checkpoints also pickle the argparse Namespace of their flags: plain data, allowed by name.
        with torch.serialization.safe_globals([argparse.Namespace]):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ValueError(f"{path.name}: torch's weights-only loader refused it ({str(e).splitlines()[0]}); a "
                         "rosinality checkpoint holds only tensors and its training flags") from e
    if not isinstance(checkpoint, dict) or "g_ema" not in checkpoint:
        keys = sorted(checkpoint) if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise ValueError(f"{path.name} is not a rosinality checkpoint: no 'g_ema' (found {keys})")
    return dict(checkpoint["g_ema"]), checkpoint.get("latent_avg")


# --- NVIDIA .pkl -------------------------------------------------------------------------------------------


class _Persistent:
    """What a `torch_utils.persistence` object becomes here: its class name and its `__dict__`, nothing run."""

    def __init__(self, class_name: str, state: dict) -> None:
        self.class_name = class_name
        self.state = state

    def child(self, name: str) -> _Persistent | None:
        return (self.state.get("_modules") or {}).get(name)


def _persistent(meta: object) -> _Persistent:
    if not (isinstance(meta, dict) and isinstance(meta.get("class_name"), str) and isinstance(meta.get("state"), dict)):
        raise UnsafePickleError("it holds a persistent object without a class_name and a state")
    return _Persistent(meta["class_name"], meta["state"])


class _EasyDict(dict):
    """dnnlib.util.EasyDict without attribute access: only its items are ever read."""


def _storage(data: bytes) -> torch.TypedStorage:
    # A storage pickles as a legacy torch.save of itself; torch's own weights-only loader reads that safely.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # TypedStorage deprecation, not the user's concern
            storage = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise UnsafePickleError(f"it holds a tensor storage that torch's weights-only loader refused ({e})") from None
    if not isinstance(storage, torch.TypedStorage):
        raise UnsafePickleError(f"it holds a tensor storage that is a {type(storage).__name__}")
    return storage


def _tensor(storage: object, offset: int, size: tuple, stride: tuple, *_: object) -> Tensor:
    if not isinstance(storage, torch.TypedStorage):
        raise UnsafePickleError(f"it builds a tensor on a {type(storage).__name__}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.empty(0, dtype=storage.dtype).set_(storage.untyped(), offset, size, stride)


def _parameter(data: object, *_: object) -> Tensor:
    if not isinstance(data, Tensor):
        raise UnsafePickleError(f"it holds a parameter that is a {type(data).__name__}")
    return data  # requires_grad, hooks and extra state do not matter for weights


def _numpy_scalar(dtype: np.dtype, data: bytes) -> np.generic:
    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, bytes):
        raise UnsafePickleError("it holds a numpy scalar that is not plain numeric data")
    return np.frombuffer(data, dtype=dtype)[0]


# (module, name) → what the unpickler hands back. Everything else is refused.
_ALLOWED = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _persistent,
    ("dnnlib.util", "EasyDict"): _EasyDict,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _tensor,
    ("torch._utils", "_rebuild_parameter"): _parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _parameter,
    ("torch.storage", "_load_from_bytes"): _storage,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,  # pickled by numpy 1.x
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,  # pickled by numpy 2.x
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        try:
            return _ALLOWED[module, name]
        except KeyError:
            raise UnsafePickleError(f"it asks for {module}.{name}, which a StyleGAN2 checkpoint never "
                                    "needs (it may be malicious)") from None

    def persistent_load(self, pid: object) -> object:
        raise UnsafePickleError(f"it uses persistent ids ({pid!r:.60}), which network pickles do not")


def load_nvidia(path: Path) -> tuple[dict[str, Tensor], dict[str, object]]:
    """(rosinality-layout state dict, config fields and notes) from an NVIDIA network pickle's `G_ema`."""
    with open(path, "rb") as f:
        try:
            data = _RestrictedUnpickler(f).load()
        except UnsafePickleError as e:
            raise UnsafePickleError(f"refusing to load {path.name}: {e}; nothing from it was run") from None
        except (pickle.UnpicklingError, EOFError, TypeError, AttributeError) as e:
            raise ValueError(f"{path.name} is not a readable network pickle ({type(e).__name__}: {e})") from e
    g = data.get("G_ema") if isinstance(data, dict) else None
    if not isinstance(g, _Persistent):
        found = sorted(map(str, data)) if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"{path.name} has no G_ema network (found {found})")
    attrs = g.state
    if attrs.get("c_dim", 0) != 0 or attrs.get("img_channels", 3) != 3 or attrs.get("z_dim") != attrs.get("w_dim"):
        raise ValueError(f"{path.name}: only unconditional RGB generators with z_dim = w_dim convert (this one has "
                         f"c_dim {attrs.get('c_dim')}, img_channels {attrs.get('img_channels')}, "
                         f"z_dim {attrs.get('z_dim')}, w_dim {attrs.get('w_dim')})")
    mapping, synthesis = g.child("mapping"), g.child("synthesis")
    if mapping is None or synthesis is None:
        raise ValueError(f"{path.name}: G_ema has no mapping and synthesis networks")
    blocks = dict(synthesis.state.get("_modules") or {})
    if not blocks or not all(re.fullmatch(r"b\d+", name) for name in blocks):
        raise ValueError(f"{path.name}: G_ema is not a StyleGAN2 generator (its synthesis layers are "
                         f"{list(blocks)[:6]}…; StyleGAN3 generators cannot be converted)")
    architectures = {b.state.get("architecture") for b in blocks.values()}
    if architectures != {"skip"}:
        raise ValueError(f"{path.name}: synthesis architecture {sorted(map(str, architectures))}; only 'skip' (the "
                         "StyleGAN2 default, as in rosinality) converts")
    gains = {float(fc.state.get("bias_gain", 1.0)) for name, fc in (mapping.state.get("_modules") or {}).items()
             if name.startswith("fc")}
    if len(gains) != 1:
        raise ValueError(f"{path.name}: mapping layers have different learning-rate multipliers {sorted(gains)}")
    clamps = {b.state.get("conv_clamp") for b in blocks.values()} - {None}
    info = {"lr_mlp": gains.pop(), "conv_clamp": max(clamps) if clamps else None}
    return nvidia_to_rosinality(_flatten(g)), info


def _flatten(module: _Persistent, prefix: str = "") -> dict[str, Tensor]:
    """A persistent module tree → its state dict ({dotted name: tensor}), as torch would list it."""
    out: dict[str, Tensor] = {}
    for group in ("_parameters", "_buffers"):
        for name, tensor in (module.state.get(group) or {}).items():
            if tensor is not None:
                out[prefix + name] = tensor
    for name, child in (module.state.get("_modules") or {}).items():
        if not isinstance(child, _Persistent):
            raise ValueError(f"unexpected submodule {prefix + name} of type {type(child).__name__}")
        out.update(_flatten(child, f"{prefix}{name}."))
    return out


def nvidia_to_rosinality(nv: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """NVIDIA G_ema names and shapes → rosinality g_ema (+ latent_avg). Every NVIDIA key must be used.

    mapping.fc{i} → style.{i+1}; mapping.w_avg → latent_avg; synthesis.b4.const [C,4,4] → input.input;
    b4.conv1 → conv1, b4.torgb → to_rgb1; b{r}.conv0/conv1 → convs.{2j}/{2j+1} and b{r}.torgb → to_rgbs.{j}
    with j = log2(r) − 3; a layer's affine → conv.modulation, bias → activate.bias, noise_strength [] →
    noise.weight [1], noise_const [r,r] → noises.noise_{n} in synthesis order. The [1,3,3,1] resample filters
    are checked and dropped (the generator builds its own).
    """
    out: dict[str, Tensor] = {}
    used: set[str] = set()

    def take(src: str, dst: str, shape: tuple[int, ...] | None = None) -> None:
        if src not in nv:
            raise ValueError(f"the NVIDIA generator has no {src}")
        out[dst] = nv[src] if shape is None else nv[src].reshape(shape)
        used.add(src)

    def layer(src: str, dst: str, noise: int | None) -> None:
        weight = nv[f"{src}.weight"]
        take(f"{src}.weight", f"{dst}.conv.weight", (1, *weight.shape))
        take(f"{src}.affine.weight", f"{dst}.conv.modulation.weight")
        take(f"{src}.affine.bias", f"{dst}.conv.modulation.bias")
        if noise is None:  # a toRGB: no noise, and a [3] bias broadcast over the image
            take(f"{src}.bias", f"{dst}.bias", (1, -1, 1, 1))
            return
        take(f"{src}.bias", f"{dst}.activate.bias")
        take(f"{src}.noise_strength", f"{dst}.noise.weight", (1,))
        const = nv[f"{src}.noise_const"]
        take(f"{src}.noise_const", f"noises.noise_{noise}", (1, 1, *const.shape))

    fcs = sorted(int(m[1]) for k in nv if (m := re.fullmatch(r"mapping\.fc(\d+)\.weight", k)))
    for i in fcs:
        take(f"mapping.fc{i}.weight", f"style.{i + 1}.weight")
        take(f"mapping.fc{i}.bias", f"style.{i + 1}.bias")
    take("mapping.w_avg", "latent_avg")
    resolutions = sorted(int(m[1]) for k in nv if (m := re.fullmatch(r"synthesis\.b(\d+)\.conv1\.weight", k)))
    take("synthesis.b4.const", "input.input", (1, *nv["synthesis.b4.const"].shape))
    layer("synthesis.b4.conv1", "conv1", 0)
    layer("synthesis.b4.torgb", "to_rgb1", None)
    for j, r in enumerate(resolutions[1:]):
        layer(f"synthesis.b{r}.conv0", f"convs.{2 * j}", 2 * j + 1)
        layer(f"synthesis.b{r}.conv1", f"convs.{2 * j + 1}", 2 * j + 2)
        layer(f"synthesis.b{r}.torgb", f"to_rgbs.{j}", None)
    standard = torch.outer(torch.tensor([1.0, 3, 3, 1]), torch.tensor([1.0, 3, 3, 1])) / 64
    for key in [k for k in nv if k.endswith("resample_filter")]:
        if nv[key].shape != standard.shape or not torch.allclose(nv[key].float(), standard):
            raise ValueError(f"{key} is not the [1,3,3,1] filter this generator uses: {nv[key].tolist()}")
        used.add(key)
    leftover = sorted(set(nv) - used)
    if leftover:
        raise ValueError(f"the NVIDIA generator has weights with no rosinality counterpart: {leftover[:12]}")
    return out


# --- the command -------------------------------------------------------------------------------------------


def convert(checkpoint: str | Path, out_dir: str | Path, name: str | None = None, overwrite: bool = False) -> Path:
    """Convert a rosinality `.pt` or NVIDIA `.pkl` StyleGAN2 checkpoint into a model folder at `out_dir`."""
    path, out = Path(checkpoint), Path(out_dir)
    if not path.is_file():
        raise ValueError(f"no such checkpoint: {path}")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ValueError(f"{out} exists and is not empty; pass --overwrite to replace its model files")
    notes: list[str] = []
    fields: dict[str, object] = {"name": name or path.stem,
                                 "description": f"StyleGAN2 generator converted from {path.name}"}
    if path.suffix == ".pkl":
        kind = "NVIDIA stylegan2-ada / stylegan3 network pickle (G_ema)"
        state, info = load_nvidia(path)
        fields["lr_mlp"] = info["lr_mlp"]
        if info["conv_clamp"] is not None:
            notes.append(f"The source clamped activations to ±{info['conv_clamp']:g}; this generator does not, so "
                         "pixels whose activations exceed that can differ slightly.")
        latent_avg: Tensor | None = state.pop("latent_avg")
    elif path.suffix in (".pt", ".pth", ".ckpt"):
        kind = "rosinality stylegan2-pytorch checkpoint (g_ema)"
        state, latent_avg = load_rosinality(path)
    else:
        raise ValueError(f"{path.name}: expected a rosinality .pt/.pth/.ckpt or an NVIDIA .pkl checkpoint")
    config = infer_config(state, **fields)
    estimated = latent_avg is None
    state["latent_avg"] = torch.zeros(config.style_dim) if estimated else latent_avg.reshape(-1)
    generator = build_generator(config, state, path.name)
    if estimated:
        with torch.no_grad():
            z = torch.randn(_N_AVG, config.style_dim, generator=torch.Generator().manual_seed(0))
            generator.latent_avg.copy_(generator.mapping(z).mean(0))
        notes.append(f"The checkpoint had no latent_avg: it was estimated as the mean w of {_N_AVG} z drawn with "
                     "seed 0, as rosinality's mean_latent does.")
        warnings.warn(f"{path.name} has no latent_avg; estimated it from {_N_AVG} samples of z", stacklevel=2)
    card = model_card(path, kind, config, sum(p.numel() for p in generator.parameters()), notes)
    return save_generator(out, config, generator.state_dict(), card)


def model_card(path: Path, kind: str, config: GeneratorConfig, parameters: int, notes: list[str]) -> str:
    """README.md for a converted folder: where the weights came from, the inferred config and the licence."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    lines = [
        "---", "tags:", "- stylegan2", "- localedit", "---", "",
        f"# {config.name}", "",
        f"A StyleGAN2 generator ({config.size}×{config.size}, {parameters / 1e6:.1f} M parameters) in localedit's "
        "model-folder layout: rosinality's `g_ema` key names in `generator.safetensors`, the config in "
        "`config.json`.", "",
        "## Source", "",
        f"- Checkpoint: `{path.name}`, a {kind}",
        f"- sha256: `{digest.hexdigest()}`",
        f"- Converted with: `python -m localedit convert {path.name} OUT_DIR`",
        *(f"- {note}" for note in notes), "",
        "## Inferred config", "", "```json", json.dumps(config.to_dict(), indent=2), "```", "",
        "## Licence", "",
        "These weights inherit the licence of the source checkpoint. Check it before you use or redistribute "
        "them.", "",
    ]
    return "\n".join(lines)


