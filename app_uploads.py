"""Pictures of your own in the demo: an upload is projected into the model (localedit.projection) and then edited
like a seed, as the single edit's target or reference.

- `Uploads`, the server's bounded store of projections (LRU, $LOCALEDIT_UPLOADS of them, default 64), each named
  `upload:<hex>`: a digest of the picture file's bytes together with the model and the projection settings. A
  link or an API call names an upload by that name only, so it works while the server keeps the projection; when
  it is gone (evicted, or the server restarted) the name says so, and nothing else breaks.
- `Projector`: each model's encoder and the judge (the perceptual loss), loaded on the first projection, never at
  import, and the projection itself: read the file (localedit.projection.read_image refuses what is no RGB
  picture, with its own message), fit, project, store. The same bytes and model give the same name and, the
  projection being deterministic, the same latent, so the same edits.
- The page's side: what it shows of an upload (`fidelity`), the controls of a picture of your own
  (`picture_picker`) and their wiring (`wire_pictures`), and the sources the controls ask for (`page_controls`).

app_endpoints.py has the endpoints (/project, and /edit taking `upload:<hex>`); app.py the rest of the page.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import astuple, dataclass
from pathlib import Path

import gradio as gr
import numpy as np

from localedit.edit import Latent
from localedit.encoder import Encoder, load_encoder
from localedit.judge import Judge, load_judge
from localedit.projection import DEFAULT, ProjectSettings, project, read_image, read_picture_file
from localedit.share import UPLOAD_PREFIX, Models, is_upload, parse_seed, parse_upload

CAPACITY = int(os.environ.get("LOCALEDIT_UPLOADS", "64"))
JUDGE_FILES = ("config.json", "judge.safetensors")
PICTURE = 220  # px: an upload on the page (the webcam's view needs the room)
# Projections queue apart from edits, one at a time; events get the file as it came (preprocess=False), so that
# read_image, not Gradio, reads it and says what is wrong with it.
PROJECTING = dict(concurrency_id="projection", concurrency_limit=1, preprocess=False)


class UploadGone(ValueError):
    """An upload's name that the server no longer has (or never had)."""


@dataclass(frozen=True)
class Upload:
    """One projected picture: its name, the model it is a latent of, the latent, the projection (the model's
    rendering of it), the picture as fitted to the model (its centre square at the model's size), and the PSNR
    of the one against the other."""

    name: str
    model: str
    latent: Latent
    projection: np.ndarray
    picture: np.ndarray
    psnr: float


def upload_name(data: bytes, model: str, settings: ProjectSettings = DEFAULT) -> str:
    """`upload:<hex>`: the SHA-256 of the picture file's bytes, the model's key and the settings, cut to 128 bits."""
    digest = hashlib.sha256(b"localedit-upload\0" + model.encode() + b"\0" + repr(astuple(settings)).encode()
                            + b"\0" + hashlib.sha256(data).digest())
    return UPLOAD_PREFIX + digest.hexdigest()[:32]


class Uploads:
    """The projections the server keeps, by name: the `capacity` most recently made or used."""

    def __init__(self, capacity: int = CAPACITY):
        if capacity < 1:
            raise ValueError(f"LOCALEDIT_UPLOADS must be at least 1, got {capacity}")
        self.capacity = capacity
        self._items: OrderedDict[str, Upload] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def put(self, upload: Upload) -> None:
        with self._lock:
            self._items[upload.name] = upload
            self._items.move_to_end(upload.name)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def peek(self, name: str) -> Upload | None:
        """The upload, or None; unlike `get`, it stays where it is in the LRU order and nothing is raised."""
        return self._items.get(name)

    def get(self, role: str, name: str, model: str) -> Upload:
        """The upload `name` (a well-formed name) for `model`, now the most recently used; UploadGone when the
        server no longer has it, ValueError when it was projected into another model. `role` ("target",
        "reference") is what the message calls it."""
        with self._lock:
            upload = self._items.get(name)
            if upload is not None:
                self._items.move_to_end(name)
        if upload is None:
            raise UploadGone(f"the uploaded {role} {name} is no longer on the server (it keeps the last "
                             f"{self.capacity} uploads, and none across a restart); upload it again")
        if upload.model != model:
            raise ValueError(f"the uploaded {role} {name} was projected into model {upload.model}, not {model}; "
                             "upload it again for this model")
        return upload


class Projector:
    """Projects pictures into the served models and keeps them in `uploads`. Each model's encoder, and the judge
    (from `judge_folder`, when it has one: without it the loss is the pixel loss alone), load on first use."""

    def __init__(self, models: Models, uploads: Uploads, judge_folder: Path, settings: ProjectSettings = DEFAULT):
        self.models, self.uploads, self.settings = models, uploads, settings
        self.judge_folder = judge_folder
        self._encoders: dict[str, Encoder | None] = {}
        self._judge: list[Judge | None] = []  # empty until loaded
        self._lock = threading.Lock()

    def judge(self) -> Judge | None:
        """The judge of `judge_folder` (None when it has none), loaded once; the catalog builder's tuning uses it
        too."""
        with self._lock:
            if not self._judge:
                has_judge = all((self.judge_folder / name).is_file() for name in JUDGE_FILES)
                self._judge.append(load_judge(self.judge_folder) if has_judge else None)
            return self._judge[0]

    def tools(self, model: str) -> tuple[Encoder | None, Judge | None]:
        """The model's encoder (None when its folder has none) and the judge, loaded once each."""
        editor = self.models.editor(model)
        with self._lock:
            if model not in self._encoders:
                self._encoders[model] = load_encoder(self.models.folder(model), editor.generator)
        return self._encoders[model], self.judge()

    def project(self, model: str, path: object, progress: Callable[[int, int], None] | None = None) -> Upload:
        """The picture file at `path` projected into `model` (or the upload the server has of the same bytes);
        ValueError saying what is wrong with the file, and then nothing is stored."""
        data = read_file(path)
        name = upload_name(data, model, self.settings)
        if name in self.uploads:  # the same bytes, model and settings: projected already
            return self.uploads.get("picture", name, model)
        picture = read_image(data)
        encoder, judge = self.tools(model)
        p = project(self.models.editor(model).generator, picture, encoder, judge, self.settings, progress)
        upload = Upload(name, model, Latent.of(p.latent), p.image, p.target, p.psnr)
        self.uploads.put(upload)
        return upload


def read_file(path: object) -> bytes:
    """The bytes of an uploaded file, by its path (Gradio's copy in its cache); ValueError when there is none or it
    is too large to be a picture this app reads."""
    if isinstance(path, dict):  # a FileData, as an event with preprocess=False gets it
        path = path.get("path")
    if not isinstance(path, (str, Path)) or not str(path):
        raise ValueError("no picture was given: upload a picture file (PNG or JPEG, RGB)")
    if not Path(path).is_file():
        raise ValueError("the uploaded file is gone; upload it again")
    return read_picture_file(path)


def source(role: str, value: object, model: str, uploads: Uploads) -> int | Latent:
    """A target or reference as the Editor takes it: a seed, or the latent of the upload `value` names."""
    if is_upload(value):
        return uploads.get(role, parse_upload(role, value), model).latent
    return parse_seed(role, value)


def fidelity(upload: Upload) -> str:
    """The line under an upload's projection: how close it is, and what the model can show."""
    size = upload.projection.shape[0]
    return (f"**PSNR {upload.psnr:.1f} dB** against your picture's centre square at {size} px. The model shows "
            "only what it can represent: this is its nearest image to your picture (a photo comes back from a "
            "cartoon model as a cartoon face), and the edit starts from it. Edits of a picture move the part less, "
            "and change more around it, than edits of a seed: the model card says by how much.")


def page_controls(values: Sequence, uploads: Uploads) -> list | None:
    """The single edit's nine controls, then each source's kind ("seed" or "upload") and upload name (target's,
    then reference's) → the nine controls with the upload's name in place of the seed where a source is an
    upload; None while an upload source waits for its projection (none yet, or one for another model, being
    projected again after the model changed)."""
    controls, sources = list(values[:9]), [*values[9:13], "seed", "", "seed", ""][:4]
    for index, (kind, name) in ((1, sources[:2]), (2, sources[2:])):
        if kind != "upload":
            continue
        upload = uploads.peek(name) if isinstance(name, str) else None
        if not name or (upload is not None and upload.model != controls[0]):
            return None
        controls[index] = name
    return controls


# --- the page's controls --------------------------------------------------------------------------------------


def picture_picker(role: str, elem_id: str, thumb: int) -> dict:
    """A source's picture of your own, in a column shown while the source is an upload: the picture (a file, or the
    webcam where the browser has one), its projection into the model (`thumb` px) and the line under it; and the
    upload's name, hidden."""
    with gr.Column(visible=False, elem_id=f"{elem_id}-picture") as pictures:
        file = gr.Image(sources=["upload", "webcam"], type="filepath", format="png", label="Your picture",
                        height=PICTURE, buttons=[], elem_id=f"{elem_id}-upload", elem_classes="upload")
        with gr.Row(equal_height=True):
            side = thumb + 24
            projection = gr.Image(label="Projection", format="png", interactive=False, height=side, width=side,
                                  buttons=[], scale=0, min_width=side, elem_id=f"{elem_id}-projection",
                                  elem_classes="pixelated")
            line = gr.Markdown(elem_id=f"{elem_id}-fidelity", elem_classes="fidelity", min_height=0)
    name = gr.Textbox(label=f"{role} upload", visible="hidden", elem_id=f"{elem_id}-upload-name")
    return dict(pictures=pictures, file=file, projection=projection, line=line, name=name)


def _show(kind: str):
    return gr.Column(visible=kind != "upload"), gr.Column(visible=kind == "upload")


def wire_pictures(sources: list[dict], model: gr.Dropdown, project_page: Callable, ask: dict) -> None:
    """Inside the page's Blocks: each source's kind shows its seed or its picture, and asks for the edit (`ask`,
    a listener's arguments); its picture is projected (`project_page`) when uploaded or captured, cleared, or the
    model changes (an upload is a latent of one model), always the last, and then asks for the edit."""
    for source in sources:
        source["kind"].change(_show, source["kind"], [source["seeds"], source["pictures"]], api_visibility="private",
                              queue=False)
        source["kind"].input(**ask)
        shown = [source["projection"], source["line"], source["name"], source["file"]]
        for event in (source["file"].upload, source["file"].clear, model.input):
            event(project_page, [model, source["file"]], shown, api_visibility="private", trigger_mode="always_last",
                  show_progress_on=source["file"], **PROJECTING).then(**ask)
