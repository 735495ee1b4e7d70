"""The "Build a catalog" tab in-process (app_builder.py), on test_app.py's throwaway assets: a tiny served model and
a bare generator folder. The same arguments build the same catalog bytes as `python -m localedit catalog`; naming,
trying, saving and pushing go through the library's functions; every bad input is a message and changes nothing.
The browser walk through the tab is in test_app_builder_browser.py."""

import json
import shutil
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import numpy as np
import pytest
import test_app
from PIL import Image
from test_app import HUB_REPO, MISSING_REPO

from localedit import Editor, load_model
from localedit.__main__ import main as cli
from localedit.hub import CATALOG_META_FILE, CATALOG_TENSORS_FILE, CONFIG_FILE, WEIGHTS_FILE
from localedit.share import parse_link, query_of

app, endpoints = test_app.app, test_app.endpoints  # test_app.py's fixtures, for this module's import of the app
pytestmark = [pytest.mark.filterwarnings("ignore:.*no_silent_downcasting"),
              pytest.mark.filterwarnings("ignore:The copy keyword is deprecated")]
OWNER, TOKEN, RIVAL_TOKEN = "builder-org", "hf_builder_write", "hf_rival_write"
ARGS = ("convs.3", 5, 9, 3, 0.6)  # layer, K, samples, seed, ψ: the tiny model's 16×16 layer


@pytest.fixture(scope="module")
def builder(app):
    return sys.modules["app_builder"]


@pytest.fixture(scope="module")
def publisher(app):
    return sys.modules["app_builder_save"]


@pytest.fixture(scope="module")
def tuner(app):
    return sys.modules["app_builder_tune"]


class Progress:
    """Stands in for gr.Progress: records every ((done, total), desc) call."""

    def __init__(self, then=None):
        self.calls, self.then = [], then

    def __call__(self, fraction, desc=None):
        self.calls.append((fraction, desc))
        if self.then is not None:
            self.then()


def _request(session: str = "s") -> SimpleNamespace:
    return SimpleNamespace(session_hash=session)


def _built(builder, choice: str = "uncatalogued"):
    out = builder.build(choice, *ARGS, _request(), progress=Progress())
    assert out[-1].startswith("**Built**")
    return out[0]


def _named(builder, draft, parts: dict[str, list[int]]):
    for name, clusters in parts.items():
        draft = builder.name_part(draft, name, clusters, "", 12.5, 0.05, False, 1.0, 1.0, 0.0)[0]
    return draft


def test_it_offers_the_served_models_and_the_generators_without_a_catalog(builder, app):
    assert list(builder.SOURCES) == ["tiny", HUB_REPO, MISSING_REPO, "uncatalogued"]
    assert builder.SOURCES["uncatalogued"].endswith("uncatalogued")
    assert "judge" not in builder.SOURCES  # a folder without a generator is no model
    served = builder.open_draft("tiny")  # a served model opens with its own catalog, to rename or redo
    assert served[0].catalog.parts.keys() == app.MODELS.editor("tiny").catalog.parts.keys()
    bare = builder.open_draft("uncatalogued")
    assert bare[0].catalog is None and "no catalog yet" in bare[len(builder.VIEWS) - 1]
    assert bare[len(builder.VIEWS)].value == "convs.3"  # its first 16 px layer: a 32 px model's largest below 32


def test_the_app_builds_the_cli_catalog_byte_for_byte(builder, publisher, tmp_path):
    """One code path: the tab's build of the same arguments writes the same catalog.safetensors as the CLI's, and
    the same catalog.json but for the seconds it took; its progress covers the samples, k-means and M."""
    bare = Path(builder.SOURCES["uncatalogued"])
    folder = tmp_path / "cli"
    shutil.copytree(bare, folder)
    layer, k, samples, seed, psi = ARGS
    cli(["catalog", str(folder), "--layer", layer, "--clusters", str(k), "--samples", str(samples), "--seed",
         str(seed), "--truncation", str(psi)])
    progress = Progress()
    draft = builder.build("uncatalogued", *ARGS, _request(), progress=progress)[0]
    draft = _named(builder, draft, {"eyes": [0]})
    files = {Path(f).name: Path(f) for f in publisher.catalog_files(draft)}
    assert files[CATALOG_TENSORS_FILE].read_bytes() == (folder / CATALOG_TENSORS_FILE).read_bytes()
    ours, theirs = (json.loads(p.read_text()) for p in (files[CATALOG_META_FILE], folder / CATALOG_META_FILE))
    assert ours.pop("timings").keys() == theirs.pop("timings").keys()
    assert ours.pop("parts")["eyes"]["clusters"] == [0] and theirs.pop("parts") == {}
    assert ours == theirs
    stages = [desc for _, desc in progress.calls]
    assert [s for s in builder.STAGES.values() if s in stages] == list(builder.STAGES.values())
    assert progress.calls[0] == ((samples, samples), builder.STAGES["samples"])  # one batch of 16 holds all 9


@pytest.mark.parametrize(("args", "says"), [
    (("convs.3", 257, 9, 0, 0.7), "between 1 and the 16×16 = 256 pixels"),
    (("convs.3", 0, 9, 0, 0.7), "K must be a whole number ≥ 1, got 0"),
    (("convs.3", 5, 0, 0, 0.7), "number of samples must be a whole number ≥ 1, got 0"),
    (("convs.3", 5, None, 0, 0.7), "number of samples"),
    (("convs.99", 5, 9, 0, 0.7), "pick a layer of this generator"),
    (("convs.3", 2.5, 9, 0, 0.7), "K must be a whole number"),
    (("convs.3", 5, 9, -1, 0.7), "seed"),
    (("convs.3", 5, 9, 0, 1.5), "truncation"),
    (("convs.3", 5, 10**6, 0, 0.7), "at most 87381 samples ($LOCALEDIT_BUILD_MEMORY_MB)"),  # 16×16×24 floats each
])
def test_a_bad_build_is_a_message(builder, args, says):
    with pytest.raises(gr.Error, match=None) as error:
        builder.build("uncatalogued", *args, _request(), progress=Progress())
    assert says in error.value.message


def test_a_generator_the_operator_did_not_allow_is_refused(builder, monkeypatch, tmp_path):
    monkeypatch.setattr(builder, "OPEN", False)
    with pytest.raises(gr.Error) as error:
        builder.build(str(tmp_path), *ARGS, _request(), progress=Progress())
    assert "LOCALEDIT_BUILD_ANY=1" in error.value.message
    monkeypatch.setattr(builder, "OPEN", True)
    with pytest.raises(gr.Error) as error:
        builder.build(str(tmp_path / "nowhere"), *ARGS, _request(), progress=Progress())
    assert "no such model folder" in error.value.message


def test_a_cancelled_build_changes_nothing(builder):
    request = _request("cancelling")
    progress = Progress(then=lambda: builder.cancel_build(request))  # Cancel clicked while the samples render
    out = builder.build("uncatalogued", *ARGS, request, progress=progress)
    assert "Cancelled" in out[-1] and all(isinstance(v, dict) and v.get("__type__") == "update" for v in out[:-1])
    assert len(progress.calls) == 1  # it stopped at the next step
    assert "Cancelled" in builder.cancel_build(request)  # none running (one queued is dropped by the page)
    assert _built(builder).catalog is not None  # and the next build runs


def test_naming_trying_and_removing(builder):
    draft = _built(builder)
    picked = builder.pick_name(draft, "eyes")
    assert picked[0]["__type__"] == "update" and picked[1] == "#1f77b4"  # a new name: its colour, clusters stay
    out = builder.name_part(draft, "eyes", [1, 0], "#123456", 12.5, 0.05, True, 1.0, 0.5, 0.0)
    draft = out[0]
    eyes = draft.catalog.parts["eyes"]
    assert eyes.clusters == (0, 1) and eyes.color == "#123456" and eyes.torgb and eyes.threshold == 0.05
    assert dict(eyes.epsilon_profile) == {"coarse": 1.0, "middle": 0.5, "fine": 0.0}
    assert builder.pick_name(draft, "eyes")[:3] == ([0, 1], "#123456", 12.5)
    tiles = out[2]
    assert [caption for _, caption in tiles][:3] == ["0  eyes", "1  eyes", "2"]
    draft = builder.name_part(draft, "mouth", [1], "", 10.0, 0.1, False, 1.0, 1.0, 1.0)
    assert "1 is in eyes and mouth" in draft[-1]
    draft = draft[0]
    edited, target, reference, stats = builder.try_edit(draft, 4, 2, "eyes", 12.5)
    result = draft.editor.edit(4, 2, "eyes", epsilon=12.5)
    assert np.array_equal(np.asarray(Image.open(edited).convert("RGB")), result.edited)
    assert "In-MSE" in stats
    draft = builder.remove_part(draft, "mouth")[0]
    assert list(draft.catalog.parts) == ["eyes"]
    for nothing in (None, "mouth"):
        with pytest.raises(gr.Error, match="pick the part to remove"):
            builder.remove_part(draft, nothing)
    assert builder.try_edit(draft, 4, 2, "mouth", 1.0)[3] == "Name a part to try an edit."


@pytest.mark.parametrize(("args", "says"), [
    (("", [0], "", 1.0, 0.1, False, 1, 1, 1), "type or pick a part name"),
    (("eyes", [], "", 1.0, 0.1, False, 1, 1, 1), "pick eyes's clusters first"),
    (("two words", [0], "", 1.0, 0.1, False, 1, 1, 1), "part name must be letters"),
    (("eyes", [0], "red", 1.0, 0.1, False, 1, 1, 1), "color must look like"),
    (("eyes", [0], "", -1.0, 0.1, False, 1, 1, 1), "epsilon"),
])
def test_a_bad_name_is_a_message(builder, args, says):
    draft = _built(builder)
    with pytest.raises(gr.Error) as error:
        builder.name_part(draft, *args)
    assert says in error.value.message
    with pytest.raises(gr.Error, match=None) as error:
        builder.name_part(None, "eyes", [0], "", 1.0, 0.1, False, 1, 1, 1)
    assert "build a catalog first" in error.value.message


def test_nothing_is_saved_without_a_named_part(builder, publisher):
    draft = _built(builder)
    for save in (publisher.catalog_files, publisher.save_into_folder,
                 lambda d: publisher.publish(d, f"{OWNER}/x", TOKEN, "# card", 0, 1, "eyes", 1.0)):
        with pytest.raises(gr.Error) as error:
            save(draft)
        assert "name at least one part" in error.value.message
        with pytest.raises(gr.Error, match=None):
            save(None)


def test_writing_into_the_model_folder(builder, publisher, tmp_path):
    folder = tmp_path / "mine"
    shutil.copytree(builder.SOURCES["uncatalogued"], folder)
    draft = builder.build(str(folder), *ARGS, _request(), progress=Progress())[0]  # any folder: a local run
    draft = _named(builder, draft, {"eyes": [0, 2]})
    assert str(folder) in publisher.save_into_folder(draft)
    assert load_model(folder).catalog.parts["eyes"].clusters == (0, 2)
    served = builder.open_draft(HUB_REPO)[0]  # a Hub model's snapshot never changes
    with pytest.raises(gr.Error, match="Hub model"):
        publisher.save_into_folder(_named(builder, served, {"eyes": [0]}))
    with pytest.raises(gr.Error, match="a model this app serves"):  # nor is a served folder rewritten
        publisher.save_into_folder(_named(builder, builder.open_draft("tiny")[0], {"eyes": [0]}))


@pytest.fixture
def owned(fake_hub, monkeypatch, tmp_path):
    """OWNER's repos on the fake Hub take TOKEN only; no token reaches huggingface_hub but the one passed."""
    import huggingface_hub.constants

    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    fake_hub.tokens.update({TOKEN: OWNER, RIVAL_TOKEN: "rival"})
    try:
        yield fake_hub
    finally:
        fake_hub.tokens.pop(TOKEN, None)
        fake_hub.tokens.pop(RIVAL_TOKEN, None)


def test_push_with_the_users_token_pins_a_commit_that_reproduces_the_edit(builder, publisher, owned):
    draft = _named(builder, _built(builder), {"eyes": [0], "mouth": [1, 3]})
    repo = f"{OWNER}/built-in-the-app"
    before = len(owned.requests)
    for token, says in (("", "pushing needs your Hub token"), ("  ", "pushing needs your Hub token")):
        with pytest.raises(gr.Error) as error:
            publisher.publish(draft, repo, token, "# card", 4, 2, "mouth", 10.0)
        assert says in error.value.message
    assert len(owned.requests) == before  # refused before any request: the server's own token is never used
    with pytest.raises(gr.Error) as error:
        publisher.publish(draft, repo, RIVAL_TOKEN, "# card", 4, 2, "mouth", 10.0)
    assert f"cannot write to {repo}" in error.value.message and repo not in owned.repos
    with pytest.raises(gr.Error, match=None) as error:
        publisher.publish(draft, repo, TOKEN, "  ", 4, 2, "mouth", 10.0)
    assert "model card" in error.value.message
    with pytest.raises(gr.Error, match="target"):  # the edit's link is checked first: no push, then "failed"
        publisher.publish(draft, repo, TOKEN, "# card", -4, 2, "mouth", 10.0)
    assert repo not in owned.repos

    said = publisher.publish(draft, repo, TOKEN, "# tiny, from the tests", 4, 2, "mouth", 10.0)
    commit = owned.repos[repo].refs["main"]
    assert f"LOCALEDIT_MODELS={repo}@{commit}" in said
    files = owned.repos[repo].commits[commit]
    assert {CONFIG_FILE, WEIGHTS_FILE, CATALOG_META_FILE, CATALOG_TENSORS_FILE, "README.md"} <= files.keys()
    card = files["README.md"].decode()
    assert card.startswith("# tiny, from the tests") and "--layer convs.3 --clusters 5 --samples 9" in card
    model = load_model(f"{repo}@{commit}")
    assert model.catalog.parts == draft.catalog.parts
    link = said.split("open [this edit](")[1].split(")")[0]
    served = Editor(model.generator, model.catalog)
    controls, notices = parse_link(query_of(link), [f"{repo}@{commit}"], lambda key: served)
    assert not notices and (controls.model, controls.target, controls.reference, controls.part) == (
        f"{repo}@{commit}", 4, 2, "mouth")
    # The link's edit, on the pushed model, is the one tried in the tab: the same pixels.
    tried = builder.try_edit(draft, 4, 2, "mouth", 10.0)[0]
    again = served.run(served.resolve(controls.target, controls.reference, controls.part, controls.epsilon,
                                      controls.threshold, controls.method, controls.lam, controls.truncation))
    assert np.array_equal(np.asarray(Image.open(tried).convert("RGB")), again.edited)


def test_tuning_needs_a_named_part_and_the_judge(builder, tuner):
    """test_app.py's assets/judge has no weights: tuning says to set the settings by hand (the tuning itself is
    `localedit.tune`'s, tested in test_evaluate.py)."""
    draft = _named(builder, _built(builder), {"eyes": [0]})
    for name, says in (("mouth", "name the part first"), ("eyes", "set eyes's settings by hand")):
        with pytest.raises(gr.Error) as error:
            tuner.tune_part(draft, name, progress=Progress())
        assert says in error.value.message


def test_tuned_settings_land_on_the_catalog_as_it_is_by_then(builder, tuner):
    """Tune measures the catalog of its click and takes a minute; parts named meanwhile stay, and a part whose
    clusters changed meanwhile is not given settings chosen for others."""
    draft = _named(builder, _built(builder), {"eyes": [0]})
    chosen = replace(draft.catalog.parts["eyes"], threshold=0.2, torgb=True, epsilon=3.0)  # as tune_part gives
    later = _named(builder, draft, {"mouth": [1]})  # named while it tuned
    out = tuner.apply_tuned(later, chosen)
    catalog = out[0].catalog
    assert list(catalog.parts) == ["eyes", "mouth"] and catalog.parts["eyes"] == chosen
    assert out[len(builder.VIEWS):len(builder.VIEWS) + 4] == (chosen.color, 3.0, 0.2, True)
    assert out[3].value == [0] and out[5].value == "eyes"  # its clusters and name stay in the boxes
    moved = _named(builder, draft, {"eyes": [2]})
    with pytest.raises(gr.Error, match="eyes was renamed or removed while it was tuned"):
        tuner.apply_tuned(moved, chosen)


def test_a_refused_value_is_a_warning_and_leaves_the_page(monkeypatch):
    from app_support import warned

    said = []
    monkeypatch.setattr(gr, "Warning", said.append)

    def refuse(x):
        raise gr.Error(f"no {x}")

    assert warned(refuse, 3)("eyes") == (gr.skip(),) * 3 and warned(refuse, 1)("mouth") == gr.skip()
    assert said == ["no eyes", "no mouth"]
    assert warned(lambda x: x + 1, 1)(1) == 2


def test_requests_run_on_the_edits_threads_after_a_build_raised_them(app):
    """A worker thread that first ran torch while a build had raised the count keeps that count: every synthesis
    endpoint (app_endpoints.gpu) puts its own back first."""
    import threading

    import torch

    from app_support import EDIT_THREADS, edit_threads

    seen = {}

    def worker():
        torch.set_num_threads(EDIT_THREADS + 1)  # as a worker that started during a build
        seen["before"] = torch.get_num_threads()
        seen["inside"] = edit_threads(torch.get_num_threads)()

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen == {"before": EDIT_THREADS + 1, "inside": EDIT_THREADS}
