"""The composite mode's own helpers, apart from Gradio: reading the rows an API call or the page's controls give,
what "+ Add part", ✕ and another model do to the rows, and the per-part statistics. app_endpoints.py makes the
composite (the library's, localedit.composite, which checks every row) and app_controls.py sets the rows on the
page; the composite's links are localedit.share's.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from localedit import Editor
from localedit.composite import MAX_ROWS, CompositeResult, parse_row
from localedit.share import as_seed, default_row, default_rows, parse_seed, short

# Rows in the API's text are apart by commas or by spaces before the next PART=; "eyes = 12 : 30" stays one row.
_BETWEEN_ROWS = re.compile(r"\s*,\s*|\s+(?=[^\s=:,]+\s*=)")


def parse_rows(rows: object) -> list:
    """The API's rows → rows for `localedit.composite.composite`: text such as "hair=7 eyes=12:30 mouth=40"
    (PART=SEED or PART=SEED:EPSILON, apart by spaces or commas), or a list whose items are such texts or
    [part, seed] / [part, seed, ε]. ε left out is the part's. Raises ValueError saying what is allowed."""
    if isinstance(rows, str):
        return [parse_row(item) for item in _BETWEEN_ROWS.split(rows.strip()) if item]
    if not isinstance(rows, (list, tuple)):
        raise ValueError(f"rows must be text such as 'hair=7 eyes=12:30' or a list of rows, got {short(rows)}")
    out = []
    for row in rows:
        if isinstance(row, str):
            row = parse_row(row)
        elif isinstance(row, (list, tuple)) and len(row) in (2, 3):
            row = (row[0], as_seed(row[1]), *row[2:])
        out.append(row)  # anything else: the library names the row
    return out


def rows_of(count: object, values: Sequence) -> list[tuple]:
    """The rows on the page: the first `count` of the row controls' values, flat as (part, seed, ε) triples."""
    n = count if isinstance(count, int) and 0 <= count <= len(values) // 3 else 0
    return [tuple(values[3 * i:3 * i + 3]) for i in range(n)]


def target_or(value: object, seeds: tuple[int, int]) -> int:
    """The page's target seed, or seeds[0] while it is not one (half-typed, say), for choosing new rows."""
    try:
        return parse_seed("target", value)
    except ValueError:
        return seeds[0]


def with_new_row(editor: Editor, rows: list[tuple], target: object, seeds: tuple[int, int]) -> list[tuple] | None:
    """"+ Add part": the rows and one more, the default row of the first part without one; None when every part
    has a row, or MAX_ROWS rows are there."""
    part = next((p for p in editor.parts if p not in {part for part, *_ in rows}), None)
    if part is None or len(rows) >= MAX_ROWS:
        return None
    return [*rows, default_row(editor, part, target_or(target, seeds), seeds)]


def without_row(rows: list[tuple], index: int) -> list[tuple] | None:
    """✕ on row `index`: the rows under it move up one; None for the last row left, which stays."""
    return rows[:index] + rows[index + 1:] if len(rows) > 1 and 0 <= index < len(rows) else None


def rows_for_model(editor: Editor, rows: list[tuple], target: object, seeds: tuple[int, int]) -> list[tuple]:
    """The rows on another model: as they are when it has all their parts, else its default rows."""
    if rows and all(part in editor.parts for part, *_ in rows):
        return rows
    return list(default_rows(editor, target_or(target, seeds), seeds))


def composite_stats(editor: Editor, result: CompositeResult) -> str:
    """A table, one line per part in its outline's colour: In-MSE inside its region, the style channels its row
    changed, and its region's share of the target; then Out-MSE outside all the parts' regions."""
    lines = ["| part | In-MSE | channels | region |", "|:--|--:|--:|--:|"]
    for part in result.params.parts:
        share = float(result.rois[part].mean())
        lines.append(f'| <span style="color:{editor.catalog.parts[part].color}">■</span> {part} | '
                     f"{result.in_mse[part]:.1f} | {result.changed[part]} | {f'{share:.0%}' if share else 'none'} |")
    return "\n".join(lines) + (f"\n\n**Out-MSE** {result.out_mse:.1f} outside all the parts · **channels changed** "
                               f"{sum(result.changed.values())} in all. In-MSE and Out-MSE are ΔE\\*², inside / "
                               "outside the regions; a part's channels are those its row changed, and its region "
                               "is its share of the target.")
