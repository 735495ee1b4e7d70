"""The semantic catalog, paper §3.1 and Appendix A.

1. Activations A entering one chosen layer, normalised per sample and per channel, are flattened to a bag of
   [N·H·W, C] patch embeddings and clustered with spherical (cosine) k-means: U ∈ {0,1}^{N×K×H×W}.
2. Eq. 1 gives every style layer's contribution matrix, M_kc = mean over n,h,w of A²_nchw · U_nkhw, with U
   resized to that layer's resolution, bilinearly as §3.1 says or by nearest neighbour as the authors' code did
   (`contribution_sum`). Normalised A makes Σ_k M_kc = mean A² = 1.
3. A person names parts (parts.py): a part is a set of cluster ids, and its row of M is the sum of its
   clusters' rows, so relabelling needs no recomputation.

`Catalog.to_state` / `Catalog.from_state` convert to and from (catalog.json dict, catalog.safetensors tensors);
reading and writing the files is hub.py's job.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from localedit.kmeans import spherical_kmeans
from localedit.parts import MAX_THRESHOLD, Part, check_threshold, input_resolution
from localedit.query import saturating_epsilon
from localedit.stylegan2 import Generator

FORMAT_VERSION = 1


# --- Eq. 1 -----------------------------------------------------------------------------------------------


def normalize_activations(a: Tensor, eps: float = 1e-8) -> Tensor:
    """a [N, C, H, W] → zero mean, unit variance over (H, W) for every sample and channel (§3.1)."""
    if a.ndim != 4:
        raise ValueError(f"activations must have shape [N, C, H, W], got {list(a.shape)}")
    centered = a - a.mean(dim=(2, 3), keepdim=True)
    # The population variance makes mean(A²) = 1 exactly, which is what Σ_k M_kc = 1 rests on. (A norm of the
    # centred maps is several times faster on CPU than torch.var_mean, and as accurate.)
    var = torch.linalg.vector_norm(centered, dim=(2, 3), keepdim=True).square() / (a.shape[2] * a.shape[3])
    return centered.mul_(torch.rsqrt(var + eps))


def cluster_maps(a: Tensor, centroids: Tensor, size: tuple[int, int] | None = None) -> Tensor:
    """Activations [N, C, h, w] and unit centroids [K, C] → cluster labels U [N, h, w] by maximum cosine.

    With `size` (H, W), the labels are for that resolution: each cluster's cosine map is upsampled bilinearly
    before the argmax, so a part's outline follows the activations between their pixels instead of being
    made of h×w blocks (on the embedded model it raised the judge IoU of every part; the card has the figures).
    Eq. 1 resizes the labels its own way, set by the catalog's `resize` (see `contribution_sum`).
    """
    if a.ndim != 4 or centroids.ndim != 2 or a.shape[1] != centroids.shape[1]:
        raise ValueError(f"need activations [N, C, H, W] and centroids [K, C] with the same C, got "
                         f"{list(a.shape)} and {list(centroids.shape)}")
    if size is None or tuple(size) == tuple(a.shape[2:]):
        # A row's norm does not change its argmax, so only the centroids need unit length.
        return torch.einsum("nchw,kc->nkhw", a, centroids.to(a)).argmax(dim=1)
    cosine = torch.einsum("nchw,kc->nkhw", F.normalize(a, dim=1), centroids.to(a))
    return F.interpolate(cosine, size=tuple(size), mode="bilinear", align_corners=False).argmax(dim=1)


def resize_labels(labels: Tensor, size: tuple[int, int]) -> Tensor:
    """Nearest-neighbour resize of label maps [N, h, w] → [N, H, W], sampling at pixel centres.

    Output pixel i reads input pixel ⌊(i + ½)·h/H⌋ (torch's "nearest-exact"), in integers so it is exact.
    """
    if labels.ndim != 3:
        raise ValueError(f"labels must have shape [N, h, w], got {list(labels.shape)}")
    (h, w), (out_h, out_w) = labels.shape[1:], size
    rows = (torch.arange(out_h, device=labels.device) * 2 + 1) * h // (2 * out_h)
    cols = (torch.arange(out_w, device=labels.device) * 2 + 1) * w // (2 * out_w)
    return labels[:, rows][:, :, cols]


RESIZES = ("bilinear", "nearest")


def contribution_sum(a: Tensor, labels: Tensor, k: int, resize: str = "nearest") -> Tensor:
    """Eq. 1 before the mean: Σ_{n,h,w} A²·U → [K, C], for normalised A [N, C, H, W] and labels [N, h, w].

    resize: how U reaches A's resolution. "bilinear" is §3.1 as written: the one-hot U is resampled bilinearly
    (with PIL-style antialiasing when shrinking, so a coarse pixel holds the share of each cluster under its
    footprint); the memberships still sum to 1 at every pixel, so Σ_k M = 1 holds. "nearest" samples the labels
    at pixel centres, as the authors' code did; it is the default because, measured both ways on the embedded
    model, tuned edits transferred more with it (its model card has the figures). Divide the total over all
    batches by the total N·H·W to get M; see `contribution`.
    """
    if a.ndim != 4 or labels.ndim != 3 or labels.shape[0] != a.shape[0]:
        raise ValueError(f"need activations [N, C, H, W] and labels [N, h, w] with the same N, got "
                         f"{list(a.shape)} and {list(labels.shape)}")
    if labels.numel() and not 0 <= int(labels.min()) <= int(labels.max()) < k:
        raise ValueError(f"labels must be cluster ids in [0, {k}), got {int(labels.min())}..{int(labels.max())}")
    if resize not in RESIZES:
        raise ValueError(f"resize must be one of {list(RESIZES)}, got {resize!r}")
    n, c, h, w = a.shape
    squares = a.square()
    if resize == "bilinear" and tuple(labels.shape[1:]) != (h, w):
        u = F.one_hot(labels, k).permute(0, 3, 1, 2).to(a.dtype)
        u = F.interpolate(u, size=(h, w), mode="bilinear", align_corners=False, antialias=h < labels.shape[1])
        return torch.einsum("nchw,nkhw->kc", squares, u)
    if h % labels.shape[1] == 0 and w % labels.shape[2] == 0:
        # Labels coarser than the layer: nearest upsampling by an integer factor gives each label a whole block,
        # so sum A² over the blocks first and scatter at the labels' resolution.
        fh, fw = h // labels.shape[1], w // labels.shape[2]
        squares = squares.reshape(n, c, h // fh, fh, w // fw, fw).sum(dim=(3, 5))
    else:
        labels = resize_labels(labels, (h, w))
    index = labels.reshape(n, 1, -1).expand(-1, c, -1)
    sums = torch.zeros(n, c, k, dtype=a.dtype, device=a.device)
    sums.scatter_add_(2, index, squares.reshape(n, c, -1))
    return sums.sum(dim=0).T


def contribution(a: Tensor, labels: Tensor, k: int, resize: str = "nearest") -> Tensor:
    """Eq. 1: M [K, C] = mean over n,h,w of A²·U, with labels [N, h, w] resized to A's [H, W] (see
    `contribution_sum`)."""
    n, _, h, w = a.shape
    return contribution_sum(a, labels, k, resize) / (n * h * w)


# --- the catalog ----------------------------------------------------------------------------------------


_META_KEYS = {"format_version", "layer", "k", "n_samples", "truncation", "seed", "style_layers", "parts",
              "timings", "fit_rows", "resize", "examples"}
# Catalogs written before these existed lack them.
_OPTIONAL_META_KEYS = {"timings", "fit_rows", "resize", "examples"}
_PART_KEYS = {"clusters", "epsilon", "epsilon_per_layer", "threshold", "color", "torgb", "epsilon_profile"}
_OPTIONAL_PART_KEYS = {"torgb", "epsilon_profile"}  # parts written before per-part settings existed lack them


@dataclass(frozen=True, eq=False)
class Catalog:
    """Clusters of one layer and, for every style layer, M [K, C_l] (Eq. 1), plus the named parts.

    layer: the clustering layer's style name (e.g. "convs.3"); its input activations were clustered.
    centroids: unit centroids [K, C_layer]. M: {style layer: [K, C_l]}, in synthesis order.
    timings: seconds spent building it (see `build_catalog`), if known.
    fit_rows: how many rows k-means fitted its centroids on; None for all of them.
    resize: how Eq. 1 resized the cluster memberships to each layer, "bilinear" or "nearest"; catalogs
      written before the choice existed used "nearest".
    examples: {part: (target seed, reference seed)}, a pair that shows the part's edit plainly (picked by
      `tune.pick_examples`); the app offers them as its examples.
    """

    layer: str
    k: int
    n_samples: int
    truncation: float
    centroids: Tensor
    M: Mapping[str, Tensor]
    parts: Mapping[str, Part] = field(default_factory=dict)
    seed: int = 0
    timings: Mapping[str, float] = field(default_factory=dict)
    fit_rows: int | None = None
    resize: str = "nearest"  # how Eq. 1 resized U to each layer (see `contribution_sum`)
    examples: Mapping[str, tuple[int, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        k = self.k
        if k < 1 or self.centroids.ndim != 2 or self.centroids.shape[0] != k:
            raise ValueError(f"centroids must have shape [K={k}, C], got {list(self.centroids.shape)}")
        if self.layer not in self.M:
            raise ValueError(f"clustering layer {self.layer!r} has no M; layers: {list(self.M)}")
        bad = {name: list(m.shape) for name, m in self.M.items() if m.ndim != 2 or m.shape[0] != k}
        if bad:
            raise ValueError(f"every M must have shape [K={k}, C_l]; wrong: {bad}")
        if self.M[self.layer].shape[1] != self.centroids.shape[1]:
            raise ValueError(f"centroids have {self.centroids.shape[1]} channels but layer {self.layer!r} "
                             f"has {self.M[self.layer].shape[1]}")
        if self.resize not in RESIZES:
            raise ValueError(f"resize must be one of {list(RESIZES)}, got {self.resize!r}")
        if self.n_samples < 1 or not math.isfinite(self.truncation):
            raise ValueError(f"need n_samples ≥ 1 and a finite truncation, got {self.n_samples}, "
                             f"{self.truncation}")
        for key, part in self.parts.items():
            if key != part.name:
                raise ValueError(f"part stored under {key!r} is named {part.name!r}")
            if max(part.clusters) >= k:
                raise ValueError(f"part {key!r}: cluster ids {part.clusters} out of range for K={k}")
            unknown = sorted({layer for layer, _ in part.epsilon_per_layer} - set(self.M))
            if unknown:
                raise ValueError(f"part {key!r}: epsilon_per_layer names unknown layers {unknown}")
        examples = {}
        for part, pair in dict(self.examples).items():
            if part not in self.parts:
                raise ValueError(f"an example for {part!r}, which is not a part; parts: {list(self.parts)}")
            pair = tuple(pair)
            if (len(pair) != 2 or pair[0] == pair[1]
                    or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in pair)):
                raise ValueError(f"example for {part!r} must be two different seeds ≥ 0, got {list(pair)}")
            examples[part] = pair
        object.__setattr__(self, "examples", examples)

    @property
    def style_layers(self) -> tuple[str, ...]:
        return tuple(self.M)

    def part_rows(self, part: Part | str) -> dict[str, Tensor]:
        """A part's row of M for every style layer, {layer: [C_l]}: the sum of its clusters' rows."""
        part = self.parts[part] if isinstance(part, str) else part
        if max(part.clusters) >= self.k:
            raise ValueError(f"part {part.name!r}: cluster ids {part.clusters} out of range for K={self.k}")
        index = torch.tensor(part.clusters)
        return {layer: m[index.to(m.device)].sum(dim=0) for layer, m in self.M.items()}

    def edited_rows(self, part: Part) -> dict[str, Tensor]:
        """The part's rows of M for the style layers its edits may touch (toRGB only where it uses them)."""
        rows = self.part_rows(part)
        return {layer: rows[layer] for layer in part.edited_layers(rows)}

    def epsilon_max(self, part: Part, threshold: float | None = None) -> float:
        """The end of the part's useful ε range at this threshold (default: its own): the smallest base ε, on a
        0.01 grid, at which its sequential query is saturated, so no larger ε changes the edit."""
        threshold = part.threshold if threshold is None else check_threshold(threshold)
        rows = self.edited_rows(part)
        end = saturating_epsilon(rows, part.epsilon_scales(rows), threshold)
        # The query takes a channel while its running cost is strictly below ε: step just past the last one.
        return math.floor(end * 100 + 1) / 100 if end > 0 else 0.0

    def threshold_max(self, part: Part) -> float:
        """The threshold at and past which the part's sequential query is empty: its largest M (at most
        MAX_THRESHOLD)."""
        return min(max(float(row.max()) for row in self.edited_rows(part).values()), MAX_THRESHOLD)

    def with_parts(self, parts: Mapping[str, Iterable[int]], *, epsilon: Mapping[str, float] | None = None,
                   threshold: Mapping[str, float] | None = None, torgb: Mapping[str, bool] | None = None,
                   epsilon_profile: Mapping[str, Mapping[str, float]] | None = None) -> Catalog:
        """A copy with the named parts set to these cluster ids, e.g. {"eyes": [3, 7]} (labelling, Appendix A).

        Other parts are kept. A part that exists keeps its settings and colour; a new one gets the defaults.
        `epsilon`, `threshold`, `torgb` and `epsilon_profile` ({part: value}) set the settings of any part, new
        or old; a profile is {"coarse": w, "middle": w, "fine": w}.
        """
        settings = {"epsilon": dict(epsilon or {}), "threshold": dict(threshold or {}), "torgb": dict(torgb or {}),
                    "epsilon_profile": dict(epsilon_profile or {})}
        unknown = sorted(set().union(*settings.values()) - set(parts) - set(self.parts))
        if unknown:
            raise ValueError(f"settings given for parts that do not exist: {unknown}")
        updated = dict(self.parts)
        for name, clusters in parts.items():
            old = self.parts.get(name)
            updated[name] = Part(name, tuple(clusters)) if old is None else replace(old, clusters=tuple(clusters))
        for key, values in settings.items():
            for name, value in values.items():
                updated[name] = replace(updated[name], **{key: value})
        return replace(self, parts=updated)

    def shared_clusters(self) -> dict[int, list[str]]:
        """Clusters named in more than one part, {cluster: [parts]}: their pixels count for each of those parts,
        and a contact sheet can show only one name."""
        owners: dict[int, list[str]] = {}
        for name, part in self.parts.items():
            for cluster in part.clusters:
                owners.setdefault(cluster, []).append(name)
        return {c: names for c, names in sorted(owners.items()) if len(names) > 1}

    def without_parts(self, names: Iterable[str]) -> Catalog:
        """A copy without the named parts."""
        names = set(names)
        unknown = sorted(names - set(self.parts))
        if unknown:
            raise ValueError(f"no such parts: {unknown}; parts: {list(self.parts)}")
        return replace(self, parts={n: p for n, p in self.parts.items() if n not in names},
                       examples={n: e for n, e in self.examples.items() if n not in names})

    def to_state(self) -> tuple[dict, dict[str, Tensor]]:
        """(catalog.json content, catalog.safetensors tensors): "centroids" and one M per style layer."""
        meta = {"format_version": FORMAT_VERSION, "layer": self.layer, "k": self.k,
                "n_samples": self.n_samples, "truncation": self.truncation, "seed": self.seed,
                "style_layers": list(self.M), "parts": {name: p.to_dict() for name, p in self.parts.items()},
                "timings": dict(self.timings), "fit_rows": self.fit_rows, "resize": self.resize,
                "examples": {part: list(pair) for part, pair in self.examples.items()}}
        tensors = {"centroids": self.centroids, **self.M}
        return meta, {key: t.detach().to("cpu", torch.float32).contiguous() for key, t in tensors.items()}

    @classmethod
    def from_state(cls, meta: Mapping, tensors: Mapping[str, Tensor]) -> Catalog:
        """Inverse of `to_state`, checking that the json and the tensors describe the same catalog."""
        missing, unknown = sorted(_META_KEYS - set(meta) - _OPTIONAL_META_KEYS), sorted(set(meta) - _META_KEYS)
        if missing or unknown:
            raise ValueError(f"catalog.json: missing keys {missing}, unexpected keys {unknown}")
        if meta["format_version"] != FORMAT_VERSION:
            raise ValueError(f"catalog.json: format_version {meta['format_version']} is not {FORMAT_VERSION}")
        layers = list(meta["style_layers"])
        expected = {"centroids", *layers}
        if set(tensors) != expected:
            raise ValueError(f"catalog.safetensors: missing tensors {sorted(expected - set(tensors))}, "
                             f"unexpected tensors {sorted(set(tensors) - expected)}")
        parts = {}
        for name, spec in dict(meta["parts"]).items():
            if not _PART_KEYS - _OPTIONAL_PART_KEYS <= set(spec) <= _PART_KEYS:
                raise ValueError(f"catalog.json: part {name!r} must have keys {sorted(_PART_KEYS)} "
                                 f"({sorted(_OPTIONAL_PART_KEYS)} optional), got {sorted(spec)}")
            optional = {key: spec[key] for key in _OPTIONAL_PART_KEYS if key in spec}
            parts[name] = Part(name=name, clusters=tuple(spec["clusters"]), epsilon=spec["epsilon"],
                               epsilon_per_layer=spec["epsilon_per_layer"], threshold=spec["threshold"],
                               color=spec["color"], **optional)
        k = meta["k"]
        if not isinstance(k, int) or isinstance(k, bool):
            raise ValueError(f"catalog.json: k must be an integer, got {k!r}")
        fit_rows = meta.get("fit_rows")
        if fit_rows is not None and (not isinstance(fit_rows, int) or isinstance(fit_rows, bool) or fit_rows < 1):
            raise ValueError(f"catalog.json: fit_rows must be a positive integer or null, got {fit_rows!r}")
        return cls(layer=meta["layer"], k=k, n_samples=int(meta["n_samples"]),
                   truncation=float(meta["truncation"]), centroids=tensors["centroids"],
                   M={layer: tensors[layer] for layer in layers}, parts=parts, seed=int(meta["seed"]),
                   timings={key: float(v) for key, v in dict(meta.get("timings", {})).items()},
                   fit_rows=fit_rows, resize=str(meta.get("resize", "nearest")),
                   examples=dict(meta.get("examples", {})))


# --- building a catalog ----------------------------------------------------------------------------------


def _synchronize(device: torch.device) -> None:
    # Asynchronous devices must finish their queue before a clock is read, or the timings lie.
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build_catalog(generator: Generator, layer: str, k: int, n_samples: int = 200, truncation: float = 0.7,
                  seed: int = 0, batch: int = 16, fit_rows: int | None = None, resize: str = "nearest",
                  progress: bool = True, callback: Callable[[str, int, int], None] | None = None) -> Catalog:
    """Sample seeds seed … seed+n_samples−1, cluster `layer`'s input activations, and compute M everywhere.

    Pass 1 keeps only the clustering layer's normalised activations ([n_samples·h·w, C] floats) and the
    styles. Pass 2 regenerates each batch from its cached styles and accumulates Eq. 1 for every style layer:
    keeping every layer's activations would take about 100 MB per sample for a 256-pixel model, while the
    second pass costs one more generation. `fit_rows` fits k-means on that many random rows instead of all
    (see `spherical_kmeans`): much faster, but on the embedded model its best eyes and mouth clusters held
    fewer eye and mouth pixels (its card has the figures), so all rows are the default; `resize` is Eq. 1's
    (see `contribution_sum`). `timings` records seconds: "generation" (pass 1's generator calls,
    i.e. generating the samples once), "clustering" (k-means), "contribution" (pass 2) and "total".

    `callback(stage, done, total)` reports progress: ("samples", samples generated, n_samples) per batch of
    pass 1, ("k-means", iteration, max iterations) per Lloyd iteration, ("M", samples done, n_samples) per
    batch of pass 2. An exception it raises stops the build and nothing is returned (a cancelled build).
    """
    if layer not in generator.style_layers:
        raise ValueError(f"unknown layer {layer!r}; style layers: {list(generator.style_layers)}")
    if n_samples < 1 or batch < 1:
        raise ValueError(f"need at least 1 sample and a batch of at least 1, got {n_samples} and {batch}")
    side = input_resolution(layer)
    if not 1 <= k <= side * side:
        raise ValueError(f"K must be between 1 and the {side}×{side} = {side * side} pixels of the activations "
                         f"entering {layer} (a cluster is a region of each image), got {k}")
    report = callback or (lambda stage, done, total: None)
    device = generator.latent_avg.device
    seeds = [list(range(start, min(start + batch, seed + n_samples)))
             for start in range(seed, seed + n_samples, batch)]
    timings = dict.fromkeys(("generation", "clustering", "contribution"), 0.0)
    start_all = time.perf_counter()
    with torch.no_grad():
        cached_styles, rows, filled = [], None, 0
        for batch_seeds in tqdm(seeds, desc="activations", disable=not progress, leave=False):
            tick = time.perf_counter()
            styles = generator.seed_styles(batch_seeds, truncation)
            acts = generator.layer_inputs(styles, [layer])[layer]
            _synchronize(device)
            timings["generation"] += time.perf_counter() - tick
            cached_styles.append(styles)
            a = normalize_activations(acts)
            if rows is None:
                rows = torch.empty(n_samples * a.shape[2] * a.shape[3], a.shape[1], dtype=a.dtype, device=device)
            flat = a.permute(0, 2, 3, 1).reshape(-1, a.shape[1])  # rows in (n, h, w) order
            rows[filled:filled + len(flat)] = flat
            filled += len(flat)
            report("samples", filled // (a.shape[2] * a.shape[3]), n_samples)

        tick = time.perf_counter()
        centroids, labels = spherical_kmeans(rows, k, seed=seed, fit_rows=fit_rows, progress=progress,
                                             callback=lambda done, total: report("k-means", done, total))
        _synchronize(device)
        timings["clustering"] = time.perf_counter() - tick
        labels = labels.view(n_samples, *a.shape[2:])
        del rows, flat, a

        tick = time.perf_counter()
        sums: dict[str, Tensor] = {}
        positions: dict[str, int] = {}
        done = 0
        for styles, batch_labels in tqdm(list(zip(cached_styles, labels.split(batch), strict=True)),
                                         desc="contributions", disable=not progress, leave=False):
            for name, acts in generator.layer_inputs(styles, generator.style_layers).items():
                part_sum = contribution_sum(normalize_activations(acts), batch_labels, k, resize).double()
                sums[name] = sums[name] + part_sum if name in sums else part_sum
                positions[name] = positions.get(name, 0) + acts.shape[0] * acts.shape[2] * acts.shape[3]
            done += len(batch_labels)
            report("M", done, n_samples)
        M = {name: (sums[name] / positions[name]).float() for name in generator.style_layers}
        _synchronize(device)
        timings["contribution"] = time.perf_counter() - tick
    timings["total"] = time.perf_counter() - start_all
    return Catalog(layer=layer, k=k, n_samples=n_samples, truncation=float(truncation), centroids=centroids,
                   M=M, seed=seed, timings=timings,
                   fit_rows=fit_rows if fit_rows is not None and fit_rows < filled else None, resize=resize)
