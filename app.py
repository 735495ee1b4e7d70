"""The demo: pick a target and a reference (each a seed, or a picture of your own) and a part; the part's look
moves to the target (§3.2).

A thin Gradio UI over localedit, in the shape of Gradio's own demos: the functions (imported), then the layout,
then the wiring. Nothing is parsed from the command line. The models are an allowlist, fixed when the app starts:
  - every model folder under assets/ (or $LOCALEDIT_ASSETS) that has a generator and a catalog, and
  - the Hub repos in $LOCALEDIT_MODELS, comma-separated owner/name[@revision], loaded on first use.
A link or an API call names a model by its key in that list, so no other path or repo can ever be opened.
Links (?model=&target=&reference=&part=&epsilon=&method=&threshold=&lam=&truncation=) restore an edit exactly:
the editor is deterministic and every image is sent as PNG, so the same link gives the same bytes. A picture of
your own (an upload, or the webcam's) is projected into the model and edited like a seed; a link names it
`upload:<hex>` and works while the server keeps the projection (app_uploads.py).

The page has two modes, each a tab: the single edit, and the composite (several parts, each from its own
reference, in one edit); a third tab builds a catalog for a generator (app_builder.py). A composite's link
(?model=&target=&composite=eyes:12:30,hair:7:88.5&truncation=) opens the composite tab with its rows. Each
mode's view is made by one listener (always_last, so that a late result never overwrites a newer one), only while
its tab is on show; whatever else asks for a view bumps a hidden count that listener watches.

Where things live:
  app.py            the layout and the wiring, and `launch`
  app_endpoints.py  the functions behind the endpoints (/edit, /composite, /project, /thumbnail, /models,
                    /parts, /restore) and the two views' listeners; the allowlist; what a page starts from
  app_controls.py   what the controls do to each other: links on page load, a model's or a part's own settings
                    and slider ranges, the composite's rows
  app_composite.py  the composite rows' helpers apart from Gradio, and its statistics
  app_uploads.py    pictures of your own: the uploads' store, their projection, and their controls
  app_builder.py    the "Build a catalog" tab: build, name, try (app_builder_page.py has its layout and wiring,
                    app_builder_tune.py its tuning, app_builder_save.py its saving: files, folder, Hub)
  app_support.py    plumbing: errors, the PNG file cache, process settings, the page's JavaScript, CSS and theme
"""

from __future__ import annotations

import inspect
import os
from dataclasses import astuple
from functools import partial

import gradio as gr

from app_builder_page import builder_tab
from app_controls import (
    EPSILON_STEP,
    THRESHOLD_STEP,
    add_row,
    epsilon_max,
    hide_notice,
    lam_max,
    legend_html,
    on_composite_model,
    on_example,
    on_method,
    on_model,
    on_part,
    on_row_part,
    on_threshold,
    open_example,
    part_choices,
    remove_row,
    restore_modes,
    seed_sources,
    show_legend,
    threshold_max,
    uses_budget,
)
from app_endpoints import (
    DEFAULT,
    DEFAULT_COMPOSITE,
    DEFAULT_EDITOR,
    EXAMPLES,
    MODELS,
    composite,
    composite_page,
    composite_view,
    edit,
    edit_page,
    edit_view,
    models,
    parts,
    project,
    project_page,
    restore,
    thumbnail,
)
from app_support import (
    COPY_LINK_JS,
    COUNT_JS,
    CSS,
    DICE_JS,
    LIVE_SLIDER,
    SHOW_RESULT_JS,
    THEME,
    configure_process,
    sync_link_js,
)
from app_uploads import PROJECTING, picture_picker, wire_pictures
from localedit.composite import MAX_ROWS
from localedit.edit import MAX_SEED, METHODS

CONCURRENCY = int(os.environ.get("LOCALEDIT_CONCURRENCY", str(min(os.cpu_count() or 1, 4))))
# Gradio keeps a copy of the page's config for every session, about 90 kB here, and every plain HTTP API call
# (/call/edit) is a session of its own: capping them bounds memory (Gradio's default is 10000, about 0.9 GB).
SESSIONS = int(os.environ.get("LOCALEDIT_SESSIONS", "512"))
THUMB = 96  # px on the page

# What the page shows before a link's own views arrive: the default edit, and the default composite (one
# composite more at import, of at most three parts), whose link is also the composite tab's example.
FIRST_VIEW = edit_view(*astuple(DEFAULT))
COMPOSITE_FIRST_VIEW = composite_view(DEFAULT.model, DEFAULT_COMPOSITE.target, DEFAULT_COMPOSITE.truncation,
                                      len(DEFAULT_COMPOSITE.rows), *(v for row in DEFAULT_COMPOSITE.rows for v in row))


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


def source_picker(role: str, seed: int, elem_id: str, thumb: str | None) -> tuple[gr.Number, gr.Button, gr.Image,
                                                                                dict]:
    """A single edit's target or reference: a seed (`seed_picker`), or a picture of your own (`picture_picker`)."""
    kind = gr.Radio([("Seed", "seed"), ("Your picture", "upload")], value="seed", label=role,
                    elem_id=f"{elem_id}-kind")
    with gr.Column(elem_id=f"{elem_id}-seed") as seeds:
        box, dice, thumb = seed_picker(f"{role} seed", seed, elem_id, thumb)
    return box, dice, thumb, dict(kind=kind, seeds=seeds, **picture_picker(role, elem_id, THUMB))


def composite_row(i: int) -> dict:
    """Row i of the composite (shown when the default composite has one): a part, its reference seed (number,
    🎲, thumbnail), its ε, and ✕ to remove it."""
    rows, n = DEFAULT_COMPOSITE.rows, len(DEFAULT_COMPOSITE.rows)
    part, reference, epsilon = rows[i] if i < n else (None, None, 0.0)
    catalog = DEFAULT_EDITOR.catalog
    end = epsilon_max(DEFAULT_EDITOR, part, value=epsilon) if part else 1.0
    with gr.Group(visible=i < n, elem_id=f"row-{i + 1}", elem_classes="composite-row") as group:
        with gr.Row(equal_height=True):
            part_box = gr.Dropdown(part_choices(catalog), value=part, label=f"Part {i + 1}", scale=3,
                                   elem_id=f"row-{i + 1}-part")
            remove = gr.Button("✕", elem_classes="dice", elem_id=f"row-{i + 1}-remove", scale=0, min_width=48,
                               visible=n > 1)
        seed, dice, thumb = seed_picker("Reference seed", reference, f"row-{i + 1}-reference",
                                        COMPOSITE_FIRST_VIEW[6 + i] if i < n else None)
        epsilon = gr.Slider(0, end, value=epsilon, step=EPSILON_STEP, label="ε", elem_id=f"row-{i + 1}-epsilon",
                            **LIVE_SLIDER)
    return dict(group=group, part=part_box, seed=seed, dice=dice, thumb=thumb, epsilon=epsilon, remove=remove)


def composite_label(target: int, rows) -> str:
    """An example composite's name, short enough for Gradio's 60-character example labels: the target, then each
    reference seed with the parts taken from it ("300005: mouth, background ← 300000; eyes ← 300001")."""
    by_reference: dict[int, list[str]] = {}
    for part, reference, _ in rows:
        by_reference.setdefault(reference, []).append(part)
    return f"{target}: " + "; ".join(f"{', '.join(parts)} ← {ref}" for ref, parts in by_reference.items())


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
    _catalog = DEFAULT_EDITOR.catalog
    with gr.Tabs(elem_id="modes") as tabs:
        with gr.Tab("Single edit", id="single", elem_id="single") as single_tab:
            with gr.Row():
                with gr.Column(scale=2, min_width=320, elem_id="controls"):
                    target_box, target_dice, target_thumb, target_source = source_picker(
                        "Target", DEFAULT.target, "target", FIRST_VIEW[6])
                    reference_box, reference_dice, reference_thumb, reference_source = source_picker(
                        "Reference", DEFAULT.reference, "reference", FIRST_VIEW[7])
                    part_box = gr.Dropdown(part_choices(_catalog), value=DEFAULT.part, label="Part", elem_id="part",
                                           allow_custom_value=True)  # another model's parts are valid too
                    legend = gr.HTML(legend_html(_catalog, DEFAULT.part))
                    epsilon_box = gr.Slider(0, epsilon_max(DEFAULT_EDITOR, DEFAULT.part, DEFAULT.threshold,
                                                           DEFAULT.epsilon),
                                            value=DEFAULT.epsilon, step=EPSILON_STEP, label="ε",
                                            info="0 changes nothing; at the right end every channel above the "
                                                 "threshold moves", elem_id="epsilon", **LIVE_SLIDER)
                    with gr.Accordion("Advanced", open=False):
                        method_box = gr.Radio(list(METHODS), value=DEFAULT.method, label="Method",
                                              elem_id="method")
                        threshold_box = gr.Slider(0, threshold_max(DEFAULT_EDITOR, DEFAULT.part, DEFAULT.threshold),
                                                  value=DEFAULT.threshold, step=THRESHOLD_STEP, label="Threshold",
                                                  info="sequential: only channels with M_part above it move; "
                                                       "none at the right end", elem_id="threshold",
                                                  **LIVE_SLIDER)
                        lam_box = gr.Slider(0, lam_max(DEFAULT.method), value=DEFAULT.lam, step=0.05, label="λ",
                                            info="simultaneous: q = min(1, λ·M_part); global: q = λ", elem_id="lam",
                                            interactive=not uses_budget(DEFAULT.method), **LIVE_SLIDER)
                        truncation_box = gr.Slider(0, 1, value=DEFAULT.truncation, step=0.05, label="Truncation ψ",
                                                   elem_id="truncation", **LIVE_SLIDER)
                    link_box = gr.Textbox(label="Link to this edit", interactive=False, buttons=["copy"],
                                          max_lines=1, elem_id="link")
                    copy_button = gr.Button("🔗 Copy link", size="sm", elem_id="copy-link")
                    query_box = gr.Textbox(label="Query", visible="hidden", elem_id="query")
                    psnr_box = gr.Number(label="PSNR (dB)", visible="hidden")  # /project's
                    # Counts what asks for the single edit besides its controls' own changes (a seed entered, a
                    # 🎲, an example, a model, the tab picked, the page loaded): one listener watches it and them,
                    # so that one always_last listener makes every single edit. It knows the edit on show by
                    # its query (edit_shown), and makes no other.
                    edit_asked = gr.Number(0, visible="hidden", elem_id="edit-asked")
                    edit_shown = gr.State(FIRST_VIEW[5])
                with gr.Column(scale=5, elem_id="outputs"):
                    with gr.Row(elem_classes="pairs"):
                        # The default edit is on the page from the first paint; a link's own edit replaces it.
                        edited_out = picture("Edited", 400, "edited", FIRST_VIEW[0])
                        slider_out = gr.ImageSlider(FIRST_VIEW[1], label="Target ↔ edited", format="png",
                                                    interactive=False, height=400, elem_id="slider",
                                                    elem_classes="pixelated", buttons=[])
                    with gr.Row(elem_classes="pairs"):
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
                    # As edit_asked and edit_shown are the single edit's: what asks for a composite, and the one
                    # on show.
                    composite_asked = gr.Number(0, visible="hidden", elem_id="composite-asked")
                    composite_shown = gr.State(COMPOSITE_FIRST_VIEW[4])
                    with gr.Accordion("Advanced", open=False, elem_id="composite-advanced"):
                        c_truncation_box = gr.Slider(0, 1, value=DEFAULT_COMPOSITE.truncation, step=0.05,
                                                     label="Truncation ψ", elem_id="composite-truncation",
                                                     **LIVE_SLIDER)
                    c_link_box = gr.Textbox(label="Link to this composite", interactive=False, buttons=["copy"],
                                            max_lines=1, elem_id="composite-link")
                    c_copy_button = gr.Button("🔗 Copy link", size="sm", elem_id="composite-copy-link")
                    c_query_box = gr.Textbox(COMPOSITE_FIRST_VIEW[4], label="Query", visible="hidden",
                                             elem_id="composite-query")
                    rows_box = gr.Textbox(label="Rows", visible="hidden")  # the API's rows: "hair=7 eyes=12:30"
                    example_box = gr.Textbox(label="Example", visible="hidden")  # an example's link
                with gr.Column(scale=5, elem_id="composite-outputs"):
                    with gr.Row(elem_classes="pairs"):
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
                example_labels=[composite_label(DEFAULT_COMPOSITE.target, DEFAULT_COMPOSITE.rows)])

        with gr.Tab("Build a catalog", id="build", elem_id="builder") as build_tab:
            builder_tab(build_tab, DEFAULT.model)

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
    # What asks a mode's one listener for its view, after an update that sets several controls at once (a change
    # event fired while such an update arrives would read some controls old and some new).
    ask_edit = dict(fn=None, inputs=edit_asked, outputs=edit_asked, js=COUNT_JS)
    ask_composite = dict(fn=None, inputs=composite_asked, outputs=composite_asked, js=COUNT_JS)

    # The single edit. Edits are live (every control change runs one), so the page has no Edit button; /edit is the
    # API's. A seed runs its edit when it is entered (Enter, or leaving the box), not at every keystroke: typing
    # 54321 must not edit seeds 5, 54, 543 and 5432 on the way.
    gr.on([], edit, controls, outputs, api_name="edit", **synth)
    seed_boxes = (target_box, reference_box)
    sources = [target_source["kind"], target_source["name"], reference_source["kind"], reference_source["name"]]
    # The knobs edit on input, the user's own moves, never on change: an update that sets several controls at once
    # (a link's load, an example, a model or a part with its own ε and threshold) fires a change per control as
    # each arrives, and an edit asked by one of them would read the others half set, e.g. a link's part at the
    # default part's ε. Such an update asks for its edit once it is whole (ask_edit).
    knobs = (epsilon_box, threshold_box, lam_box, truncation_box)
    gr.on([c.input for c in knobs] + entered(seed_boxes) + [edit_asked.change],
          edit_page, [mode_box, edit_shown, *controls, *sources], outputs + [target_thumb, reference_thumb, edit_shown],
          trigger_mode="always_last", show_progress="minimal", api_visibility="private", **synth)
    model_box.input(on_model, model_box, controls[3:] + [legend], api_visibility="private").then(**ask_edit)
    wire_pictures([target_source, reference_source], model_box, project_page, ask_edit)
    gr.on([], project, [model_box, target_source["file"]], [target_source["projection"], psnr_box,
                                                             target_source["name"]], api_name="project", **PROJECTING)
    part_box.input(on_part, [model_box, part_box], [epsilon_box, threshold_box], api_visibility="private").then(
        **ask_edit)
    # Raw values (preprocess=False): Gradio would refuse a value past a slider's end before the callback could
    # move that end.
    threshold_box.input(on_threshold, [model_box, part_box, threshold_box, epsilon_box], epsilon_box,
                        api_visibility="private", queue=False, preprocess=False, trigger_mode="always_last")
    examples.load_input_event.then(on_example, [model_box, part_box, epsilon_box, threshold_box],
                                   [epsilon_box, threshold_box, lam_box, legend], api_visibility="private",
                                   queue=False, preprocess=False).then(
        seed_sources, None, [target_source["kind"], reference_source["kind"]], api_visibility="private",
        queue=False).then(**ask_edit)
    examples.load_input_event.then(None, js=SHOW_RESULT_JS)
    part_box.change(show_legend, [model_box, part_box], legend, api_visibility="private", queue=False)
    method_box.input(on_method, [method_box, lam_box], [lam_box, epsilon_box, threshold_box],
                     api_visibility="private", queue=False).then(**ask_edit)
    # A link's notice is about the link: once the user changes anything, it no longer describes the page.
    gr.on([c.input for c in controls] + [e for s in (target_source, reference_source) for e in (s["kind"].input,
                                                                                               s["file"].upload)],
          hide_notice, None, notice, api_visibility="private", queue=False)
    for box, dice in ((target_box, target_dice), (reference_box, reference_dice)):
        dice.click(None, edit_asked, [box, edit_asked], js=DICE_JS)
    copy_button.click(None, link_box, None, js=COPY_LINK_JS)

    # The composite: live too, on its own controls and the shared model; /composite is the API's.
    gr.on([], composite, [model_box, c_target_box, rows_box, c_truncation_box], composite_outputs,
          api_name="composite", **synth)
    row_seeds = [row["seed"] for row in rows]
    gr.on([c_truncation_box.input, *(row["epsilon"].input for row in rows)] + entered([c_target_box, *row_seeds])
          + [composite_asked.change],
          composite_page, [mode_box, composite_shown, *composite_controls],
          composite_outputs + composite_thumbs + [composite_shown],
          trigger_mode="always_last", show_progress="minimal", api_visibility="private", **synth)
    add_button.click(add_row, [model_box, c_target_box, row_count, *row_values], row_outputs,
                     api_visibility="private", preprocess=False).then(**ask_composite)
    for i, row in enumerate(rows):
        row["remove"].click(partial(remove_row, i), [model_box, row_count, *row_values], row_outputs,
                            api_visibility="private", preprocess=False).then(**ask_composite)
        # select, not input: a pick from the menu fires input twice (and so two notices for a part another row
        # has), select once.
        row["part"].select(partial(on_row_part, i), [model_box, row_count, *row_values], row["epsilon"],
                           api_visibility="private", preprocess=False).then(**ask_composite)
        row["dice"].click(None, composite_asked, [row["seed"], composite_asked], js=DICE_JS)
    c_target_dice.click(None, composite_asked, [c_target_box, composite_asked], js=DICE_JS)
    # Another model, from the menu or a single edit's example: the rows follow it (a link and a composite example
    # set the model and the rows together). Only the menu asks for a composite: a single edit's example is picked
    # in the single edit's tab, and the composite is made when its tab is.
    model_box.input(on_composite_model, [model_box, c_target_box, row_count, *row_values], row_outputs,
                    api_visibility="private", preprocess=False).then(**ask_composite)
    examples.load_input_event.then(on_composite_model, [model_box, c_target_box, row_count, *row_values],
                                   row_outputs, api_visibility="private", preprocess=False)
    composite_examples.load_input_event.then(None, js=SHOW_RESULT_JS)
    composite_examples.load_input_event.then(
        open_example, [example_box, model_box], [model_box, *controls[3:], legend, c_target_box, c_truncation_box,
                                                  *row_outputs], api_visibility="private").then(**ask_composite)
    gr.on([c.input for c in [c_target_box, c_truncation_box, *row_values]] + [add_button.click] +
          [row["remove"].click for row in rows], hide_notice, None, notice, api_visibility="private", queue=False)
    c_copy_button.click(None, c_link_box, None, js=COPY_LINK_JS)

    # The address bar has the link of the tab on show; each tab's link box always has its own. A tab picked asks
    # for its view, which is made only if the controls changed while the tab was hidden.
    single_tab.select(None, edit_asked, [mode_box, edit_asked], js="(n) => ['single', n + 1]")
    composite_tab.select(None, composite_asked, [mode_box, composite_asked], js="(n) => ['composite', n + 1]")
    build_tab.select(None, None, mode_box, js="() => 'build'")  # neither edit is made while it is on show
    for query, link, mode in ((query_box, link_box, "single"), (c_query_box, c_link_box, "composite")):
        gr.on([query.change, mode_box.change], None, [query, mode_box], link, js=sync_link_js(mode))

    source_outputs = [source[key] for source in (target_source, reference_source)
                      for key in ("kind", "name", "file", "projection", "line")]
    demo.load(restore_modes, None, controls + [legend, notice, query_box, tabs, mode_box, c_query_box, c_target_box,
                                               c_truncation_box, *row_outputs, *source_outputs],
              api_visibility="private").then(
        None, [edit_asked, composite_asked], [edit_asked, composite_asked], js="(a, b) => [a + 1, b + 1]")
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
