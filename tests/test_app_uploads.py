"""Pictures of your own in the demo, in-process on test_app.py's tiny model: /project, edits and links that name an
upload, the bounded store and its evictions, bad files, the page's upload controls and the lazy loading.

The pictures are held-out procedural faces (localedit.projection.EVAL_FACES), at the tiny model's 32 px unless a
test needs another size. The projections are compared with the library's own, made here, never with numbers.
"""

import math
import re
import sys
import warnings
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import test_app
from gradio_client import handle_file
from PIL import Image
from test_app import HUB_REPO, UPLOADS, _pixels, _restore_all

from localedit import Editor, Latent, share
from localedit.encoder import Encoder, EncoderConfig, save_encoder
from localedit.faces import render_face
from localedit.judge import Judge
from localedit.projection import DEFAULT, EVAL_FACES, project, read_image

ROOT = Path(__file__).resolve().parents[1]
# test_app.py's fixtures, for this module's own import of the app.
app, client, endpoints = test_app.app, test_app.client, test_app.endpoints
pytestmark = [pytest.mark.filterwarnings("ignore:.*no_silent_downcasting"),
              pytest.mark.filterwarnings("ignore:The copy keyword is deprecated")]


def _face(k: int, size: int = 32) -> np.ndarray:
    return render_face(EVAL_FACES.start + k, size)[0]


def _file(folder: Path, image: np.ndarray | bytes, name: str = "face.png", **save) -> Path:
    """A picture file: an array saved as `name` (its suffix picks the format), or bytes as they are."""
    path = folder / name
    if isinstance(image, bytes):
        path.write_bytes(image)
    else:
        Image.fromarray(image).save(path, **save)
    return path


@pytest.fixture
def uploads(app):
    """The app's store of uploads, emptied before and after the test."""
    store = sys.modules["app_endpoints"].UPLOADS
    store._items.clear()
    yield store
    store._items.clear()


def _expected(tiny_generator, path: Path):
    """The library's projection of the file: no encoder (the tiny model has none) and no judge (the test assets'
    judge folder has no weights), at the app's settings."""
    return project(tiny_generator, read_image(path.read_bytes()), None, None, DEFAULT)


def test_nothing_is_loaded_for_uploads_at_import(app, endpoints):
    """The first test of this module, on its own import of the app: the encoders and the judge wait for the first
    projection; the store is as large as $LOCALEDIT_UPLOADS says."""
    assert endpoints.PROJECTOR._encoders == {} and endpoints.PROJECTOR._judge == []
    assert len(endpoints.UPLOADS) == 0 and endpoints.UPLOADS.capacity == UPLOADS


def test_project_then_edit_an_upload_like_a_seed(app, client, uploads, tmp_path, tiny_generator, tiny_catalog):
    path = _file(tmp_path, _face(1))
    projection, psnr, name = client.predict(model="tiny", image=handle_file(str(path)), api_name="/project")
    expected = _expected(tiny_generator, path)
    assert re.fullmatch(r"upload:[0-9a-f]{32}", name) and name in uploads
    assert name == sys.modules["app_uploads"].upload_name(path.read_bytes(), "tiny", DEFAULT)
    assert np.array_equal(_pixels(projection), expected.image) and psnr == pytest.approx(expected.psnr)
    assert math.isfinite(psnr)

    editor, latent = Editor(tiny_generator, tiny_catalog), Latent.of(expected.latent)
    library = editor.edit(latent, 7, "mouth", epsilon=12.5, truncation=0.6)
    edited, (target, _), reference, _, _, query = client.predict(
        "tiny", name, 7, "mouth", 12.5, "sequential", 0.1, 1.0, 0.6, api_name="/edit")
    assert np.array_equal(_pixels(edited), library.edited) and np.array_equal(_pixels(target), expected.image)
    assert query == f"?model=tiny&target={name}&reference=7&part=mouth&epsilon=12.5&method=sequential" \
                    "&threshold=0.1&lam=1&truncation=0.6"
    # As a reference, and both ways at once (written in capitals, an upload's name is the same name).
    edited, *_, query = app.edit("tiny", 3, name.upper().replace("UPLOAD:", "upload:"), "eyes")
    assert np.array_equal(_pixels(edited), editor.edit(3, latent, "eyes").edited) and f"reference={name}&" in query
    assert np.array_equal(_pixels(app.edit("tiny", name, name, "eyes")[0]), expected.image)  # nothing to move

    restored = client.predict(query, api_name="/restore")
    assert restored["controls"]["reference"] == name and restored["notices"] == [] and restored["query"] == query
    # In the page, an upload's thumbnail stays (it is hidden; its projection is on show), a seed's follows.
    *views, target_thumb, reference_thumb = app.edit_view("tiny", name, 7, "mouth", 12.5, "sequential", 0.1, 1.0,
                                                          0.6)
    assert target_thumb == gr.skip() and reference_thumb == views[2]


def test_the_same_bytes_on_the_same_model_give_the_same_edit(app, uploads, tmp_path, tiny_generator):
    path = _file(tmp_path, _face(2, 48), "face.jpg", quality=90)  # not square, not the model's size: fitted
    first = app.project("tiny", str(path))
    edit = ("tiny", first[2], 5, "eyes", 20.0, "sequential", 0.1, 1.0, 0.7)
    before = [Path(p).read_bytes() for p in (app.edit(*edit)[0], first[0])]
    uploads._items.clear()  # as after a restart: projected again
    del app.MODELS._editors["tiny"]
    again = app.project("tiny", str(path))
    assert again[2] == first[2] and [Path(p).read_bytes() for p in (app.edit(*edit)[0], again[0])] == before
    # Another model: another name, and an upload of one model is no source for another.
    other = app.project(HUB_REPO, str(path))[2]
    assert other != first[2] and len(uploads) == 2
    with pytest.raises(gr.Error, match=f"was projected into model tiny, not {HUB_REPO}; upload it again"):
        app.edit(HUB_REPO, first[2], 1, "hair")


def test_the_store_is_bounded_and_says_what_is_gone():
    uploads = sys.modules["app_uploads"]
    store = uploads.Uploads(capacity=2)
    items = [uploads.Upload(f"upload:{i:032x}", "m", Latent.of(np.full((2, 3), i, np.float32)),
                            np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4, 3), np.uint8), 30.0) for i in range(4)]
    store.put(items[0])
    store.put(items[1])
    assert store.get("target", items[0].name, "m") is items[0]  # used: now the most recent
    store.put(items[2])  # evicts the least recently used, items[1]
    assert items[1].name not in store and items[0].name in store and len(store) == 2
    with pytest.raises(uploads.UploadGone, match=r"the uploaded reference upload:0+1 is no longer on the server "
                                                 r"\(it keeps the last 2 uploads.*upload it again"):
        store.get("reference", items[1].name, "m")
    with pytest.raises(ValueError, match="projected into model m, not n"):
        store.get("target", items[0].name, "n")
    assert store.peek(items[3].name) is None
    for bad in (0, -1):
        with pytest.raises(ValueError, match="LOCALEDIT_UPLOADS must be at least 1"):
            uploads.Uploads(bad)


def test_an_evicted_upload_fails_clearly_and_its_link_falls_back_to_a_seed(app, client, endpoints, uploads, tmp_path):
    names = [app.project("tiny", str(_file(tmp_path, _face(10 + i), f"{i}.png")))[2] for i in range(UPLOADS + 1)]
    assert len(uploads) == UPLOADS and names[0] not in uploads and all(n in uploads for n in names[1:])
    with pytest.raises(Exception, match=f"the uploaded target {names[0]} is no longer on the server"):
        client.predict("tiny", names[0], 2, "eyes", None, "sequential", None, None, None, api_name="/edit")
    restored = client.predict(f"?model=tiny&target={names[0]}&reference={names[1]}&part=mouth", api_name="/restore")
    assert restored["controls"]["target"] == app.DEFAULT.target and restored["controls"]["reference"] == names[1]
    assert restored["notices"] == [f"the uploaded target {names[0]} is no longer on the server (it keeps the last "
                                   f"{UPLOADS} uploads, and none across a restart); upload it again; using seed "
                                   f"{app.DEFAULT.target}"]
    # The page: the notice on top, the target a seed again, the reference's upload on show.
    with pytest.warns(UserWarning, match="could not be used"):
        single, _, sources = _restore_all(app, {"model": "tiny", "target": names[0], "reference": names[1]})
    assert single[10].visible and "no longer on the server" in single[10].value.replace("\\", "")
    assert single[1] == app.DEFAULT.target and single[2] == gr.skip()
    assert sources[:5] == [gr.skip()] * 5 and sources[5:7] == ["upload", names[1]]
    upload = uploads.peek(names[1])
    picture, projected, line = sources[7:]
    assert np.array_equal(_pixels(picture), upload.picture) and np.array_equal(_pixels(projected), upload.projection)
    assert line.startswith(f"**PSNR {upload.psnr:.1f} dB**")
    # The page asks for an edit with the gone upload (its picture still in place): one notice, the edit stays.
    with pytest.warns(UserWarning, match="no longer on the server"):
        assert app.edit_page(None, "single", "", *app.astuple(app.DEFAULT), "upload", names[0], "seed", "") == \
            (gr.skip(),) * 9
    assert client.predict(api_name="/models")[0] == "tiny"  # still up


def _bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    face = _face(3)
    good = _file(tmp_path, face, "good.png").read_bytes()
    half_alpha = np.dstack([face, np.full(face.shape[:2], 128, np.uint8)])
    one_hole = np.dstack([face, np.full(face.shape[:2], 255, np.uint8)])
    one_hole[0, 0, 3] = 0
    return {
        "text": (_file(tmp_path, b"hello, not a picture", "a.png"), "not a picture this app can read"),
        "truncated": (_file(tmp_path, good[: len(good) // 2], "b.png"), "damaged or truncated"),
        "grey": (_file(tmp_path, face[..., 0], "c.png"), "no colour channels"),
        "alpha": (_file(tmp_path, half_alpha, "d.png"), "alpha channel"),
        "a transparent pixel": (_file(tmp_path, one_hole, "e.png"), "alpha channel"),
        "grey and alpha": (_file(tmp_path, np.dstack([face[..., 0]] * 2), "f.png"), "alpha channel|no colour"),
        "tiny": (_file(tmp_path, face[:4], "g.png"), "at least 8 pixels"),
    }


def test_bad_pictures_are_refused_clearly_and_nothing_is_stored(app, client, uploads, tmp_path, monkeypatch):
    import localedit.projection as projection

    for what, (path, words) in _bad_files(tmp_path).items():
        with pytest.raises(gr.Error, match=words) as error:
            app.project("tiny", str(path))
        assert "object at 0x" not in error.value.message, what  # PIL's repr of its buffer is no message
        with pytest.warns(UserWarning, match=words):
            projected, line, name, box = app.project_page("tiny", {"path": str(path)})
        assert (projected, name, box) == (None, "", None), what  # the box is emptied: no broken picture on show
        assert line.startswith("**This picture cannot be used:**"), what
    with pytest.raises(Exception, match="damaged or truncated"):
        client.predict("tiny", handle_file(str(_bad_files(tmp_path)["truncated"][0])), api_name="/project")
    good = _file(tmp_path, _face(3), "h.png")
    monkeypatch.setattr(projection, "MAX_PIXELS", 100)  # a huge picture, refused before it is decoded
    with pytest.raises(gr.Error, match="over 0 megapixels; scale it down first"):
        app.project("tiny", str(good))
    monkeypatch.setattr(projection, "MAX_BYTES", 100)  # a file too large to read at all
    with pytest.raises(gr.Error, match="pictures up to 0 MB are read"):
        app.project("tiny", str(good))
    monkeypatch.undo()
    for missing in (None, "", str(tmp_path / "gone.png"), 3):
        with pytest.raises(gr.Error, match="no picture was given|the uploaded file is gone"):
            app.project("tiny", missing)
    with pytest.raises(gr.Error, match="unknown model"):
        app.project("../tiny", str(good))
    assert len(uploads) == 0
    assert client.predict("tiny", handle_file(str(good)), api_name="/project")[2] in uploads  # still up


def test_a_webcam_capture_an_opaque_rgba_png_is_its_rgb_picture(app, uploads, tmp_path):
    face = _face(4)
    rgb = app.project("tiny", str(_file(tmp_path, face, "rgb.png")))
    rgba = app.project("tiny", str(_file(tmp_path, np.dstack([face, np.full(face.shape[:2], 255, np.uint8)]),
                                         "webcam.png")))
    assert rgba[2] != rgb[2]  # other bytes, another upload ...
    assert uploads.peek(rgba[2]).latent == uploads.peek(rgb[2]).latent  # ... of the same picture


def test_the_page_projects_under_a_progress_bar_and_edits_when_ready(app, endpoints, uploads, tmp_path):
    path = _file(tmp_path, _face(5))
    calls = []
    projected, line, name, box = app.project_page("tiny", {"path": str(path), "orig_name": "me.png"},
                                                  progress=lambda value, desc=None, **_: calls.append((value, desc)))
    assert box == gr.skip()  # the picture stays in its box
    assert calls == [((step, DEFAULT.steps), "Projecting") for step in range(1, DEFAULT.steps + 1)]
    upload = uploads.peek(name)
    assert np.array_equal(_pixels(projected), upload.projection)
    assert line.startswith(f"**PSNR {upload.psnr:.1f} dB** against your picture's centre square at 32 px")
    assert "only what it can represent" in line and "cartoon face" in line
    assert "than edits of a seed" in line  # uploads edit less well than seeds (issue 13's editability), said plainly
    assert app.project_page("tiny", None) == (None, "", "", gr.skip())  # cleared
    # The single edit's listener: an upload source waits for its projection, then is edited like a seed.
    controls = list(app.astuple(app.DEFAULT))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # waiting is quiet: no notice
        assert app.edit_page(None, "single", "", *controls, "upload", "", "seed", "") == (gr.skip(),) * 9
    made = app.edit_page(None, "single", "", *controls, "upload", name, "seed", name)
    assert f"target={name}&reference={app.DEFAULT.reference}&" in made[5] and made[8] == made[5]
    assert app.edit_page(None, "single", made[5], *controls, "upload", name, "seed", name) == (gr.skip(),) * 9
    seed = app.edit_page(None, "single", made[5], *controls, "seed", name, "seed", "")  # back to the seed
    assert seed[5] == app.DEFAULT.query()
    # Another model: the upload waits quietly for its projection into that model.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert app.edit_page(None, "single", "", HUB_REPO, *controls[1:], "upload", name, "seed", "") == \
            (gr.skip(),) * 9
    again = app.project_page(HUB_REPO, {"path": str(path)})
    assert again[2] != name and uploads.peek(again[2]).model == HUB_REPO


def test_links_name_uploads_and_read_back(app, endpoints, uploads, tmp_path):
    name = app.project("tiny", str(_file(tmp_path, _face(6))))[2]
    controls = share.Controls("tiny", name, 9, "mouth", 12.345, "global", 0.2, 0.5, 0.6)
    assert f"?model=tiny&target={name}&reference=9&" in controls.query()
    assert endpoints.read_link(share.query_of(controls.query())) == (controls, None, [])
    single, composite, sources = _restore_all(app, share.query_of(controls.query()))
    assert single[1] == gr.skip() and single[-1] == controls.query() and not single[10].visible
    assert sources[:2] == ["upload", name] and sources[5:] == [gr.skip()] * 5
    for value, words in (("upload:xyz", "target 'upload:xyz' is not an upload's name"),
                         ("upload:" + "0" * 32, "is no longer on the server"), ("upload:", "not an upload's name")):
        parsed, notices = share.parse_link({"target": value}, app.MODELS.names, app.MODELS.editor, (4, 2),
                                           endpoints.UPLOADS.get)
        assert parsed.target == 4 and len(notices) == 1 and words in notices[0] and "using seed 4" in notices[0]
    _, notices = share.parse_link({"target": name}, ["tiny"], app.MODELS.editor)  # a server without uploads
    assert notices == [f"target {name}: this server takes no uploads; using seed 0"]
    # A composite's target is a seed: a composite link with an upload target keeps the upload for the single edit.
    single, composite, notices = endpoints.read_link({"model": "tiny", "target": name, "composite": "mouth:3"})
    assert single.target == name and composite.target == endpoints.DEFAULT_SEEDS[0]
    assert notices == [f"a composite's target is a seed (uploads are for the single edit); using "
                       f"{endpoints.DEFAULT_SEEDS[0]}"]
    with pytest.raises(gr.Error, match="target seed must be a whole number"):
        app.composite("tiny", name, "eyes=1")


def test_encoder_and_judge_load_on_first_use_per_model(tiny_generator, tiny_catalog, tmp_path):
    uploads = sys.modules["app_uploads"]
    folder = tmp_path / "assets" / "enc"
    from localedit.hub import save_catalog, save_generator

    save_generator(folder, tiny_generator.config, tiny_generator.state_dict())
    save_catalog(folder, tiny_catalog)
    save_encoder(folder, Encoder(EncoderConfig.for_generator(tiny_generator, channels=(8, 8, 8), head=8)), {})
    models = share.Models({"enc": str(folder)})
    projector = uploads.Projector(models, uploads.Uploads(), ROOT / "assets" / "judge")
    assert projector._encoders == {} and projector._judge == []
    encoder, judge = projector.tools("enc")
    assert isinstance(encoder, Encoder) and isinstance(judge, Judge)
    assert projector.tools("enc") == (encoder, judge)  # loaded once
    upload = projector.project("enc", _file(tmp_path, _face(7)))
    assert upload.model == "enc" and upload.projection.shape == (32, 32, 3)
    without = uploads.Projector(models, uploads.Uploads(), tmp_path / "no-judge")
    assert without.tools("enc")[1] is None  # no judge: the pixel loss alone


def test_the_upload_controls_are_wired(app):
    """Each source's picture is projected when uploaded, cleared, or the model changes, in its own queue, one at a
    time, always the last; then the single edit is asked for. /project is the API's."""
    for source in (app.target_source, app.reference_source):
        fns = [f for f in app.demo.fns.values() if source["name"] in f.outputs]
        projecting = [f for f in fns if f.fn is app.project_page]
        assert {t[1] for f in projecting for t in f.targets} == {"upload", "clear", "input"}
        assert all(f.trigger_mode == "always_last" and f.concurrency_id == "projection" for f in projecting)
    api = [f for f in app.demo.fns.values() if f.api_name == "project"]
    assert len(api) == 1 and api[0].fn is app.project and not api[0].targets
    assert app.target_source["file"].sources == ["upload", "webcam"]
