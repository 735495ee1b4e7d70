"""The functions behind the demo's endpoints, and the page's two views, each made by one listener.

The API: `edit`, `composite`, `project`, `thumbnail`, `models`, `parts` and `restore` (api_names /edit, /composite,
…; see the README). A single edit's target or reference is a seed or an upload, `upload:<hex>`, as `project` (and
the page's upload) names it. The page: `edit_page` and `composite_page`, the one listener of each mode (app.py
wires every trigger to them), which make a view only while its tab is on show, and only when the controls ask for
another one than the view on show; `project_page`, a picture of your own. Also here: the allowlist of models
(fixed at import), the uploads' store (app_uploads.py), the default edit and composite a page starts from, and
the PNG files every image goes out as.

app.py holds the layout and the wiring; app_controls.py what each control does to the others; app_composite.py
the composite rows' helpers; app_support.py the plumbing (errors, PNG cache, JavaScript, CSS).
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, replace
from pathlib import Path

import gradio as gr
import numpy as np

from app_composite import composite_stats, parse_rows, rows_of
from app_support import Newest, PngFiles, edit_threads, user_errors
from app_uploads import Projector, Uploads, fidelity, page_controls, source
from localedit import Editor, EditResult
from localedit.composite import MAX_ROWS, CompositeParams, CompositeResult, resolve_composite, run_composite
from localedit.edit import METHODS, EditParams
from localedit.share import (
    CompositeControls,
    Controls,
    Models,
    as_seed,
    default_composite,
    default_controls,
    is_upload,
    parse_composite,
    parse_link,
    parse_seed,
    query_of,
    short,
)
from localedit.transfer import VISIBLE
from localedit.viz import diff_image, upscale

try:  # On a ZeroGPU Space each call borrows a GPU; anywhere else it only runs on the requests' threads.
    import spaces

    def gpu(fn):
        return spaces.GPU(edit_threads(fn))
except ImportError:
    gpu = edit_threads

# Each view the page makes, with its query, when $LOCALEDIT_LOG is INFO (app_support.configure_process).
log = logging.getLogger("localedit.app")
# Images go out at the model's resolution, the exact pixels of the edit, and the page enlarges them without
# smoothing (CSS image-rendering: pixelated). Only the diff map is upscaled (nearest) here, to about DIFF_SIZE
# px, so that the part's outline can be drawn thinner than a model pixel.
DIFF_SIZE = 256
DIFF_FLOOR = 100.0  # ΔE*² (ΔE* = 10): the diff ramp tops out at its 99th percentile, or here if that is lower
FALLBACK_EXAMPLE = (0, 1)  # the seed pair of a part whose catalog stores no example
# How many outputs each kind of view has, so that a skip sends exactly one per output.
SINGLE_VIEWS = 8  # edit_view: 6 views, 2 thumbnails
COMPOSITE_VIEWS = 6 + MAX_ROWS  # composite_view: 5 views, the target's thumbnail, a thumbnail per row

ASSETS = Path(os.environ.get("LOCALEDIT_ASSETS") or Path(__file__).with_name("assets"))
MODELS = Models.from_env(assets=ASSETS)
UPLOADS = Uploads()
# The judge of the assets folder, when it has one, adds its features to the projection's loss.
PROJECTOR = Projector(MODELS, UPLOADS, ASSETS / "judge")
png = PngFiles()
EDIT_CALLS, COMPOSITE_CALLS = Newest(), Newest()  # which page calls may still show their views


# --- pictures and text -------------------------------------------------------------------------------------

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
    if share and result.in_mse < VISIBLE:
        # The measures' own threshold of a visible change (`transfer.VISIBLE`), so the page says what they count.
        roi += (f" · **barely visible**: under {VISIBLE ** 0.5:g} ΔE\\* inside the part. The reference's part may "
                "look like the target's, or this model may move this part little: its card's transfer table says "
                "how far")
    return (f"**In-MSE** {result.in_mse:.1f} · **Out-MSE** {result.out_mse:.1f} (ΔE\\*², inside / outside the "
            f"part) · **channels changed** {changed} of {total} in {layers} layers · {roi}")


# --- the single edit ----------------------------------------------------------------------------------------

def _resolve(model, target, reference, part, epsilon, method, threshold, lam, truncation
             ) -> tuple[Editor, EditParams, Controls]:
    """The editor, the edit's params, and the controls of its link (which name an upload where the params have
    its latent)."""
    with user_errors():
        editor = MODELS.editor(model)
        if not isinstance(part, str):
            raise ValueError(f"part must be a name, one of {list(editor.parts)}, got {short(part)}")
        if not isinstance(method, str):
            raise ValueError(f"method must be one of {list(METHODS)}, got {short(method)}")
        p = editor.resolve(source("target", target, model, UPLOADS), source("reference", reference, model, UPLOADS),
                           part, epsilon=epsilon, threshold=threshold, method=method, lam=lam, truncation=truncation)
    names = [value.strip().lower() if is_upload(value) else seed for value, seed in
             ((target, p.target), (reference, p.reference))]
    return editor, p, Controls(model, *names, p.part, p.epsilon, p.method, p.threshold, p.lam, p.truncation)


def _views(editor: Editor, r: EditResult, link: Controls) -> tuple:
    """The six outputs of `edit`, then the target's and the reference's PNGs again for the seeds' thumbnails (an
    upload's thumbnail stays: it is hidden, and its projection is shown beside the upload)."""
    edited, target, reference = png(r.edited), png(r.target), png(r.reference)
    diff = diff_png(r.diff, [(r.roi, editor.catalog.parts[r.params.part].color)])
    thumbs = [gr.skip() if is_upload(name) else image for name, image in ((link.target, target),
                                                                           (link.reference, reference))]
    return edited, (target, edited), reference, diff, stats_line(editor, r), link.query(), *thumbs


@gpu
def edit(model: str, target: int | str, reference: int | str, part: str, epsilon: float | None = None,
         method: str = "sequential", threshold: float | None = None, lam: float | None = None,
         truncation: float | None = None):
    """Move `part`'s look from the reference's image to the target's image; each is a seed, or an upload's name
    `upload:<hex>` (from `project`) while the server keeps it.

    Returns the edited image, (target, edited) for the slider, the reference, the CIELAB difference map with
    the part's outline, a line of statistics, and the query string of a link to this edit. ε, threshold, λ and
    truncation default to the part's and the model's own values when None.
    """
    editor, params, link = _resolve(model, target, reference, part, epsilon, method, threshold, lam, truncation)
    return _views(editor, editor.run(params), link)[:6]


@gpu
def edit_view(model, target, reference, part, epsilon, method, threshold, lam, truncation):
    """The live edit behind the controls: `edit` plus both thumbnails; half-typed seeds wait silently.

    A value the library refuses (a seed of -5 or 1.5, a part typed by hand) gets one notice saying what is
    allowed, and the last good edit stays on screen instead of an error over every output."""
    if target is None or reference is None or part is None:
        return (gr.skip(),) * SINGLE_VIEWS
    try:
        editor, params, link = _resolve(model, target, reference, part, epsilon, method, threshold, lam, truncation)
    except gr.Error as e:
        gr.Warning(e.message)
        return (gr.skip(),) * SINGLE_VIEWS
    log.info("edit %s", link.query())
    return _views(editor, editor.run(params), link)


def _asked_edit(*controls) -> str | None:
    """The query of the edit the controls ask for; None while they ask for none (`edit_view` says why)."""
    try:
        return _resolve(*controls)[2].query()
    except gr.Error:
        return None


def edit_page(request: gr.Request, mode: str, shown: str, *values):
    """The single edit's one listener: `edit_view`, then the query of the edit on show (a gr.State, `shown`).
    `values` are the nine controls, then each source's kind and upload name (`app_uploads.page_controls`).
    Nothing is made while the composite tab is on show, nor when the controls ask for the edit on show (the
    tab's select asks again), nor while an upload waits for its projection; and nothing is shown when a call that
    started later has shown its view already (`Newest`)."""
    call = EDIT_CALLS.start(request)
    controls = page_controls(values, UPLOADS)
    if mode != "single" or controls is None or _asked_edit(*controls) == shown:
        return (gr.skip(),) * (SINGLE_VIEWS + 1)
    views = edit_view(*controls)
    if views[5] == gr.skip() or not EDIT_CALLS.may_show(call):
        return (gr.skip(),) * (SINGLE_VIEWS + 1)
    return (*views, views[5])


# --- the composite ------------------------------------------------------------------------------------------

def _resolve_composite(model, target, rows, truncation) -> tuple[Editor, CompositeParams]:
    with user_errors():
        editor = MODELS.editor(model)
        return editor, resolve_composite(editor, parse_seed("target", target), rows, truncation)


def _composite_link(model: str, p: CompositeParams) -> CompositeControls:
    return CompositeControls(model, p.target, tuple((row.part, row.reference, row.epsilon) for row in p.rows),
                             p.truncation)


def _composite_views(model: str, editor: Editor, r: CompositeResult) -> tuple:
    """The five outputs of `composite`, then the target's PNG and the list of the references' PNGs."""
    edited, target = png(r.edited), png(r.target)
    diff = diff_png(r.diff, [(r.rois[part], editor.catalog.parts[part].color) for part in r.params.parts])
    return (edited, (target, edited), diff, composite_stats(editor, r), _composite_link(model, r.params).query(),
            target, [png(image) for image in r.references])


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
    editor, params = _resolve_composite(model, target, rows, truncation)
    return _composite_views(model, editor, run_composite(editor, params))[:5]


def _page_rows(count, values) -> list[tuple] | None:
    """The rows on the page as the library takes them; None while a value is half-typed."""
    rows = rows_of(count, values)
    if any(value is None for row in rows for value in row):
        return None
    return [(part, as_seed(seed), epsilon) for part, seed, epsilon in rows]


@gpu
def composite_view(model, target, truncation, count, *values):
    """The live composite behind the composite tab: `composite` plus the target's thumbnail and each row's
    reference thumbnail. `values` are every row's (part, seed, ε), of which the first `count` rows are on the
    page. As in `edit_view`, half-typed seeds wait, and a refused value (a part in two rows, a seed of -5) gets
    one notice while the last good composite stays."""
    rows = _page_rows(count, values)
    if target is None or rows is None:
        return (gr.skip(),) * COMPOSITE_VIEWS
    try:
        editor, params = _resolve_composite(model, target, rows, truncation)
    except gr.Error as e:
        gr.Warning(e.message)
        return (gr.skip(),) * COMPOSITE_VIEWS
    log.info("composite %s", _composite_link(model, params).query())
    *views, references = _composite_views(model, editor, run_composite(editor, params))
    return (*views, *references, *(gr.skip(),) * (MAX_ROWS - len(references)))


def _asked_composite(model, target, truncation, count, *values) -> str | None:
    """The query of the composite the controls ask for; None while they ask for none."""
    try:
        return _composite_link(model, _resolve_composite(model, target, _page_rows(count, values) or [],
                                                         truncation)[1]).query()
    except gr.Error:
        return None


def composite_page(request: gr.Request, mode: str, shown: str, *controls):
    """The composite's one listener, as `edit_page` is the single edit's: `composite_view`, then the query of the
    composite on show; nothing is made while the single edit's tab is on show."""
    call = COMPOSITE_CALLS.start(request)
    if mode != "composite" or _asked_composite(*controls) == shown:
        return (gr.skip(),) * (COMPOSITE_VIEWS + 1)
    views = composite_view(*controls)
    if views[4] == gr.skip() or not COMPOSITE_CALLS.may_show(call):
        return (gr.skip(),) * (COMPOSITE_VIEWS + 1)
    return (*views, views[4])


# --- uploads ------------------------------------------------------------------------------------------------

@gpu
def project(model: str, image: str) -> tuple[str, float, str]:
    """Project a picture file (PNG or JPEG, RGB) into the model: its centre square, at the model's size, becomes a
    W+ latent. Returns the projection (PNG), its PSNR in dB against that square, and the upload's name
    `upload:<hex>`, which `edit` takes as a target or reference while the server keeps it."""
    with user_errors():
        upload = PROJECTOR.project(model, image)
    return png(upload.projection), upload.psnr, upload.name


@gpu
def project_page(model, image, progress=gr.Progress()):  # noqa: B008 (Gradio's way to ask for a progress bar)
    """The page's upload: `project`, under a progress bar, with the line the page shows beside the projection,
    and the picture box (left as it is, or emptied). A refused file gets a notice, and its projection and its box
    are cleared, so no broken picture stays on show (the last good edit does)."""
    if image is None:  # cleared
        return None, "", "", gr.skip()
    try:
        with user_errors():
            upload = PROJECTOR.project(model, image, lambda step, total: progress((step, total), desc="Projecting"))
    except gr.Error as e:
        gr.Warning(e.message)
        return None, f"**This picture cannot be used:** {e.message}", "", None
    log.info("project %s", upload.name)
    return png(upload.projection), fidelity(upload), upload.name, gr.skip()


def restore_upload(name: object) -> tuple:
    """What the page shows of a link's upload (None: a seed): the picture as fitted, its projection and its line."""
    upload = UPLOADS.peek(name) if is_upload(name) else None
    if upload is None:
        return (gr.skip(),) * 3
    return png(upload.picture), png(upload.projection), fidelity(upload)


# --- the rest of the API ------------------------------------------------------------------------------------

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


def read_link(query: dict) -> tuple[Controls, CompositeControls | None, list[str]]:
    """A link's single-edit controls, its composite (None for a single edit's link), and every notice. A
    composite's target is a seed: an upload target is the single edit's only."""
    controls, notices = parse_link(query, MODELS.names, MODELS.editor, DEFAULT_SEEDS, UPLOADS.get)
    base = controls
    if "composite" in query and is_upload(controls.target):
        base = replace(controls, target=DEFAULT_SEEDS[0])
        notices.append(f"a composite's target is a seed (uploads are for the single edit); using {base.target}")
    composite, more = parse_composite(query, base, MODELS.editor(controls.model), DEFAULT_SEEDS)
    return controls, composite, notices + more


def restore(link: str) -> dict:
    """What a link shows: the controls it restores, its composite (None for a single edit's link), the query
    string of what it shows, and a notice for each value replaced."""
    with user_errors():
        if not isinstance(link, str):
            raise ValueError(f"link must be text, got {short(link)}")
        controls, composite, notices = read_link(query_of(link))
    return {"controls": asdict(controls), "composite": asdict(composite) if composite else None,
            "query": (composite or controls).query(), "notices": notices}


# --- what a page starts from --------------------------------------------------------------------------------

def part_examples(editor: Editor) -> list[list]:
    """One example per part, [target, reference, part, ε, threshold] at the part's own settings: the catalog's
    example pair (`tune` picks a plainly visible one), else seeds 0 → 1."""
    catalog = editor.catalog
    return [[*catalog.examples.get(part, FALLBACK_EXAMPLE), part, p.epsilon, p.threshold]
            for part, p in catalog.parts.items()]


DEFAULT_EDITOR = MODELS.editor(MODELS.names[0])
EXAMPLES = part_examples(DEFAULT_EDITOR)
DEFAULT_SEEDS = (EXAMPLES[0][0], EXAMPLES[0][1])
DEFAULT = default_controls(MODELS.names[0], DEFAULT_EDITOR, DEFAULT_SEEDS)
DEFAULT_COMPOSITE = default_composite(DEFAULT.model, DEFAULT_EDITOR, DEFAULT_SEEDS)
