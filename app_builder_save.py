"""The "Build a catalog" tab's saving: the catalog files to download, the model folder, and a push to the Hub
with the user's own token, whose pinned commit reproduces the edit being tried. Each goes through the library
(`localedit.hub.save_catalog`, `writable_folder`, `push`); app_builder.py has the rest of the tab."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import gradio as gr

from app_builder import OPEN, Draft, forget, started
from app_endpoints import ASSETS, MODELS
from app_support import user_errors
from localedit.catalog import Catalog
from localedit.hub import CARD_FILE, CONFIG_FILE, push, save_catalog, writable_folder
from localedit.share import Controls


def edit_link(model: str, draft: Draft, target, reference, part, epsilon) -> str:
    """The query of the main tab's link to the edit being tried, on `model` (its key where it is served)."""
    p = draft.editor.resolve(target, reference, part, epsilon=epsilon)
    return Controls(model, p.target, p.reference, p.part, p.epsilon, p.method, p.threshold, p.lam,
                    p.truncation).query()


def _named(draft: Draft | None) -> Catalog:
    catalog = started(draft)._built()
    if not catalog.parts:
        raise ValueError("name at least one part before saving: a catalog without parts cannot edit anything")
    return catalog


def catalog_files(draft: Draft | None) -> list[str]:
    """Download: catalog.json and catalog.safetensors, as `save_catalog` writes them into a model folder."""
    with user_errors():
        catalog = _named(draft)
        folder = Path(tempfile.mkdtemp(prefix="localedit-catalog-"))
        (folder / CONFIG_FILE).write_bytes((Path(draft.model.folder) / CONFIG_FILE).read_bytes())
        save_catalog(folder, catalog)
    return [str(folder / "catalog.json"), str(folder / "catalog.safetensors")]


def save_into_folder(draft: Draft | None) -> str:
    """Write the catalog into the generator's own folder, where it is local, writable, and the operator allows."""
    with user_errors():
        catalog = _named(draft)
        folder = Path(draft.model.folder)
        if not OPEN:
            raise ValueError("this server does not write into model folders: download the files, or push to the Hub")
        if draft.model.repo_id is not None:
            raise ValueError(f"{draft.choice} is a Hub model (its files in the Hugging Face cache never change): "
                             "download the files, or push it to a repo of your own")
        if draft.choice in MODELS.sources:
            raise ValueError(f"{draft.choice} is a model this app serves: its catalog is not rewritten from the page "
                             "(download the files, push a copy, or relabel it with `python -m localedit label`)")
        if not os.access(folder, os.W_OK):
            raise ValueError(f"{folder} is not writable here: download the files instead")
        save_catalog(folder, catalog)
        forget(folder)
    return (f"Wrote catalog.json and catalog.safetensors into `{folder}`. The app serves it from its next start"
            + (" (it is in the assets folder)." if folder.resolve().parent == ASSETS.resolve() else
               f": `LOCALEDIT_ASSETS={folder.parent}`, or load it with `python -m localedit edit --model {folder}`."))


def publish(draft: Draft | None, repo, token, card, target, reference, part, epsilon,
            oauth_token: gr.OAuthToken | None = None) -> str:
    """Push: the generator's files, the catalog and the card to `repo` with the user's own token (typed, or from
    the login button on a Space; never the server's own), and a link to the edit being tried at that commit."""
    with user_errors():
        catalog = _named(draft)
        repo = (repo or "").strip() if isinstance(repo, str) else ""
        if not repo:
            raise ValueError("name the Hub repo to push to, as owner/name")
        token = (token or "").strip() if isinstance(token, str) else ""
        token = token or (oauth_token.token if oauth_token is not None else "")
        if not token:
            raise ValueError("pushing needs your Hub token with write access: log in, or paste one "
                             "(huggingface.co/settings/tokens)")
        if not isinstance(card, str) or not card.strip():
            raise ValueError("write the model card first: where the weights come from and their licence")
        # The edit being tried is checked before the push, so that a push that happened is never reported as a
        # failure; its link names the commit, known after.
        tried = (lambda model: edit_link(model, draft.with_catalog(catalog), target, reference, part, epsilon)) \
            if part in catalog.parts else (lambda model: f"?model={model}")
        tried("check")
        with tempfile.TemporaryDirectory(prefix="localedit-push-") as tmp:
            folder = writable_folder(draft.model, Path(tmp) / "model")
            save_catalog(folder, catalog)
            (folder / CARD_FILE).write_text(card.rstrip() + "\n\n" + catalog_card(catalog), encoding="utf-8")
            try:
                commit = push(folder, repo, token=token)
            except ValueError as e:  # the library's advice is for the command line; this is a browser
                if "refused the token" in str(e):
                    raise ValueError("the Hub refused this token: paste a token with write access "
                                     "(huggingface.co/settings/tokens), or log in") from e
                raise
        pinned = f"{repo}@{commit}"
        link = tried(pinned)
    return (f"**Pushed** to `{repo}` at commit `{commit}`. Serve it with `LOCALEDIT_MODELS={pinned} python app.py`, "
            f"then open [this edit]({link}) (`{link}`); the pinned commit gives these bytes for good.")


def catalog_card(catalog: Catalog) -> str:
    """The card's section on the catalog: how it was built, and its parts."""
    parts = "\n".join(f"| {name} | {', '.join(map(str, p.clusters))} | {p.epsilon:g} | {p.threshold:g} | "
                      f"{'on' if p.torgb else 'off'} |" for name, p in catalog.parts.items())
    return (f"## Catalog (built in the localedit app; it replaces any catalog described above)\n\n"
            f"`python -m localedit catalog MODEL --layer {catalog.layer} --clusters {catalog.k} --samples "
            f"{catalog.n_samples} --seed {catalog.seed} --truncation {catalog.truncation:g}` makes the same clusters. "
            f"Its parts:\n\n| part | clusters | ε | threshold | toRGB |\n|---|---|---|---|---|\n{parts}\n")
