"""The Gradio demo in-process, on a tiny random model: the allowlist, every endpoint, links, errors and fuzz.

The app is imported with LOCALEDIT_ASSETS pointing at a throwaway assets folder (one real model, and two folders
that are not models) and LOCALEDIT_MODELS naming two Hub repos on the fake Hub (one present, one missing); its
fixtures serve test_app_uploads.py too.
"""

import importlib
import io
import itertools
import math
import os
import random
import re
import sys
from dataclasses import replace
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from gradio_client import Client
from PIL import Image

from localedit import Editor, share
from localedit.hub import save_catalog, save_generator

ROOT = Path(__file__).resolve().parents[1]
# Gradio's queue statistics call pandas in ways pandas 3 deprecates; not ours to fix.
pytestmark = [pytest.mark.filterwarnings("ignore:.*no_silent_downcasting"),
              pytest.mark.filterwarnings("ignore:The copy keyword is deprecated")]
HUB_REPO, MISSING_REPO = "acme/app-hub", "acme/app-missing"
APP_MODULES = ("app", "app_endpoints", "app_controls", "app_composite", "app_support", "app_uploads", "app_builder",
               "app_builder_page", "app_builder_save",
               "app_builder_tune")
UPLOADS = 3  # $LOCALEDIT_UPLOADS: the fourth picture evicts the first


def _model_folder(folder: Path, generator, catalog) -> Path:
    save_generator(folder, generator.config, generator.state_dict(), card="# tiny\n")
    save_catalog(folder, catalog)
    return folder


@pytest.fixture(scope="module")
def app(tmp_path_factory, tiny_generator, tiny_catalog, fake_hub):
    assets = tmp_path_factory.mktemp("assets")
    _model_folder(assets / "tiny", tiny_generator, replace(tiny_catalog, examples={"eyes": (4, 2)}))
    (assets / "judge").mkdir()  # like assets/judge: a config but no generator
    (assets / "judge" / "config.json").write_text("{}")
    save_generator(assets / "uncatalogued", tiny_generator.config, tiny_generator.state_dict())
    hub_folder = _model_folder(tmp_path_factory.mktemp("hub") / "m", tiny_generator,
                               tiny_catalog.with_parts({"hair": [3]}))
    fake_hub.commit(HUB_REPO, {p.name: p.read_bytes() for p in hub_folder.iterdir()})
    saved = {k: os.environ.get(k) for k in ("LOCALEDIT_ASSETS", "LOCALEDIT_MODELS", "LOCALEDIT_UPLOADS")}
    os.environ.update(LOCALEDIT_ASSETS=str(assets), LOCALEDIT_MODELS=f"{HUB_REPO}, {MISSING_REPO}",
                      LOCALEDIT_UPLOADS=str(UPLOADS))
    argv, sys.argv = sys.argv, ["app.py", "--not-an-option"]  # nothing is parsed at import
    sys.path.insert(0, str(ROOT))
    for name in APP_MODULES:  # each reads the environment above at import
        sys.modules.pop(name, None)
    try:
        yield importlib.import_module("app")
    finally:
        sys.argv = argv
        sys.path.remove(str(ROOT))
        for name in APP_MODULES:
            sys.modules.pop(name, None)
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)


@pytest.fixture(scope="module")
def endpoints(app):
    """app_endpoints, as the app imported it: the functions behind the endpoints, and the page's two views."""
    return sys.modules["app_endpoints"]


def _restore(app, query: dict) -> tuple[list, list]:
    """What a page load with this link's query sets: the single edit's updates, and the composite tab's."""
    return _restore_all(app, query)[:2]


def _restore_all(app, query: dict) -> tuple[list, list, list]:
    """The single edit's updates, the composite tab's, and the target's and the reference's upload updates."""
    out = app.restore_modes(gr.Request(query_params=query))
    controls = sys.modules["app_controls"]
    n, m = controls.SINGLE_RESTORE, controls.SINGLE_RESTORE + controls.COMPOSITE_RESTORE
    assert len(out) == m + 2 * controls.SOURCE_UPDATES
    return out[:n], out[n:m], out[m:]


@pytest.fixture(scope="module")
def client(app):
    _, url, _ = app.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
    try:
        yield Client(url, verbose=False)
    finally:
        app.demo.close()


def _pixels(path: str) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


# --- the allowlist ------------------------------------------------------------------------------------------


def test_allowlist_is_model_folders_with_catalogs_then_hub_repos(app):
    assert app.MODELS.names == ["tiny", HUB_REPO, MISSING_REPO]
    assert app.DEFAULT.model == "tiny" and app.DEFAULT.part == "eyes" and app.DEFAULT.epsilon == 30.0
    assert not app.MODELS._editors.keys() - {"tiny"}  # Hub models wait for their first use


def test_models_from_env_refuses_paths_and_fails_clearly_without_models(app, tmp_path):
    with pytest.raises(RuntimeError, match="no models to serve.*LOCALEDIT_MODELS"):
        share.Models.from_env({"LOCALEDIT_ASSETS": str(tmp_path)})
    for bad in ("../etc", "/abs/path", "owner/name/extra", "owner/..", "./x", "~/x"):
        with pytest.raises(ValueError, match="not a Hub repo id"):
            share.Models.from_env({"LOCALEDIT_ASSETS": str(tmp_path), "LOCALEDIT_MODELS": bad})
    models = share.Models.from_env({"LOCALEDIT_ASSETS": str(tmp_path), "LOCALEDIT_MODELS": " a/b@v1.0 ,, c/d "})
    assert models.names == ["a/b@v1.0", "c/d"]
    for name in ("../tiny", "tiny/..", str(tmp_path), None, ["a/b@v1.0"]):
        with pytest.raises(ValueError, match="unknown model"):
            models.editor(name)


# --- every endpoint through the client ------------------------------------------------------------------------


def test_every_endpoint(app, client, tiny_generator, tiny_catalog):
    api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert {"/edit", "/thumbnail", "/models", "/parts", "/restore"} <= set(api)
    assert client.predict(api_name="/models") == ["tiny", HUB_REPO, MISSING_REPO]
    parts = client.predict("tiny", api_name="/parts")
    assert [(p["name"], p["color"], p["epsilon"]) for p in parts] == [("eyes", "#1f77b4", 30.0),
                                                                     ("mouth", "#d62728", 10.0)]
    editor = Editor(tiny_generator, tiny_catalog)
    for p in parts:
        assert set(p) == {"name", "color", "clusters", "epsilon", "threshold", "epsilon_max", "threshold_max",
                          "torgb", "epsilon_profile"}
        assert p["epsilon_max"] == editor.epsilon_max(p["name"]) > 0
        assert p["threshold_max"] == editor.threshold_max(p["name"]) > p["threshold"]
        assert p["torgb"] is False and p["epsilon_profile"] == {"coarse": 1.0, "middle": 1.0, "fine": 1.0}

    expected = Editor(tiny_generator, tiny_catalog).edit(3, 7, "mouth", epsilon=12.5, truncation=0.6)
    edited, (target, edited_too), reference, diff, stats, query = client.predict(
        "tiny", 3, 7, "mouth", 12.5, "sequential", 0.1, 1.0, 0.6, api_name="/edit")
    # The exact pixels of the edit (the page enlarges them); the diff map comes upscaled, for a thin outline.
    assert np.array_equal(_pixels(edited), expected.edited) and np.array_equal(_pixels(edited_too), expected.edited)
    assert np.array_equal(_pixels(target), expected.target)
    assert np.array_equal(_pixels(reference), expected.reference)
    assert _pixels(diff).shape == (256, 256, 3)
    outlined = (_pixels(diff) == (0xd6, 0x27, 0x28)).all(-1)  # the part's outline, in the part's colour
    assert outlined.any() and not (outlined & ~expected.roi.repeat(8, 0).repeat(8, 1)).any()
    assert f"In-MSE** {expected.in_mse:.1f}" in stats and f"Out-MSE** {expected.out_mse:.1f}" in stats
    editable = sum(tiny_catalog.M[layer].shape[1] for layer in expected.changed)
    assert f"**channels changed** {sum(expected.changed.values())} of {editable} in " in stats
    assert query == "?model=tiny&target=3&reference=7&part=mouth&epsilon=12.5&method=sequential&threshold=0.1" \
                    "&lam=1&truncation=0.6"

    thumb = client.predict("tiny", 7, 0.6, api_name="/thumbnail")
    assert np.array_equal(_pixels(thumb), expected.reference)

    restored = client.predict(query, api_name="/restore")
    assert restored["query"] == query and restored["notices"] == []
    assert restored["controls"]["epsilon"] == 12.5 and restored["controls"]["part"] == "mouth"


def test_stats_say_when_an_edit_barely_shows(tiny_generator, tiny_catalog):
    from app_endpoints import stats_line

    editor = Editor(tiny_generator, tiny_catalog)
    result = editor.edit(3, 7, "mouth", epsilon=12.5, truncation=0.6)
    assert result.roi.any()
    for in_mse, barely in ((0.4, True), (24.9, True), (25.0, False), (300.0, False)):
        stats = stats_line(editor, replace(result, in_mse=in_mse))
        assert ("**barely visible**: under 5 ΔE" in stats) == barely, (in_mse, stats)
    # With no part on the target there is nothing to see, and the stats say that instead.
    empty = replace(result, in_mse=0.0, roi=np.zeros_like(result.roi))
    assert "barely" not in stats_line(editor, empty) and "empty ROI" in stats_line(editor, empty)


def test_defaults_fill_in_for_none(client):
    *_, query = client.predict("tiny", 1, 2, "mouth", None, "sequential", None, None, None, api_name="/edit")
    assert "epsilon=10&" in query and "threshold=0.1&" in query and query.endswith("truncation=0.7")


def test_hub_model_loads_on_first_use_once(app, client, fake_hub):
    assert HUB_REPO not in app.MODELS._editors
    assert [p["name"] for p in client.predict(HUB_REPO, api_name="/parts")] == ["eyes", "mouth", "hair"]
    requests = len(fake_hub.requests)
    *_, query = client.predict(HUB_REPO, 1, 2, "hair", 5.0, "sequential", 0.1, 1.0, 0.7, api_name="/edit")
    assert query.startswith(f"?model={HUB_REPO}&") and "part=hair" in query
    assert len(fake_hub.requests) == requests  # cached: one Editor per model
    with pytest.raises(Exception, match=f"no model repo {MISSING_REPO}"):
        client.predict(MISSING_REPO, api_name="/parts")


def test_library_value_errors_become_gradio_errors_with_the_same_message(app, tiny_generator, tiny_catalog):
    with pytest.raises(ValueError) as library:
        Editor(tiny_generator, tiny_catalog).edit(1, 2, "nose")
    with pytest.raises(gr.Error) as shown:
        app.edit("tiny", 1, 2, "nose")
    assert shown.value.message == str(library.value)
    for epsilon in (math.nan, math.inf, -1.0, 1e9):  # JSON cannot carry NaN: the client refuses before sending
        with pytest.raises(gr.Error, match="epsilon must be a number from 0 to 10000"):
            app.edit("tiny", 1, 2, "eyes", epsilon)


def test_same_edit_same_bytes_with_a_fresh_editor(app, client):
    args = ("tiny", 11, 12, "eyes", 17.25, "simultaneous", 0.1, 2.5, 0.8)
    first = [Path(p).read_bytes() for p in _files(client.predict(*args, api_name="/edit"))]
    del app.MODELS._editors["tiny"]  # as after a restart: cold caches, a model loaded again
    again = [Path(p).read_bytes() for p in _files(client.predict(*args, api_name="/edit"))]
    assert first == again


def _files(result) -> list[str]:
    edited, (target, edited_too), reference, diff, *_ = result
    return [edited, target, edited_too, reference, diff]


# --- links --------------------------------------------------------------------------------------------------


def test_link_round_trips_exactly(app):
    editors = {"tiny": app.MODELS.editor("tiny")}
    for controls in (app.DEFAULT,
                     share.Controls("tiny", 4_000_000_000, 0, "mouth", 12.345678901234567, "global", 0.0, 0.3, 1.0),
                     share.Controls("tiny", 9, 8, "eyes", 1e-7, "simultaneous", 0.99, 17.5, 0.05)):
        parsed, notices = share.parse_link(share.query_of(controls.query()), ["tiny"], editors.__getitem__)
        assert (parsed, notices) == (controls, [])
        assert share.query_of("https://x.hf.space/" + controls.query()) == share.query_of(controls.query())


def test_restore_page_from_the_request(app):
    query = {"model": "tiny", "target": "5", "reference": "9", "part": "mouth", "epsilon": "12.34",
             "method": "simultaneous", "threshold": "0.123", "lam": "2.5", "truncation": "0.6"}
    (model, target, reference, part, epsilon, method, threshold, lam, truncation, legend, notice, link), \
        composite = _restore(app, query)
    assert share.query_of(link) == query  # the address bar keeps the link until its edit arrives
    assert composite == [gr.skip()] * len(composite)  # a single edit's link on the default model: nothing to undo
    assert (model.value, target, reference, part.value, epsilon.value, method, threshold.value, lam.value,
            truncation) == ("tiny", 5, 9, "mouth", 12.34, "simultaneous", 0.123, 2.5, 0.6)
    editor = app.MODELS.editor("tiny")  # the sliders end where the part's ranges end, at the link's threshold
    assert epsilon.maximum == max(editor.epsilon_max("mouth", 0.123), 12.34)
    assert threshold.maximum == math.ceil(editor.threshold_max("mouth") * 100) / 100
    assert [value for _, value in part.choices] == ["eyes", "mouth"] and 'selected"><i style="background:#d62728' \
        in legend
    assert notice.visible is False

    (*_, notice, link), _ = _restore(app, {})  # a plain visit: defaults, no notice
    assert notice.visible is False and link == app.DEFAULT.query()
    with pytest.warns(UserWarning, match="could not be used"):
        (*out, notice, link), _ = _restore(app, {"model": "../../etc", "target": "-1", "keys": "x", "items": "y",
                                                 "epsilon": "nan"})
    assert out[0].value == "tiny" and out[1] == app.DEFAULT.target and out[4].value == app.DEFAULT.epsilon
    assert notice.visible is True and link == app.DEFAULT.query()
    for words in ("'../../etc' is not served here", "target seed must be a whole number", "got nan"):
        assert words in notice.value.replace("\\", "")  # as the page shows it: Markdown escapes removed
    assert "does not set" not in notice.value  # left-out values are no mistake


def test_page_load_reads_the_link_once(app, endpoints, monkeypatch):
    calls = []

    def read_link(query):
        calls.append(query)
        return endpoints.read_link(query)

    monkeypatch.setattr(sys.modules["app_controls"], "read_link", read_link)
    single, composite = _restore(app, {"model": HUB_REPO, "target": "3", "composite": "hair:7"})
    assert len(calls) == 1
    assert single[0].value == HUB_REPO and composite[1] == "composite" and composite[3] == 3


def test_a_short_link_takes_defaults_quietly_and_edits_something(app, endpoints):
    default_reference = endpoints.DEFAULT_SEEDS[1]  # a link whose target is the default reference
    controls, notices = share.parse_link({"model": "tiny", "target": str(default_reference), "part": "mouth"},
                                         app.MODELS.names, app.MODELS.editor, endpoints.DEFAULT_SEEDS)
    assert notices == [] and controls.target == default_reference and controls.reference != controls.target
    editor = app.MODELS.editor("tiny")
    result = editor.edit(controls.target, controls.reference, "mouth", method="global", lam=1.0)
    assert sum(result.changed.values()) > 0
    same = editor.edit(3, 3, "mouth", method="global", lam=1.0)  # every channel picked, none can move
    assert sum(same.changed.values()) == 0 and np.array_equal(same.edited, same.target)


def test_a_link_cannot_put_markdown_or_html_on_the_page(app):
    with pytest.warns(UserWarning):
        (*_, notice, _), _ = _restore(app, {
            "part": "[log in here](https://evil.example)", "model": "<img src=x onerror=alert(1)>",
            "method": "![x](https://evil.example/t.png) $x$ `code`"})
    assert "[log in here](" not in notice.value and "<img" not in notice.value and "![x](" not in notice.value
    assert "\\[log in here\\]\\(https://evil\\.example\\)" in notice.value and "&lt;img" in notice.value


def test_a_link_to_an_unloadable_hub_model_falls_back(app):
    controls, notices = share.parse_link({"model": MISSING_REPO, "part": "eyes"}, app.MODELS.names, app.MODELS.editor)
    assert controls.model == "tiny" and f"model {MISSING_REPO} cannot be loaded" in notices[0]


# --- fuzz -----------------------------------------------------------------------------------------------------

BAD_SEEDS = ["-1", str(2**64), "1.5", "abc", "", " ", "0x10", "1e3", "+1", "١٢x", "9" * 30, "None", "[1]", "upload:",
             "upload:xyz", "upload:" + "0" * 32, "upload:" + "a" * 33, "UPLOAD:" + "f" * 31 + "g"]
BAD_NUMBERS = ["nan", "NaN", "-1", "1e9", "inf", "-inf", "abc", "", "1e400", "0x1p3", "1,5", "9" * 50, "--1"]
BAD_PARTS = ["nose", "", "EYES", "../eyes", "eyes;drop", "eyes\x00", "mouth ", "é" * 500]
BAD_MODELS = ["../../etc", "/etc/passwd", "tiny/..", "assets/tiny", "./tiny", "TINY", "acme/other", "",
              "https://evil.example/x", "tiny\x00", "acme/app-hub/../x", "~/tiny"]
BAD_METHODS = ["", "SEQUENTIAL", "global ", "greedy", "none"]


def _bad_links(n: int) -> list[dict[str, object]]:
    rng = random.Random(0)
    fields = {"target": BAD_SEEDS, "reference": BAD_SEEDS, "epsilon": BAD_NUMBERS, "threshold": BAD_NUMBERS + ["1"],
              "lam": BAD_NUMBERS, "truncation": BAD_NUMBERS + ["1.5"], "part": BAD_PARTS, "model": BAD_MODELS,
              "method": BAD_METHODS}
    links = [{key: value} for key, values in fields.items() for value in values]  # each bad value alone
    while len(links) < n:  # and mixed: some bad values among good ones, odd keys, non-text values
        link = {k: v for k, v in app_link_good().items() if rng.random() < 0.5}
        for key in rng.sample(sorted(fields), rng.randint(1, 4)):
            link[key] = rng.choice(fields[key])
        if rng.random() < 0.2:
            link[rng.choice(["items", "keys", "__theme", "view", "x" * 100])] = "1"
        if rng.random() < 0.1:
            link[rng.choice(sorted(fields))] = rng.choice([["1"], {"a": 1}, 2.5j])
        links.append(link)
    return links


def app_link_good() -> dict[str, str]:
    return {"model": "tiny", "target": "3", "reference": "4", "part": "mouth", "epsilon": "9", "method": "sequential",
            "threshold": "0.2", "lam": "1", "truncation": "0.5"}


def test_fuzz_links_fall_back_with_a_notice_and_never_leave_the_allowlist(app):
    asked = []

    def editor_of(name):
        asked.append(name)
        return app.MODELS.editor(name)

    links = _bad_links(400)
    assert len(links) >= 200
    for link in links:
        controls, notices = share.parse_link(link, app.MODELS.names, editor_of, (0, 1))
        assert controls.model in app.MODELS.names
        editor = app.MODELS.editor(controls.model)
        params = editor.resolve(controls.target, controls.reference, controls.part, controls.epsilon,
                                controls.threshold, controls.method, controls.lam, controls.truncation)
        assert (params.epsilon, params.threshold, params.lam, params.truncation) == \
            (controls.epsilon, controls.threshold, controls.lam, controls.truncation)
        assert notices, link  # every link here has a bad value
        assert all(len(n) < 600 for n in notices)
        for key, value in link.items():  # a bad value never comes through
            if key in share.LINK_KEYS and value in BAD_MODELS + BAD_PARTS + BAD_METHODS:
                assert getattr(controls, key) != value
    assert set(asked) <= set(app.MODELS.names)


def test_fuzz_the_api_then_it_still_answers(app, client):
    good = ["tiny", 1, 2, "eyes", 30.0, "sequential", 0.1, 1.0, 0.7]
    bad = {0: BAD_MODELS + [None, 3, ["tiny"]], 1: [-1, 2**64, 1.5, "abc", None, True, [1], {"a": 1}, "1e3"],
           2: [-1, 2**64, 1.5, "abc", False], 3: BAD_PARTS[:6] + [None, 3, ["eyes"]],
           4: [-1, 1e9, 1e4 + 1, "abc", [1], True], 5: BAD_METHODS + [None, 1], 6: [-0.1, 0.995, 1, "x"],
           7: [-1, 1e4, "x"], 8: [-0.01, 1.01, 2, "x"]}
    calls = [good[:i] + [value] + good[i + 1:] for i, values in bad.items() for value in values]
    calls += [good[:5] + ["global", 0.1, 1.5, 0.7], good[:5] + ["global", 0.1, -0.5, 0.7]]
    calls += [[bad[0][i % len(bad[0])], bad[1][i % len(bad[1])], 2, BAD_PARTS[i % len(BAD_PARTS)], *good[4:]]
              for i in range(48)]  # several things wrong at once
    assert len(calls) >= 100
    for args in calls:
        with pytest.raises(Exception) as error:
            client.predict(*args, api_name="/edit")
        message = str(error.value)
        assert any(word in message for word in ("model", "seed", "part", "epsilon", "method", "threshold", "lambda",
                                                "truncation")), (args, message)
        assert "Traceback" not in message and len(message) < 600
    other = [(("tiny", -1, 0.7), "/thumbnail"), (("tiny", 1, 5), "/thumbnail"), (("../x", 1, 0.7), "/thumbnail"),
             (("../x",), "/parts"), (("",), "/parts"), (("?" + "a=1&" * 100,), "/restore"), (("x" * 5000,), "/restore")]
    for args, api_name in other:
        with pytest.raises(Exception, match="seed|truncation|model|link|fields"):
            client.predict(*args, api_name=api_name)
    for link in itertools.islice(_bad_links(300), 0, 300, 10):  # and some links through the API
        from urllib.parse import urlencode

        result = client.predict("?" + urlencode({k: str(v) for k, v in link.items()}), api_name="/restore")
        assert result["controls"]["model"] in app.MODELS.names and result["notices"]
    *_, query = client.predict(*good, api_name="/edit")
    assert query.startswith("?model=tiny&target=1&reference=2&part=eyes")


# --- the page's callbacks -------------------------------------------------------------------------------------


def test_callbacks_of_the_controls(app):
    part, epsilon, method, threshold, lam, truncation, legend = app.on_model(HUB_REPO)
    assert [v for _, v in part.choices] == ["eyes", "mouth", "hair"] and part.value == "eyes"
    assert (epsilon.value, method, threshold.value, lam.value, truncation) == (30.0, "sequential", 0.1, 1.0, 0.7)
    with pytest.raises(gr.Error, match="unknown model"):
        app.on_model("../tiny")
    editor = app.MODELS.editor("tiny")
    epsilon, threshold = app.on_part("tiny", "mouth")  # a part picked by hand brings its own ε and ranges
    assert epsilon.value == 10.0 and threshold.value == 0.1
    assert epsilon.maximum == editor.epsilon_max("mouth") > 10.0  # the ε slider ends where the query saturates
    assert threshold.maximum == math.ceil(editor.threshold_max("mouth") * 100) / 100 < 0.99
    epsilon, _ = app.on_part("tiny", "eyes")  # a default ε past the saturation point: the slider ends at it
    assert editor.epsilon_max("eyes") < epsilon.value == epsilon.maximum == 30.0
    assert app.on_part("tiny", "typed-by-hand") == (gr.skip(), gr.skip())
    # The threshold moved by hand: the ε slider's end follows it, and ε itself stays.
    for value in (0.0, 0.05, 0.3):
        update = app.on_threshold("tiny", "mouth", value, 1.0)
        assert update.constructor_args == {"maximum": editor.epsilon_max("mouth", value)}  # no value: ε stays
    assert app.on_threshold("tiny", "mouth", 0.0, 0.5).maximum > app.on_threshold("tiny", "mouth", 0.3, 0.5).maximum
    assert app.on_threshold("tiny", "mouth", 0.5, 1e3).maximum == 1e3  # past the end: the end is the value
    assert app.on_threshold("tiny", "mouth", 0.99, 0).maximum == app.EPSILON_STEP  # no channel left: a bare track
    for bad in (("tiny", "nose", 0.1, 1.0), ("../x", "mouth", 0.1, 1.0), ("tiny", "mouth", 1.5, 1.0),
                ("tiny", "mouth", None, 1.0), ("tiny", "mouth", 0.1, "x"), ("tiny", ["mouth"], 0.1, 1.0)):
        assert app.on_threshold(*bad) == gr.skip()
    epsilon, threshold, lam, legend = app.on_example("tiny", "mouth", 10.0, 0.2)  # after an example filled them
    assert epsilon.maximum == editor.epsilon_max("mouth", 0.2) and threshold.maximum == 0.75
    assert epsilon.interactive and threshold.interactive and lam.interactive is False  # back to sequential
    assert 'selected"><i style="background:#d62728' in legend
    assert app.on_example("tiny", "nose", 10.0, 0.2) == (gr.skip(),) * 4
    lam, epsilon, threshold = app.on_method("global", 7.5)
    assert lam.value == 1.0 and lam.maximum == 1.0
    assert lam.interactive and not epsilon.interactive and not threshold.interactive  # ε, t steer only sequential
    lam, epsilon, threshold = app.on_method("simultaneous", 7.5)
    assert lam.value == 7.5 and lam.interactive and not epsilon.interactive
    lam, epsilon, threshold = app.on_method("sequential", 7.5)
    assert not lam.interactive and epsilon.interactive and threshold.interactive
    assert app.edit_view("tiny", None, 2, "eyes", 30.0, "sequential", 0.1, 1.0, 0.7) == (gr.skip(),) * 8
    for bad in ((-5, 2, "eyes"), (1.5, 2, "eyes"), (99999999999, 2, "eyes"), (1, 2, "free text")):
        with pytest.warns(UserWarning, match="must be a whole number|unknown part"):  # one notice, nothing replaced
            assert app.edit_view("tiny", *bad, 30.0, "sequential", 0.1, 1.0, 0.7) == (gr.skip(),) * 8
    *views, target_thumb, reference_thumb = app.edit_view("tiny", 1, 2, "eyes", 30.0, "sequential", 0.1, 1.0, 0.7)
    assert views[-1] == app.edit("tiny", 1, 2, "eyes", 30.0, "sequential", 0.1, 1.0, 0.7)[-1]
    assert target_thumb == views[1][0] and reference_thumb == views[2]  # the same PNG files


def test_each_view_is_made_by_one_always_last_listener(app):
    """Every single edit and every composite the page shows comes from one listener per mode, always_last, so that
    a late result never overwrites a newer one: whatever else asks for a view (a 🎲, + or ✕, a part, a model, an
    example, a tab, the page's load) bumps the count that listener watches. /edit and /composite, the API's, have
    no trigger in the page. Seeds ask when entered (Enter, leaving the box), not at each keystroke."""
    for image, listener, asked, seeds in (
            (app.edited_out, app.edit_page, app.edit_asked, [app.target_box, app.reference_box]),
            (app.c_edited_out, app.composite_page, app.composite_asked,
             [app.c_target_box, *(row["seed"] for row in app.rows)])):
        makers = [f for f in app.demo.fns.values()
                  if image in f.outputs and (f.targets or f.trigger_after is not None)]
        assert [f.fn for f in makers] == [listener]
        assert makers[0].trigger_mode == "always_last" and (asked._id, "change") in makers[0].targets
        ids = {seed._id for seed in seeds}
        assert {event for block, event in makers[0].targets if block in ids} == {"submit", "blur"}
        # A control asks on input, the user's own move: an update that sets several controls fires a change per
        # control as each arrives, and a view asked by one would read the others half set. Only the count asks on
        # change. A live slider has no reset button, which would set it by a change alone.
        assert [block for block, event in makers[0].targets if event == "change"] == [asked._id]
        sliders = [app.demo.blocks[block] for block, event in makers[0].targets
                   if isinstance(app.demo.blocks[block], gr.Slider)]
        assert sliders and all(slider.buttons == [] for slider in sliders)


def test_a_view_is_made_only_for_the_tab_on_show_and_only_when_it_changed(app, caplog):
    caplog.set_level("INFO", logger="localedit.app")
    controls, shown = list(app.astuple(app.DEFAULT)), app.FIRST_VIEW[5]
    assert app.edit_page(None, "composite", "", *controls) == (gr.skip(),) * 9  # the other tab is on show
    assert app.edit_page(None, "single", shown, *controls) == (gr.skip(),) * 9  # this edit is on show already
    assert not caplog.records  # nothing was made
    assert app.edit_page(None, "single", "", *controls) == (*app.FIRST_VIEW, shown)
    assert app.edit_page(None, "single", shown, *controls[:1], None, *controls[2:]) == (gr.skip(),) * 9  # half-typed
    with pytest.warns(UserWarning, match="target seed must be a whole number"):  # refused: one notice
        assert app.edit_page(None, "single", shown, *controls[:1], -5, *controls[2:]) == (gr.skip(),) * 9

    c = app.DEFAULT_COMPOSITE
    rows = [value for row in c.rows for value in row] + [None, None, 0.0] * (8 - len(c.rows))
    controls, shown = [c.model, c.target, c.truncation, len(c.rows), *rows], app.COMPOSITE_FIRST_VIEW[4]
    caplog.clear()
    assert app.composite_page(None, "single", "", *controls) == (gr.skip(),) * 15
    assert app.composite_page(None, "composite", shown, *controls) == (gr.skip(),) * 15
    assert not caplog.records
    assert app.composite_page(None, "composite", "", *controls) == (*app.COMPOSITE_FIRST_VIEW, shown)
    assert [r.getMessage() for r in caplog.records] == [f"composite {shown}"]
    with pytest.warns(UserWarning, match="already in row 1"):
        assert app.composite_page(None, "composite", shown, *controls[:7], *controls[4:7], *rows[6:]) == \
            (gr.skip(),) * 15


def test_a_view_that_started_earlier_never_replaces_one_that_started_later(app):
    """A link's controls land one by one, so the page's listener can run twice at once for a session, the earlier
    call on half the link's values: whichever finishes last, the later call's view is the one left on show."""
    from app_support import Newest

    calls = Newest(sessions=2)
    a, b = gr.Request(), gr.Request()
    a.session_hash, b.session_hash = "a", "b"
    first, second = calls.start(a), calls.start(a)
    assert calls.may_show(second) and not calls.may_show(first)  # the earlier call finished last: dropped
    third, fourth = calls.start(a), calls.start(a)
    assert calls.may_show(third) and calls.may_show(fourth)  # in order: both shown, the later one last
    assert calls.may_show(calls.start(b))  # sessions are apart
    calls.start(None), calls.start(None)  # a third session: the oldest one is forgotten
    assert calls.start(a) == ("a", 1)


# --- small pieces -------------------------------------------------------------------------------------------------


def test_part_colours_and_examples(app, tiny_generator, tiny_catalog):
    # One colour cue, the legend's, drawn in the part's own colour (the outline's): no emoji that can disagree.
    assert app.part_choices(tiny_catalog) == ["eyes", "mouth"]
    assert 'style="background:#1f77b4"></i>eyes' in app.legend_html(tiny_catalog, "mouth")
    # One example per part, at the part's own ε and threshold: the catalog's pair, else seeds 0 → 1.
    assert app.EXAMPLES == [[4, 2, "eyes", 30.0, 0.1], [0, 1, "mouth", 10.0, 0.1]]
    assert sys.modules["app_endpoints"].DEFAULT_SEEDS == (4, 2)
    # The page's examples name the model, and fill the threshold too.
    # The page's examples restore the whole edit: model, seeds, part, its ε and threshold, and the method and ψ.
    assert [c.elem_id for c in app.examples.inputs] == ["model", "target", "reference", "part", "epsilon",
                                                         "threshold", "method", "lam", "truncation"]
    assert [row[:1] + row[-3:] for row in app.examples.examples] == [["tiny", "sequential", 1.0, 0.7]] * 2


def test_epsilon_range_ends_where_the_edit_stops_changing(app):
    """At the ε slider's end the edit is the saturated one, byte for byte; a tenth below it, it is not yet."""
    editor = app.MODELS.editor("tiny")
    saturated, short_of_it = 0, 0
    for part in editor.parts:
        for threshold in (editor.catalog.parts[part].threshold, 0.05, 0.3):
            end = app.on_threshold("tiny", part, threshold, 0.0).maximum
            assert end == editor.epsilon_max(part, threshold) > 0
            for target, reference in ((1, 2), (3, 0)):
                edit = (app, target, reference, part, threshold)
                at_end = _edited_png(*edit, epsilon=end)
                assert at_end == _edited_png(*edit, epsilon=1e4) == _edited_png(*edit, epsilon=end + 7.5)
                saturated += 1
                short_of_it += at_end != _edited_png(*edit, epsilon=end - 0.1 * end)
    assert saturated == 12 and short_of_it >= 1


def test_threshold_range_ends_where_the_query_is_empty(app):
    """At the threshold slider's end no channel moves (the edit is the target); a step below, some do."""
    editor = app.MODELS.editor("tiny")
    below = 0
    for part in editor.parts:
        _, threshold = app.on_part("tiny", part)
        end = threshold.maximum
        assert editor.threshold_max(part) <= end < editor.threshold_max(part) + app.THRESHOLD_STEP

        target = Path(app.edit("tiny", 1, 2, part, 1e4, "sequential", end, 1.0, 0.7)[1][0]).read_bytes()
        assert _edited_png(app, 1, 2, part, end, epsilon=1e4) == target
        assert app.on_threshold("tiny", part, end, 0.0).maximum == app.EPSILON_STEP
        assert editor.epsilon_max(part, end) == 0
        below += _edited_png(app, 1, 2, part, round(end - app.THRESHOLD_STEP, 2), epsilon=1e4) != target
    assert below >= 1


def _edited_png(app, target: int, reference: int, part: str, threshold: float, *, epsilon: float) -> bytes:
    """The PNG bytes of the edited image, as /edit returns it (sequential, λ 1, ψ 0.7)."""
    return Path(app.edit("tiny", target, reference, part, epsilon, "sequential", threshold, 1.0, 0.7)[0]).read_bytes()


def test_png_files_are_named_by_content_and_bounded(app, tmp_path):
    files = sys.modules["app_support"].PngFiles(keep=3)
    images = [np.full((4, 4, 3), i, np.uint8) for i in range(5)]
    paths = [files(image) for image in images]
    assert files(images[4]) == paths[4] and len(set(paths)) == 5
    assert sorted(p.name for p in files.folder.iterdir()) == sorted(Path(p).name for p in paths[2:])
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(Path(paths[4]).read_bytes()))), images[4])


def test_a_link_keeps_text_that_ends_in_dot_zero():
    controls = share.Controls("owner/x@v1.0", 3, 7, "eyes", 30.0, "sequential", 0.1, 1.0, 0.7)
    query = share.query_of(controls.query())
    assert query["model"] == "owner/x@v1.0" and query["epsilon"] == "30"  # whole floats still read short


# --- the composite ------------------------------------------------------------------------------------------------
# After the Hub model's first-use test above: the three-row composites here use its third part, hair.


def _bytes(path: str) -> bytes:
    return Path(path).read_bytes()


def test_composite_endpoint_is_the_library_composite(app, client, tiny_generator, tiny_catalog):
    from localedit.composite import composite

    expected = composite(Editor(tiny_generator, tiny_catalog), 1, [("eyes", 2), ("mouth", 5, 4.5)], truncation=0.6)
    for rows in ("eyes=2 mouth=5:4.5", " eyes = 2 ,mouth=5 : 4.5 ", ["eyes=2", ["mouth", 5.0, 4.5]],
                 [["eyes", "2"], ["mouth", 5, 4.5]]):
        edited, (target, edited_too), diff, stats, query = client.predict("tiny", 1, rows, 0.6, api_name="/composite")
        assert np.array_equal(_pixels(edited), expected.edited) and np.array_equal(_pixels(edited_too), expected.edited)
        assert np.array_equal(_pixels(target), expected.target)
        assert query == "?model=tiny&target=1&composite=eyes:2:30,mouth:5:4.5&truncation=0.6"
    assert _pixels(diff).shape == (256, 256, 3)
    for part, colour in (("eyes", (0x1f, 0x77, 0xb4)), ("mouth", (0xd6, 0x27, 0x28))):  # each part in its colour
        outlined = (_pixels(diff) == colour).all(-1)
        assert outlined.any() and not (outlined & ~expected.rois[part].repeat(8, 0).repeat(8, 1)).any()
        assert f"{part} | {expected.in_mse[part]:.1f} | {expected.changed[part]} |" in stats
    assert f"**Out-MSE** {expected.out_mse:.1f} outside all the parts" in stats
    # The page's live composite gives the same files, then the target's and each reference's thumbnail.
    rows = ["eyes", 2, 30.0, "mouth", 5, 4.5] + [None, None, 0.0] * 6
    *views, target_thumb, eyes_thumb, mouth_thumb = app.composite_view("tiny", 1, 0.6, 2, *rows)[:8]
    assert [_bytes(p) for p in (views[0], views[2], target_thumb)] == [_bytes(p) for p in (edited, diff, target)]
    assert views[4] == query and np.array_equal(_pixels(mouth_thumb), expected.references[1])
    assert np.array_equal(_pixels(eyes_thumb), expected.references[0])
    assert app.composite_view("tiny", 1, 0.6, 2, *rows)[8:] == (gr.skip(),) * 6  # hidden rows keep theirs


def test_a_composite_of_one_row_is_the_single_edit(app):
    for part, epsilon in (("eyes", None), ("mouth", 12.5)):
        rows = f"{part}=7" if epsilon is None else f"{part}=7:{epsilon}"
        edited, (target, _), diff, _, _ = app.composite("tiny", 3, rows, 0.6)
        single = app.edit("tiny", 3, 7, part, epsilon, "sequential", None, None, 0.6)
        assert [_bytes(edited), _bytes(target), _bytes(diff)] == [_bytes(single[0]), _bytes(single[1][0]),
                                                                  _bytes(single[3])]


def test_composite_errors_name_the_row(app, client):
    for rows, words in (("eyes=1 eyes=2", "row 2 (eyes): part 'eyes' is already in row 1"),
                        ("eyes=1 nose=2", "row 2 (nose): unknown part 'nose'"),
                        ("eyes=-1", "row 1 (eyes): reference seed must be a whole"),
                        ("eyes", "a composite row is PART=SEED"), ("eyes=1.5", "must be a whole number"),
                        (["eyes", -1], "got 'eyes'"), ([["eyes", -1]], "reference seed must be a whole number"),
                        ("", "at least one row"), (" ".join(f"eyes={i}" for i in range(9)), "at most 8 rows"),
                        ([["mouth", 1, "x"]], "epsilon must be a number"), (3, "rows must be text")):
        with pytest.raises(gr.Error, match=re.escape(words)):
            app.composite("tiny", 1, rows)
    with pytest.raises(Exception, match="already in row 1"):
        client.predict("tiny", 1, "mouth=1 mouth=2", None, api_name="/composite")
    with pytest.raises(gr.Error, match="target seed must be a whole number"):
        app.composite("tiny", -3, "eyes=1")
    # In the page: one notice, and the last good composite stays.
    rows = ["eyes", 2, 30.0, "eyes", 5, 30.0] + [None, None, 0.0] * 6
    with pytest.warns(UserWarning, match="already in row 1") as warned:
        assert app.composite_view("tiny", 1, 0.7, 2, *rows) == (gr.skip(),) * 14
    assert len(warned) == 1
    with pytest.warns(UserWarning, match="reference seed must be a whole number"):
        assert app.composite_view("tiny", 1, 0.7, 1, "eyes", -5, 30.0, *rows[3:]) == (gr.skip(),) * 14
    assert app.composite_view("tiny", None, 0.7, 1, *rows) == (gr.skip(),) * 14  # half-typed: waits quietly
    assert app.composite_view("tiny", 1, 0.7, 1, "eyes", None, 30.0, *rows[3:]) == (gr.skip(),) * 14


def test_a_three_row_composite_link_round_trips_with_its_bytes(app, endpoints):
    editor = app.MODELS.editor(HUB_REPO)
    for c in (share.CompositeControls(HUB_REPO, 4_000_000_000, (("hair", 7, 12.345678901234567), ("eyes", 12, 1e-7),
                                                               ("mouth", 0, 10.0)), 0.05),
              share.CompositeControls(HUB_REPO, 3, (("mouth", 9, 0.1 + 0.2), ("hair", 2**32 - 1, 1e4),
                                                    ("eyes", 5, 30.0)), 1.0)):
        query = c.query()
        assert "composite=" + ",".join(f"{p}:{r}:{share._text(e)}" for p, r, e in c.rows) in query
        controls, parsed, notices = endpoints.read_link(share.query_of("https://x.hf.space/" + query))
        assert (parsed, notices) == (c, []) and (controls.model, controls.target) == (HUB_REPO, c.target)
        first = app.composite(HUB_REPO, c.target, [list(row) for row in c.rows], c.truncation)
        assert first[4] == query  # the composite's own link is the link it was made from
        again = app.composite(parsed.model, parsed.target, [list(row) for row in parsed.rows], parsed.truncation)
        assert [_bytes(p) for p in _composite_files(first)] == [_bytes(p) for p in _composite_files(again)]
        restored = app.restore(query)
        assert restored["query"] == query and restored["notices"] == [] and restored["composite"]["rows"] == c.rows
    # The page opens such a link in the composite tab, its rows filled in and the rest hidden.
    single, (tabs, mode, query, target, truncation, *rows, count, add) = _restore(app, share.query_of(c.query()))
    assert (tabs.selected, mode, query, target, truncation, count) == ("composite", "composite", c.query(), 3, 1.0, 3)
    assert single[0].value == HUB_REPO and single[1] == 3  # the single edit is on the link's model and target
    shown = [rows[5 * i:5 * i + 5] for i in range(3)]
    assert [(part.value, seed, epsilon.value) for _, part, seed, epsilon, _ in shown] == list(c.rows)
    assert all(group.visible for group, *_ in shown) and not any(g.visible for g in rows[15::5])
    assert shown[0][3].maximum == max(editor.epsilon_max("mouth"), 0.1 + 0.2) and add.visible is False
    assert [v for _, v in shown[0][1].choices] == ["eyes", "mouth", "hair"]
    # A single edit's link leaves the composite tab at its defaults, closed.
    _, updates = _restore(app, {"model": "tiny", "target": "9"})
    assert updates == [gr.skip()] * 47  # the page has that one already
    _, (tabs, mode, query, target, *_) = _restore(app, {"model": HUB_REPO})
    assert (tabs, mode, target) == (gr.skip(), gr.skip(), app.DEFAULT_COMPOSITE.target)
    assert query == share.default_composite(HUB_REPO, editor, endpoints.DEFAULT_SEEDS).query()
    assert app.restore("?model=tiny&target=9")["composite"] is None


def _composite_files(result) -> list[str]:
    edited, (target, edited_too), diff, *_ = result
    return [edited, target, edited_too, diff]


BAD_COMPOSITES = {
    "nose:3": "composite row 1 (nose): unknown part 'nose'",  # a part the model lacks; left out
    "eyes:3,eyes:4": "composite row 2 (eyes): part 'eyes' is already in row 1",
    "eyes:-3": "reference seed must be a whole number",
    "eyes:1.5": "reference seed must be a whole number",
    ",".join(f"eyes:{i}" for i in range(9)): "at most 8 rows, got 9",
    "garbage": "is not PART:SEED",
    "eyes:1:2:3": "is not PART:SEED",
    "": "has no row to use",
    "eyes:3:nan": "epsilon must be a number from 0 to 10000, got nan; using 30",
    "eyes:3:1e9": "using 30",
    "mouth=3": "is not PART:SEED",  # the API's form is not the link's
}


def test_bad_composite_links_fall_back_with_a_notice(app, endpoints):
    for value, words in BAD_COMPOSITES.items():
        controls, composite, notices = endpoints.read_link({"model": "tiny", "target": "1", "composite": value})
        assert composite is not None and any(words in n for n in notices), (value, notices)
        parts = [part for part, *_ in composite.rows]
        assert parts and len(parts) == len(set(parts)) <= 8 and set(parts) <= {"eyes", "mouth"}
        app.composite("tiny", composite.target, [list(row) for row in composite.rows], composite.truncation)
    # Only the bad row goes: the good ones stay, in order.
    _, composite, notices = endpoints.read_link({"model": "tiny", "composite": "mouth:4:2.5,nose:1,eyes:x,eyes:6"})
    assert composite.rows == (("mouth", 4, 2.5), ("eyes", 6, 30.0)) and len(notices) == 2
    # The model, target and ψ are parse_link's: noticed once, and the composite goes on with their defaults.
    controls, composite, notices = endpoints.read_link({"model": "../x", "target": "-1", "truncation": "2",
                                                    "composite": "eyes:3"})
    assert (composite.model, composite.target, composite.truncation) == ("tiny", app.DEFAULT.target, 0.7)
    assert len(notices) == 3 and composite.rows == (("eyes", 3, 30.0),)
    with pytest.warns(UserWarning, match="could not be used"):
        (*_, notice, _), _ = _restore(app, {"composite": "eyes:1,eyes:2"})
    assert notice.visible and "row 2 (eyes): part 'eyes' is already in row 1" in notice.value.replace("\\", "")


def test_fuzz_composite_links_never_fail(app, endpoints):
    rng = random.Random(1)
    pieces = ["eyes", "mouth", "nose", "", "eyes ", "%3A", "é", "1", "-1", "1.5", "nan", "1e9", "30", "x", "9" * 30]
    for _ in range(300):
        value = ",".join(":".join(rng.choice(pieces) for _ in range(rng.randint(0, 4)))
                         for _ in range(rng.randint(0, 10)))
        _, composite, notices = endpoints.read_link({"model": "tiny", "composite": value})
        parts = [part for part, *_ in composite.rows]
        assert parts and len(parts) == len(set(parts)) <= 8 and all(len(n) < 600 for n in notices)
        # what a link restores is a composite the library makes, and writes back the same
        editor = app.MODELS.editor("tiny")
        from localedit.composite import resolve_composite

        resolve_composite(editor, composite.target, composite.rows, composite.truncation)
        assert endpoints.read_link(share.query_of(composite.query()))[1:] == (composite, [])


def test_composite_rows_callbacks(app):
    editor = app.MODELS.editor("tiny")
    rows = ["eyes", 2, 30.0, "mouth", 5, 4.5] + [None, None, 0.0] * 6
    # "+ Add part" with every part in a row does nothing (and is hidden, below); after ✕ the rows move up.
    assert app.add_row("tiny", 1, 2, *rows) == [gr.skip()] * 42
    updates = app.remove_row(0, "tiny", 2, *rows)
    assert [u.visible for u in updates[:40:5]] == [True] + [False] * 7
    assert (updates[1].value, updates[2], updates[3].value, updates[4].visible) == ("mouth", 5, 4.5, False)
    assert updates[40:42:1][0] == 1 and updates[41].visible is True  # one row; + shows again
    assert app.remove_row(0, "tiny", 1, *rows) == [gr.skip()] * 42  # the last row stays
    updates = app.add_row("tiny", 1, 1, *rows)  # eyes has a row: the new one is mouth's, from its default
    assert (updates[6].value, updates[7], updates[8].value) == ("mouth", 2, 10.0) and updates[40] == 2
    assert updates[8].maximum == app.epsilon_max(editor, "mouth", 0.1, 10.0) and updates[41].visible is False
    # A part picked by hand brings its own ε; a part another row has changes nothing (the composite says why).
    assert app.on_row_part(1, "tiny", 2, *rows).value == 10.0
    assert app.on_row_part(1, "tiny", 2, "mouth", 2, 30.0, "mouth", 5, 4.5) == gr.skip()
    assert app.on_row_part(0, "tiny", 1, "nose", 2, 30.0) == gr.skip()
    # Another model: rows it has every part of stay; otherwise its default rows.
    kept = app.on_composite_model(HUB_REPO, 1, 2, *rows)
    assert (kept[1].value, kept[2], kept[6].value, kept[7], kept[40]) == ("eyes", 2, "mouth", 5, 2)
    assert [v for _, v in kept[1].choices] == ["eyes", "mouth", "hair"] and kept[41].visible
    reset = app.on_composite_model("tiny", 1, 2, "hair", 3, 5.0, "eyes", 4, 1.0)
    assert [(reset[i].value, reset[i + 1]) for i in (1, 6)] == [("eyes", 2), ("mouth", 2)] and reset[40] == 2


def test_the_composite_example_is_a_link_to_the_default_composite(app):
    c = app.DEFAULT_COMPOSITE
    assert c == share.CompositeControls("tiny", 4, (("eyes", 2, 30.0), ("mouth", 2, 10.0)), 0.7)
    assert app.composite_examples.examples == [[c.query()]]
    assert app.COMPOSITE_FIRST_VIEW[4] == c.query()
    model, *single, target, truncation = app.open_example(c.query(), "tiny")[:10]
    assert (model, single, target, truncation) == ("tiny", [gr.skip()] * 7, 4, 0.7)
    model, part = app.open_example(c.query(), HUB_REPO)[:2]  # from another model: the single edit starts over too
    assert (model, part.value) == ("tiny", "eyes")


def test_the_composite_example_label_names_each_reference_once_and_fits_gradio(app):
    rows = (("mouth", 300000, 14.0), ("background", 300000, 30.0), ("eyes", 300001, 6.1))
    assert app.composite_label(300005, rows) == "300005: mouth, background ← 300000; eyes ← 300001"
    assert app.composite_label(4, app.DEFAULT_COMPOSITE.rows) == "4: eyes, mouth ← 2"
    assert len(app.composite_label(300005, rows)) <= 60  # Gradio cuts an example's label after 60 characters
