"""Composites: several parts from several references in one edit (the paper's forensic-art use, §1).

A witness says "eyes like this one, hair like that one": one target, and rows of (part, reference, ε). Each row
is its part's sequential query (Eq. 5) at the part's settings, with the row's ε when it gives one, and the
styles combine as

    σ_G = σ_T + Σ_rows q_row ⊙ (σ_R,row − σ_T).

A channel that several rows would move goes to the row whose part has the largest M for that channel
(`query.claim`; the earlier row on a tie), so every channel takes at most one reference's value and the terms
never pile up. With one row the result is the single edit's, byte for byte. Warm (every seed's styles cached by
the Editor) a composite costs one synthesis pass, like a single edit.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from localedit.color import in_out_mse
from localedit.edit import Editor, Query, Source, lab_diff, to_uint8
from localedit.query import lerp_styles, unpack_styles

MAX_ROWS = 8  # more parts than a face has worth naming; each row is a query and a cached reference
_ROW = re.compile(r"^\s*([^=\s]+)\s*=\s*([^:\s]+)\s*(?::\s*(\S+))?\s*$")


@dataclass(frozen=True)
class Row:
    """One row of a composite, resolved: a reference seed and the sequential query of its part."""

    reference: Source  # a seed or a Latent
    query: Query

    part = property(lambda self: self.query.part)
    epsilon = property(lambda self: self.query.epsilon)


@dataclass(frozen=True)
class CompositeParams:
    """A composite, fully resolved: the target seed at ψ and its rows. The same params give the same bytes."""

    target: Source
    truncation: float
    rows: tuple[Row, ...]

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(row.part for row in self.rows)


@dataclass(frozen=True)
class CompositeResult:
    params: CompositeParams
    target: np.ndarray  # uint8 [H, W, 3]
    references: tuple[np.ndarray, ...]  # uint8 [H, W, 3], one per row
    edited: np.ndarray  # uint8 [H, W, 3]
    diff: np.ndarray  # float32 [H, W], squared CIELAB error between target and edited
    rois: dict[str, np.ndarray]  # part → bool [H, W], its clusters on the target
    changed: dict[str, int]  # part → style channels whose value its row changed
    in_mse: dict[str, float]  # part → mean squared ΔE inside its region
    out_mse: float  # mean squared ΔE outside the union of the parts' regions


def parse_row(text: str) -> tuple[str, int, float | None]:
    """'hair=7' or 'eyes=12:30' (ε 30) → (part, reference seed, ε or None); raises ValueError on anything else."""
    match = _ROW.match(text) if isinstance(text, str) else None
    if not match:
        raise ValueError(f"a composite row is PART=SEED or PART=SEED:EPSILON, e.g. hair=7 or eyes=12:30; "
                         f"got {text!r}")
    part, seed, epsilon = match.groups()
    try:
        reference = int(seed)
    except ValueError:
        raise ValueError(f"row {text!r}: the reference seed must be a whole number, got {seed!r}") from None
    try:
        eps = None if epsilon is None else float(epsilon)
    except ValueError:
        raise ValueError(f"row {text!r}: ε must be a number, got {epsilon!r}") from None
    return part, reference, eps


class RowError(ValueError):
    """A composite row that cannot be used. The message names the row (its number, and its part); `field` says
    which of its values is at fault: "row" (not a row at all), "part", "reference" or "epsilon"."""

    def __init__(self, message: str, field: str):
        super().__init__(message)
        self.field = field


def check_row_count(count: int) -> None:
    """At most MAX_ROWS rows; raises ValueError otherwise."""
    if count > MAX_ROWS:
        raise ValueError(f"a composite has at most {MAX_ROWS} rows, got {count}")


def resolve_row(editor: Editor, number: int, row: object, earlier: Mapping[str, int]) -> Row:
    """Validate row `number` of a composite: (part, reference seed) or (part, reference seed, ε or None), ε
    defaulting to the part's; `earlier` maps the parts of the rows before it to their numbers, since each part
    may have one row. Raises RowError naming the row; its values are checked in the order part, reference, ε,
    so an error in `field` "epsilon" means the row is good at the part's own ε.

    The one check of a row: `resolve_composite` refuses a composite with a bad row, and a link's composite
    (localedit.share) leaves the row out instead."""
    if isinstance(row, (str, bytes)) or not isinstance(row, Sequence) or len(row) not in (2, 3):
        raise RowError(f"row {number}: must be (part, reference) or (part, reference, ε), got {row!r}", "row")
    part, reference, *epsilon = row
    field = "part"
    try:
        if not isinstance(part, str):
            raise ValueError(f"the part must be a name, got {part!r}")
        if part in earlier:
            raise ValueError(f"part {part!r} is already in row {earlier[part]}; give each part one reference")
        query = editor.resolve_query(part)
        field = "reference"
        reference = editor.check_source("reference", reference)
        if epsilon and epsilon[0] is not None:
            field = "epsilon"
            query = editor.resolve_query(part, epsilon[0])
    except ValueError as e:
        raise RowError(f"row {number} ({part}): {e}", field) from None
    return Row(reference, query)


def resolve_composite(editor: Editor, target: object, rows: Sequence[Sequence], truncation: float | None = None
                      ) -> CompositeParams:
    """Validate a composite: rows of (part, reference seed) or (part, reference seed, ε or None), ε defaulting
    to the part's. Raises ValueError naming the offending row."""
    target = editor.check_source("target", target)
    if isinstance(rows, (str, bytes)) or not isinstance(rows, Sequence):
        raise ValueError(f"rows must be a list of (part, reference[, ε]), got {type(rows).__name__}")
    if not rows:
        raise ValueError("a composite needs at least one row (part, reference)")
    check_row_count(len(rows))
    resolved: list[Row] = []
    earlier: dict[str, int] = {}
    for number, row in enumerate(rows, 1):
        resolved.append(resolve_row(editor, number, row, earlier))
        earlier[resolved[-1].part] = number
    return CompositeParams(target, editor.resolve_truncation(truncation), tuple(resolved))


def run_composite(editor: Editor, params: CompositeParams) -> CompositeResult:
    target = editor.sample(params.target, params.truncation)
    references = [editor.sample(row.reference, params.truncation) for row in params.rows]
    queries = editor.packed_composite_queries(tuple(row.query for row in params.rows))
    with torch.inference_mode():
        styles = target.packed
        changed = {}
        for row, reference, q in zip(params.rows, references, queries, strict=True):
            # Channels are claimed by one row each, and lerp with q = 0 returns its input exactly, so applying
            # the rows one after another is the sum above.
            moved = lerp_styles(styles, reference.packed, q)
            changed[row.part] = int((moved != styles).sum())  # the values its row moved
            styles = moved
        edited = editor.generator.synthesize(unpack_styles(styles, editor.dims))
        diff = lab_diff(edited, target)
        rois = {row.part: editor.roi(target, row.part) for row in params.rows}
        masks = torch.stack(list(rois.values()))
        masks = torch.cat([masks, masks.any(dim=0, keepdim=True)])  # each part's region, then their union
        inside, outside = in_out_mse(diff.expand_as(masks), masks)
        in_mse = dict(zip(rois, inside[:-1].tolist(), strict=True))
        out_mse = float(outside[-1])
    return CompositeResult(
        params=params,
        target=target.pixels,
        references=tuple(r.pixels for r in references),
        edited=to_uint8(edited),
        diff=diff.numpy().astype(np.float32, copy=False),
        rois={part: roi.numpy().copy() for part, roi in rois.items()},
        changed=changed,
        in_mse=in_mse,
        out_mse=out_mse,
    )


def composite(editor: Editor, target: object, rows: Sequence[Sequence], truncation: float | None = None
              ) -> CompositeResult:
    """Edit `target` with every row's part taken from its reference; see the module docstring."""
    return run_composite(editor, resolve_composite(editor, target, rows, truncation))
