"""Query vectors and conditioned interpolation, paper §3.2.2–3.2.3.

The edit is Eq. 3 with a diagonal Q: σ_G = σ_T + q ⊙ (σ_R − σ_T), one query vector q ∈ [0, 1]^C per style
layer. The queries:

- global (Eq. 2): q = λ on every channel, a plain interpolation towards the reference;
- simultaneous (Eq. 4): q = min(1, λ·M_part), every channel at once, scaled by its contribution to the part;
- sequential (Eq. 5): the greedy solution used by the official code, channels taken in order of relevance
  while their summed effect outside the part stays under a budget ε, and only where M_part > threshold.

`M` is always a part's row of the catalog matrix for each style layer: {layer: [C_l]}, the sum of its clusters'
rows (Eq. 1). Every function is pure and keeps the dtype and device of its inputs.

A composite (several parts from several references, composite.py) applies Eq. 3 once per row; `claim` first
gives each channel that several rows would move to one of them, so the rows' terms never add up on a channel.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor


def _check_number(name: str, value: float, *, upper: float = math.inf, allow_inf: bool = False) -> float:
    value = float(value)
    if math.isnan(value) or value < 0 or value > upper or (math.isinf(value) and not allow_inf):
        if math.isfinite(upper):
            rule = f"in [0, {upper:g}]"
        else:
            rule = "≥ 0 (inf allowed)" if allow_inf else "finite and ≥ 0"
        raise ValueError(f"{name} must be {rule}, got {value}")
    return value


def _check_rows(M: Mapping[str, Tensor]) -> None:
    for layer, row in M.items():
        if row.ndim != 1:
            raise ValueError(f"M[{layer!r}] must be a part's row of shape [C], got {list(row.shape)}")


def global_query(M: Mapping[str, Tensor], lam: float) -> dict[str, Tensor]:
    """Eq. 2: q = λ on every channel of every layer in M. λ ∈ [0, 1]; M {layer: [C_l]} only gives the shapes."""
    lam = _check_number("lam", lam, upper=1.0)
    _check_rows(M)
    return {layer: torch.full_like(row, lam) for layer, row in M.items()}


def simultaneous_query(M: Mapping[str, Tensor], lam: float) -> dict[str, Tensor]:
    """Eq. 4: q = min(1, λ·M_part) for M {layer: [C_l]}; λ ≥ 0 and finite (values above 1 are meaningful)."""
    lam = _check_number("lam", lam)
    _check_rows(M)
    # A part's row is a sum of cluster rows and can dip below 0 only through rounding; q stays in [0, 1].
    return {layer: (lam * row).clamp(0, 1) for layer, row in M.items()}


def sequential_query(
    M: Mapping[str, Tensor],
    epsilon: float | Mapping[str, float],
    threshold: float = 0.1,
    *,
    default_epsilon: float = 0.0,
) -> dict[str, Tensor]:
    """Eq. 5, solved greedily for each layer independently: M {layer: [C_l]} → q {layer: [C_l]} in {0, 1}.

    Channels are sorted by M_part, descending; q = 1 where the running cost Σ(1 − M_part) stays below ε and
    M_part > threshold (the paper's ρ/(1+ρ)), q = 0 elsewhere.

    epsilon: one budget for every layer, or {layer: ε} per layer; layers missing from the mapping use
        `default_epsilon` (0: left unedited), and entries for layers not in M are ignored, so layers can be
        dropped from M (e.g. toRGB) without touching ε. ε may be infinite, leaving only the threshold.
    threshold: in [0, 1).
    """
    threshold = float(threshold)
    if not 0 <= threshold < 1:
        raise ValueError(f"threshold must be in [0, 1) (it is ρ/(1+ρ) for ρ ≥ 0), got {threshold}")
    _check_rows(M)
    if isinstance(epsilon, Mapping):
        default = _check_number("default_epsilon", default_epsilon, allow_inf=True)
        budgets = {layer: _check_number(f"epsilon[{layer!r}]", epsilon.get(layer, default), allow_inf=True)
                   for layer in M}
    else:
        eps = _check_number("epsilon", epsilon, allow_inf=True)
        budgets = dict.fromkeys(M, eps)

    q = {}
    for layer, row in M.items():
        order, relevance, cost = _sorted_costs(row)
        chosen = (cost < budgets[layer]) & (relevance > threshold)
        q[layer] = torch.zeros_like(row).index_put((order,), chosen.to(row.dtype))
    return q


def _sorted_costs(row: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(order, relevance, running cost) of one layer's row, as the sequential query walks it."""
    order = torch.argsort(row, descending=True, stable=True)
    relevance = row[order]
    # The cost outside the part is 1 − M per channel; Σ_k M ≈ 1 only up to rounding, so a part's row can
    # exceed 1 by a hair, and clamping keeps ε = 0 meaning "change nothing".
    return order, relevance, torch.cumsum((1 - relevance).clamp_min(0), dim=0)


def saturating_epsilon(M: Mapping[str, Tensor], scales: Mapping[str, float], threshold: float) -> float:
    """The smallest base ε past which `sequential_query` no longer changes (the end of a useful ε range).

    M {layer: [C_l]}; each layer's budget is scales[layer] · ε, as `Part.epsilon_map` makes it. In a layer the
    query takes channels while their running cost stays below the budget and M > threshold, so it saturates
    once the budget passes the running cost of the last channel above the threshold. Layers with scale 0 never
    change; a part with no channel above the threshold saturates at 0.
    """
    _check_rows(M)
    end = 0.0
    for layer, row in M.items():
        scale = float(scales[layer])
        _, relevance, cost = _sorted_costs(row)
        above = relevance > threshold  # a prefix, since relevance is sorted
        if scale > 0 and bool(above.any()):
            end = max(end, float(cost[int(above.sum()) - 1]) / scale)
    return end


def interpolate(
    s_target: Mapping[str, Tensor], s_reference: Mapping[str, Tensor], q: Mapping[str, Tensor]
) -> dict[str, Tensor]:
    """Eq. 3 with Q = diag(q): σ_G = σ_T + q ⊙ (σ_R − σ_T), layer by layer.

    s_target, s_reference: {layer: σ [B, C_l]} with the same layers (a [1, C_l] reference broadcasts over B).
    q: {layer: [C_l]}; layers missing from q keep the target's style (e.g. toRGB layers left out by choice).
    Returns {layer: [B, C_l]} in the target's layer order; unedited layers are the target's own tensors.
    """
    if set(s_target) != set(s_reference):
        raise ValueError(f"target and reference styles differ in layers: "
                         f"{sorted(set(s_target) ^ set(s_reference))}")
    unknown = sorted(set(q) - set(s_target))
    if unknown:
        raise ValueError(f"q names layers that are not in the styles: {unknown}")
    out = {}
    for layer, target in s_target.items():
        if layer not in q:
            out[layer] = target
            continue
        reference, weight = s_reference[layer], q[layer]
        if target.ndim != 2 or reference.ndim != 2 or weight.ndim != 1:
            raise ValueError(f"layer {layer!r}: styles must be [B, C] and q [C], got target "
                             f"{list(target.shape)}, reference {list(reference.shape)}, q {list(weight.shape)}")
        if not target.shape[1] == reference.shape[1] == weight.shape[0]:
            raise ValueError(f"layer {layer!r}: channel counts differ: target {target.shape[1]}, "
                             f"reference {reference.shape[1]}, q {weight.shape[0]}")
        out[layer] = lerp_styles(target, reference, weight)
    return out


def lerp_styles(target: Tensor, reference: Tensor, q: Tensor) -> Tensor:
    """Eq. 3 on plain tensors: σ_T + q ⊙ (σ_R − σ_T), q broadcasting over the batch. `interpolate` applies it
    layer by layer; the Editor applies it once to every layer's styles end to end (`pack_styles`).

    lerp is exact at both ends (q = 0 gives σ_T, q = 1 gives σ_R), so the identities hold bit for bit, and a
    channel's result does not depend on which other channels share the call.
    """
    return torch.lerp(target, reference, q.to(target.dtype))


def pack_styles(styles: Mapping[str, Tensor], dims: Mapping[str, int]) -> Tensor:
    """{layer: [..., C_l]} → one tensor [..., Σ C_l], the layers end to end in the order of `dims` (layer → C_l).

    A layer missing from `styles` packs as zeros, so a query {layer: q [C_l]} that leaves layers out packs to a
    q that leaves them unchanged."""
    unknown = sorted(set(styles) - set(dims))
    if unknown:
        raise ValueError(f"styles name layers that are not in the layout: {unknown}")
    like = next(iter(styles.values()))
    parts = []
    for layer, c in dims.items():
        t = styles.get(layer)
        if t is None:
            t = like.new_zeros(*like.shape[:-1], c)
        elif t.shape[-1] != c:
            raise ValueError(f"layer {layer!r} has {t.shape[-1]} channels, the layout {c}")
        parts.append(t)
    return torch.cat(parts, dim=-1)


def unpack_styles(packed: Tensor, dims: Mapping[str, int]) -> dict[str, Tensor]:
    """The inverse of `pack_styles`: views {layer: [..., C_l]} into `packed` [..., Σ C_l]."""
    if packed.shape[-1] != sum(dims.values()):
        raise ValueError(f"packed styles have {packed.shape[-1]} channels, the layout {sum(dims.values())}")
    return dict(zip(dims, packed.split(list(dims.values()), dim=-1), strict=True))


def claim(queries: Sequence[Mapping[str, Tensor]],
          relevance: Sequence[Mapping[str, Tensor]]) -> list[dict[str, Tensor]]:
    """Resolve a composite's overlapping queries: a channel that several rows move (q > 0) goes to the row whose
    part is the most relevant to it, the largest M_part for that channel (the earlier row on a tie); the other
    rows leave it alone (q = 0 there).

    queries: per row, {layer: q [C_l]}; relevance: per row, its part's M rows {layer: [C_l]} covering at least
    the row's query layers. Returns new per-row queries; with no overlap they equal the inputs.
    """
    if len(queries) != len(relevance):
        raise ValueError(f"need one relevance per query, got {len(queries)} queries and {len(relevance)}")
    out = [{layer: q.clone() for layer, q in row.items()} for row in queries]
    for layer in {layer for row in queries for layer in row}:
        rows = [i for i, row in enumerate(queries) if layer in row]
        if len(rows) < 2:
            continue
        missing = [i for i in rows if layer not in relevance[i]]
        if missing:
            raise ValueError(f"rows {missing} have a query for {layer!r} but no M row for it")
        moved = torch.stack([queries[i][layer] > 0 for i in rows])  # [R, C]
        m = torch.stack([relevance[i][layer].to(torch.float64) for i in rows])
        # argmax returns the first maximum, so a tie goes to the earlier row.
        winner = torch.where(moved, m, torch.tensor(-math.inf, dtype=m.dtype)).argmax(dim=0)
        for j, i in enumerate(rows):
            out[i][layer][moved[j] & (winner != j)] = 0
    return out
