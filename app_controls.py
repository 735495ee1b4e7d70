"""What the page's controls do to each other, apart from making views: a link filling both modes on page load, a
model or a part bringing its own settings and slider ranges, the composite's rows after "+ Add part", ✕, another
model or an example. Every function here returns Gradio updates and is cheap (no synthesis); app.py wires them.

The views themselves are app_endpoints.py's (`edit_page`, `composite_page`); the composite rows' helpers apart
from Gradio are app_composite.py's.
"""

from __future__ import annotations

import math

import gradio as gr

from app_composite import rows_for_model, rows_of, with_new_row, without_row
from app_endpoints import DEFAULT_COMPOSITE, DEFAULT_SEEDS, MODELS, read_link, restore_upload
from app_support import literal, request_query, user_errors
from localedit import Editor
from localedit.catalog import Catalog
from localedit.composite import MAX_ROWS
from localedit.parts import MAX_THRESHOLD
from localedit.share import (
    CompositeControls,
    Controls,
    default_composite,
    default_controls,
    is_upload,
    query_of,
)

# Each part's saturating ε is on a 0.01 grid (Editor.epsilon_max), so the ε slider's step reaches it exactly.
EPSILON_STEP = 0.01
THRESHOLD_STEP = 0.01
ROW_UPDATES = 5 * MAX_ROWS + 2  # _rows_update: box, part, seed, ε and ✕ per row, the row count, "+ Add part"
SINGLE_RESTORE = 12  # _restore_single: the nine controls, the legend, the notice and the query
COMPOSITE_RESTORE = 5 + ROW_UPDATES  # _restore_composite: the tabs, the mode, the query, target, ψ, the rows
SOURCE_UPDATES = 5  # _source_update: a source's kind, upload name, picture, projection and fidelity line


# --- the controls' ranges and the legend --------------------------------------------------------------------

def part_choices(catalog: Catalog) -> list[str]:
    """The part names. Their colours are shown once, in the legend under the dropdown, in the colour the
    outline is drawn with: an emoji can only approximate a colour (grey and peach have none), so none is used."""
    return list(catalog.parts)


def legend_html(catalog: Catalog, selected: str) -> str:
    items = "".join(
        f'<span class="part{" selected" if name == selected else ""}"><i style="background:{p.color}"></i>'
        f"{name}</span>" for name, p in catalog.parts.items())
    return f'<div class="legend">{items}</div>'


def epsilon_max(editor: Editor, part: str, threshold: float | None = None, value: float = 0) -> float:
    """The ε slider's end: where the part's sequential query saturates at this threshold (None: the part's own),
    so every stretch of the slider changes the edit. Never below the current value (a link with a larger ε
    restores as it is), and never 0, so that the slider keeps a track when the threshold leaves no channel to
    move. Every ε slider, the single edit's and each composite row's, ends here."""
    return max(editor.epsilon_max(part, threshold), float(value), EPSILON_STEP)


def epsilon_slider(editor: Editor, part: str, epsilon: float | None = None) -> gr.Slider:
    """A part's ε slider at `epsilon` (None: the part's own), at the part's own threshold."""
    epsilon = editor.catalog.parts[part].epsilon if epsilon is None else epsilon
    return gr.Slider(value=epsilon, maximum=epsilon_max(editor, part, value=epsilon))


def threshold_max(editor: Editor, part: str, value: float = 0) -> float:
    """The threshold slider's end: the part's threshold_max (its query is empty there), rounded up to the
    slider's step so that the end can be reached; never below the current value."""
    end = min(math.ceil(round(editor.threshold_max(part) / THRESHOLD_STEP, 6)) * THRESHOLD_STEP, MAX_THRESHOLD)
    return max(round(end, 6), float(value))


def lam_max(method: str, value: float = 0) -> float:
    return 1.0 if method == "global" else max(20.0, value)


def uses_budget(method: str) -> bool:
    """ε and the threshold steer only the sequential query; λ only the other two."""
    return method == "sequential"


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _editor_and_part(model: object, part: object) -> Editor | None:
    """The model's editor when `part` is one of its parts; None for anything else (a half-typed part, say)."""
    try:
        editor = MODELS.editor(model)
    except ValueError:
        return None
    return editor if isinstance(part, str) and part in editor.parts else None


# --- whole modes set at once --------------------------------------------------------------------------------

def _controls_update(c: Controls) -> list:
    editor = MODELS.editor(c.model)
    catalog = editor.catalog
    # An upload is shown beside its source's seed box (`_source_update`), which keeps its seed.
    seeds = [gr.skip() if is_upload(seed) else seed for seed in (c.target, c.reference)]
    return [gr.Dropdown(choices=MODELS.names, value=c.model), *seeds,
            gr.Dropdown(choices=part_choices(catalog), value=c.part),
            gr.Slider(value=c.epsilon, maximum=epsilon_max(editor, c.part, c.threshold, c.epsilon),
                      interactive=uses_budget(c.method)), c.method,
            gr.Slider(value=c.threshold, maximum=threshold_max(editor, c.part, c.threshold),
                      interactive=uses_budget(c.method)),
            gr.Slider(value=c.lam, maximum=lam_max(c.method, c.lam), interactive=not uses_budget(c.method)),
            c.truncation, legend_html(catalog, c.part)]


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
        slider = epsilon_slider(editor, part, epsilon) if part in editor.parts and _number(epsilon) \
            else gr.Slider(value=epsilon)
        out += [gr.Group(visible=True), gr.Dropdown(choices=part_choices(editor.catalog), value=part), reference,
                slider, gr.Button(visible=len(rows) > 1)]
    return out + [len(rows), gr.Button(visible=len(rows) < min(MAX_ROWS, len(editor.parts)))]


def _composite_update(editor: Editor, c: CompositeControls) -> list:
    return [c.target, c.truncation, *_rows_update(editor, list(c.rows))]


def _restore_single(controls: Controls, notices: list[str]) -> list:
    """The link's controls, with a visible notice for anything that fell back to a default; last, the query of
    the edit they ask for, so that the address bar keeps the link until `edit_page` makes it."""
    if notices:
        gr.Warning("Parts of this link could not be used; the notice at the top says which.")
    notice = "**This link could not be used in full:**\n" + "".join(f"\n- {literal(n)}" for n in notices) \
        if notices else ""
    return _controls_update(controls) + [gr.Markdown(notice, visible=bool(notices)), controls.query()]


def _restore_composite(controls: Controls, composite: CompositeControls | None) -> list:
    """The composite tab at the link's composite, opened, or at the model's default composite (the tab on show
    stays, should it have been picked meanwhile). Its query is the one the composite will have, so that the
    address bar keeps the link until `composite_page` makes it. Nothing when that is the page's first composite:
    nothing to undo a change made meanwhile."""
    editor = MODELS.editor(controls.model)
    c = composite or default_composite(controls.model, editor, DEFAULT_SEEDS)
    if c == DEFAULT_COMPOSITE:
        return [gr.skip()] * COMPOSITE_RESTORE
    opened = [gr.Tabs(selected="composite"), "composite"] if composite else [gr.skip(), gr.skip()]
    return [*opened, c.query(), *_composite_update(editor, c)]


def _source_update(name: object) -> list:
    """A link's target or reference, when it is an upload the server has: the source set to "upload", its name,
    the picture as fitted to the model, its projection and their line. Nothing for a seed (the page is new)."""
    if not is_upload(name):
        return [gr.skip()] * SOURCE_UPDATES
    return ["upload", name, *restore_upload(name)]


def restore_modes(request: gr.Request):
    """On page load: both modes from the link, read once, in one update (so that nothing sees half of it): the
    single edit's controls (SINGLE_RESTORE updates), then the composite tab's (COMPOSITE_RESTORE), then the
    target's and the reference's uploads (SOURCE_UPDATES each). The views follow: the load asks each mode's
    listener, and the one on show makes its view."""
    controls, composite, notices = read_link(request_query(request))
    return [*_restore_single(controls, notices), *_restore_composite(controls, composite),
            *_source_update(controls.target), *_source_update(controls.reference)]


def open_example(link: str, model: str):
    """A composite example is a link: its model, target, ψ and rows. When it names another model than the page
    shows, the single edit starts over at that model's defaults, as when the model is picked."""
    controls, composite, _ = read_link(query_of(link))
    editor = MODELS.editor(controls.model)
    single = on_model(controls.model) if controls.model != model else [gr.skip()] * 7
    return [controls.model, *single, *_composite_update(editor, composite)]


# --- one control at a time -----------------------------------------------------------------------------------

def on_model(model: str):
    """A new model: its parts, and the first part's defaults."""
    with user_errors():
        editor = MODELS.editor(model)
    return _controls_update(default_controls(model, editor, DEFAULT_SEEDS))[3:]


def on_part(model: str, part: str):
    """A part picked by hand: its own ε and threshold, and the ends of its ranges."""
    editor = MODELS.editor(model)
    if part not in editor.parts:
        return gr.skip(), gr.skip()
    p = editor.catalog.parts[part]
    return epsilon_slider(editor, part), gr.Slider(value=p.threshold, maximum=threshold_max(editor, part, p.threshold))


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


def on_method(method: str, lam: float):
    """The knobs that steer this method are live, the others greyed out."""
    return (gr.Slider(value=min(lam, 1.0) if method == "global" else lam, maximum=lam_max(method, lam),
                      interactive=not uses_budget(method)),
            gr.Slider(interactive=uses_budget(method)), gr.Slider(interactive=uses_budget(method)))


def hide_notice():
    return gr.Markdown(visible=False)


def seed_sources():
    """An example's target and reference are seeds."""
    return "seed", "seed"


# --- the composite's rows ------------------------------------------------------------------------------------

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


def on_row_part(index: int, model: str, count, *values):
    """Row `index`'s part picked by hand: that part's own ε, and the end of its range. A part that another row
    has keeps the ε as it is, so that the composite's one notice says what is wrong."""
    rows = rows_of(count, values)
    part = rows[index][0] if index < len(rows) else None
    editor = _editor_and_part(model, part)
    if editor is None or any(other == part for i, (other, *_) in enumerate(rows) if i != index):
        return gr.skip()
    return epsilon_slider(editor, part)
