"""The "Build a catalog" tab's layout and wiring; what each control does is app_builder.py's (see its docstring)."""

from __future__ import annotations

import os

import gradio as gr

from app_builder import (
    DEFAULT_K,
    DEFAULT_SAMPLES,
    DEFAULT_SEED,
    DEFAULT_TRUNCATION,
    NAMES,
    OPEN,
    SOURCES,
    build,
    cancel_build,
    default_layer,
    layer_choices,
    model_card,
    name_part,
    open_draft,
    open_first,
    pick_name,
    remove_part,
    toggle_cluster,
    try_edit,
    try_part,
)
from app_builder_save import catalog_files, publish, save_into_folder
from app_builder_tune import apply_tuned, tune_part
from app_endpoints import MODELS
from app_support import LIVE_SLIDER, warned
from localedit.parts import DEFAULT_EPSILON, DEFAULT_THRESHOLD, LAYER_GROUPS, MAX_THRESHOLD, PART_COLORS


def builder_tab(tab: gr.Tab, default_choice: str) -> None:
    """Inside `tab` of the page's Blocks: the builder's layout and wiring. It starts from the served model
    `default_choice` (loaded already), and opens it as a draft when the tab is first picked."""
    default = MODELS.editor(default_choice)
    draft = gr.State(None)
    gr.Markdown("Turn a StyleGAN2 generator into an editable one: cluster one layer's activations (§3.1), name the "
                "clusters as parts, try an edit, then save or publish. The same as `python -m localedit catalog`, "
                "`label` and `push`.")
    with gr.Row():
        with gr.Column(scale=2, min_width=300, elem_id="build-controls"):
            choice = gr.Dropdown(list(SOURCES), value=default_choice, label="Generator", allow_custom_value=OPEN,
                                 info="a served model, a generator folder" + (", or any folder or Hub id" if OPEN
                                                                              else ""), elem_id="build-source")
            layer = gr.Dropdown(layer_choices(default.generator),
                                value=default_layer(default.generator, default.catalog),
                                label="Layer to cluster (its input's resolution)", elem_id="build-layer")
            with gr.Row():
                # No precision or minimum: the build's own checks say what is wrong with a value, in words.
                k = gr.Number(DEFAULT_K, label="K clusters", elem_id="build-k", min_width=80)
                samples = gr.Number(DEFAULT_SAMPLES, label="Samples", elem_id="build-samples", min_width=80)
                seed = gr.Number(DEFAULT_SEED, label="Seed", elem_id="build-seed", min_width=80)
            truncation = gr.Slider(0, 1, value=DEFAULT_TRUNCATION, step=0.05, label="Truncation ψ of the samples",
                                   elem_id="build-truncation")
            with gr.Row():
                build_button = gr.Button("Build", variant="primary", elem_id="build-button")
                cancel_button = gr.Button("Cancel", elem_id="build-cancel")
            status = gr.Markdown(elem_id="build-status")
        with gr.Column(scale=5, elem_id="build-sheet"):
            gr.Markdown("**Samples and their clusters**, then one tile per cluster: click a tile to add its cluster "
                        "to the part being named, or to take it out.")
            overview = gr.Image(label="Samples and their clusters", show_label=False, format="png",
                                interactive=False, elem_id="build-overview", buttons=["download"])
            tiles = gr.Gallery(label="Clusters", show_label=False, columns=6, height="auto", allow_preview=False,
                               object_fit="contain", elem_id="build-tiles", elem_classes="pixelated")
    with gr.Row():
        with gr.Column(scale=2, min_width=300, elem_id="name-controls"):
            with gr.Row():
                name = gr.Dropdown(list(NAMES), value=None, label="Part name", allow_custom_value=True, scale=3,
                                   elem_id="name-part", min_width=120)
                colour = gr.ColorPicker(PART_COLORS["eyes"], label="Colour", scale=1, elem_id="name-colour",
                                        min_width=80)
            clusters = gr.CheckboxGroup([], label="Its clusters", elem_id="name-clusters")
            with gr.Accordion("The part's edit settings", open=False, elem_id="name-settings"):
                epsilon = gr.Number(DEFAULT_EPSILON, label="Default ε", minimum=0, elem_id="name-epsilon")
                threshold = gr.Slider(0, MAX_THRESHOLD, value=DEFAULT_THRESHOLD, step=0.01, label="Threshold",
                                      elem_id="name-threshold")
                torgb = gr.Checkbox(False, label="toRGB styles take part (colour over large areas)",
                                    elem_id="name-torgb")
                with gr.Row():
                    profile = [gr.Number(1.0, label=f"ε weight, {g} layers", minimum=0, elem_id=f"name-{g}",
                                         min_width=80) for g in LAYER_GROUPS]
                tune_button = gr.Button("Tune on the judge's faces", size="sm", elem_id="name-tune")
                gr.Markdown("Tune chooses a named part's settings by measuring its edits on tuning seeds with the "
                            "judge (localedit's procedural faces only; minutes on a laptop CPU). Elsewhere, set "
                            "them here and press **Name part**.")
            with gr.Row():
                name_button = gr.Button("Name part", variant="primary", elem_id="name-button")
                remove_button = gr.Button("Remove part", elem_id="name-remove")
            legend = gr.HTML(elem_id="build-parts")
        with gr.Column(scale=5, elem_id="try"):
            with gr.Row():
                try_target = gr.Number(0, label="Target seed", precision=0, minimum=0, elem_id="try-target",
                                       min_width=90)
                try_reference = gr.Number(1, label="Reference seed", precision=0, minimum=0,
                                          elem_id="try-reference", min_width=90)
                try_part_box = gr.Dropdown([], label="Part to try", elem_id="try-part", min_width=120)
            try_epsilon = gr.Slider(0, 100, value=DEFAULT_EPSILON, step=0.01, label="ε", elem_id="try-epsilon",
                                    **LIVE_SLIDER)
            with gr.Row():
                edited = gr.Image(label="Edited", format="png", interactive=False, height=220, elem_id="try-edited",
                                  elem_classes="pixelated")
                target_out = gr.Image(label="Target", format="png", interactive=False, height=220,
                                      elem_id="try-target-out", elem_classes="pixelated")
                reference_out = gr.Image(label="Reference", format="png", interactive=False, height=220,
                                         elem_id="try-reference-out", elem_classes="pixelated")
            try_stats = gr.Markdown(elem_id="try-stats")
    with gr.Accordion("Save or publish", open=True, elem_id="save"):
        with gr.Row():
            files_button = gr.Button("⬇ Catalog files", elem_id="save-files-button")
            folder_button = gr.Button("Write into the model folder", elem_id="save-folder", visible=OPEN)
        files = gr.File(label="catalog.json and catalog.safetensors", file_count="multiple", interactive=False,
                        visible=False, elem_id="save-files")
        with gr.Row():
            repo = gr.Textbox(label="Hub repo (owner/name)", elem_id="push-repo")
            token = gr.Textbox(label="Your Hub token (write access)", type="password", elem_id="push-token")
            if os.environ.get("OAUTH_CLIENT_ID"):  # a Space with `hf_oauth: true`: its login gives the token
                gr.LoginButton()
        card = gr.Textbox(model_card(MODELS.folder(default_choice), default.generator.config),
                          label="Model card (README.md); a section on the catalog is added", lines=6,
                          max_lines=20, elem_id="push-card")
        push_button = gr.Button("Push to the Hub", variant="primary", elem_id="push-button")
        save_status = gr.Markdown(elem_id="save-status")

    # Every event that changes the draft writes these together; a refused value is a warning (`warned`), and the
    # page stays as it was.
    shown = [draft, overview, tiles, clusters, legend, name, try_part_box, try_epsilon, status]
    private = dict(api_visibility="private")
    opened = choice.change(warned(open_draft, len(shown) + 2), choice, [*shown, layer, card], **private)
    first = tab.select(warned(open_first, len(shown) + 2), [draft, choice], [*shown, layer, card], **private)
    # Builds and tunings run one at a time, on the CLI's threads (app_builder.cli_threads).
    heavy = dict(concurrency_id="build", concurrency_limit=1, **private)
    build_event = build_button.click(warned(build, len(shown)), [choice, layer, k, samples, seed, truncation], shown,
                                     show_progress_on=[overview, tiles], **heavy)
    # Cancel stops a running build at its next step (its flag) and drops a queued one (cancels).
    cancel_button.click(cancel_build, None, status, queue=False, cancels=[build_event], **private)
    tiles.select(toggle_cluster, clusters, clusters, queue=False, **private)
    settings = [clusters, colour, epsilon, threshold, torgb, *profile]
    name.input(pick_name, [draft, name], settings, queue=False, **private)
    named = name_button.click(warned(name_part, len(shown)), [draft, name, *settings], shown, **private)
    removed = remove_button.click(warned(remove_part, len(shown)), [draft, name], shown, **private)
    # Tune measures on the catalog as it was at the click, then its choice is set on the catalog as it is by then.
    tuned_part = gr.State(None)
    tuned = tune_button.click(lambda n: f"Tuning **{n}** on the tuning seeds…", name, status, queue=False,
                              **private).then(
        tune_part, [draft, name], [tuned_part, status], show_progress_on=[tiles], **heavy).success(
        warned(apply_tuned, len(shown) + 4 + len(profile)), [draft, tuned_part],
        [*shown, colour, epsilon, threshold, torgb, *profile], **private)
    try_inputs = [draft, try_target, try_reference, try_part_box, try_epsilon]
    try_outputs = [edited, target_out, reference_out, try_stats]
    trying = dict(fn=warned(try_edit, len(try_outputs)), inputs=try_inputs, outputs=try_outputs,
                  concurrency_id="synthesis", trigger_mode="always_last", **private)
    try_part_box.input(try_part, [draft, try_part_box], try_epsilon, queue=False, **private).then(**trying)
    for event in (opened, first, build_event, named, removed, tuned):
        event.then(**trying)
    gr.on([try_epsilon.input, try_target.submit, try_reference.submit, try_target.blur, try_reference.blur],
          **trying)
    files_button.click(warned(lambda d: gr.File(catalog_files(d), visible=True), 1), draft, files, **private)
    folder_button.click(warned(save_into_folder, 1), draft, save_status, **private)
    push_button.click(warned(publish, 1), [draft, repo, token, card, try_target, try_reference, try_part_box,
                                           try_epsilon], save_status, **private)
