"""Spherical k-means, the clustering of paper §3.1 and Appendix A.

Rows are patch embeddings compared by cosine similarity: each row counts by its direction only and centroids
are unit vectors (the mean direction of their rows). A row's norm does not change which centroid it is closest
to in cosine, so the data is never normalised as a whole; 1/‖x‖ enters only where directions are summed.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm


def _kmeans_plus_plus(x: Tensor, inv_norm: Tensor, k: int, generator: torch.Generator) -> Tensor:
    """k-means++ seeding on the unit sphere: ½‖x̂ − c‖² = 1 − cos, so rows are drawn ∝ 1 − max cos."""
    n = x.shape[0]
    has_direction = inv_norm > 0
    first = int(torch.randint(n, (1,), generator=generator))
    centroids = [x[first] * inv_norm[first]]
    closest = (x @ centroids[0]) * inv_norm
    for _ in range(1, k):
        weight = ((1 - closest).clamp_min(0) * has_direction).double()
        total = float(weight.sum())
        u = float(torch.rand((), dtype=torch.float64, generator=generator))
        if total > 0:
            cum = torch.cumsum(weight, dim=0)
            target = torch.tensor([u * total], dtype=cum.dtype, device=cum.device)
            i = int(torch.searchsorted(cum, target, right=True).clamp_max(n - 1))
        else:  # every row already coincides with a centroid
            i = min(int(u * n), n - 1)
        centroids.append(x[i] * inv_norm[i])
        closest = torch.maximum(closest, (x @ centroids[-1]) * inv_norm)
    return torch.stack(centroids)


def _assign(x: Tensor, inv_norm: Tensor, centroids: Tensor,
            batch_rows: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One pass over x: labels [N], cosine to the own centroid [N], and the next centroids' sums and counts.

    Scaling a row does not change its argmax, so x is never normalised as a whole (no [N, C] copy); the
    1/‖x‖ weights go into the one-hot matrix whose product gives the per-cluster sums of unit rows.
    """
    n, k = x.shape[0], centroids.shape[0]
    labels = torch.empty(n, dtype=torch.long, device=x.device)
    cosine = torch.empty(n, dtype=x.dtype, device=x.device)
    sums = torch.zeros(k, x.shape[1], dtype=torch.float64, device=x.device)
    counts = torch.zeros(k, dtype=torch.long, device=x.device)
    for start in range(0, n, batch_rows):
        rows, scale = x[start:start + batch_rows], inv_norm[start:start + batch_rows]
        sim = rows @ centroids.T
        lab = sim.argmax(dim=1)
        labels[start:start + len(rows)] = lab
        cosine[start:start + len(rows)] = sim.gather(1, lab[:, None])[:, 0] * scale
        weights = torch.zeros(len(rows), k, dtype=x.dtype, device=x.device).scatter_(1, lab[:, None],
                                                                                       scale[:, None])
        sums += (weights.T @ rows).double()
        counts += torch.bincount(lab, minlength=k)
    # Rows without a direction must never look "far" and be picked to re-seed a cluster.
    cosine = torch.where(inv_norm > 0, cosine, torch.ones_like(cosine))
    return labels, cosine, sums, counts


def _update(x: Tensor, inv_norm: Tensor, cosine: Tensor, sums: Tensor, counts: Tensor) -> Tensor:
    """New unit centroids: each cluster's mean direction; an empty cluster takes a row that fits worst."""
    norms = torch.linalg.vector_norm(sums, dim=1, keepdim=True)
    empty = (counts == 0) | (norms[:, 0] == 0)
    centroids = (sums / norms.clamp_min(1e-300)).to(x.dtype)
    n_empty = int(empty.sum())
    if n_empty:
        far = torch.topk(cosine, n_empty, largest=False).indices
        centroids[empty] = x[far] * inv_norm[far, None]
    return centroids


def spherical_kmeans(
    x: Tensor,
    k: int,
    *,
    seed: int = 0,
    max_iter: int = 100,
    tol: float = 1e-4,
    batch_rows: int = 16384,
    init: Tensor | None = None,
    fit_rows: int | None = None,
    progress: bool = False,
    callback: Callable[[int, int], None] | None = None,
) -> tuple[Tensor, Tensor]:
    """Cosine k-means on the rows of x [N, C] → (unit centroids [K, C], labels [N]); Appendix A.

    Seeded k-means++ (a CPU torch.Generator, so a seed gives the same clusters on any machine), then Lloyd
    iterations batched over `batch_rows` rows. It stops once at most tol·N rows change cluster, or the
    centroids move less than tol; the labels returned are always the argmax-cosine assignment to the
    centroids returned. An empty cluster is re-seeded with the row farthest from its own centroid.
    `init` [K, C] replaces k-means++ (e.g. to refine an existing catalog's centroids).
    `fit_rows` fits the centroids on that many rows drawn at random (seeded) and then labels every row, for
    catalogs with millions of rows: Lloyd's iterations then cost in proportion to the subset, while labelling
    all rows is one pass (`bench --fit-rows` prints the times).
    `callback(iteration, max_iter)` is called after each Lloyd iteration (1-based); an exception it raises
    stops the clustering (a build cancelled from the app).
    """
    if x.ndim != 2 or not x.is_floating_point():
        raise ValueError(f"x must be a float tensor [N, C], got {x.dtype} {list(x.shape)}")
    if not 1 <= k <= x.shape[0]:
        raise ValueError(f"k must be between 1 and the number of rows {x.shape[0]}, got {k}")
    if max_iter < 1 or batch_rows < 1 or not tol >= 0:
        raise ValueError(f"need max_iter ≥ 1, batch_rows ≥ 1, tol ≥ 0; got {max_iter}, {batch_rows}, {tol}")
    norm = torch.linalg.vector_norm(x, dim=1)
    inv_norm = torch.where(norm > 0, 1 / norm.clamp_min(torch.finfo(x.dtype).tiny), torch.zeros_like(norm))
    if fit_rows is not None and fit_rows < x.shape[0]:
        if fit_rows < k:
            raise ValueError(f"fit_rows must be at least k={k}, got {fit_rows}")
        pick = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))[:fit_rows].to(x.device)
        centroids, _ = spherical_kmeans(x[pick], k, seed=seed, max_iter=max_iter, tol=tol, batch_rows=batch_rows,
                                        init=init, progress=progress, callback=callback)
        return centroids, _assign(x, inv_norm, centroids, batch_rows)[0]
    if init is None:
        centroids = _kmeans_plus_plus(x, inv_norm, k, torch.Generator().manual_seed(seed))
    elif init.shape != (k, x.shape[1]):
        raise ValueError(f"init must have shape [{k}, {x.shape[1]}], got {list(init.shape)}")
    else:
        centroids = F.normalize(init.to(x), dim=1)

    previous = None
    with tqdm(total=max_iter, desc="k-means", disable=not progress, leave=False) as bar:
        for iteration in range(max_iter):
            labels, cosine, sums, counts = _assign(x, inv_norm, centroids, batch_rows)
            changed = x.shape[0] if previous is None else int((labels != previous).sum())
            bar.update()
            bar.set_postfix(changed=changed)
            if callback is not None:
                callback(iteration + 1, max_iter)
            if changed <= tol * x.shape[0] or iteration == max_iter - 1:
                break
            updated = _update(x, inv_norm, cosine, sums, counts)
            if float(torch.linalg.vector_norm(updated - centroids, dim=1).max()) < tol:
                break  # the current labels are still those of `centroids`
            centroids, previous = updated, labels
    return centroids, labels
