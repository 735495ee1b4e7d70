"""The demo: pick a target and a reference (each a seed) and a part; the part's look moves to the target (§3.2).

A thin Gradio UI over localedit, in the shape of Gradio's own demos: plain functions, then the layout, then the
wiring. Nothing is parsed from the command line. The models are an allowlist, fixed when the app starts:
  - every model folder under assets/ (or $LOCALEDIT_ASSETS) that has a generator and a catalog, and
  - the Hub repos in $LOCALEDIT_MODELS, comma-separated owner/name[@revision], loaded on first use.
A link or an API call names a model by its key in that list, so no other path or repo can ever be opened.
Links (?model=&target=&reference=&part=&epsilon=&method=&threshold=&lam=&truncation=) restore an edit exactly:
the editor is deterministic and every image is sent as PNG, so the same link gives the same bytes.

The page has two modes, each a tab: the single edit, and the composite (several parts, each from its own
reference, in one edit; its helpers are in app_composite.py). A composite's link
(?model=&target=&composite=eyes:12:30,hair:7:88.5&truncation=) opens the composite tab with its rows.
"""

from __future__ import annotations

import inspect
import math
import os
from dataclasses import asdict, astuple
from functools import partial
from pathlib import Path

import gradio as gr
import numpy as np

from app_composite import (
    composite_stats,
    parse_rows,
    row_seed,
    rows_for_model,
    rows_of,
    with_new_row,
    without_row,
)
from app_support import (
    COPY_LINK_JS,
    COUNT_JS,
    CSS,
    RANDOM_SEED_JS,
    SHOW_RESULT_JS,
    THEME,
    PngFiles,
    configure_process,
    literal,
    request_query,
    sync_link_js,
    user_errors,
)
from localedit import Editor, EditResult
from localedit.catalog import Catalog
from localedit.composite import MAX_ROWS, CompositeResult
from localedit.composite import composite as composite_edit
from localedit.edit import MAX_SEED, METHODS
from localedit.parts import MAX_THRESHOLD
from localedit.share import (
    CompositeControls,
    Controls,
    Models,
    default_composite,
    default_controls,
    parse_composite,
    parse_link,
    parse_seed,
    query_of,
    short,
)
from localedit.viz import diff_image, upscale

try:  # On a ZeroGPU Space each call borrows a GPU; anywhere else the decorator is a no-op.
    import spaces

    gpu = spaces.GPU
except ImportError:
    def gpu(fn):
        return fn

CONCURRENCY = int(os.environ.get("LOCALEDIT_CONCURRENCY", str(min(os.cpu_count() or 1, 4))))
# Gradio keeps a copy of the page's config for every session, about 90 kB here, and every plain HTTP API call
# (/call/edit) is a session of its own: capping them bounds memory (Gradio's default is 10000, about 0.9 GB).
SESSIONS = int(os.environ.get("LOCALEDIT_SESSIONS", "512"))
# Images go out at the model's resolution, the exact pixels of the edit, and the page enlarges them without
# smoothing (CSS image-rendering: pixelated). Only the diff map is upscaled (nearest) here, to about DIFF_SIZE
# px, so that the part's outline can be drawn thinner than a model pixel.
DIFF_SIZE = 256
THUMB = 96  # px on the page
DIFF_FLOOR = 100.0  # ΔE*² (ΔE* = 10): the diff ramp tops out at its 99th percentile, or here if that is lower
# Each part's saturating ε is on a 0.01 grid (Editor.epsilon_max), so the ε slider's step reaches it exactly.
EPSILON_STEP = 0.01
THRESHOLD_STEP = 0.01
FALLBACK_EXAMPLE = (0, 1)  # the seed pair of a part whose catalog stores no example
# How many outputs each kind of update has, so that a skip sends exactly one per output.
SINGLE_VIEWS = 8  # edit_view: 6 views, 2 thumbnails
COMPOSITE_VIEWS = 6 + MAX_ROWS  # composite_view: 5 views, the target's thumbnail, a thumbnail per row
ROW_UPDATES = 5 * MAX_ROWS + 2  # _rows_update: box, part, seed, ε and ✕ per row, the row count, "+ Add part"


# --- pictures and text -------------------------------------------------------------------------------------

def part_choices(catalog: Catalog) -> list[str]:
    """The part names. Their colours are shown once, in the legend under the dropdown, in the colour the
    outline is drawn with: an emoji can only approximate a colour (grey and peach have none), so none is used."""
    return list(catalog.parts)


def legend_html(catalog: Catalog, selected: str) -> str:
    items = "".join(
        f'<span class="part{" selected" if name == selected else ""}"><i style="background:{p.color}"></i>'
        f"{name}</span>" for name, p in catalog.parts.items())
    return f'<div class="legend">{items}</div>'


def epsilon_max(editor: Editor, part: str, threshold: float, value: float = 0) -> float:
    """The ε slider's end: where the part's sequential query saturates at this threshold, so every stretch of the
    slider changes the edit. Never below the current value (a link with a larger ε restores as it is), and never
    0, so that the slider keeps a track when the threshold leaves no channel to move."""
    return max(editor.epsilon_max(part, threshold), float(value), EPSILON_STEP)


def threshold_max(editor: Editor, part: str, value: float = 0) -> float:
    """The threshold slider's end: the part's threshold_max (its query is empty there), rounded up to the
    slider's step so that the end can be reached; never below the current value."""
    end = min(math.ceil(round(editor.threshold_max(part) / THRESHOLD_STEP, 6)) * THRESHOLD_STEP, MAX_THRESHOLD)
    return max(round(end, 6), float(value))


def lam_max(method: str, value: float = 0) -> float:
    return 1.0 if method == "global" else max(20.0, value)


png = PngFiles()


def diff_png(diff: np.ndarray, regions: list[tuple[np.ndarray, str]]) -> str:
    """The difference map upscaled to about DIFF_SIZE px, each (region, colour) outlined: drawn at half the scale
    and doubled, so that every outline is two pixels wide."""
    scale = max(1, DIFF_SIZE // diff.shape[0])
    image = diff_image(diff, regions, scale=max(1, scale // 2),
                       vmax=max(float(np.percentile(diff, 99)), DIFF_FLOOR))
    return png(upscale(image, scale // max(1, scale // 2)))


def stats_line(editor: Editor, result: EditResult) -> str:
    total = sum(editor.catalog.M[layer].shape[1] for layer in result.changed)  # the layers the editor may touch
    changed = sum(result.changed.values())
    layers = sum(1 for n in result.changed.values() if n)
    share = float(result.roi.mean())
    roi = f"ROI {share:.0%} of the target" if share else "the part is not on the target (empty ROI)"
    return (f"**In-MSE** {result.in_mse:.1f} · **Out-MSE** {result.out_mse:.1f} (ΔE\\*², inside / outside the "
            f"part) · **channels changed** {changed} of {total} in {layers} layers · {roi}")


# --- the functions behind the endpoints ---------------------------------------------------------------------

MODELS = Models.from_env(assets=Path(__file__).with_name("assets"))


def _run(model, target, reference, part, epsilon, method, threshold, lam, truncation) -> tuple[Editor, EditResult]:
    with user_errors():
        editor = MODELS.editor(model)
        if not isinstance(part, str):
            raise ValueError(f"part must be a name, one of {list(editor.parts)}, got {short(part)}")
        if not isinstance(method, str):
            raise ValueError(f"method must be one of {list(METHODS)}, got {short(method)}")
        return editor, editor.edit(parse_seed("target", target), parse_seed("reference", reference), part,
                                   epsilon=epsilon, threshold=threshold, method=method, lam=lam,
                                   truncation=truncation)


def _views(model: str, editor: Editor, r: EditResult) -> tuple:
    """The six outputs of `edit`, then the target's and the reference's PNGs again for the thumbnails."""
    edited, target, reference = png(r.edited), png(r.target), png(r.reference)
    diff = diff_png(r.diff, [(r.roi, editor.catalog.parts[r.params.part].color)])
    p = r.params
    link = Controls(model, p.target, p.reference, p.part, p.epsilon, p.method, p.threshold, p.lam, p.truncation)
    return edited, (target, edited), reference, diff, stats_line(editor, r), link.query(), target, reference


@gpu
def edit(model: str, target: int, reference: int, part: str, epsilon: float | None = None,
         method: str = "sequential", threshold: float | None = None, lam: float | None = None,
         truncation: float | None = None):
    """Move `part`'s look from the reference seed's image to the target seed's image.

    Returns the edited image, (target, edited) for the slider, the reference, the CIELAB difference map with
    the part's outline, a line of statistics, and the query string of a link to this edit. ε, threshold, λ and
    truncation default to the part's and the model's own values when None.
    """
    editor, result = _run(model, target, reference, part, epsilon, method, threshold, lam, truncation)
    return _views(model, editor, result)[:6]


@gpu
def edit_view(model, target, reference, part, epsilon, method, threshold, lam, truncation):
    """The live edit behind the controls: `edit` plus both thumbnails; half-typed seeds wait silently.

    A value the library refuses (a seed of -5 or 1.5, a part typed by hand) gets one notice saying what is
    allowed, and the last good edit stays on screen instead of an error over every output."""
    if target is None or reference is None or part is None:
        return (gr.skip(),) * SINGLE_VIEWS
    try:
        editor, r = _run(model, target, reference, part, epsilon, method, threshold, lam, truncation)
    except gr.Error as e:
        gr.Warning(e.message)
        return (gr.skip(),) * SINGLE_VIEWS
    return _views(model, editor, r)


def _run_composite(model, target, rows, truncation) -> tuple[Editor, CompositeResult]:
    with user_errors():
        editor = MODELS.editor(model)
        return editor, composite_edit(editor, parse_seed("target", target), rows, truncation)


def _composite_views(model: str, editor: Editor, r: CompositeResult) -> tuple:
    """The five outputs of `composite`, then the target's PNG and the list of the references' PNGs."""
    edited, target = png(r.edited), png(r.target)
    p = r.params
    diff = diff_png(r.diff, [(r.rois[part], editor.catalog.parts[part].color) for part in p.parts])
    rows = tuple((row.part, row.reference, row.epsilon) for row in p.rows)
    link = CompositeControls(model, p.target, rows, p.truncation)
    return (edited, (target, edited), diff, composite_stats(editor, r), link.query(), target,
            [png(image) for image in r.references])


@gpu
def composite(model: str, target: int, rows: str | list, truncation: float | None = None):
    """Several parts, each from its own reference seed, moved to the target in one edit.

    rows: text such as "hair=7 eyes=12:30 mouth=40" (PART=SEED or PART=SEED:EPSILON, apart by spaces or commas),
    or a list of such texts or of [part, seed] / [part, seed, ε]; ε left out is the part's, and each part may
    have one row. Returns the composite, (target, composite) for the slider, the CIELAB difference map with
    each part's outline in its colour, a table of statistics per part, and the query string of a link to it.
    """
    with user_errors():
        rows = parse_rows(rows)
    editor, result = _run_composite(model, target, rows, truncation)
    return _composite_views(model, editor, result)[:5]


@gpu
def composite_view(model, target, truncation, count, *values):
    """The live composite behind the composite tab: `composite` plus the target's thumbnail and each row's
    reference thumbnail. `values` are every row's (part, seed, ε), of which the first `count` rows are on the
    page. As in `edit_view`, half-typed seeds wait, and a refused value (a part in two rows, a seed of -5) gets
    one notice while the last good composite stays."""
    rows = rows_of(count, values)
    if target is None or any(value is None for row in rows for value in row):
        return (gr.skip(),) * COMPOSITE_VIEWS
    try:
        editor, r = _run_composite(model, target, [(part, row_seed(seed), epsilon) for part, seed, epsilon in rows],
                                   truncation)
    except gr.Error as e:
        gr.Warning(e.message)
        return (gr.skip(),) * COMPOSITE_VIEWS
    *views, references = _composite_views(model, editor, r)
    return (*views, *references, *(gr.skip(),) * (MAX_ROWS - len(references)))


@gpu
def thumbnail(model: str, seed: int, truncation: float | None = None) -> str:
    """A seed's image, as the thumbnails show it."""
    with user_errors():
        editor = MODELS.editor(model)
        seed = parse_seed("seed", seed)
        return png(editor.sample(seed, editor.resolve_truncation(truncation)).pixels)


def models() -> list[str]:
    """The models this demo serves; the first is the default."""
    return MODELS.names


def parts(model: str) -> list[dict]:
    """A model's parts: name, colour, clusters, the sequential query's settings (default ε and threshold, toRGB,
    ε profile), and where each part's ranges end: epsilon_max, the ε at which its query saturates at its own
    threshold (no larger ε changes the edit), and threshold_max, the threshold at and past which it is empty."""
    with user_errors():
        editor = MODELS.editor(model)
    out = []
    for name in editor.parts:
        p = editor.part_settings(name)
        out.append({"name": name, "color": p.color, "clusters": list(p.clusters), "epsilon": p.epsilon,
                    "threshold": p.threshold, "epsilon_max": editor.epsilon_max(name),
                    "threshold_max": editor.threshold_max(name), "torgb": p.torgb,
                    "epsilon_profile": dict(p.epsilon_profile)})
    return out


def _parse(query: dict) -> tuple[Controls, CompositeControls | None, list[str]]:
    """A link's single-edit controls, its composite (None for a single edit's link), and every notice."""
    controls, notices = parse_link(query, MODELS.names, MODELS.editor, DEFAULT_SEEDS)
    composite, more = parse_composite(query, controls, MODELS.editor(controls.model), DEFAULT_SEEDS)
    return controls, composite, notices + more


def restore(link: str) -> dict:
    """What a link shows: the controls it restores, its composite (None for a single edit's link), the query
    string of what it shows, and a notice for each value replaced."""
    with user_errors():
        if not isinstance(link, str):
            raise ValueError(f"link must be text, got {short(link)}")
        controls, composite, notices = _parse(query_of(link))
    return {"controls": asdict(controls), "composite": asdict(composite) if composite else None,
            "query": (composite or controls).query(), "notices": notices}


def examples(editor: Editor) -> list[list]:
    """One example per part, [target, reference, part, ε, threshold] at the part's own settings: the catalog's
    example pair (`tune` picks a plainly visible one), else seeds 0 → 1."""
    catalog = editor.catalog
    return [[*catalog.examples.get(part, FALLBACK_EXAMPLE), part, p.epsilon, p.threshold]
            for part, p in catalog.parts.items()]


def _controls_update(c: Controls) -> list:
    editor = MODELS.editor(c.model)
    catalog = editor.catalog
    return [gr.Dropdown(choices=MODELS.names, value=c.model), c.target, c.reference,
            gr.Dropdown(choices=part_choices(catalog), value=c.part),
            gr.Slider(value=c.epsilon, maximum=epsilon_max(editor, c.part, c.threshold, c.epsilon),
                      interactive=uses_budget(c.method)), c.method,
            gr.Slider(value=c.threshold, maximum=threshold_max(editor, c.part, c.threshold),
                      interactive=uses_budget(c.method)),
            gr.Slider(value=c.lam, maximum=lam_max(c.method, c.lam), interactive=not uses_budget(c.method)),
            c.truncation, legend_html(catalog, c.part)]


def restore_page(request: gr.Request):
    """On page load: the link's controls, with a visible notice for anything that fell back to a default."""
    controls, _, notices = _parse(request_query(request))
    if notices:
        gr.Warning("Parts of this link could not be used; the notice at the top says which.")
    notice = "**This link could not be used in full:**\n" + "".join(f"\n- {literal(n)}" for n in notices) \
        if notices else ""
    return _controls_update(controls) + [gr.Markdown(notice, visible=bool(notices))]


def _rows_update(editor: Editor, rows: list[tuple]) -> list:
    """The composite tab's rows set to `rows` (part, reference seed, ε): for each of the MAX_ROWS rows its box,
    part, seed, ε slider and ✕ (the first len(rows) shown, the rest hidden); then the row count and "+ Add part"
    (hidden once every part has a row)."""
    out = []
    for i in range(MAX_ROWS):
        if i >= len(rows):
            out += [gr.Group(visible=False), gr.skip(), gr.skip(), gr.skip(), gr.skip()]
            continue
        part, reference, epsilon = rows[i]
        end = epsilon_max(editor, part, editor.catalog.parts[part].threshold, epsilon) if part in editor.parts \
            and _number(epsilon) else None
        out += [gr.Group(visible=True), gr.Dropdown(choices=part_choices(editor.catalog), value=part), reference,
                gr.Slider(value=epsilon, maximum=end) if end else gr.Slider(value=epsilon),
                gr.Button(visible=len(rows) > 1)]
    return out + [len(rows), gr.Button(visible=len(rows) < min(MAX_ROWS, len(editor.parts)))]


def _composite_update(editor: Editor, c: CompositeControls) -> list:
    return [c.target, c.truncation, *_rows_update(editor, list(c.rows))]


def restore_composite_page(request: gr.Request):
    """On page load: the composite tab at the link's composite, opened, or at the model's default composite (the
    tab on show stays, should it have been picked meanwhile). Its query is the one the composite will have, so
    that the address bar keeps the link meanwhile; last, whether that is another composite than the page's first
    (then `refresh_composite` makes it; else nothing is sent)."""
    controls, composite, _ = _parse(request_query(request))
    editor = MODELS.editor(controls.model)
    c = composite or default_composite(controls.model, editor, DEFAULT_SEEDS)
    if c == DEFAULT_COMPOSITE:  # the page has it already: nothing to undo a change made meanwhile
        return [gr.skip()] * (5 + ROW_UPDATES) + [False]
    opened = [gr.Tabs(selected="composite"), "composite"] if composite else [gr.skip(), gr.skip()]
    return [*opened, c.query(), *_composite_update(editor, c), True]


def restore_modes(request: gr.Request):
    """On page load, at once: both modes from the link (one update, so that nothing sees half of it)."""
    return [*restore_page(request), *restore_composite_page(request)]


def on_composite_model(model: str, target, count, *values):
    """Another model, from the menu or a single edit's example: the composite's rows stay when the model has all
    their parts, else the model's default rows; the part menus offer its parts."""
    with user_errors():
        editor = MODELS.editor(model)
    return _rows_update(editor, rows_for_model(editor, rows_of(count, values), target, DEFAULT_SEEDS))


def add_row(model: str, target, count, *values):
    """"+ Add part": a row for the first part without one, from its default reference."""
    with user_errors():
        editor = MODELS.editor(model)
    rows = with_new_row(editor, rows_of(count, values), target, DEFAULT_SEEDS)
    return [gr.skip()] * ROW_UPDATES if rows is None else _rows_update(editor, rows)


def remove_row(index: int, model: str, count, *values):
    """✕ on row `index`: the rows under it move up one; the last row left stays."""
    with user_errors():
        editor = MODELS.editor(model)
    rows = without_row(rows_of(count, values), index)
    return [gr.skip()] * ROW_UPDATES if rows is None else _rows_update(editor, rows)


def open_example(link: str, model: str):
    """A composite example is a link: its model, target, ψ and rows. When it names another model than the page
    shows, the single edit starts over at that model's defaults, as when the model is picked, and `moved` says
    so (then `refresh_single` makes it)."""
    controls, composite, _ = _parse(query_of(link))
    editor = MODELS.editor(controls.model)
    moved = controls.model != model
    single = on_model(controls.model) if moved else [gr.skip()] * 7
    return [controls.model, *single, moved, *_composite_update(editor, composite)]


def refresh_single(stale: bool, *controls):
    """The single edit again when it is out of date (a composite example moved the model), else nothing."""
    return edit_view(*controls) if stale else (gr.skip(),) * SINGLE_VIEWS


def refresh_composite(stale: bool, *controls):
    """The composite again when it is out of date (a link set it), else nothing."""
    return composite_view(*controls) if stale else (gr.skip(),) * COMPOSITE_VIEWS


def on_model(model: str):
    """A new model: its parts, and the first part's defaults."""
    with user_errors():
        editor = MODELS.editor(model)
    return _controls_update(default_controls(model, editor, DEFAULT_SEEDS))[3:]


def _epsilon_slider(editor: Editor, part: str) -> gr.Slider:
    """The ε slider of a part picked by hand: at the part's own ε, ending where its query saturates."""
    p = editor.catalog.parts[part]
    return gr.Slider(value=p.epsilon, maximum=epsilon_max(editor, part, p.threshold, p.epsilon))


def on_part(model: str, part: str):
    """A part picked by hand: its own ε and threshold, and the ends of its ranges."""
    editor = MODELS.editor(model)
    if part not in editor.parts:
        return gr.skip(), gr.skip()
    p = editor.catalog.parts[part]
    return _epsilon_slider(editor, part), gr.Slider(value=p.threshold, maximum=threshold_max(editor, part, p.threshold))


def on_row_part(index: int, model: str, count, *values):
    """Row `index`'s part picked by hand: that part's own ε, and the end of its range. A part that another row
    has keeps the ε as it is, so that the composite's one notice says what is wrong."""
    rows = rows_of(count, values)
    part = rows[index][0] if index < len(rows) else None
    editor = _editor_and_part(model, part)
    if editor is None or any(other == part for i, (other, *_) in enumerate(rows) if i != index):
        return gr.skip()
    return _epsilon_slider(editor, part)


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _editor_and_part(model: object, part: object) -> Editor | None:
    """The model's editor when `part` is one of its parts; None for anything else (a half-typed part, say)."""
    try:
        editor = MODELS.editor(model)
    except ValueError:
        return None
    return editor if isinstance(part, str) and part in editor.parts else None


def on_threshold(model: str, part: str, threshold: float, epsilon: float):
    """The threshold moved by hand: the ε slider now ends where the query saturates at it. The ε value stays,
    and when it is past the new end the slider ends at it instead, so moving the threshold never moves ε."""
    editor = _editor_and_part(model, part)
    if editor is None or not _number(threshold) or not _number(epsilon):
        return gr.skip()
    try:
        return gr.Slider(maximum=epsilon_max(editor, part, threshold, epsilon))
    except ValueError:  # a threshold out of range: the edit says so
        return gr.skip()


def on_example(model: str, part: str, epsilon: float, threshold: float):
    """After an example filled the controls (each back at its first settings, the method sequential): the ends
    of both sliders for the example's part, the knobs that steer the sequential query live, and the legend."""
    editor = _editor_and_part(model, part)
    if editor is None or not _number(threshold) or not _number(epsilon):
        return (gr.skip(),) * 4
    try:
        return (gr.Slider(maximum=epsilon_max(editor, part, threshold, epsilon), interactive=True),
                gr.Slider(maximum=threshold_max(editor, part, threshold), interactive=True),
                gr.Slider(interactive=False), legend_html(editor.catalog, part))
    except ValueError:
        return (gr.skip(),) * 4


def show_legend(model: str, part: str):
    editor = MODELS.editor(model)
    return legend_html(editor.catalog, part) if part in editor.parts else gr.skip()


def uses_budget(method: str) -> bool:
    """ε and the threshold steer only the sequential query; λ only the other two."""
    return method == "sequential"


def on_method(method: str, lam: float):
    """The knobs that steer this method are live, the others greyed out."""
    return (gr.Slider(value=min(lam, 1.0) if method == "global" else lam, maximum=lam_max(method, lam),
                      interactive=not uses_budget(method)),
            gr.Slider(interactive=uses_budget(method)), gr.Slider(interactive=uses_budget(method)))


def hide_notice():
    return gr.Markdown(visible=False)


_default_editor = MODELS.editor(MODELS.names[0])
EXAMPLES = examples(_default_editor)
DEFAULT_SEEDS = (EXAMPLES[0][0], EXAMPLES[0][1])
DEFAULT = default_controls(MODELS.names[0], _default_editor, DEFAULT_SEEDS)
FIRST_VIEW = edit_view(*astuple(DEFAULT))  # what the page shows before the link's own edit arrives
# The composite tab's first view, and its example (a link): one composite more at import, of at most three parts.
DEFAULT_COMPOSITE = default_composite(DEFAULT.model, _default_editor, DEFAULT_SEEDS)
COMPOSITE_FIRST_VIEW = _composite_views(DEFAULT.model, _default_editor, composite_edit(
    _default_editor, DEFAULT_COMPOSITE.target, DEFAULT_COMPOSITE.rows, DEFAULT_COMPOSITE.truncation))

def entered(boxes) -> list:
    """The events of number boxes that mean "this value is entered": Enter, and leaving the box."""
    return [event for box in boxes for event in (box.submit, box.blur)]


# --- layout ---------------------------------------------------------------------------------------------------


def seed_picker(label: str, seed: int | None, elem_id: str, thumb: str | None) -> tuple[gr.Number, gr.Button, gr.Image]:
    """A seed: its number, a 🎲 for a random one, and a small picture of it (`thumb`, its PNG)."""
    with gr.Row(equal_height=True):
        box = gr.Number(seed, label=label, precision=0, minimum=0, maximum=MAX_SEED, scale=3, elem_id=elem_id,
                        min_width=100)
        dice = gr.Button("🎲", elem_classes="dice", elem_id=f"{elem_id}-dice", scale=0, min_width=48)
        thumb = gr.Image(thumb, format="png", label=f"{label} thumbnail", show_label=False, interactive=False,
                         container=False, buttons=[], height=THUMB, width=THUMB, elem_classes=["thumb", "pixelated"],
                         elem_id=f"{elem_id}-thumb", scale=0, min_width=THUMB)
    return box, dice, thumb


def composite_row(i: int) -> dict:
    """Row i of the composite (shown when the default composite has one): a part, its reference seed (number,
    🎲, thumbnail), its ε, and ✕ to remove it."""
    rows, n = DEFAULT_COMPOSITE.rows, len(DEFAULT_COMPOSITE.rows)
    part, reference, epsilon = rows[i] if i < n else (None, None, 0.0)
    catalog = _default_editor.catalog
    end = epsilon_max(_default_editor, part, catalog.parts[part].threshold, epsilon) if part else 1.0
    with gr.Group(visible=i < n, elem_id=f"row-{i + 1}", elem_classes="composite-row") as group:
        with gr.Row(equal_height=True):
            part_box = gr.Dropdown(part_choices(catalog), value=part, label=f"Part {i + 1}", scale=3,
                                   elem_id=f"row-{i + 1}-part")
            remove = gr.Button("✕", elem_classes="dice", elem_id=f"row-{i + 1}-remove", scale=0, min_width=48,
                               visible=n > 1)
        seed, dice, thumb = seed_picker("Reference seed", reference, f"row-{i + 1}-reference",
                                        COMPOSITE_FIRST_VIEW[6][i] if i < n else None)
        epsilon = gr.Slider(0, end, value=epsilon, step=EPSILON_STEP, label="ε", elem_id=f"row-{i + 1}-epsilon")
    return dict(group=group, part=part_box, seed=seed, dice=dice, thumb=thumb, epsilon=epsilon, remove=remove)


def picture(label: str, height: int, elem_id: str, value: str | None = None) -> gr.Image:
    return gr.Image(value, label=label, format="png", interactive=False, height=height, elem_id=elem_id,
                    elem_classes="pixelated", buttons=["download"])


with gr.Blocks(title="localedit: local edits of StyleGAN2 images", delete_cache=(3600, 3600)) as demo:
    with gr.Row(equal_height=True):
        with gr.Column(scale=4, min_width=320):
            gr.Markdown("## localedit: move one part's look from a reference image to a target\n"
                        "*Editing in Style* (Collins et al., CVPR 2020): only the style channels that matter for the "
                        "part are interpolated, so the rest of the target stays as it was.")
        with gr.Column(scale=1, min_width=200):
            model_box = gr.Dropdown(MODELS.names, value=DEFAULT.model, label="Model", elem_id="model")  # both modes
    notice = gr.Markdown(visible=False, elem_id="notice")
    mode_box = gr.Textbox("single", visible="hidden", elem_id="mode")  # the tab on show, whose link the URL has
    _catalog = _default_editor.catalog
    with gr.Tabs(elem_id="modes") as tabs:
        with gr.Tab("Single edit", id="single", elem_id="single") as single_tab:
            with gr.Row():
                with gr.Column(scale=2, min_width=320, elem_id="controls"):
                    target_box, target_dice, target_thumb = seed_picker("Target seed", DEFAULT.target, "target",
                                                                        FIRST_VIEW[6])
                    reference_box, reference_dice, reference_thumb = seed_picker(
                        "Reference seed", DEFAULT.reference, "reference", FIRST_VIEW[7])
                    part_box = gr.Dropdown(part_choices(_catalog), value=DEFAULT.part, label="Part", elem_id="part",
                                           allow_custom_value=True)  # another model's parts are valid too
                    legend = gr.HTML(legend_html(_catalog, DEFAULT.part))
                    epsilon_box = gr.Slider(0, epsilon_max(_default_editor, DEFAULT.part, DEFAULT.threshold,
                                                           DEFAULT.epsilon),
                                            value=DEFAULT.epsilon, step=EPSILON_STEP, label="ε",
                                            info="0 changes nothing; at the right end every channel above the "
                                                 "threshold moves", elem_id="epsilon")
                    with gr.Accordion("Advanced", open=False):
                        method_box = gr.Radio(list(METHODS), value=DEFAULT.method, label="Method",
                                              elem_id="method")
                        threshold_box = gr.Slider(0, threshold_max(_default_editor, DEFAULT.part, DEFAULT.threshold),
                                                  value=DEFAULT.threshold, step=THRESHOLD_STEP, label="Threshold",
                                                  info="sequential: only channels with M_part above it move; "
                                                       "none at the right end", elem_id="threshold")
                        lam_box = gr.Slider(0, lam_max(DEFAULT.method), value=DEFAULT.lam, step=0.05, label="λ",
                                            info="simultaneous: q = min(1, λ·M_part); global: q = λ", elem_id="lam",
                                            interactive=not uses_budget(DEFAULT.method))
                        truncation_box = gr.Slider(0, 1, value=DEFAULT.truncation, step=0.05, label="Truncation ψ",
                                                   elem_id="truncation")
                    link_box = gr.Textbox(label="Link to this edit", interactive=False, buttons=["copy"],
                                          max_lines=1, elem_id="link")
                    copy_button = gr.Button("🔗 Copy link", size="sm", elem_id="copy-link")
                    query_box = gr.Textbox(label="Query", visible="hidden", elem_id="query")
                    # Counts seeds entered (Enter, leaving the box, a 🎲, an example), so that one listener, whose
                    # always_last keeps a late result from overwriting a newer one, makes every single edit.
                    seed_entered = gr.Number(0, visible="hidden", elem_id="seed-entered")
                with gr.Column(scale=5, elem_id="outputs"):
                    with gr.Row():
                        # The default edit is on the page from the first paint; a link's own edit replaces it,
                        # under a progress indicator.
                        edited_out = picture("Edited", 400, "edited", FIRST_VIEW[0])
                        slider_out = gr.ImageSlider(FIRST_VIEW[1], label="Target ↔ edited", format="png",
                                                    interactive=False, height=400, elem_id="slider",
                                                    elem_classes="pixelated", buttons=[])
                    with gr.Row():
                        reference_out = picture("Reference", 260, "reference-out", FIRST_VIEW[2])
                        diff_out = picture("Difference", 260, "diff", FIRST_VIEW[3])
                    stats_out = gr.Markdown(FIRST_VIEW[4], label="Stats", elem_id="stats")
                    gr.Markdown("The difference map is the squared CIELAB error between the target and the edit; "
                                "the outline, in the part's colour, is the part's region on the target.",
                                elem_id="caption")
            controls = [model_box, target_box, reference_box, part_box, epsilon_box, method_box, threshold_box,
                        lam_box, truncation_box]
            # Each example names its model too, so that it works after another model was picked.
            # An example restores its whole edit: the sequential query at the part's own settings, at the model's ψ.
            examples = gr.Examples([[DEFAULT.model, *row, "sequential", 1.0, DEFAULT.truncation] for row in EXAMPLES],
                                   inputs=[model_box, target_box, reference_box, part_box, epsilon_box,
                                           threshold_box, method_box, lam_box, truncation_box],
                                   label=f"Examples for {DEFAULT.model}",
                                   example_labels=[f"{p}: {t} → {r}" for t, r, p, *_ in EXAMPLES])

        with gr.Tab("Composite", id="composite", elem_id="composite") as composite_tab:
            gr.Markdown("Several parts, each from its own reference, in one edit (the paper's forensic-art use): a "
                        "style channel that two parts would move goes to the part it matters most for.")
            with gr.Row():
                with gr.Column(scale=2, min_width=320, elem_id="composite-controls"):
                    c_target_box, c_target_dice, c_target_thumb = seed_picker(
                        "Target seed", DEFAULT_COMPOSITE.target, "composite-target", COMPOSITE_FIRST_VIEW[5])
                    rows = [composite_row(i) for i in range(MAX_ROWS)]
                    add_button = gr.Button("+ Add part", size="sm", elem_id="add-part",
                                           visible=len(DEFAULT_COMPOSITE.rows) < min(MAX_ROWS, len(_catalog.parts)))
                    row_count = gr.State(len(DEFAULT_COMPOSITE.rows))
                    # Whether a view is out of date: the single edit's after a composite example moved the
                    # model, the composite's after a link set it.
                    single_stale, composite_stale = gr.State(False), gr.State(False)
                    with gr.Accordion("Advanced", open=False, elem_id="composite-advanced"):
                        c_truncation_box = gr.Slider(0, 1, value=DEFAULT_COMPOSITE.truncation, step=0.05,
                                                     label="Truncation ψ", elem_id="composite-truncation")
                    c_link_box = gr.Textbox(label="Link to this composite", interactive=False, buttons=["copy"],
                                            max_lines=1, elem_id="composite-link")
                    c_copy_button = gr.Button("🔗 Copy link", size="sm", elem_id="composite-copy-link")
                    c_query_box = gr.Textbox(COMPOSITE_FIRST_VIEW[4], label="Query", visible="hidden",
                                             elem_id="composite-query")
                    rows_box = gr.Textbox(label="Rows", visible="hidden")  # the API's rows: "hair=7 eyes=12:30"
                    example_box = gr.Textbox(label="Example", visible="hidden")  # an example's link
                with gr.Column(scale=5, elem_id="composite-outputs"):
                    with gr.Row():
                        c_edited_out = picture("Composite", 400, "composite-edited", COMPOSITE_FIRST_VIEW[0])
                        c_slider_out = gr.ImageSlider(COMPOSITE_FIRST_VIEW[1], label="Target ↔ composite",
                                                      format="png", interactive=False, height=400,
                                                      elem_id="composite-slider", elem_classes="pixelated",
                                                      buttons=[])
                    with gr.Row():
                        with gr.Column(min_width=260):
                            c_diff_out = picture("Difference", 260, "composite-diff", COMPOSITE_FIRST_VIEW[2])
                        with gr.Column(min_width=300):
                            c_stats_out = gr.Markdown(COMPOSITE_FIRST_VIEW[3], label="Stats",
                                                      elem_id="composite-stats")
                    gr.Markdown("The difference map is the squared CIELAB error between the target and the "
                                "composite; each part's region on the target is outlined in the part's colour.",
                                elem_id="composite-caption")
            composite_examples = gr.Examples(
                [[DEFAULT_COMPOSITE.query()]], inputs=example_box, label=f"Examples for {DEFAULT.model}",
                example_labels=[" + ".join(f"{part} ← {reference}" for part, reference, _ in DEFAULT_COMPOSITE.rows)
                                + f" on {DEFAULT_COMPOSITE.target}"])

    # --- wiring ---------------------------------------------------------------------------------------------------

    outputs = [edited_out, slider_out, reference_out, diff_out, stats_out, query_box]
    row_values = [row[key] for row in rows for key in ("part", "seed", "epsilon")]
    composite_controls = [model_box, c_target_box, c_truncation_box, row_count, *row_values]
    composite_outputs = [c_edited_out, c_slider_out, c_diff_out, c_stats_out, c_query_box]
    composite_thumbs = [c_target_thumb, *(row["thumb"] for row in rows)]
    # What sets the rows (_rows_update): each row's box, part, seed, ε and ✕, then the row count and "+ Add part".
    row_outputs = [row[key] for row in rows for key in ("group", "part", "seed", "epsilon", "remove")] + \
        [row_count, add_button]
    # Every synthesis shares one concurrency group, so at most CONCURRENCY of them run at once.
    synth = dict(concurrency_id="synthesis", preprocess=False)
    # Edits are live (every control change runs one), so the page has no Edit button; /edit is the API's.
    gr.on([], edit, controls, outputs, api_name="edit", **synth)
    single = dict(fn=edit_view, inputs=controls, outputs=outputs + [target_thumb, reference_thumb],
                  trigger_mode="always_last", show_progress="minimal", api_visibility="private", **synth)
    # A seed runs its edit when it is entered (Enter, or leaving the box), not at every keystroke: typing 54321
    # must not edit seeds 5, 54, 543 and 5432 on the way.
    seed_boxes = (target_box, reference_box)
    gr.on([c.change for c in controls[1:] if c not in seed_boxes] + [seed_entered.change], **single)
    gr.on(entered(seed_boxes), None, seed_entered, seed_entered, js=COUNT_JS)
    model_box.input(on_model, model_box, controls[3:] + [legend], api_visibility="private").then(
        edit_view, controls, outputs + [target_thumb, reference_thumb], api_visibility="private", **synth)
    part_box.input(on_part, [model_box, part_box], [epsilon_box, threshold_box], api_visibility="private")
    # Raw values (preprocess=False): Gradio would refuse a value past a slider's end before the callback could
    # move that end.
    threshold_box.input(on_threshold, [model_box, part_box, threshold_box, epsilon_box], epsilon_box,
                        api_visibility="private", queue=False, preprocess=False, trigger_mode="always_last")
    examples.load_input_event.then(on_example, [model_box, part_box, epsilon_box, threshold_box],
                                   [epsilon_box, threshold_box, lam_box, legend], api_visibility="private",
                                   queue=False, preprocess=False).then(None, seed_entered, seed_entered, js=COUNT_JS)
    examples.load_input_event.then(None, js=SHOW_RESULT_JS)
    part_box.change(show_legend, [model_box, part_box], legend, api_visibility="private", queue=False)
    method_box.input(on_method, [method_box, lam_box], [lam_box, epsilon_box, threshold_box],
                     api_visibility="private", queue=False)
    # A link's notice is about the link: once the user changes anything, it no longer describes the page.
    gr.on([c.input for c in controls], hide_notice, None, notice, api_visibility="private", queue=False)
    for box, dice in ((target_box, target_dice), (reference_box, reference_dice)):
        dice.click(None, seed_entered, [box, seed_entered], js=f"(n) => [({RANDOM_SEED_JS})(), n + 1]")
    copy_button.click(None, link_box, None, js=COPY_LINK_JS)

    # The composite: live too, on its own controls and the shared model; /composite is the API's.
    gr.on([], composite, [model_box, c_target_box, rows_box, c_truncation_box], composite_outputs,
          api_name="composite", **synth)
    # Made again on each of the user's own changes (input events), and after whatever sets several of its
    # controls at once (+, ✕, a part's own ε, a 🎲, another model, an example, a link): a change event fired while
    # such an update arrives reads some controls old and some new.
    remake = dict(fn=composite_view, inputs=composite_controls, outputs=composite_outputs + composite_thumbs,
                  trigger_mode="always_last", show_progress="minimal", api_visibility="private", **synth)
    row_seeds = [row["seed"] for row in rows]
    gr.on([c_truncation_box.input, *(row["epsilon"].input for row in rows)] + entered([c_target_box, *row_seeds]),
          **remake)
    add_button.click(add_row, [model_box, c_target_box, row_count, *row_values], row_outputs,
                     api_visibility="private", preprocess=False).then(**remake)
    for i, row in enumerate(rows):
        row["remove"].click(partial(remove_row, i), [model_box, row_count, *row_values], row_outputs,
                            api_visibility="private", preprocess=False).then(**remake)
        # select, not input: a pick from the menu fires input twice (and so two notices for a part another row
        # has), select once.
        row["part"].select(partial(on_row_part, i), [model_box, row_count, *row_values], row["epsilon"],
                           api_visibility="private", preprocess=False).then(**remake)
        row["dice"].click(None, None, row["seed"], js=RANDOM_SEED_JS).then(**remake)
    c_target_dice.click(None, None, c_target_box, js=RANDOM_SEED_JS).then(**remake)
    # A model from the menu or a single edit's example: the rows follow it (a link and a composite example set
    # the model and the rows together).
    for event in (model_box.input, examples.load_input_event.then):
        event(on_composite_model, [model_box, c_target_box, row_count, *row_values], row_outputs,
              api_visibility="private", preprocess=False).then(**remake)
    composite_examples.load_input_event.then(None, js=SHOW_RESULT_JS)
    example = composite_examples.load_input_event.then(
        open_example, [example_box, model_box], [model_box, *controls[3:], legend, single_stale,
                                                  c_target_box, c_truncation_box, *row_outputs],
        api_visibility="private")
    example.then(**remake)
    example.then(refresh_single, [single_stale, *controls], outputs + [target_thumb, reference_thumb],
                 api_visibility="private", **synth)
    gr.on([c.input for c in [c_target_box, c_truncation_box, *row_values]] + [add_button.click] +
          [row["remove"].click for row in rows], hide_notice, None, notice, api_visibility="private", queue=False)
    c_copy_button.click(None, c_link_box, None, js=COPY_LINK_JS)

    # The address bar has the link of the tab on show; each tab's link box always has its own.
    single_tab.select(None, None, mode_box, js="() => 'single'")
    composite_tab.select(None, None, mode_box, js="() => 'composite'")
    for query, link, mode in ((query_box, link_box, "single"), (c_query_box, c_link_box, "composite")):
        gr.on([query.change, mode_box.change], None, [query, mode_box], link, js=sync_link_js(mode))

    loaded = demo.load(restore_modes, None, controls + [legend, notice, tabs, mode_box, c_query_box, c_target_box,
                                                        c_truncation_box, *row_outputs, composite_stale],
                       api_visibility="private")
    loaded.then(edit_view, controls, outputs + [target_thumb, reference_thumb], api_visibility="private",
                show_progress="full", **synth)
    loaded.then(refresh_composite, [composite_stale, *composite_controls], composite_outputs + composite_thumbs,
                api_visibility="private", show_progress="full", **synth)
    # API only (no trigger in the page): a seed's picture, as the thumbnails show it.
    gr.on([], thumbnail, [model_box, target_box, truncation_box], target_thumb, api_name="thumbnail", **synth)
    gr.api(models, api_name="models")
    gr.api(parts, api_name="parts")
    gr.api(restore, api_name="restore")

demo.queue(default_concurrency_limit=CONCURRENCY, max_size=64)


def launch(**kwargs):
    """Serve the demo; in Gradio 6 the theme and the CSS are launch() arguments.

    Gradio then probes its own URL and, when one HEAD request takes over 3 s, refuses to start ("When localhost
    is not accessible, a shareable link must be created"): a busy machine failed that way while the server was
    fine. The probe only exists to push notebooks towards share=True, so it is skipped where Gradio allows it.
    """
    if "_frontend" in inspect.signature(demo.launch).parameters:
        kwargs.setdefault("_frontend", False)
    configure_process()
    return demo.launch(theme=THEME, css=CSS, state_session_capacity=SESSIONS, **kwargs)


if __name__ == "__main__":
    launch()
