"""Checkpoint conversion: rosinality .pt and NVIDIA-style .pkl round trips, config inference, unsafe pickles.

The NVIDIA pickle is hand-made here with the structure of a stylegan2-ada-pytorch snapshot: every network is a
`torch_utils.persistence` object (reconstruct function + meta with module_src, class_name and the module's
`__dict__`), tensors pickle through torch's own reducers, and attributes hold numpy scalars and EasyDicts. Its
weights come from the tiny generator through NVIDIA's names and shapes, written below independently of
localedit.convert, so converting it back must give the very same tensors. A second snapshot is made from
NVIDIA's published layout alone, with NVIDIA's initialisation, and checked against an image computed the way
NVIDIA's code computes it (see `_nv_image`): that one can catch a wrong assumption about the real format.
"""

import argparse
import hashlib
import math
import os
import pickle
import subprocess
import sys
import types
from collections import OrderedDict

import numpy as np
import pytest
import torch

from localedit.__main__ import main
from localedit.convert import convert, infer_config
from localedit.hub import load_model
from localedit.stylegan2 import Generator, GeneratorConfig, seed_to_z

_FILTER = torch.outer(torch.tensor([1.0, 3, 3, 1]), torch.tensor([1.0, 3, 3, 1])) / 64


def _same_weights(a: Generator, b: Generator) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _image(generator: Generator) -> torch.Tensor:
    with torch.no_grad():
        return generator(seed_to_z(3, generator.config.style_dim), truncation=0.7)


# --- rosinality .pt ----------------------------------------------------------------------------------------


def test_rosinality_checkpoint_round_trip(tmp_path, tiny_generator):
    state = tiny_generator.state_dict()
    latent_avg = state.pop("latent_avg")
    checkpoint = tmp_path / "050000.pt"
    # A training checkpoint: g, d, optimiser states and the argparse flags ride along with g_ema.
    torch.save({"g_ema": state, "latent_avg": latent_avg, "g": state, "args": argparse.Namespace(size=32)},
               checkpoint)
    main(["convert", str(checkpoint), str(tmp_path / "out")])

    model = load_model(tmp_path / "out")
    assert _same_weights(model.generator, tiny_generator)
    assert torch.equal(_image(model.generator), _image(tiny_generator))
    config = model.config
    assert (config.size, config.style_dim, config.n_mlp, config.channels) == (32, 32, 2, (32, 32, 24, 16))
    card = (tmp_path / "out" / "README.md").read_text()
    assert hashlib.sha256(checkpoint.read_bytes()).hexdigest() in card and "050000.pt" in card
    assert "inherit the licence of the source checkpoint" in card and "estimated" not in card
    with pytest.raises(SystemExit, match="exists and is not empty; pass --overwrite"):
        main(["convert", str(checkpoint), str(tmp_path / "out")])


def test_missing_latent_avg_is_estimated_from_the_mapping(tmp_path, tiny_generator):
    state = {k: v for k, v in tiny_generator.state_dict().items() if k != "latent_avg"}
    torch.save({"g_ema": state}, tmp_path / "g.pt")
    with pytest.warns(UserWarning, match="no latent_avg"):
        convert(tmp_path / "g.pt", tmp_path / "out")
    estimate = load_model(tmp_path / "out").generator.latent_avg
    # Compared with an independent sample of w: the two means agree within their standard errors.
    with torch.no_grad():
        w = tiny_generator.mapping(torch.randn(4096, 32, generator=torch.Generator().manual_seed(123)))
    standard_error = w.std(0) / math.sqrt(4096)
    assert ((estimate - w.mean(0)).abs() < 6 * math.sqrt(2) * standard_error).all()
    assert estimate.abs().max() > 10 * standard_error.max()  # not left at zero
    assert "estimated as the mean w of 4096 z" in (tmp_path / "out" / "README.md").read_text()


@pytest.mark.parametrize("config", [
    GeneratorConfig(size=64, style_dim=64, n_mlp=3, channel_multiplier=1),
    GeneratorConfig(size=256, channel_multiplier=2),
    GeneratorConfig(size=32, style_dim=16, n_mlp=1),  # below 64 the table does not depend on the multiplier
    GeneratorConfig(size=32, style_dim=32, n_mlp=2, channels=(32, 32, 24, 16)),
    GeneratorConfig(size=128, style_dim=16, n_mlp=1, channels=(512, 512, 512, 512, 512, 128)),
], ids=["cm1-64", "cm2-256", "table-32", "custom-32", "custom-128"])
def test_infer_config_from_shapes(config):
    with torch.device("meta"):  # shapes only
        state = Generator(config).state_dict()
    assert infer_config(state) == config
    with pytest.raises(ValueError, match="not a rosinality StyleGAN2 generator"):
        infer_config({k: v for k, v in state.items() if not k.startswith("to_rgbs.")})


def test_pt_with_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"g_ema": _Evil(os.system, f"touch {marker}")}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="weights-only loader refused it"):
        convert(tmp_path / "evil.pt", tmp_path / "out")
    assert not marker.exists()


# --- NVIDIA .pkl -------------------------------------------------------------------------------------------


def _reconstruct_persistent_obj(meta):  # pickled by reference only; a safe loader never calls it
    raise AssertionError("the NVIDIA reconstruct function must never run")


class EasyDict(dict):
    pass


class _Module:
    """Pickles exactly like a torch_utils.persistence module: reconstruct(meta) with the module's __dict__."""

    def __init__(self, class_name, module_src, params=(), buffers=(), modules=(), **attrs):
        self.class_name, self.module_src = class_name, module_src
        self.params, self.buffers, self.modules, self.attrs = dict(params), dict(buffers), dict(modules), attrs

    def __reduce__(self):
        hooks = {name: OrderedDict() for name in ("_backward_hooks", "_forward_hooks", "_forward_pre_hooks",
                                                    "_state_dict_hooks", "_load_state_dict_pre_hooks")}
        state = {"training": False, **hooks, "_non_persistent_buffers_set": set(),
                 "_parameters": OrderedDict((k, torch.nn.Parameter(v.clone(), requires_grad=False))
                                            for k, v in self.params.items()),
                 "_buffers": OrderedDict((k, v.clone()) for k, v in self.buffers.items()),
                 "_modules": OrderedDict(self.modules), "_init_args": (),
                 "_init_kwargs": EasyDict(resample_filter=[1, 3, 3, 1]), **self.attrs}
        meta = dict(type="class", version=6, module_src=self.module_src, class_name=self.class_name, state=state)
        return _reconstruct_persistent_obj, (meta,)


def _nvidia_generator(g: Generator, src: str) -> _Module:
    """The tiny generator under NVIDIA's module tree, names and shapes (training/networks.py)."""
    sd, cfg = g.state_dict(), g.config

    def fc(prefix, lr):
        weight = sd[f"{prefix}.weight"]
        return _Module("FullyConnectedLayer", src, {"weight": weight, "bias": sd[f"{prefix}.bias"]},
                       activation="lrelu" if lr != 1 else "linear", bias_gain=lr,
                       weight_gain=np.float64(lr / np.sqrt(weight.shape[1])))

    def layer(prefix, noise, resolution, up):
        params = {"weight": sd[f"{prefix}.conv.weight"][0], "bias": sd[f"{prefix}.activate.bias"],
                  "noise_strength": sd[f"{prefix}.noise.weight"].reshape(())}
        buffers = {"resample_filter": _FILTER, "noise_const": sd[f"noises.noise_{noise}"][0, 0]}
        return _Module("SynthesisLayer", src, params, buffers, {"affine": fc(f"{prefix}.conv.modulation", 1)},
                       resolution=resolution, up=up, use_noise=True, activation="lrelu", conv_clamp=256,
                       act_gain=np.float32(math.sqrt(2)))

    def torgb(prefix):
        weight = sd[f"{prefix}.conv.weight"][0]
        return _Module("ToRGBLayer", src, {"weight": weight, "bias": sd[f"{prefix}.bias"].reshape(3)}, (),
                       {"affine": fc(f"{prefix}.conv.modulation", 1)}, conv_clamp=256,
                       weight_gain=np.float32(1 / np.sqrt(weight.shape[1])))

    blocks = {"b4": _Module("SynthesisBlock", src, {"const": sd["input.input"][0]}, {"resample_filter": _FILTER},
                            {"conv1": layer("conv1", 0, 4, 1), "torgb": torgb("to_rgb1")},
                            architecture="skip", conv_clamp=256, in_channels=0)}
    for j, r in enumerate(cfg.resolutions[1:]):
        blocks[f"b{r}"] = _Module("SynthesisBlock", src, (), {"resample_filter": _FILTER},
                                  {"conv0": layer(f"convs.{2 * j}", 2 * j + 1, r, 2),
                                   "conv1": layer(f"convs.{2 * j + 1}", 2 * j + 2, r, 1),
                                   "torgb": torgb(f"to_rgbs.{j}")}, architecture="skip", conv_clamp=256)
    mapping = _Module("MappingNetwork", src, (), {"w_avg": sd["latent_avg"]},
                      {f"fc{i}": fc(f"style.{i + 1}", cfg.lr_mlp) for i in range(cfg.n_mlp)},
                      num_layers=cfg.n_mlp, w_avg_beta=0.995)
    synthesis = _Module("SynthesisNetwork", src, (), (), blocks, img_resolution=cfg.size, num_fp16_res=0)
    return _Module("Generator", src, (), (), {"synthesis": synthesis, "mapping": mapping},
                   z_dim=cfg.style_dim, c_dim=0, w_dim=cfg.style_dim, img_resolution=cfg.size, img_channels=3)


def _pickle_like_nvidia(monkeypatch, snapshot) -> bytes:
    """Pickle with the reconstruct function and EasyDict found under NVIDIA's module names, then forget them."""
    with monkeypatch.context() as m:
        for name in ("torch_utils", "torch_utils.persistence", "dnnlib", "dnnlib.util"):
            m.setitem(sys.modules, name, types.ModuleType(name))
        m.setattr(_reconstruct_persistent_obj, "__module__", "torch_utils.persistence")
        m.setattr(EasyDict, "__module__", "dnnlib.util")
        sys.modules["torch_utils.persistence"]._reconstruct_persistent_obj = _reconstruct_persistent_obj
        sys.modules["dnnlib.util"].EasyDict = EasyDict
        return pickle.dumps(snapshot, protocol=4)


def test_nvidia_pickle_converts_to_the_same_weights(tmp_path, monkeypatch, tiny_generator):
    marker = tmp_path / "module_src-ran"
    src = f"open({str(marker)!r}, 'w').close()\n"  # NVIDIA's loader would exec this; ours must not
    discriminator = _Module("Discriminator", src, {"b32.fromrgb.weight": torch.randn(4, 3, 1, 1)})
    snapshot = {"G": None, "D": discriminator, "G_ema": _nvidia_generator(tiny_generator, src),
                "augment_pipe": None, "training_set_kwargs": EasyDict(path="faces.zip", resolution=32)}
    (tmp_path / "network-snapshot-000400.pkl").write_bytes(_pickle_like_nvidia(monkeypatch, snapshot))

    convert(tmp_path / "network-snapshot-000400.pkl", tmp_path / "out", name="tiny-nv")
    model = load_model(tmp_path / "out")
    assert _same_weights(model.generator, tiny_generator)
    assert torch.equal(_image(model.generator), _image(tiny_generator))
    assert model.config.lr_mlp == tiny_generator.config.lr_mlp and model.config.name == "tiny-nv"
    assert "±256" in (tmp_path / "out" / "README.md").read_text()
    assert not marker.exists()


# A snapshot made from NVIDIA's published layout alone (stylegan2-ada-pytorch, training/networks.py), checked by
# an image computed the way NVIDIA's code computes it, so a wrong assumption in the converter about names, weight
# gains, kernel orientation, w_avg or the resampling filter shows up as a different picture. Facts used:
# - FullyConnectedLayer: weight [out, in] stored as randn / lr_multiplier, used × lr_multiplier / √in; bias used
#   × lr_multiplier; 'lrelu' is leaky ReLU 0.2 after the bias, times √2. Mapping: z normalised by its 2nd moment,
#   fc0..fc{n−1} at lr_multiplier 0.01; truncation w_avg.lerp(w, ψ).
# - SynthesisLayer: styles = affine(w) (bias_init 1); the [O, I, k, k] weight is modulated and demodulated (no
#   weight gain: demodulation cancels it), applied as a correlation, padding 1; up = 2 is a stride-2 transposed
#   convolution of the same kernel followed by the [1,3,3,1] filter (outer product / 64) padded (1, 1) with gain
#   4; then + noise_const · noise_strength, + bias, leaky ReLU 0.2, × √2.
# - ToRGBLayer: styles = affine(w) / √in, no demodulation, 1×1, + bias. 'skip': the image so far is upsampled
#   (zeros inserted, the filter padded (2, 1), gain 4) and the block's RGB added.
_NV_RES, _NV_CH, _NV_W, _NV_LR = (4, 8, 16, 32), {4: 32, 8: 32, 16: 24, 32: 16}, 32, 0.01


def _nv_state(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)

    def randn(*shape, scale=1.0):
        return torch.randn(*shape, generator=g) * scale

    sd = {}
    for i in range(2):
        sd[f"mapping.fc{i}.weight"] = randn(_NV_W, _NV_W) / _NV_LR
        sd[f"mapping.fc{i}.bias"] = randn(_NV_W, scale=0.1)
    sd["mapping.w_avg"] = randn(_NV_W, scale=0.3)

    def layer(prefix, c_in, c_out, res, k=3, noise=True):
        sd[f"{prefix}.affine.weight"] = randn(c_in, _NV_W)
        sd[f"{prefix}.affine.bias"] = 1 + randn(c_in, scale=0.1)
        sd[f"{prefix}.weight"] = randn(c_out, c_in, k, k)
        sd[f"{prefix}.bias"] = randn(c_out, scale=0.1)
        if noise:
            sd[f"{prefix}.noise_const"] = randn(res, res)
            sd[f"{prefix}.noise_strength"] = randn((), scale=0.2)
            sd[f"{prefix}.resample_filter"] = _FILTER.clone()

    sd["synthesis.b4.const"] = randn(_NV_CH[4], 4, 4)
    sd["synthesis.b4.resample_filter"] = _FILTER.clone()
    layer("synthesis.b4.conv1", _NV_CH[4], _NV_CH[4], 4)
    layer("synthesis.b4.torgb", _NV_CH[4], 3, 4, k=1, noise=False)
    for prev, r in zip(_NV_RES, _NV_RES[1:], strict=False):
        sd[f"synthesis.b{r}.resample_filter"] = _FILTER.clone()
        layer(f"synthesis.b{r}.conv0", _NV_CH[prev], _NV_CH[r], r)
        layer(f"synthesis.b{r}.conv1", _NV_CH[r], _NV_CH[r], r)
        layer(f"synthesis.b{r}.torgb", _NV_CH[r], 3, r, k=1, noise=False)
    return sd


def _nv_tree(sd: dict[str, torch.Tensor], src: str) -> _Module:
    """The flat NVIDIA state as NVIDIA's module tree: each dotted prefix a module, each leaf a param or buffer."""
    buffer_names = {"w_avg", "noise_const", "resample_filter"}

    def build(prefix, class_name):
        params, buffers, children = {}, {}, {}
        names = sorted({k[len(prefix):].split(".")[0] for k in sd if k.startswith(prefix)})
        for name in names:
            key = prefix + name
            if key in sd:
                (buffers if name in buffer_names else params)[name] = sd[key]
            else:
                kind = ("FullyConnectedLayer" if name.startswith(("fc", "affine")) else "ToRGBLayer"
                        if name == "torgb" else "SynthesisLayer" if name.startswith("conv") else "SynthesisBlock")
                children[name] = build(key + ".", kind)
        return _Module(class_name, src, params, buffers, children, **attrs(prefix, class_name, params))

    def attrs(prefix, class_name, params):  # the plain attributes NVIDIA's modules set in __init__
        if class_name == "FullyConnectedLayer":
            lr = _NV_LR if prefix.startswith("mapping.") else 1.0
            return dict(activation="lrelu" if lr != 1 else "linear", bias_gain=lr,
                        weight_gain=np.float64(lr / np.sqrt(params["weight"].shape[1])))
        if class_name == "SynthesisBlock":
            return dict(architecture="skip", conv_clamp=None)
        return {}

    mapping, synthesis = build("mapping.", "MappingNetwork"), build("synthesis.", "SynthesisNetwork")
    return _Module("Generator", src, (), (), {"synthesis": synthesis, "mapping": mapping}, z_dim=_NV_W, c_dim=0,
                   w_dim=_NV_W, img_resolution=_NV_RES[-1], img_channels=3)


def _nv_filter(x: torch.Tensor, up: int, pad: tuple[int, int], gain: float) -> torch.Tensor:
    """NVIDIA's upfirdn2d with the [1,3,3,1] filter: insert up−1 zeros after each pixel, pad, convolve."""
    n, c, h, w = x.shape
    if up > 1:
        y = x.new_zeros(n, c, h * up, w * up)
        y[:, :, ::up, ::up] = x
        x = y
    x = torch.nn.functional.pad(x, [pad[0], pad[1], pad[0], pad[1]])
    f = (_FILTER * gain).flip([0, 1])  # a true convolution (flip_filter=False)
    return torch.nn.functional.conv2d(x, f[None, None].repeat(c, 1, 1, 1), groups=c)


def _nv_image(sd: dict[str, torch.Tensor], z: torch.Tensor, psi: float) -> torch.Tensor:
    F_ = torch.nn.functional

    def fc(prefix, x, lr, act):
        weight, bias = sd[f"{prefix}.weight"], sd[f"{prefix}.bias"]
        x = x @ (weight * (lr / math.sqrt(weight.shape[1]))).T + bias * lr
        return F_.leaky_relu(x, 0.2) * math.sqrt(2) if act else x

    x = z * (z.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()
    for i in range(2):
        x = fc(f"mapping.fc{i}", x, _NV_LR, act=True)
    w = sd["mapping.w_avg"].lerp(x, psi)[0]

    def synthesis_layer(prefix, x, up):
        styles = fc(f"{prefix}.affine", w[None], 1, act=False)[0]
        weight = sd[f"{prefix}.weight"] * styles[None, :, None, None]
        weight = weight * (weight.square().sum(dim=[1, 2, 3]) + 1e-8).rsqrt()[:, None, None, None]
        if up == 1:
            x = F_.conv2d(x, weight, padding=1)
        else:
            x = F_.conv_transpose2d(x, weight.transpose(0, 1), stride=2)
            x = _nv_filter(x, 1, (1, 1), 4)
        x = x + sd[f"{prefix}.noise_const"] * sd[f"{prefix}.noise_strength"]
        return F_.leaky_relu(x + sd[f"{prefix}.bias"][None, :, None, None], 0.2) * math.sqrt(2)

    def torgb(prefix, x):
        weight = sd[f"{prefix}.weight"]
        styles = fc(f"{prefix}.affine", w[None], 1, act=False)[0] / math.sqrt(weight.shape[1])
        return F_.conv2d(x, weight * styles[None, :, None, None]) + sd[f"{prefix}.bias"][None, :, None, None]

    x = synthesis_layer("synthesis.b4.conv1", sd["synthesis.b4.const"][None], 1)
    img = torgb("synthesis.b4.torgb", x)
    for r in _NV_RES[1:]:
        x = synthesis_layer(f"synthesis.b{r}.conv0", x, 2)
        x = synthesis_layer(f"synthesis.b{r}.conv1", x, 1)
        img = _nv_filter(img, 2, (2, 1), 4) + torgb(f"synthesis.b{r}.torgb", x)
    return img


def test_nvidia_layout_from_published_facts_gives_nvidias_image(tmp_path, monkeypatch):
    sd = _nv_state()
    (tmp_path / "snap.pkl").write_bytes(_pickle_like_nvidia(monkeypatch, {"G_ema": _nv_tree(sd, "")}))
    convert(tmp_path / "snap.pkl", tmp_path / "out")
    g = load_model(tmp_path / "out").generator
    assert g.config.size == 32 and g.config.style_dim == _NV_W
    z = seed_to_z(5, _NV_W)
    with torch.no_grad():
        ours = g.synthesize(g.styles(g.truncate(g.mapping(z), 0.7)))
        theirs = _nv_image(sd, z, 0.7)
    assert ours.shape == theirs.shape == (1, 3, 32, 32)
    assert (ours - theirs).abs().max() < 1e-4 * max(1.0, float(theirs.abs().max()))


def test_stylegan3_pickle_is_refused_clearly(tmp_path, monkeypatch):
    layers = {"input": _Module("SynthesisInput", ""), "L0_36_512": _Module("SynthesisLayer", "")}
    g = _Module("Generator", "", (), (), {"mapping": _Module("MappingNetwork", ""),
                                          "synthesis": _Module("SynthesisNetwork", "", (), (), layers)},
                z_dim=512, c_dim=0, w_dim=512, img_channels=3)
    (tmp_path / "sg3.pkl").write_bytes(_pickle_like_nvidia(monkeypatch, {"G_ema": g}))
    with pytest.raises(ValueError, match="StyleGAN3 generators cannot be converted"):
        convert(tmp_path / "sg3.pkl", tmp_path / "out")


class _Evil:
    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


@pytest.mark.parametrize("payload, asks_for", [
    (lambda marker: _Evil(os.system, f"touch {marker}"), "posix.system"),
    (lambda marker: _Evil(eval, f"open({str(marker)!r}, 'w').close()"), "builtins.eval"),
    (lambda marker: _Evil(subprocess.call, ["touch", str(marker)]), "subprocess.call"),
], ids=["os.system", "eval", "subprocess"])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, payload, asks_for):
    marker = tmp_path / "pwned"
    data = pickle.dumps({"G_ema": {"weights": [payload(marker)]}})
    (tmp_path / "evil.pkl").write_bytes(data)
    with pytest.raises(ValueError, match=f"refusing to load evil.pkl: it asks for {asks_for}, which"):
        convert(tmp_path / "evil.pkl", tmp_path / "out")
    assert not marker.exists() and not (tmp_path / "out").exists()
    pickle.loads(data)  # the payload is live: a plain unpickler runs it
    assert marker.exists()
