"""A named part of a catalog and its edit settings: the inputs of the sequential query (paper §3.2.3, Eq. 5).

A part is a set of cluster ids (its row of M is the sum of theirs, see catalog.py) plus the settings chosen for
it on tuning seeds (`tune`) or by hand (`label`): the base ε, its profile over StyleGAN's layer groups, the
threshold ρ/(1+ρ), and whether the toRGB styles take part.
"""

from __future__ import annotations

import math
import numbers
import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

DEFAULT_EPSILON = 10.0  # a starting budget; tune it per part when labelling
DEFAULT_THRESHOLD = 0.1  # the paper's ρ/(1+ρ) with ρ = 1/9
PART_COLORS = {
    "eyes": "#1f77b4", "eyebrows": "#9467bd", "nose": "#ff7f0e", "mouth": "#d62728", "teeth": "#f7f7f7",
    "hair": "#8c564b", "skin": "#f2b880", "ears": "#17becf", "neck": "#bcbd22", "background": "#7f7f7f",
}
_FALLBACK_COLORS = ("#e377c2", "#2ca02c", "#aec7e8", "#ffbb78", "#98df8a", "#c5b0d5", "#c49c94", "#dbdb8d")
_NAME = re.compile(r"^\w[\w-]*$")
_COLOR = re.compile(r"^#[0-9a-f]{6}$")


def default_color(name: str) -> str:
    """A part's colour: a fixed one for common part names, else a stable pick from a small palette."""
    return PART_COLORS.get(name, _FALLBACK_COLORS[zlib.crc32(name.encode()) % len(_FALLBACK_COLORS)])


MAX_THRESHOLD = 0.99  # above it no channel of a normalised layer can qualify; one bound for every input


def check_threshold(value: object, name: str = "threshold") -> float:
    """The sequential threshold ρ/(1+ρ): a number in [0, MAX_THRESHOLD]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= float(value) <= MAX_THRESHOLD:
        raise ValueError(f"{name} must be a number from 0 to {MAX_THRESHOLD:g}, got {value!r}")
    return float(value)


def _check_epsilon(name: str, value: float) -> float:
    value = float(value)
    if not (math.isfinite(value) and value >= 0):  # JSON has no infinity, so a stored ε is finite
        raise ValueError(f"{name} must be a finite number ≥ 0, got {value}")
    return value


LAYER_GROUPS = ("coarse", "middle", "fine")


def layer_resolution(layer: str) -> int:
    """The output resolution of a style layer, from its rosinality name: conv1/to_rgb1 4, convs.{2j,2j+1} and
    to_rgbs.j 2^(j+3)."""
    name, _, index = layer.partition(".")
    if name in ("conv1", "to_rgb1") and not index:
        return 4
    if name in ("convs", "to_rgbs") and index.isdigit():
        return 2 ** ((int(index) // 2 if name == "convs" else int(index)) + 3)
    raise ValueError(f"not a style layer name: {layer!r}")


def input_resolution(layer: str) -> int:
    """The resolution of the activations entering a style layer (what a catalog clusters): its output's, except
    for the upsampling convs.{2j}, whose input is half as wide."""
    name, _, index = layer.partition(".")
    upsamples = name == "convs" and index.isdigit() and int(index) % 2 == 0
    return layer_resolution(layer) // (2 if upsamples else 1)


def layer_group(layer: str) -> str:
    """StyleGAN's split of the style layers: coarse (4–8 px: pose, face shape), middle (16–32 px: features),
    fine (64 px and up: colour and micro-structure)."""
    resolution = layer_resolution(layer)
    return "coarse" if resolution <= 8 else "middle" if resolution <= 32 else "fine"


def is_torgb(layer: str) -> bool:
    return layer.startswith("to_rgb")


@dataclass(frozen=True)
class Part:
    """A named semantic part: a set of clusters and its sequential-query settings (§3.2.3).

    The settings are only the inputs of Eq. 5, chosen per part on tuning seeds (`tune`) or by hand (`label`):
    - epsilon: the base budget ε, what the ε slider moves;
    - epsilon_profile: {coarse, middle, fine} → weight; a layer's budget is weight × ε (0 leaves the group
      unedited). Given as a mapping or pairs, stored as pairs in LAYER_GROUPS order so the part stays immutable
      (epsilon_per_layer likewise, sorted);
    - epsilon_per_layer: overrides for single layers: the layer's budget at the default ε, scaling with ε like
      the rest (when the default ε is 0, the override is the layer's weight instead);
    - threshold: the paper's ρ/(1+ρ);
    - torgb: whether the toRGB layers' styles take part. A toRGB channel recolours every pixel its layer
      draws, so it helps parts whose look is mostly colour over a large area and leaks for the rest.
    An empty colour picks `default_color(name)`.
    """

    name: str
    clusters: tuple[int, ...]
    epsilon: float = DEFAULT_EPSILON
    epsilon_per_layer: tuple[tuple[str, float], ...] = ()
    threshold: float = DEFAULT_THRESHOLD
    color: str = ""
    torgb: bool = False
    epsilon_profile: tuple[tuple[str, float], ...] = (("coarse", 1.0), ("middle", 1.0), ("fine", 1.0))

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"part name must be letters, digits, '_' or '-', got {self.name!r}")
        clusters = tuple(int(c) for c in self.clusters)
        if not clusters or len(set(clusters)) != len(clusters) or min(clusters) < 0:
            raise ValueError(f"part {self.name!r}: clusters must be distinct ids ≥ 0, got {self.clusters}")
        per_layer = dict(self.epsilon_per_layer)
        overrides = tuple(sorted((str(layer), _check_epsilon(f"part {self.name!r}: epsilon[{layer!r}]", eps))
                                 for layer, eps in per_layer.items()))
        profile = dict(self.epsilon_profile)
        if set(profile) != set(LAYER_GROUPS):
            raise ValueError(f"part {self.name!r}: epsilon_profile needs exactly the groups {list(LAYER_GROUPS)}, "
                             f"got {sorted(profile)}")
        profile = tuple((g, _check_epsilon(f"part {self.name!r}: epsilon_profile[{g!r}]", profile[g]))
                        for g in LAYER_GROUPS)
        if not isinstance(self.torgb, bool):
            raise ValueError(f"part {self.name!r}: torgb must be true or false, got {self.torgb!r}")
        check_threshold(self.threshold, f"part {self.name!r}: threshold")
        color = (self.color or default_color(self.name)).lower()
        if not _COLOR.match(color):
            raise ValueError(f"part {self.name!r}: color must look like '#rrggbb', got {self.color!r}")
        object.__setattr__(self, "clusters", clusters)
        object.__setattr__(self, "epsilon", _check_epsilon(f"part {self.name!r}: epsilon", self.epsilon))
        object.__setattr__(self, "epsilon_per_layer", overrides)
        object.__setattr__(self, "epsilon_profile", profile)
        object.__setattr__(self, "threshold", float(self.threshold))
        object.__setattr__(self, "color", color)

    def edited_layers(self, layers: Iterable[str]) -> list[str]:
        """The style layers this part's edits may touch: all of them, or all but the toRGB layers."""
        return [layer for layer in layers if self.torgb or not is_torgb(layer)]

    def epsilon_scales(self, layers: Iterable[str]) -> dict[str, float]:
        """Per layer, the factor s with ε_layer = s · ε: the group's weight, or an override ÷ the default ε."""
        overrides, weights = dict(self.epsilon_per_layer), dict(self.epsilon_profile)
        out = {}
        for layer in layers:
            if layer in overrides:
                # An override is the layer's budget at the default ε; a default of 0 leaves no ratio, so then
                # the override is the layer's weight.
                out[layer] = overrides[layer] / self.epsilon if self.epsilon > 0 else overrides[layer]
            else:
                out[layer] = weights[layer_group(layer)]
        return out

    def epsilon_map(self, layers: Iterable[str], epsilon: float | None = None) -> dict[str, float]:
        """The budget ε for each of `layers` at base ε `epsilon` (default: the part's), for `sequential_query`."""
        epsilon = self.epsilon if epsilon is None else epsilon
        return {layer: scale * epsilon for layer, scale in self.epsilon_scales(layers).items()}

    def to_dict(self) -> dict:
        return {"clusters": list(self.clusters), "epsilon": self.epsilon,
                "epsilon_per_layer": dict(self.epsilon_per_layer), "threshold": self.threshold,
                "color": self.color, "torgb": self.torgb, "epsilon_profile": dict(self.epsilon_profile)}
