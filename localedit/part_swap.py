"""Part-swap training: a loss that gives the small parts style channels of their own.

Local editing (paper §3) finds, by Eq. 1, the style channels whose activations lie inside a part, and moves only
those. It can only move what the generator renders through such channels. A compact generator has few channels
per layer and shares them: in the faces64 line the iris colour is spread thinly over hundreds of channels whose
activations cover the whole face, so Eq. 1 ranks none of them as eye channels (a single-channel swap moves the
iris by at most a few per cent of the gap) and no query can take the iris alone.

This loss reserves a few channels per part in the last layers (`SWAP_CHANNELS` in `swap_layers`) and trains G so
that they carry the part's look and nothing else: for pairs of samples T and R, the image whose reserved channels
are R's and whose other channels are T's must keep T's pixels outside the part (dilated by a pixel), and its
part's mean colour, over T's part mask, must be R's. G can satisfy both only with channels that are active inside
the part and nowhere else, which is exactly what Eq. 1 looks for. Nothing downstream knows about the reserved
channels: the catalog still clusters and ranks channels on its own, and the edit is still the paper's query.

The masks are the judge's, taken without gradients; colours are CIELAB, and the eyes' colour is the iris's
(`transfer.part_mask`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from localedit.color import srgb_to_lab
from localedit.faces import PARTS
from localedit.part_stats import masked_mean
from localedit.parts import input_resolution
from localedit.transfer import MIN_GAP, part_mask

PER_PART = 3  # reserved channels per part and layer unless told otherwise: one per colour dimension
SWAP_CHANNELS = {"eyes": (0, 1, 2), "mouth": (3, 4, 5)}  # the defaults, PER_PART each
# The parts that may have channels reserved, in the order `reserve_channels` serves them: the default ones first,
# so a run that adds the nose or the skin keeps the eyes' and the mouth's channels.
SWAP_PARTS = ("eyes", "mouth", "nose", "skin")
# The pixels a part's swap may change, where that is more than the part: the nose and the ears take their colour
# from the skin's in the training faces (`faces._palette` draws them as multiples of it), so a face given another
# skin has them follow it. Every other part's region is itself.
SWAP_REGIONS = {"skin": ("skin", "nose", "ears")}
LOCALITY_SCALE = 20.0  # an RMS change of 0.05 (in [-1, 1] RGB) outside the part weighs as no transfer at all
# The narrowest inputs, as a share of the image's width, of the layers a part's channels are reserved in (1/2
# unless named). The skin covers a third of the face, and its colour is set in the coarse layers, where the
# generator renders it together with the hair's and the background's: at 8 px wide (for 64 px) it is still a few
# pixels, so a channel there can be active on it alone.
SWAP_WIDTHS = {"skin": 8}


def swap_layers(layers: Iterable[str], size: int, part: str | None = None) -> list[str]:
    """The style layers whose inputs are at least half the image's width (for 64 px: convs.5, to_rgbs.2, convs.6,
    convs.7, to_rgbs.3), or 1/SWAP_WIDTHS[part] of it. There the eyes and lips are a few pixels, not a fraction
    of one, so a channel can be active on them alone."""
    return [layer for layer in layers if input_resolution(layer) >= size // SWAP_WIDTHS.get(part, 2)]


def swap_parts(channels: Mapping[str, object]) -> tuple[str, ...]:
    """The parts a run swaps, in SWAP_PARTS' order: those `channels` ({part: {layer: [c]}}) reserves, or, when it
    is empty, SWAP_CHANNELS' defaults."""
    unknown = sorted(set(channels) - set(SWAP_PARTS))
    if unknown or (channels and not set(SWAP_CHANNELS) <= set(channels)):
        raise ValueError(f"reserved channels are for the eyes and the mouth and optionally other parts of "
                         f"{list(SWAP_PARTS)}; got {sorted(channels)}")
    return tuple(p for p in SWAP_PARTS if p in channels) if channels else tuple(SWAP_CHANNELS)


def swap_part(target: Mapping[str, Tensor], reference: Mapping[str, Tensor], part: str, size: int,
              channels: Mapping[str, Sequence[int]] | None = None) -> dict[str, Tensor]:
    """Styles {layer: [B, C]} of a size-px generator: the target's, with the part's reserved channels taken from
    the reference: `channels` {layer: [c, ...]}, or by default SWAP_CHANNELS[part] in every one of `swap_layers`."""
    out = dict(target)
    if channels is None:
        channels = dict.fromkeys(swap_layers(target, size), SWAP_CHANNELS[part])
    for layer, reserved in channels.items():
        keep = torch.ones(target[layer].shape[1], dtype=torch.bool, device=target[layer].device)
        keep[list(reserved)] = False
        out[layer] = torch.where(keep, target[layer], reference[layer])
    return out


Layers = Iterable[str] | Mapping[str, Iterable[str]]  # the same layers for every part, or {part: its layers}


def _part_layers(layers: Layers, parts: Iterable[str]) -> dict[str, list[str]]:
    """{part: its layers} of `layers` (see Layers) for each of `parts`."""
    if isinstance(layers, Mapping):
        return {part: list(layers.get(part, ())) for part in parts}
    return dict.fromkeys(parts, list(layers))


def reserve_channels(rows: Mapping[str, Mapping[str, Tensor]], layers: Layers,
                     per_part: int | Mapping[str, int] = PER_PART) -> dict[str, dict[str, list[int]]]:
    """Reserved channels chosen from a catalog: for each part in `rows` ({part: its M rows {layer: [C]}}, Eq. 1)
    and each of its layers (`layers`: the same for every part, or {part: layers}), the `per_part` channels (one
    count for every part, or {part: count}) with the largest M that no earlier part took. A generator whose
    channels already lie on the part has less to learn than one given arbitrary channels. Raising a part's count
    keeps the channels it had, and those of the parts before it in `rows`; a part after it may lose one to it,
    and a part added after the others takes what they left."""
    counts = dict.fromkeys(rows, per_part) if isinstance(per_part, int) else dict(per_part)
    if set(counts) != set(rows) or min(counts.values()) < 1:
        raise ValueError(f"per_part must be at least 1 for each of {list(rows)}, got {per_part}")
    return extend_reserved({}, rows, layers, {part: counts[part] for part in rows})


def extend_reserved(reserved: Mapping[str, Mapping[str, Sequence[int]]], rows: Mapping[str, Mapping[str, Tensor]],
                    layers: Layers, counts: Mapping[str, int]) -> dict[str, dict[str, list[int]]]:
    """A branch's reserved channels: `reserved` ({part: {layer: [c]}}, what its checkpoint trained) kept as they
    are, each part of `counts` ({part: n}, served in that order) filled up to n per layer with the channels of
    largest M in `rows` (a catalog's, for every part that needs more) that no part holds yet. Unlike reserving
    afresh from the catalog, this keeps every trained channel whichever catalog ranks the new ones."""
    chosen = {part: {layer: list(cs) for layer, cs in layers_.items()} for part, layers_ in reserved.items()}
    wanted = {**dict.fromkeys(chosen, 0), **counts}
    own = _part_layers(layers, wanted)
    short = [part for part, n in wanted.items() if part not in rows
             and any(len(chosen.get(part, {}).get(layer, ())) < n for layer in own[part])]
    if short:
        raise ValueError(f"no catalog rows to reserve channels for {short} from")
    for layer in dict.fromkeys(layer for part_layers in own.values() for layer in part_layers):
        taken = {c for part in chosen.values() for c in part.get(layer, ())}
        for part, n in wanted.items():
            if layer not in own[part]:
                continue
            have = chosen.setdefault(part, {}).setdefault(layer, [])
            if len(have) >= n:
                continue
            order = [int(c) for c in torch.argsort(rows[part][layer], descending=True, stable=True)]
            have.extend([c for c in order if c not in taken][:n - len(have)])
            taken.update(have)
    return chosen


def outside(labels: Tensor, part: str, grow: int = 1) -> Tensor:
    """bool [B, H, W]: the pixels farther than `grow` pixels from the part's region (SWAP_REGIONS; the part's own
    label for most parts) in labels [B, H, W]."""
    region = torch.tensor([PARTS.index(p) for p in SWAP_REGIONS.get(part, (part,))], device=labels.device)
    inside = torch.isin(labels, region).float()[:, None]
    inside = F.max_pool2d(inside, 2 * grow + 1, stride=1, padding=grow)
    return inside[:, 0] == 0


def swap_loss(mixed: Tensor, target: Tensor, reference: Tensor, labels_t: Tensor, labels_r: Tensor, part: str
              ) -> tuple[Tensor, Tensor]:
    """(colour miss, locality) of images [B, 3, H, W] in [-1, 1] whose part was swapped from reference into target.

    Both `mixed` and `target` carry gradients and the loss sees only their difference, what the swap did: a
    change of G that moves both alike cancels. With the target fixed, pulling each mixed part towards a random
    reference's colour pulls every face's part towards the population's mean colour, and G obliges through its
    shared channels until the part's colour no longer varies. Here only the reserved channels' effect is asked
    for.

    colour miss: ‖(μ_mixed − μ_target) − (μ_reference − μ_target)‖ / max(gap, MIN_GAP), the gap being
        ‖μ_target − μ_reference‖, over every pair whose masks hold enough pixels; μ is the part's mean CIELAB over
        the target's mask for mixed and target (the part stays where the target has it) and over the reference's
        own. Its value is one minus the colour transfer `evaluate` reports, for pairs whose gap is at least MIN_GAP;
        a closer pair counts in MIN_GAP units, so no pair escapes the loss by having its colours drift together.
    locality: the root of the mean squared RGB change from the target outside the dilated part (its SWAP_REGIONS
        region: for the skin, the skin, nose and ears), × LOCALITY_SCALE.
    The masks come from labels [B, H, W]; `reference` needs no gradient.
    """
    lab_m, lab_t, lab_r = srgb_to_lab(mixed), srgb_to_lab(target), srgb_to_lab(reference)
    mask_t = part_mask(labels_t, lab_t, part)
    mu_m, ok_t = masked_mean(lab_m, mask_t)
    mu_t, _ = masked_mean(lab_t, mask_t)
    mu_r, ok_r = masked_mean(lab_r, part_mask(labels_r, lab_r, part))
    wanted = (mu_r - mu_t).detach()
    gap = wanted.norm(dim=1)
    ok = ok_t & ok_r
    miss = ((mu_m - mu_t - wanted).square().sum(1) + 1e-8).sqrt() / gap.clamp_min(MIN_GAP)
    colour = miss[ok].mean() if bool(ok.any()) else mixed.new_zeros(())
    away = outside(labels_t, part)[:, None].to(mixed.dtype)
    change = ((mixed - target).square() * away).sum() / (3 * away.sum()).clamp_min(1.0)
    return colour, LOCALITY_SCALE * (change + 1e-8).sqrt()
