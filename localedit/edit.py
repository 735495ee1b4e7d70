"""The editor: a target, a reference and a part in, a locally edited image out (paper §3.2, Eq. 3).

A target or reference is a source: a seed (its z mapped and truncated at ψ), or a `Latent`, a W+ point such as a
projected picture (projection.py), used as it is. Each source's styles, image and cluster map are computed once
and kept in a bounded LRU cache, so a warm edit costs one synthesis pass: the query (a few sorts) and
σ_G = σ_T + q ⊙ (σ_R − σ_T) are negligible. Everything runs at batch 1, so an edit's bytes do not depend on what
else was computed before it.
"""

from __future__ import annotations

import functools
import hashlib
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import Tensor

from localedit.catalog import Catalog, cluster_maps, normalize_activations
from localedit.color import in_out_mse, srgb_to_lab
from localedit.parts import Part, check_threshold
from localedit.query import (
    claim,
    global_query,
    lerp_styles,
    pack_styles,
    sequential_query,
    simultaneous_query,
    unpack_styles,
)
from localedit.stylegan2 import Generator

METHODS = ("sequential", "simultaneous", "global")
MAX_SEED = 2**32 - 1


@dataclass(frozen=True, eq=False)
class Latent:
    """A source that is not a seed: a W+ latent [n_latent, style_dim] (one w per style input), float32. Two are
    the same source when their bytes are; `name` is a digest of them, for caches and links."""

    w: Tensor
    name: str

    @classmethod
    def of(cls, w: Tensor | np.ndarray) -> Latent:
        w = torch.as_tensor(w).detach().to(torch.float32).cpu().contiguous().clone()
        if w.ndim != 2 or not bool(torch.isfinite(w).all()):
            raise ValueError(f"a latent is a finite W+ tensor [n_latent, style_dim], got shape {list(w.shape)}")
        return cls(w, hashlib.sha256(w.numpy().tobytes()).hexdigest()[:16])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Latent) and other.name == self.name

    def __hash__(self) -> int:
        return hash(("latent", self.name))

    def __repr__(self) -> str:
        return f"Latent({self.name})"

    def __str__(self) -> str:
        return f"latent {self.name[:8]}"


Source = int | Latent


@dataclass(frozen=True)
class Query:
    """The knobs that decide the query q (paper §3.2.3), fully resolved. It names no image: the same query serves
    every pair of images, and queries are cached by it."""

    part: str
    method: str
    epsilon: float
    threshold: float
    lam: float


@dataclass(frozen=True)
class EditParams:
    """One edit, fully resolved: what is edited (the target and reference seeds at ψ) and the query.
    The same params give the same bytes. The query's knobs read through (params.part, params.epsilon, ...)."""

    target: Source
    reference: Source
    truncation: float  # ψ of the seeds; a Latent is used as it is
    query: Query

    part = property(lambda self: self.query.part)
    method = property(lambda self: self.query.method)
    epsilon = property(lambda self: self.query.epsilon)
    threshold = property(lambda self: self.query.threshold)
    lam = property(lambda self: self.query.lam)


@dataclass(frozen=True)
class EditResult:
    params: EditParams
    target: np.ndarray  # uint8 [H, W, 3]
    reference: np.ndarray  # uint8 [H, W, 3]
    edited: np.ndarray  # uint8 [H, W, 3]
    diff: np.ndarray  # float32 [H, W], squared CIELAB error between target and edited
    roi: np.ndarray  # bool [H, W], the part's clusters on the target
    changed: dict[str, int]  # edited style layer → number of channels whose style value changed
    in_mse: float
    out_mse: float


@dataclass(frozen=True)
class _Sample:
    styles: dict[str, Tensor]  # layer → σ [1, C]
    packed: Tensor  # [1, Σ C] the same σ, every layer end to end (`pack_styles`), so Eq. 3 is one operation
    image: Tensor  # [1, 3, H, W]
    pixels: np.ndarray  # uint8 [H, W, 3]
    lab: Tensor  # [1, 3, H, W] CIELAB, so a warm edit converts only the edited image
    clusters: Tensor  # [H, W] cluster id per pixel, at image resolution
    rois: dict[tuple[int, ...], Tensor] = field(default_factory=dict, compare=False, repr=False)  # by clusters


def to_uint8(image: Tensor) -> np.ndarray:
    """[1, 3, H, W] in [-1, 1] → uint8 [H, W, 3]."""
    return ((image[0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()


def synthesize_with_clusters(generator: Generator, catalog: Catalog,
                             styles: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    """One synthesis pass → (images [B, 3, H, W], cluster id per pixel [B, H, W] at image resolution)."""
    image, inputs = generator.trace(styles, [catalog.layer])
    return image, cluster_maps(normalize_activations(inputs[catalog.layer]), catalog.centroids, image.shape[-2:])


def lab_diff(edited: Tensor, target: _Sample) -> Tensor:
    """Squared CIELAB error (ΔE*76²) of an edited image [1, 3, H, W] against its target sample → [H, W]."""
    return (srgb_to_lab(edited) - target.lab).square().sum(dim=1)[0]


def check_seed(name: str, seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= MAX_SEED:
        raise ValueError(f"{name} seed must be a whole number from 0 to {MAX_SEED}, got {seed!r}")
    return int(seed)


def _check_number(name: str, value: object, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not math.isfinite(value) \
            or not low <= value <= high:
        raise ValueError(f"{name} must be a number from {low:g} to {high:g}, got {value!r}")
    return float(value)


class Editor:
    """Local edits on one generator with its catalog.

    Each part's settings (whether toRGB styles take part, the threshold, the ε profile) come from the catalog;
    `include_torgb` True or False overrides every part's toRGB setting, None keeps them.
    """

    def __init__(self, generator: Generator, catalog: Catalog, cache_size: int = 128,
                 include_torgb: bool | None = None):
        self.generator = generator.eval()
        self.catalog = catalog
        self.include_torgb = include_torgb
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple[int, float], _Sample] = OrderedDict()
        self._lock = threading.Lock()
        # A query depends only on the knobs, not on the seeds: moving between seeds reuses it.
        self._query = functools.lru_cache(maxsize=256)(self.compute_query)
        self.dims = generator.style_dims  # the layout of packed styles and queries
        self._packed_query = functools.lru_cache(maxsize=256)(lambda knobs: pack_styles(self._query(knobs), self.dims))
        self._packed_composite = functools.lru_cache(maxsize=64)(
            lambda queries: [pack_styles(q, self.dims) for q in self._claimed(queries)])
        self._starts = np.cumsum([0, *self.dims.values()])[:-1]

    def relabelled(self, catalog: Catalog) -> Editor:
        """An Editor for `catalog`, a relabelling of this one's (the same layer and centroids; other parts or
        settings), sharing this one's samples: their images and cluster maps do not depend on the names."""
        if catalog.layer != self.catalog.layer or not torch.equal(catalog.centroids, self.catalog.centroids):
            raise ValueError("a relabelled catalog must have the same clustering layer and centroids")
        editor = Editor(self.generator, catalog, self.cache_size, self.include_torgb)
        editor._cache, editor._lock = self._cache, self._lock
        return editor

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(self.catalog.parts)

    def resolve_query(self, part: str, epsilon: float | None = None, threshold: float | None = None,
                      method: str = "sequential", lam: float | None = None) -> Query:
        """Validate the query's knobs and fill defaults from the part's settings; raises ValueError saying what is
        allowed."""
        if part not in self.catalog.parts:
            raise ValueError(f"unknown part {part!r}; this model's parts are {list(self.catalog.parts)}")
        if method not in METHODS:
            raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
        p = self.catalog.parts[part]
        return Query(
            part=part,
            method=method,
            epsilon=_check_number("epsilon", p.epsilon if epsilon is None else epsilon, 0, 1e4),
            threshold=check_threshold(p.threshold if threshold is None else threshold),
            lam=_check_number("lambda", 1.0 if lam is None else lam, 0, 1e3 if method != "global" else 1),
        )

    def resolve(self, target_seed: object, reference_seed: object, part: str, epsilon: float | None = None,
                threshold: float | None = None, method: str = "sequential", lam: float | None = None,
                truncation: float | None = None) -> EditParams:
        """Validate every input and fill defaults from the catalog; raises ValueError saying what is allowed."""
        query = self.resolve_query(part, epsilon, threshold, method, lam)
        return EditParams(
            target=self.check_source("target", target_seed),
            reference=self.check_source("reference", reference_seed),
            truncation=self.resolve_truncation(truncation),
            query=query,
        )

    def check_source(self, name: str, source: object) -> Source:
        """A seed (whole number from 0 to MAX_SEED) or a Latent of this generator's W+ shape; raises ValueError."""
        if not isinstance(source, Latent):
            return check_seed(name, source)
        shape = (self.generator.n_latent, self.generator.style_dim)
        if tuple(source.w.shape) != shape:
            raise ValueError(f"{name} latent has shape {list(source.w.shape)}; this model's W+ is {list(shape)}")
        return source

    def resolve_truncation(self, truncation: float | None = None) -> float:
        """ψ in [0, 1]; None gives the model's own."""
        return _check_number("truncation", self.generator.config.truncation if truncation is None else truncation,
                             0, 1)

    def edit(self, target_seed: object, reference_seed: object, part: str, epsilon: float | None = None,
             threshold: float | None = None, method: str = "sequential", lam: float | None = None,
             truncation: float | None = None) -> EditResult:
        params = self.resolve(target_seed, reference_seed, part, epsilon, threshold, method, lam, truncation)
        return self.run(params)

    def run(self, params: EditParams) -> EditResult:
        target = self.sample(params.target, params.truncation)
        reference = self.sample(params.reference, params.truncation)
        q = self.packed_query(params.query)
        edited_layers = self._query(params.query).keys()
        with torch.inference_mode():
            packed = lerp_styles(target.packed, reference.packed, q)
            edited = self.generator.synthesize(unpack_styles(packed, self.dims))
            diff = lab_diff(edited, target)
            roi = self.roi(target, params.part)
            in_mse, out_mse = in_out_mse(diff[None], roi[None])
            # Channels whose style value moved: a channel the query picks but where σ_R = σ_T changes nothing.
            moved = np.add.reduceat((packed != target.packed)[0].numpy(), self._starts)
        return EditResult(
            params=params,
            target=target.pixels,
            reference=reference.pixels,
            edited=to_uint8(edited),
            diff=diff.numpy().astype(np.float32, copy=False),
            roi=roi.numpy().copy(),
            changed={layer: int(n) for layer, n in zip(self.dims, moved, strict=True) if layer in edited_layers},
            in_mse=float(in_mse[0]),
            out_mse=float(out_mse[0]),
        )

    def roi(self, sample: _Sample, part: str) -> Tensor:
        """The part's region on a sample: bool [H, W], the pixels of its clusters. Kept with the sample (by the
        clusters, so renaming or relabelling parts can't serve a stale region); don't modify it."""
        clusters = tuple(self.catalog.parts[part].clusters)
        roi = sample.rois.get(clusters)
        if roi is None:
            roi = sample.rois[clusters] = torch.isin(sample.clusters, torch.tensor(clusters))
        return roi

    def packed_query(self, knobs: Query) -> Tensor:
        """`query` packed like the samples' styles ([Σ C], 0 on the layers it leaves alone), cached and shared:
        don't modify it."""
        return self._packed_query(knobs)

    def packed_composite_queries(self, queries: tuple[Query, ...]) -> list[Tensor]:
        """The rows' queries of a composite with every channel claimed by one row (`query.claim`), packed like
        `packed_query`; cached by the knobs and shared: don't modify them."""
        return self._packed_composite(tuple(queries))

    def _claimed(self, queries: tuple[Query, ...]) -> list[dict[str, Tensor]]:
        return claim([self._query(knobs) for knobs in queries], [self.part_rows(knobs.part) for knobs in queries])

    def query(self, knobs: Query | EditParams) -> dict[str, Tensor]:
        """q per edited style layer for the part (toRGB layers only where the part uses them).

        Cached by the knobs; the caller gets its own copy, so changing it cannot change later edits."""
        cached = self._query(knobs.query if isinstance(knobs, EditParams) else knobs)
        return {layer: q.clone() for layer, q in cached.items()}

    def part_settings(self, part: str) -> Part:
        """The part as the catalog stores it, with the editor's toRGB override applied."""
        p = self.catalog.parts[part]
        return p if self.include_torgb is None else replace(p, torgb=self.include_torgb)

    def part_rows(self, part: str) -> dict[str, Tensor]:
        """The part's row of M for each style layer its edits may touch."""
        return self.catalog.edited_rows(self.part_settings(part))

    def compute_query(self, knobs: Query | EditParams) -> dict[str, Tensor]:
        """`query` without the cache."""
        knobs = knobs.query if isinstance(knobs, EditParams) else knobs
        rows = self.part_rows(knobs.part)
        if knobs.method == "sequential":
            return sequential_query(rows, self.layer_epsilons(knobs), knobs.threshold)
        if knobs.method == "simultaneous":
            return simultaneous_query(rows, knobs.lam)
        return global_query(rows, knobs.lam)

    def layer_epsilons(self, knobs: Query | EditParams) -> dict[str, float]:
        """ε per edited style layer: the part's profile at base ε knobs.epsilon (the catalog's at its default)."""
        return self.part_settings(knobs.part).epsilon_map(self.part_rows(knobs.part), knobs.epsilon)

    def epsilon_max(self, part: str, threshold: float | None = None) -> float:
        """The end of the part's useful ε range at this threshold (default: the part's); see Catalog.epsilon_max."""
        return self.catalog.epsilon_max(self.part_settings(part), threshold)

    def threshold_max(self, part: str) -> float:
        """The threshold at and past which the part's sequential query is empty: its largest M."""
        return self.catalog.threshold_max(self.part_settings(part))

    def sample(self, source: Source, truncation: float) -> _Sample:
        """A source's styles, image and cluster map, from the LRU cache when warm. ψ applies to seeds only."""
        key = (source, None if isinstance(source, Latent) else truncation)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        g = self.generator
        with torch.inference_mode():
            if isinstance(source, Latent):
                styles = g.styles(source.w[None].to(g.latent_avg.device))
            else:
                styles = g.seed_styles([source], truncation)
            image, clusters = synthesize_with_clusters(g, self.catalog, styles)
            sample = _Sample(styles=styles, packed=pack_styles(styles, self.dims), image=image,
                             pixels=to_uint8(image), lab=srgb_to_lab(image),
                             clusters=clusters[0])
        with self._lock:
            self._cache[key] = sample
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return sample
