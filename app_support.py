"""The demo's plumbing, apart from what it shows: request parsing, error messages, the PNG file cache, the
process settings for serving, and the page's JavaScript, CSS and theme. app.py holds the layout and the wiring,
app_endpoints.py the functions behind the endpoints (see app.py's docstring for the rest)."""

from __future__ import annotations

import ctypes
import functools
import hashlib
import io
import logging
import os
import re
import shutil
import tempfile
import threading
import weakref
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path

import gradio as gr
import numpy as np
import torch
from PIL import Image

from localedit.hub import write_atomic
from localedit.share import cut


def request_query(request: gr.Request | None) -> dict[str, object]:
    """The page's query parameters from a gr.Request, whichever form Gradio gives them in."""
    params = getattr(request, "query_params", None) if request is not None else None
    if params is None:
        return {}
    try:
        return {str(k): v for k, v in params.items()}
    except (AttributeError, TypeError):  # a plain object whose "items" key shadows the method
        return dict(vars(params)) if hasattr(params, "__dict__") else {}


def literal(text: str) -> str:
    """Text from a link shown as it is: no Markdown link, image, HTML or formula can come through it."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|~>$])", r"\\\1", text).replace("<", "&lt;")



@contextmanager
def user_errors():
    """The library says what is allowed in its ValueErrors: show that message in the UI and to API clients."""
    try:
        yield
    except gr.Error:
        raise
    except ValueError as e:  # ModelNotFoundError included
        raise gr.Error(cut(str(e)), print_exception=False) from e


EDIT_THREADS = int(os.environ.get("LOCALEDIT_TORCH_THREADS", "1"))  # torch threads per request (configure_process)


def edit_threads(fn):
    """`fn` on EDIT_THREADS torch threads. torch keeps a thread count per thread, taken from the process's when
    the thread first runs torch: a worker that first ran while a catalog build had raised it (app_builder's
    cli_threads) would otherwise keep the build's count for good."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if torch.get_num_threads() != EDIT_THREADS:
            torch.set_num_threads(EDIT_THREADS)
        return fn(*args, **kwargs)

    return wrapper


def warned(fn, outputs: int):
    """`fn` for an event with this many outputs, its gr.Error shown as a warning and every output left as it was,
    instead of each marked "Error" (which would wipe a page of work for one bad value)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error as e:
            gr.Warning(e.message)
            return (gr.skip(),) * outputs if outputs > 1 else gr.skip()

    return wrapper


class Newest:
    """Which of a listener's calls may still show its view, per session: the one that started last of those that
    finished. A page's listener can run twice at once for one session (a link's controls arrive together, but
    their change events read them as they land, some old and some new); without this, a call that started earlier
    and finished later would leave its stale view on show, and the link would not give its own edit."""

    def __init__(self, sessions: int = 4096):
        self._started: OrderedDict[str, int] = OrderedDict()
        self._shown: dict[str, int] = {}
        self._sessions = sessions
        self._lock = threading.Lock()

    def start(self, request: gr.Request | None) -> tuple[str, int]:
        session = getattr(request, "session_hash", None) or ""
        with self._lock:
            n = self._started[session] = self._started.get(session, 0) + 1
            self._started.move_to_end(session)
            while len(self._started) > self._sessions:
                self._shown.pop(self._started.popitem(last=False)[0], None)
        return session, n

    def may_show(self, call: tuple[str, int]) -> bool:
        """Whether the call `start` returned may show its view (and so no later-started one has): then it has."""
        session, n = call
        with self._lock:
            if self._shown.get(session, 0) > n:
                return False
            self._shown[session] = n
            return True


class PngFiles:
    """Images as PNG files named by their bytes, each written under a temporary name and renamed into place.

    Gradio copies a returned file into its cache atomically, but rewrites the file of a returned array on every
    call: two requests with the same picture would truncate it under a browser that is reading it. PIL writes
    no metadata here, so the same pixels give the same bytes. Only the `keep` most recently returned files stay
    on disk: Gradio has its own copy of each by the time its request ends.
    """

    def __init__(self, keep: int = 512):
        self.folder = Path(tempfile.mkdtemp(prefix="localedit-app-"))
        weakref.finalize(self, shutil.rmtree, self.folder, ignore_errors=True)  # at the latest, when Python exits
        self._recent: OrderedDict[Path, None] = OrderedDict()
        self._keep = keep
        self._lock = threading.Lock()

    def __call__(self, image: np.ndarray) -> str:
        buffer = io.BytesIO()
        # Fast zlib: level 1 encodes the four images of an edit in 1.5 ms instead of 3.1 ms (level 6), 10–25 %
        # larger; the bytes are as deterministic either way.
        Image.fromarray(image).save(buffer, format="png", compress_level=1)
        data = buffer.getvalue()
        path = self.folder / f"{hashlib.sha256(data).hexdigest()[:32]}.png"
        with self._lock:
            if path not in self._recent:
                write_atomic(path, lambda tmp: tmp.write_bytes(data))
            self._recent[path] = None
            self._recent.move_to_end(path)
            while len(self._recent) > self._keep:
                self._recent.popitem(last=False)[0].unlink(missing_ok=True)
        return str(path)


def configure_process() -> None:
    """Process-wide settings for serving, made at launch rather than import (`import app` in a test is cheap
    and leaves the process as it was).

    - Each request runs single-threaded and concurrent requests use the cores: a small model's edit is fast on
      one thread and many times slower on two, whose threads wait on each other whenever anything else runs.
    - glibc gives each thread that allocates an arena of its own, and under Gradio's worker threads the server's
      RSS kept creeping; with two arenas it settles (the server test prints the RSS). M_ARENA_MAX is mallopt's
      option -8; where libc is not glibc this is skipped.
    - $LOCALEDIT_LOG (a logging level, such as INFO) logs each view the page makes, with its query, to stderr.
    """
    torch.set_num_threads(EDIT_THREADS)
    log = logging.getLogger("localedit.app")
    if os.environ.get("LOCALEDIT_LOG") and not log.handlers:
        log.setLevel(os.environ["LOCALEDIT_LOG"].upper())
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
        log.addHandler(handler)
    try:
        ctypes.CDLL("libc.so.6").mallopt(-8, 2)
    except (OSError, AttributeError):
        pass


def sync_link_js(mode: str) -> str:
    """Runs in the browser when a mode's query, or the mode on show, changes: the mode's link box gets its full
    link, and when `mode` is the one on show the address bar follows it. Inside a Space the app is an iframe, so
    the Space page is asked to update its own URL."""
    return """(query, mode) => {
  const shown = mode === "MODE";
  if (!query) return "";
  const url = new URL(window.location.href);
  url.search = query;
  let link = url.toString();
  if (shown) window.history.replaceState(null, "", url);
  if (window.parent !== window) {
    if (shown) window.parent.postMessage({ queryString: query }, "https://huggingface.co");
    if (document.referrer.startsWith("https://huggingface.co/spaces/")) {
      const space = new URL(document.referrer);
      space.search = query;
      link = space.toString();
    }
  }
  return link;
}""".replace("MODE", mode)


COPY_LINK_JS = """(link) => {
  if (navigator.clipboard) navigator.clipboard.writeText(link).catch(() => {});
  return link;
}"""
COUNT_JS = "(n) => n + 1"
# A slider that edits live (on input): no reset button. Gradio's resets it to the page's first value, which is not
# the part's own, and fires only change, so the slider would show one value and the edit another.
LIVE_SLIDER = {"buttons": []}
DICE_JS = "(n) => [Math.floor(Math.random() * 100000), n + 1]"  # a 🎲: a random seed, and the count that asks
# On a phone the examples sit two screens below the result: after one is picked, bring the result into view.
SHOW_RESULT_JS = """() => {
  if (window.innerWidth > 768) return;
  const panes = [...document.querySelectorAll("#outputs, #composite-outputs")].filter((e) => e.offsetParent);
  if (panes.length) panes[0].scrollIntoView({ block: "start" });
}"""

CSS = """
.pixelated img { image-rendering: pixelated; width: 100%; height: 100%; object-fit: contain; }
.dice { flex-grow: 0 !important; min-width: 48px !important; align-self: center; }
.thumb { flex-grow: 0 !important; min-width: 96px !important; }
.legend { display: flex; flex-wrap: wrap; gap: 4px 12px; font-size: 0.9em; }
.legend .part { opacity: 0.6; cursor: default; user-select: none; }  /* a key, not buttons */
.legend .part.selected { opacity: 1; font-weight: 600; }
.legend i { display: inline-block; width: 0.9em; height: 0.9em; border-radius: 3px; margin-right: 4px;
            vertical-align: -0.1em; border: 1px solid rgba(0, 0, 0, 0.25); }
#composite-stats th, #composite-stats td { white-space: nowrap; }
.upload img { width: 100%; height: 100%; object-fit: contain; }  /* a small picture fills its box too */
.fidelity { font-size: 0.85em; align-self: center; }
/* On a phone the columns stack: the result comes first, the controls under it. The pictures stay two abreast, so
   the controls start a screen down, not four, and a changed control's edit can be seen without scrolling far back
   up. Each pane is as tall as it is wide, like its square image, so no blank strip is left under the picture (or
   under the slider's divider). */
@media (max-width: 768px) {
  #outputs, #composite-outputs { order: -1; }
  .pairs { flex-wrap: nowrap !important; }
  .pairs > * { min-width: 0 !important; flex: 1 1 0 !important; }
  #edited, #slider, #reference-out, #diff, #composite-edited, #composite-slider, #composite-diff {
    height: auto !important; aspect-ratio: 1 / 1; }
  #composite-stats th, #composite-stats td { padding: 4px 6px; }  /* the table fits the screen */
  /* The three tabs fit a phone's width, not two and a "more" menu; and a picture's label clears its icon buttons
     (the slider's "Target ↔ edited" ran under its undo button): no icon before it, and smaller type. */
  #modes .tab-container button { padding: 0 8px; }
  .pairs [data-testid="block-label"] { font-size: 12px; }
  .pairs [data-testid="block-label"] > span:first-child { display: none; }
}
"""
THEME = gr.themes.Soft(primary_hue="indigo", secondary_hue="pink")
