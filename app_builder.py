"""The demo's "Build a catalog" tab: a generator without a catalog (or with one to redo) becomes editable in one
browser session. Build the clusters (§3.1), name them as parts by clicking their tiles, try an edit with the
catalog as it is being made, tune or set each part's settings, then download the files, write them into the
model folder, or push the model to the Hub with the user's own token.

One code path: the build is `localedit.catalog.build_catalog` with the arguments of `python -m localedit
catalog` (so the same arguments give the same catalog bytes, on the same number of threads), naming is
`Catalog.with_parts` / `without_parts` (`label`), tuning is `localedit.tune` (`tune`), and saving is
`localedit.hub.save_catalog` and `push`.

Which generators: the models the app serves, the folders under the assets folder that have a generator but no
catalog, and, where the operator allows it ($LOCALEDIT_BUILD_ANY=1; the default where only this machine can
reach the app, off on a Space, which sets $SPACE_ID, or on a server open to others), any local folder or Hub id
typed in. Writing into a model folder is allowed only then too, and never into one the app serves.

A session's work lives in its `Draft` (a gr.State): where the generator came from, the generator, and the catalog
being made. app_builder_page.py has the tab's layout and wiring, app_builder_tune.py its tuning, and
app_builder_save.py its saving.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import gradio as gr
import numpy as np
import torch

from app_controls import epsilon_max, legend_html
from app_endpoints import ASSETS, MODELS, gpu, png, stats_line
from app_support import user_errors
from localedit.catalog import Catalog, build_catalog
from localedit.edit import Editor, check_seed
from localedit.hub import CARD_FILE, Model, load_model, parse_repo_id
from localedit.parts import (
    DEFAULT_EPSILON,
    DEFAULT_THRESHOLD,
    LAYER_GROUPS,
    default_color,
    input_resolution,
    is_torgb,
)
from localedit.share import model_folders
from localedit.sheets import cluster_caption, contact_views
from localedit.stylegan2 import Generator, GeneratorConfig

LOCAL = not os.environ.get("SPACE_ID") and os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1") in (
    "127.0.0.1", "localhost", "::1")  # a run only this machine can reach: not a Space, nor 0.0.0.0 (a container)
OPEN = os.environ.get("LOCALEDIT_BUILD_ANY", "1" if LOCAL else "0") == "1"
# The CLI's defaults (`python -m localedit catalog`), but for the samples: 64 build in seconds on a laptop CPU.
DEFAULT_K, DEFAULT_SAMPLES, DEFAULT_SEED, DEFAULT_TRUNCATION = 12, 64, 0, 0.7
SHEET_SEEDS = range(8)  # the samples the contact sheet shows, as `catalog` and `sheet` draw them
NAMES = ("eyes", "mouth", "nose", "hair", "skin", "background", "clothes", "ears", "eyebrows")  # offered; any goes
STAGES = {"samples": "Generating the samples", "k-means": "k-means (at most this many iterations)",
          "M": "Eq. 1: each channel's contribution to each cluster"}
# A build runs on as many threads as the CLI's would (torch's default, read before the app's launch sets one per
# edit): float sums depend on the thread count, so the same count is what makes the same catalog bytes.
BUILD_THREADS = int(os.environ.get("LOCALEDIT_BUILD_THREADS") or torch.get_num_threads())
BUILD_MEMORY_MB = int(os.environ.get("LOCALEDIT_BUILD_MEMORY_MB", "2048"))  # the rows k-means clusters, at most
CANCELLED = "**Cancelled.** Nothing changed: the catalog before the build, if any, is still the one here."
_KEEP_MODELS = 2  # generators kept loaded for building, besides the served ones


class BuildCancelled(Exception):
    """Raised from a build's progress callback when its session asked to cancel."""


@dataclass(eq=False)
class Draft:
    """A session's catalog in the making: where the generator came from, the generator, and the catalog (None
    until one is built or loaded)."""

    choice: str
    model: Model
    catalog: Catalog | None = None

    @cached_property
    def editor(self) -> Editor:
        return Editor(self.model.generator, self._built())

    def _built(self) -> Catalog:
        if self.catalog is None:
            raise ValueError("build a catalog first (or pick a generator that has one)")
        return self.catalog

    def with_catalog(self, catalog: Catalog) -> Draft:
        """The draft with `catalog`; when it only renames this one's clusters, its editor keeps the samples drawn."""
        draft = Draft(self.choice, self.model, catalog)
        if "editor" in self.__dict__ and catalog.centroids is self.catalog.centroids:
            draft.__dict__["editor"] = self.editor.relabelled(catalog)  # the cached_property's slot
        return draft


# --- which generators --------------------------------------------------------------------------------------


def build_sources() -> dict[str, str]:
    """{what the menu shows: source for load_model}: the served models, then the bare generators in the assets
    folder (a generator, no catalog)."""
    sources = dict(MODELS.sources)
    for folder in model_folders(ASSETS, catalog=False):
        sources.setdefault(folder.name, str(folder))
    return sources


SOURCES = build_sources()
_loaded: OrderedDict[str, Model] = OrderedDict()
_loading = threading.Lock()


def open_model(choice: object) -> Model:
    """The generator `choice` names: one of SOURCES, or (where the operator allows it) any folder or Hub id."""
    if not isinstance(choice, str) or not choice.strip():
        raise ValueError("pick a generator")
    choice = choice.strip()
    if choice in SOURCES:
        source = SOURCES[choice]
    elif OPEN:
        source = choice
    else:
        raise ValueError(f"this server builds catalogs for {list(SOURCES)} only (its operator can allow any folder "
                         "or Hub id with LOCALEDIT_BUILD_ANY=1)")
    if choice in MODELS.sources:  # the app's own copy, with its catalog
        editor, folder = MODELS.editor(choice), MODELS.folder(choice)
        repo, revision = parse_repo_id(source) if not Path(source).is_dir() else (None, None)
        return Model(editor.generator, editor.catalog, editor.generator.config, source, folder, repo, revision,
                     Path(folder).name if repo else None)
    with _loading:
        if source not in _loaded:
            _loaded[source] = load_model(source)
            while len(_loaded) > _KEEP_MODELS:
                _loaded.popitem(last=False)
        _loaded.move_to_end(source)
        return _loaded[source]


def forget(folder: Path) -> None:
    """Drop the loaded copy of the model in `folder` (its files changed), so the next open reads them again."""
    with _loading:
        for source in [s for s, m in _loaded.items() if Path(m.folder).resolve() == Path(folder).resolve()]:
            del _loaded[source]


def layer_choices(generator: Generator) -> list[tuple[str, str]]:
    """The layers a catalog can cluster, each with the resolution of its input (what a cluster map has)."""
    return [(f"{name} · {input_resolution(name)}×{input_resolution(name)}", name)
            for name in generator.style_layers if not is_torgb(name)]


def default_layer(generator: Generator, catalog: Catalog | None) -> str:
    """The catalog's own layer, else the first whose input is 32 px (the paper's choice), or the model's largest
    below that."""
    if catalog is not None:
        return catalog.layer
    layers = [name for _, name in layer_choices(generator)]
    side = min(32, generator.config.size // 2)
    return next((name for name in layers if input_resolution(name) >= side), layers[-1])


def _whole(name: str, value: object, low: int) -> int:
    if value is None or value == "":
        raise ValueError(f"enter {name}: a whole number ≥ {low}")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or value < low:
        raise ValueError(f"{name} must be a whole number ≥ {low}, got {value!r}")
    return int(value)


# --- building ----------------------------------------------------------------------------------------------

_cancels: dict[str, threading.Event] = {}


def new_catalog(model: Model, layer: object, k: object, samples: object, seed: object, truncation: object,
                callback=None) -> Catalog:
    """The build `python -m localedit catalog MODEL --layer L --clusters K --samples N --seed S --truncation T`
    makes: the same library call with the same arguments, so the same catalog."""
    if not isinstance(layer, str) or layer not in model.generator.style_layers:
        raise ValueError(f"pick a layer of this generator: {list(model.generator.style_layers)}; got {layer!r}")
    if isinstance(truncation, bool) or not isinstance(truncation, (int, float)) or not 0 <= truncation <= 1:
        raise ValueError(f"truncation ψ must be a number from 0 to 1, got {truncation!r}")
    samples = _whole("the number of samples", samples, 1)
    side, channels = input_resolution(layer), model.generator.style_dims[layer]
    most = max(1, BUILD_MEMORY_MB * 2**20 // (side * side * channels * 4))  # k-means holds every pixel's row
    if samples > most:
        raise ValueError(f"{samples} samples of {layer} ({side}×{side}×{channels} floats each) would not fit the "
                         f"{BUILD_MEMORY_MB} MB this server gives a build: at most {most} samples "
                         "($LOCALEDIT_BUILD_MEMORY_MB)")
    return build_catalog(model.generator, layer, _whole("K", k, 1), n_samples=samples, truncation=float(truncation),
                         seed=check_seed("seed", _whole("the seed", seed, 0)), progress=False, callback=callback)


@contextmanager
def cli_threads():
    """An edit runs on one thread (app_support.configure_process); a build or a tuning, rare and long, on the
    CLI's (BUILD_THREADS), and the count goes back after. They run one at a time (their concurrency group)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(BUILD_THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def build(choice, layer, k, samples, seed, truncation, request: gr.Request,
          progress=gr.Progress()):  # noqa: B008 (Gradio's way to ask for a progress bar)
    """The Build button: a new catalog, its contact sheet, and a fresh start for the names."""
    session = getattr(request, "session_hash", None) or "api"
    cancel = _cancels[session] = threading.Event()

    shown = {"stage": None, "at": 0.0}

    def report(stage: str, done: int, total: int) -> None:
        if cancel.is_set():
            raise BuildCancelled
        now = time.monotonic()  # at most ten updates a second, besides each stage's first and last
        if stage != shown["stage"] or done == total or now - shown["at"] >= 0.1:
            progress((done, total), desc=STAGES[stage])
            shown.update(stage=stage, at=now)

    try:
        with user_errors(), cli_threads():
            model = open_model(choice)
            catalog = new_catalog(model, layer, k, samples, seed, truncation, report)
    except BuildCancelled:
        return (gr.skip(),) * (len(VIEWS) - 1) + (CANCELLED,)
    finally:
        _cancels.pop(session, None)
    t = catalog.timings
    status = (f"**Built** K = {catalog.k} clusters of `{catalog.layer}` from {catalog.n_samples} samples in "
              f"{t['total']:.1f} s (samples {t['generation']:.1f} s, k-means {t['clustering']:.1f} s, M "
              f"{t['contribution']:.1f} s). Now name the parts: pick a name, click its clusters' tiles, press "
              "**Name part**.")
    return (*views(Draft(choice, model, catalog)), status)


def cancel_build(request: gr.Request) -> str:
    """The Cancel button: the session's build stops at its next progress step and changes nothing."""
    event = _cancels.get(getattr(request, "session_hash", None) or "api")
    if event is not None:  # running: it stops at its next step. Queued: the page's Cancel drops it from the queue.
        event.set()
    return CANCELLED


def open_draft(choice):
    """A generator picked: its own catalog when it has one (to rename or redo), its layers, its card."""
    with user_errors():
        model = open_model(choice)
    draft = Draft(choice, model, model.catalog)
    has = (f"It has a catalog: K = {model.catalog.k} clusters of `{model.catalog.layer}`, parts "
           f"{', '.join(model.catalog.parts) or 'none yet'}. Name or remove its parts below, or build a new one."
           if model.catalog is not None else "It has no catalog yet: build one.")
    return (*views(draft), f"**{choice}**: {model.config.size} px. {has}",
            gr.Dropdown(choices=layer_choices(model.generator), value=default_layer(model.generator, model.catalog)),
            model_card(model.folder, model.config))


def open_first(draft: Draft | None, choice):
    """The tab picked: the generator in the menu, opened once per session."""
    return open_draft(choice) if draft is None else (gr.skip(),) * (len(VIEWS) + 2)


def model_card(folder: Path, config: GeneratorConfig) -> str:
    """The folder's model card, or a start of one that says what it must tell."""
    card = Path(folder) / CARD_FILE
    if card.is_file():
        return card.read_text(encoding="utf-8")
    return (f"# {config.name or 'A StyleGAN2 generator'}\n\n{config.description}\n\n"
            "## Where the weights come from\n\n(who trained them, on what data, and their licence)\n")


# --- what the tab shows of a draft ----------------------------------------------------------------------------

VIEWS = ("draft", "overview", "tiles", "clusters", "legend", "name", "try_part", "try_epsilon", "status")


def views(draft: Draft, focus: str | None = None, keep: bool = False) -> tuple:
    """The draft and what shows it: the contact sheet's overview and tiles, the cluster boxes, the parts'
    legend, the names offered, and the part to try with its ε slider: `focus` (the part just named) when it
    is one, else the first (the status line comes last, from the caller). The ε slider is set here, with the
    part, so that no edit reads a value past the slider's new end. The name and its clusters start empty for
    the next part, or with `keep` stay at `focus`'s."""
    catalog = draft.catalog
    if catalog is None:
        return (draft, None, [], gr.CheckboxGroup(choices=[], value=[]), "", gr.skip(),
                gr.Dropdown(choices=[], value=None), gr.Slider(value=DEFAULT_EPSILON, maximum=100))
    overview, tiles = contact_views(draft.editor, SHEET_SEEDS, catalog.truncation)
    gallery = [(png(tile), cluster_caption(catalog, k)) for k, tile in enumerate(tiles)]
    parts = list(catalog.parts)
    names = parts + [n for n in NAMES if n not in parts]
    tried = focus if focus in catalog.parts else parts[0] if parts else None
    kept = keep and tried == focus and focus is not None
    return (draft, png(np.asarray(overview)), gallery,
            gr.CheckboxGroup(choices=list(range(catalog.k)), value=list(catalog.parts[focus].clusters) if kept else []),
            legend_html(catalog, ""), gr.Dropdown(choices=names, value=focus if kept else None),
            gr.Dropdown(choices=parts, value=tried), try_part(draft, tried))


# --- naming --------------------------------------------------------------------------------------------------


def toggle_cluster(clusters: list, evt: gr.SelectData) -> list:
    """A tile clicked: its cluster joins the part being named, or leaves it."""
    k = int(evt.index)
    chosen = [int(c) for c in clusters or []]
    return sorted(set(chosen) ^ {k})


def pick_name(draft: Draft | None, name: str):
    """A name picked or typed: an existing part's clusters, colour and settings; a new name's colour and the
    default settings (the clusters ticked so far stay)."""
    part = draft.catalog.parts.get(name) if draft is not None and draft.catalog is not None else None
    if part is None:
        colour = default_color(name) if isinstance(name, str) and name else gr.skip()
        return (gr.skip(), colour, DEFAULT_EPSILON, DEFAULT_THRESHOLD, False, *(1.0,) * len(LAYER_GROUPS))
    profile = dict(part.epsilon_profile)
    return (list(part.clusters), part.color, part.epsilon, part.threshold, part.torgb,
            *(profile[g] for g in LAYER_GROUPS))


def name_part(draft: Draft | None, name, clusters, colour, epsilon, threshold, torgb, *profile):
    """Name Part: `name` is these clusters, with this colour and these settings (label's `with_parts`)."""
    with user_errors():
        catalog = started(draft)._built()
        name = (name or "").strip() if isinstance(name, str) else name
        if not name:
            raise ValueError("type or pick a part name (such as eyes) first")
        if not clusters:
            raise ValueError(f"pick {name}'s clusters first: click their tiles, or tick their numbers")
        catalog = catalog.with_parts({name: sorted(int(c) for c in clusters)}, epsilon={name: epsilon},
                                     threshold={name: threshold}, torgb={name: bool(torgb)},
                                     epsilon_profile={name: dict(zip(LAYER_GROUPS, profile, strict=True))})
        catalog = replace(catalog, parts={**catalog.parts, name: replace(catalog.parts[name], color=colour or "")})
    shared = catalog.shared_clusters()
    note = "" if not shared else " Shared clusters count for each of their parts: " + "; ".join(
        f"{c} is in {' and '.join(names)}" for c, names in shared.items()) + "."
    said = f"**{name}** is clusters {list(catalog.parts[name].clusters)}.{note} Try it in the editor beside the names."
    return (*views(draft.with_catalog(catalog), name), said)


def remove_part(draft: Draft | None, name):
    with user_errors():
        catalog = started(draft)._built()
        if not isinstance(name, str) or name not in catalog.parts:
            raise ValueError(f"pick the part to remove under Part name: one of {list(catalog.parts)}")
        catalog = catalog.without_parts([name])
    return (*views(draft.with_catalog(catalog)), f"Removed **{name}**.")


def started(draft: Draft | None) -> Draft:
    if draft is None:
        raise ValueError("pick a generator and build a catalog first")
    return draft


# --- trying an edit -------------------------------------------------------------------------------------------


def try_part(draft: Draft | None, part):
    """The part to try picked: the ε slider at its own ε, ending where its query saturates."""
    if draft is None or draft.catalog is None or part not in draft.catalog.parts:
        return gr.skip()
    epsilon = draft.catalog.parts[part].epsilon
    return gr.Slider(value=epsilon, maximum=epsilon_max(draft.editor, part, value=epsilon))


@gpu
def try_edit(draft: Draft | None, target, reference, part, epsilon):
    """The edit with the catalog as it is now: edited, target, reference, and the main tab's statistics line."""
    if draft is None or draft.catalog is None or not draft.catalog.parts or part not in draft.catalog.parts:
        return None, None, None, "Name a part to try an edit."
    with user_errors():
        editor = draft.editor
        result = editor.run(editor.resolve(target, reference, part, epsilon=epsilon))
    return png(result.edited), png(result.target), png(result.reference), stats_line(editor, result)
