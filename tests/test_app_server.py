"""`python app.py` as a real server: on the embedded model when assets/ has one, else on a random model shaped
like it (64 px, style_dim 256), so that the figures describe what `python app.py` serves.

Cold start to the first edit, the same bytes after a restart, 16 concurrent clients, the API's cost over the
library's, and a real browser (Debian chromium, headless, through playwright) that opens a share link, moves the
ε slider, changes the seeds, saves a screenshot, and sees the ε slider's end follow the threshold and an example
(whose pick makes no composite for the hidden composite tab, as the server's log of views says); and that builds a
three-row composite, whose link gives the same composite in a new page, and after a burst of changes shows the
final controls' composite; and that uploads a picture, edits its projection, and opens that edit's link.
The figures are printed to the terminal, also without `-s`.
"""

import io
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from localedit import Editor, Generator, GeneratorConfig, build_catalog, load_model
from localedit.faces import render_face
from localedit.hub import (
    CATALOG_META_FILE,
    CATALOG_TENSORS_FILE,
    CONFIG_FILE,
    WEIGHTS_FILE,
    save_catalog,
    save_generator,
)
from localedit.projection import EVAL_FACES

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOT = ROOT / "out" / "app-screenshot.png"
COMPOSITE_SCREENSHOT = ROOT / "out" / "app-composite-screenshot.png"
UPLOAD_SCREENSHOTS = ROOT / "out" / "app-upload-desktop.png", ROOT / "out" / "app-upload-phone.png"
CHROMIUM = "/usr/bin/chromium"


@dataclass(frozen=True)
class Served:
    """The assets folder the server reads, its default model and that model's parts."""

    folder: Path
    model: str
    parts: tuple[str, ...]
    epsilons: tuple[float, ...]

    def edit(self, epsilon: float = 12.34) -> list:
        return [self.model, 5, 9, self.parts[1], epsilon, "sequential", 0.123, 1.0, 0.6]

    @property
    def link(self) -> str:
        return f"?model={self.model}&target=5&reference=9&part={self.parts[1]}&epsilon=12.34&method=sequential" \
               "&threshold=0.123&lam=1&truncation=0.6"


def _text(x: float) -> str:  # as the app writes numbers into links
    return repr(float(x)).removesuffix(".0")


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Served:
    files = (CONFIG_FILE, WEIGHTS_FILE, CATALOG_META_FILE, CATALOG_TENSORS_FILE)
    shipped = sorted(f for f in (ROOT / "assets").glob("*") if all((f / name).is_file() for name in files))
    if shipped and len(load_model(shipped[0]).catalog.parts) >= 3:  # a three-row composite needs three parts
        folder, name = ROOT / "assets", shipped[0].name
    else:
        torch.manual_seed(1)
        config = GeneratorConfig(size=64, style_dim=256, n_mlp=2, channels=(128, 128, 64, 48, 32))
        generator = Generator(config).eval()
        with torch.no_grad():
            generator.latent_avg.copy_(torch.randn_like(generator.latent_avg) * 0.1)
        catalog = build_catalog(generator, "convs.3", 8, n_samples=12, progress=False)
        catalog = catalog.with_parts({"eyes": [0, 1], "mouth": [2], "hair": [3, 4]},
                                     epsilon={"eyes": 20.0, "mouth": 10.0, "hair": 30.0})
        folder, name = tmp_path_factory.mktemp("assets"), "random64"
        save_generator(folder / name, config, generator.state_dict())
        save_catalog(folder / name, catalog)
    parts = load_model(folder / name).catalog.parts
    return Served(folder, name, tuple(parts), tuple(p.epsilon for p in parts.values()))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(http: httpx.Client, name: str, data: list) -> tuple[float, list]:
    """One API call over plain HTTP (POST, then read the event stream): seconds and the output data."""
    start = time.perf_counter()
    event = http.post(f"gradio_api/call/{name}", json={"data": data}).json()["event_id"]
    text = http.get(f"gradio_api/call/{name}/{event}").text
    kind, _, payload = text.strip().rpartition("data:")
    if "event: complete" not in kind:
        raise RuntimeError(f"{name} failed: {text[:500]}")
    return time.perf_counter() - start, json.loads(payload)


class AppServer:
    """`python app.py` in a subprocess; `start()` returns the seconds from launch to the first finished edit."""

    def __init__(self, served: Served, workdir: Path):
        self.served = served
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log = workdir / f"app-{self.port}.log"
        self.env = dict(os.environ, LOCALEDIT_ASSETS=str(served.folder), GRADIO_SERVER_PORT=str(self.port),
                        GRADIO_SERVER_NAME="127.0.0.1", GRADIO_ANALYTICS_ENABLED="False",
                        GRADIO_TEMP_DIR=str(workdir / f"gradio-{self.port}"),
                        LOCALEDIT_SESSIONS="100",  # reached in the first round of the concurrency test
                        LOCALEDIT_LOG="INFO")  # each view the page makes: see `views`
        self.env.pop("LOCALEDIT_MODELS", None)
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 120) -> float:
        start = time.perf_counter()
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=self.env, stdout=log,
                                         stderr=subprocess.STDOUT)
        with httpx.Client(base_url=self.url, timeout=30) as http:
            while time.perf_counter() - start < timeout:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"app.py exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
                try:
                    call(http, "edit", self.served.edit())
                    return time.perf_counter() - start
                except (httpx.TransportError, json.JSONDecodeError, KeyError):
                    time.sleep(0.1)
        raise TimeoutError(f"no edit within {timeout} s:\n{self.log.read_text()[-3000:]}")

    def views(self, kind: str) -> list[str]:
        """The queries of the views of this kind ("edit" or "composite") that pages asked for and the server
        made, in order, as it logs them."""
        return re.findall(rf" localedit\.app {kind} (\S+)", self.log.read_text())

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def server(served, tmp_path_factory):
    app = AppServer(served, tmp_path_factory.mktemp("server"))
    app.cold_start = app.start()
    yield app
    app.stop()


def report(capsys, text: str) -> None:
    with capsys.disabled():
        print(f"\n[app] {text}", flush=True)


def _edited_bytes(url: str, data: list) -> list[bytes]:
    with httpx.Client(base_url=url, timeout=30) as http:
        _, (edited, slider, reference, diff, *_) = call(http, "edit", data)
        files = [edited, *slider, reference, diff]
        return [http.get(f["url"]).content for f in files]


def test_cold_start_and_the_same_bytes_after_a_restart(server, served, tmp_path, capsys):
    first = _edited_bytes(server.url, served.edit())
    again = AppServer(served, tmp_path)
    try:
        cold = again.start()
        assert _edited_bytes(again.url, served.edit()) == first
    finally:
        again.stop()
    assert all(data.startswith(b"\x89PNG") for data in first)
    report(capsys, f"model {served.model} ({served.folder}): cold start to the first edit {server.cold_start:.1f} s, "
                   f"and {cold:.1f} s after a restart; the same link gave the same PNG bytes")


def test_api_round_trip_over_the_library_edit(server, served, capsys):
    model = load_model(served.folder / served.model)
    editor = Editor(model.generator, model.catalog)
    part = served.parts[1]
    editor.edit(5, 9, part, epsilon=12.0, threshold=0.123, truncation=0.6)
    library, http_times, client_times = [], [], []
    for i in range(30):
        start = time.perf_counter()
        editor.edit(5, 9, part, epsilon=12.0 + i / 8, threshold=0.123, truncation=0.6)
        library.append(time.perf_counter() - start)
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for i in range(30):
            http_times.append(call(http, "edit", served.edit(12.0 + i / 8))[0])
    from gradio_client import Client

    client = Client(server.url, verbose=False)
    for i in range(15):
        start = time.perf_counter()
        client.predict(*served.edit(12.0 + i / 8), api_name="/edit")
        client_times.append(time.perf_counter() - start)
    lib, raw, full = (statistics.median(t) for t in (library, http_times, client_times))
    report(capsys, f"library edit {lib * 1e3:.1f} ms (median); app API round trip {raw * 1e3:.1f} ms over HTTP = "
                   f"{raw / lib:.1f}× the library edit; {full * 1e3:.0f} ms with gradio_client, which also "
                   f"downloads the 5 PNGs and polls every 50 ms = {full / lib:.1f}×; "
                   f"{torch.get_num_threads()} torch thread, {os.cpu_count()} cores")
    # The figures are reported, not asserted: a timing threshold in a test makes CI flaky on a busy machine.
    assert lib > 0 and raw > 0 and full > 0


def test_sixteen_concurrent_clients(server, served, capsys):
    parts = served.parts
    combos = [[served.model, t, r, part, eps, "sequential", 0.1, 1.0, 0.7]
              for t, r, part, eps in [(1, 2, parts[0], 20.0), (3, 4, parts[1], 10.0), (5, 6, parts[-1], 30.0),
                                      (7, 8, parts[0], 5.5), (2, 1, parts[1], 40.0)]]
    clients = [httpx.Client(base_url=server.url, timeout=60) for _ in range(16)]

    def work(i: int) -> list[tuple[int, float, bytes, bytes, str]]:
        out = []
        for j in range(20):
            k = (i + j) % len(combos)
            seconds, (edited, _, _, diff, _, query) = call(clients[i], "edit", combos[k])
            out.append((k, seconds, clients[i].get(edited["url"]).content, clients[i].get(diff["url"]).content,
                        query))
        return out

    def run() -> tuple[list, float, float]:
        peak, done = server.rss_mb(), threading.Event()

        def watch() -> None:
            nonlocal peak
            while not done.wait(0.05):
                peak = max(peak, server.rss_mb())

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        start = time.perf_counter()
        with ThreadPoolExecutor(16) as pool:
            results = [r for rs in pool.map(work, range(16)) for r in rs]
        wall = time.perf_counter() - start
        done.set()
        watcher.join()
        return results, wall, peak

    try:
        start_rss = server.rss_mb()
        # Two rounds warm every cache (samples, Gradio's file cache and session store, the thread pools) and let
        # the allocator settle (see app.py on malloc arenas).
        run()
        run()
        warm_rss = server.rss_mb()
        results, wall, peak = run()
        middle_rss = server.rss_mb()
        _, _, peak_again = run()
        end_rss = server.rss_mb()
    finally:
        for client in clients:
            client.close()
    assert len(results) == 320
    for k in range(len(combos)):
        same = {(edited, diff, query) for kk, _, edited, diff, query in results if kk == k}
        assert len(same) == 1  # identical inputs, identical outputs, whatever ran beside them
    latencies = sorted(t for _, t, *_ in results)
    p50, p95 = latencies[len(latencies) // 2], latencies[int(0.95 * len(latencies)) - 1]
    report(capsys, f"16 concurrent clients × 20 edits: p50 {p50 * 1e3:.0f} ms, p95 {p95 * 1e3:.0f} ms, "
                   f"{320 / wall:.0f} edits/s (concurrency limit 2 on {os.cpu_count()} cores); server RSS "
                   f"{start_rss:.0f} MB, {warm_rss:.0f} MB after two warm-up rounds, {middle_rss:.0f} MB and "
                   f"{end_rss:.0f} MB after two more rounds of 320 edits (peak {max(peak, peak_again):.0f} MB)")
    # Every /call/ is a session of its own, and Gradio keeps ~90 kB per session: uncapped, each round would add
    # ~30 MB. With the cap (100 here) reached while warming, the rounds settle; the RSS figures above say so,
    # and are reported rather than asserted, since memory thresholds in a test flake under load.
    with httpx.Client(base_url=server.url, timeout=30) as http:  # and it still answers
        assert served.model in call(http, "models", [])[1][0]


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium at /usr/bin/chromium")
def test_browser_share_link_slider_seed_and_screenshot(server, served, capsys):
    from playwright.sync_api import sync_playwright

    def link_value(page) -> str:
        return page.locator("#link textarea, #link input").first.input_value()

    def settled(page, words: list[str], timeout: float = 30) -> None:
        """Wait until the link box shows an edit with all these query words, and the page URL follows it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            link = link_value(page)
            if all(w in link for w in words) and page.url == link:
                return
            page.wait_for_timeout(100)
        raise AssertionError(f"the page never showed {words}: link {link_value(page)!r}, url {page.url!r}")

    model = load_model(served.folder / served.model)
    editor = Editor(model.generator, model.catalog)
    part = served.parts[1]

    def range_max(page, key: str, expected: float, timeout: float = 30) -> None:
        """Wait until the slider `key` ends at `expected`."""
        track = page.locator(f"#{key} input[type=range]")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and float(track.get_attribute("max")) != expected:
            page.wait_for_timeout(100)
        assert float(track.get_attribute("max")) == expected, (key, track.get_attribute("max"), expected)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu",
                                                                     "--disable-background-networking"])
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url.rstrip("/"))
            page = context.new_page()
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(server.url + served.link)
            settled(page, [served.link.lstrip("?")])
            page.get_by_text("Advanced").click()
            values = {key: page.locator(f"#{key} input").first.input_value()
                      for key in ("target", "reference", "epsilon", "threshold", "lam", "truncation")}
            assert values == {"target": "5", "reference": "9", "epsilon": "12.34", "threshold": "0.123", "lam": "1",
                              "truncation": "0.6"}
            assert page.locator("#part input").input_value().endswith(served.parts[1])
            assert page.locator("#method input[value=sequential]").is_checked()
            assert not page.locator("#notice").is_visible()
            assert page.get_by_role("button", name="Edit", exact=True).count() == 0  # edits are live; /edit is API
            first = page.locator("#edited img").get_attribute("src")
            # The ε slider ends where the part's query saturates at the link's threshold, or at the link's ε
            # when that is larger (the link restores as it is).
            range_max(page, "epsilon", max(editor.epsilon_max(part, 0.123), 12.34))

            slider = page.locator("#epsilon input[type=range]")
            slider.focus()  # move the slider as a person does, by keys: the link follows it
            page.keyboard.press("Home")  # ε = 0: no channel moves, so the edit is the target itself
            settled(page, ["epsilon=0&"])
            edited = page.locator("#edited img").get_attribute("src")
            assert edited != first and edited == page.locator("#slider img").first.get_attribute("src")
            for _ in range(6):
                page.keyboard.press("ArrowRight")
            settled(page, ["epsilon=0.06&"])  # steps of 0.01, fine enough to reach the saturation point
            middle = round(editor.epsilon_max(part, 0.123) / 2, 2)
            page.locator("#epsilon input[type=number]").fill(_text(middle))
            page.locator("#epsilon input[type=number]").press("Enter")
            settled(page, [f"epsilon={_text(middle)}&"])
            moved = page.locator("#edited img").get_attribute("src")
            assert moved != edited

            thumb = page.locator("#target-thumb img").get_attribute("src")
            page.locator("#target input").fill("")
            page.locator("#target input").press_sequentially("42", delay=150)  # typed, not yet entered
            page.wait_for_timeout(2000)
            assert "target=4&" not in page.url and page.locator("#edited img").get_attribute("src") == moved
            page.locator("#target input").press("Enter")
            settled(page, ["target=42", f"epsilon={_text(middle)}&"])
            assert page.locator("#edited img").get_attribute("src") != moved
            assert page.locator("#target-thumb img").get_attribute("src") != thumb

            page.locator("#reference-dice").click()  # a random reference seed
            settled(page, ["target=42"], timeout=5)
            deadline = time.monotonic() + 30
            while "reference=9&" in page.url and time.monotonic() < deadline:
                page.wait_for_timeout(100)
            assert "reference=9&" not in page.url and page.locator("#reference input").input_value() != "9"
            settled(page, [f"reference={page.locator('#reference input').input_value()}&"])

            page.locator("#copy-link").click()
            page.wait_for_timeout(300)
            assert page.evaluate("navigator.clipboard.readText()") == page.url == link_value(page)
            page.locator("#edited img").evaluate("img => img.decode()")
            SCREENSHOT.parent.mkdir(exist_ok=True)
            page.screenshot(path=str(SCREENSHOT), full_page=True)

            # The threshold moved by hand: the ε slider's end follows it, and ε stays.
            page.locator("#threshold input[type=range]").focus()
            page.keyboard.press("Home")
            settled(page, ["threshold=0&", f"epsilon={_text(middle)}&"])
            range_max(page, "epsilon", max(editor.epsilon_max(part, 0.0), middle))
            page.keyboard.press("End")  # the threshold's end: no channel is left to move
            top = float(page.locator("#threshold input[type=range]").get_attribute("max"))
            assert editor.threshold_max(part) <= top < editor.threshold_max(part) + 0.01
            settled(page, [f"threshold={_text(top)}&", f"epsilon={_text(middle)}&"])
            range_max(page, "epsilon", middle)
            assert page.locator("#edited img").get_attribute("src") == \
                page.locator("#slider img").first.get_attribute("src")  # the edit is the target

            # An example restores its whole edit: its part's ε and threshold, the sequential method and the model's
            # ψ, whatever was set before; both sliders end where that part's ranges do.
            page.locator("#method").get_by_text("global").click()
            settled(page, ["method=global&"])
            last, settings = served.parts[-1], model.catalog.parts[served.parts[-1]]
            composites = server.views("composite")
            page.get_by_text(re.compile(rf"^{last}: \d+ → \d+$")).click()
            settled(page, [f"part={last}&", f"epsilon={_text(settings.epsilon)}&", "method=sequential&",
                           f"threshold={_text(settings.threshold)}&", f"truncation={_text(model.config.truncation)}"])
            range_max(page, "epsilon", max(editor.epsilon_max(last), settings.epsilon))
            # Only the tab on show is made: the example's edit, and no composite for the hidden composite tab.
            page.wait_for_timeout(1000)  # room for anything else the example might have asked for
            assert link_value(page).endswith(server.views("edit")[-1])
            assert server.views("composite") == composites

            # A short link whose target is the page's default reference: defaults, quietly, and another reference.
            page.goto(server.url)
            settled(page, [f"model={served.model}&"])
            taken = page.locator("#reference input").first.input_value()
            page.goto(server.url + f"?model={served.model}&target={taken}&part={last}")
            settled(page, [f"target={taken}&", f"part={last}&"])
            assert not page.locator("#notice").is_visible()
            assert page.locator("#reference input").first.input_value() != taken

            page.goto(server.url + "?model=../../etc&target=-1&part=no-such-part&epsilon=nan")  # a bad link
            page.locator("#notice").wait_for(state="visible", timeout=30_000)
            notice = page.locator("#notice").inner_text()
            assert "'../../etc' is not served here" in notice and "got nan" in notice
            default = f"part={served.parts[0]}&epsilon={_text(served.epsilons[0])}&"
            settled(page, [f"model={served.model}&target=", default])
            seed = page.locator("#reference input").first
            seed.fill("-5")  # a bad seed: one notice, the last good edit stays, no error badge over the outputs
            seed.press("Enter")
            page.get_by_text("reference seed must be a whole number").first.wait_for(timeout=30_000)
            assert page.get_by_text("Error", exact=True).count() == 0
            assert page.locator("#edited img").get_attribute("src")
            assert not page.locator("#notice").is_visible()  # the link's notice went with the first change

            phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
            small = phone.new_page()
            small.goto(server.url + served.link)
            small.locator("#edited img").wait_for(timeout=30_000)
            edited_top = small.locator("#edited").bounding_box()["y"]
            assert edited_top < small.locator("#controls").bounding_box()["y"]  # on a phone the result comes first
            assert edited_top < 844  # on the first screen
            # The four pictures two abreast, all on the first screen, so the controls start about a screen down.
            panes = [small.locator(f"#{pane}").bounding_box() for pane in ("edited", "slider", "reference-out", "diff")]
            assert panes[0]["y"] == panes[1]["y"] and panes[2]["y"] == panes[3]["y"] > panes[0]["y"]
            assert max(pane["y"] + pane["height"] for pane in panes) < 844
            assert small.evaluate("document.documentElement.scrollWidth") <= 390
            assert small.get_by_role("button", name="More tabs").count() == 0  # the three tabs fit the width
            label = small.locator('#slider [data-testid="block-label"]').bounding_box()
            undo = small.locator("#slider button[aria-label='Undo']").bounding_box()
            assert label["x"] + label["width"] <= undo["x"]  # "Target ↔ edited" clears the slider's undo button
            thumb, number = small.locator("#target-thumb").bounding_box(), small.locator("#target").bounding_box()
            assert abs(thumb["y"] - number["y"]) < 40  # the thumbnail sits beside its seed, not on a row of its own
            example = small.get_by_role("button", name=re.compile(r"^\w+: \d+ → \d+$")).last
            example.scroll_into_view_if_needed()
            example.click()  # the examples are far below the result: picking one brings the result into view
            small.wait_for_function("() => { const r = document.querySelector('#edited').getBoundingClientRect();"
                                    " return r.top > -5 && r.top < 200; }", timeout=10_000)
            for pane in ("#edited", "#slider", "#reference-out", "#diff"):  # no blank strip under a picture
                box, image = small.locator(pane).bounding_box(), small.locator(f"{pane} img").first.bounding_box()
                assert abs(box["height"] - image["height"]) <= 2 and abs(box["height"] - box["width"]) <= 2, pane
            assert not errors, errors
        finally:
            browser.close()
    assert Image.open(SCREENSHOT).size[0] == 1400
    assert np.asarray(Image.open(SCREENSHOT).convert("L")).std() > 10  # not a blank page
    report(capsys, f"browser: share link restored, slider and seed changed the edit; screenshot: {SCREENSHOT}")


def _field(page, selector: str) -> str:
    return page.locator(f"{selector} input, {selector} textarea").first.input_value()


def _composite_settled(page, words: list[str], absent: tuple[str, ...] = (), timeout: float = 30) -> str:
    """Wait until the composite's link box has all these query words and none of `absent`, and the page URL
    follows it; the link."""
    return _settled(page, "#composite-link", words, absent, timeout)


def _settled(page, box: str, words: list[str], absent: tuple[str, ...] = (), timeout: float = 30) -> str:
    """Wait until the link box `box` has all these query words and none of `absent`, and the page URL follows it;
    the link."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        link = _field(page, box)
        if all(w in link for w in words) and not any(w in link for w in absent) and page.url == link:
            return link
        page.wait_for_timeout(100)
    raise AssertionError(f"the page never showed {words} without {absent}: link {_field(page, box)!r}, url "
                         f"{page.url!r}")


def _shown_rows(page) -> list[tuple[str, str, str]]:
    return [(_field(page, f"#row-{i}-part"), _field(page, f"#row-{i}-reference"), _field(page, f"#row-{i}-epsilon"))
            for i in range(1, 9) if page.locator(f"#row-{i}-part").is_visible()]


def _composite_query(model: str, target: int, rows: list[tuple], truncation: float) -> str:
    from localedit.share import CompositeControls

    return CompositeControls(model, target, tuple(rows), truncation).query()


def _pick(page, row: int, part: str) -> None:
    page.locator(f"#row-{row}-part input").click()
    page.get_by_role("option", name=part, exact=True).click()


def _image_bytes(page, selector: str) -> bytes:
    return httpx.get(page.locator(f"{selector} img").first.get_attribute("src"), timeout=30).content


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium at /usr/bin/chromium")
def test_browser_composite_of_three_rows_and_its_link(server, served, capsys):
    """Build a three-row composite by hand (✕, a seed, a part, + Add part, ε, the target), then open its link in a
    new page: the same rows, and the same composite, byte for byte, as the library's."""
    from playwright.sync_api import sync_playwright

    from localedit.composite import composite

    model = load_model(served.folder / served.model)
    editor = Editor(model.generator, model.catalog)
    first, second, third = served.parts[:3]
    epsilon = round(editor.epsilon_max(third) / 2, 2)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu",
                                                                     "--disable-background-networking"])
        try:
            page = browser.new_context(viewport={"width": 1280, "height": 1000}).new_page()
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(server.url)
            page.get_by_role("tab", name="Composite").click()  # at once: the page's load leaves the tab be
            page.locator("#row-1-part").wait_for(timeout=30_000)
            _composite_settled(page, [f"model={served.model}&", "composite="])  # the address bar has its link
            assert [part for part, *_ in _shown_rows(page)] == [first, second, third]  # the default composite

            page.locator("#row-3-remove").click()  # ✕: two rows left, and + shows
            _composite_settled(page, [f"composite={first}:", f",{second}:"], absent=(f",{third}:",))
            assert len(_shown_rows(page)) == 2
            page.locator("#row-2-reference input").fill("42")
            page.locator("#row-2-reference input").press("Enter")
            _composite_settled(page, [f",{second}:42:"])
            before = _field(page, "#composite-link")
            _pick(page, 2, first)  # a part another row has: one notice, and the last good composite stays
            page.get_by_text("is already in row 1").first.wait_for(timeout=30_000)
            page.wait_for_timeout(1000)
            assert page.get_by_text("is already in row 1").count() == 1  # one notice, not one per event
            assert page.get_by_text("Error", exact=True).count() == 0 and _field(page, "#composite-link") == before
            _pick(page, 2, second)
            page.locator("#add-part").click()  # a row for the first part without one
            _composite_settled(page, [f",{second}:42:", f",{third}:"])
            rows_before = _shown_rows(page)
            page.locator("#row-3-epsilon input[type=number]").fill(_text(epsilon))
            page.locator("#row-3-epsilon input[type=number]").press("Enter")
            page.locator("#row-1-reference-dice").click()  # a random reference seed for row 1
            deadline = time.monotonic() + 30
            while f"composite={first}:{rows_before[0][1]}:" in page.url and time.monotonic() < deadline:
                page.wait_for_timeout(100)
            _composite_settled(page, [f"composite={first}:{_field(page, '#row-1-reference')}:"])
            page.locator("#composite-target input").fill("7")
            page.locator("#composite-target input").press("Enter")
            link = _composite_settled(page, ["target=7&", f",{second}:42:", f",{third}:", f":{_text(epsilon)}&"])
            rows = _shown_rows(page)
            assert [part for part, *_ in rows] == [first, second, third] and rows[2][2] == _text(epsilon)
            built = _image_bytes(page, "#composite-edited")
            page.locator("#composite-edited img").evaluate("img => img.decode()")
            COMPOSITE_SCREENSHOT.parent.mkdir(exist_ok=True)
            page.screenshot(path=str(COMPOSITE_SCREENSHOT), full_page=True)
            # The link's composite is the library's, byte for byte.
            expected = composite(editor, 7, [(part, int(seed), float(eps)) for part, seed, eps in rows],
                                 model.config.truncation)
            assert np.array_equal(np.asarray(Image.open(io.BytesIO(built)).convert("RGB")), expected.edited)

            again = browser.new_context(viewport={"width": 1280, "height": 1000}).new_page()
            again.on("pageerror", lambda e: errors.append(str(e)))
            again.goto(link)  # a new page: the composite tab opens with the rows filled in
            again.locator("#row-1-part").wait_for(timeout=30_000)
            assert _composite_settled(again, ["composite="]) == link
            deadline = time.monotonic() + 30
            while _image_bytes(again, "#composite-edited") != built and time.monotonic() < deadline:
                again.wait_for_timeout(200)
            assert _image_bytes(again, "#composite-edited") == built
            assert _shown_rows(again) == rows and _field(again, "#composite-target") == "7"
            assert not again.locator("#notice").is_visible()

            # Several controls changed in a burst, each asking for a composite: the composite on show at the end
            # is the final controls' (one listener, always_last: no late result overwrites a newer one).
            page.locator("#row-1-reference-dice").click()
            page.locator("#row-3-epsilon input[type=number]").fill("0.5")
            page.locator("#row-3-epsilon input[type=number]").press("Enter")
            page.locator("#row-2-reference-dice").click()
            page.locator("#composite-target input").fill("11")
            page.locator("#composite-target input").press("Enter")
            page.locator("#row-1-reference-dice").click()
            page.locator("#row-2-remove").click()
            page.locator("#composite-target-dice").click()
            final = _composite_settled(page, [f"composite={first}:", f",{third}:", ":0.5&"],
                                       absent=("target=11&", f",{second}:"))  # the last two changes made
            shown = _shown_rows(page)
            target = int(_field(page, "#composite-target"))
            rows = [(part, int(seed), float(eps)) for part, seed, eps in shown]
            assert [part for part, *_ in rows] == [first, third] and rows[1][2] == 0.5
            expected = composite(editor, target, rows, model.config.truncation)
            assert final.endswith(_composite_query(served.model, target, rows, model.config.truncation))
            page.wait_for_timeout(1000)  # room for a late result, were one still on its way
            for _ in range(2):
                assert _field(page, "#composite-link") == final and server.views("composite")[-1] in final
                shown_bytes = _image_bytes(page, "#composite-edited")
                assert np.array_equal(np.asarray(Image.open(io.BytesIO(shown_bytes)).convert("RGB")), expected.edited)
            again.get_by_role("tab", name="Single edit").click()  # the address bar has the tab on show's link
            deadline = time.monotonic() + 10
            while "composite=" in again.url and time.monotonic() < deadline:
                again.wait_for_timeout(100)
            assert "composite=" not in again.url and f"model={served.model}&target=" in again.url

            phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
            small = phone.new_page()
            small.goto(link)
            small.locator("#composite-edited img").wait_for(timeout=30_000)
            edited_top = small.locator("#composite-edited").bounding_box()["y"]
            assert edited_top < small.locator("#composite-controls").bounding_box()["y"]  # the result first
            assert edited_top < 844 and small.evaluate("document.documentElement.scrollWidth") <= 390
            assert not errors, errors
        finally:
            browser.close()
    report(capsys, f"browser: a three-row composite built by hand; its link gave the same bytes in a new page: "
                   f"{link.partition('?')[2]}; screenshot: {COMPOSITE_SCREENSHOT}")


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium at /usr/bin/chromium")
def test_browser_upload_a_picture_edit_it_and_open_its_link(server, served, tmp_path, capsys):
    """Upload a held-out procedural face as the target, wait for its projection, edit its hair, and open the
    page's link in a new page: the same edited PNG bytes, as /project and /edit give them too; there, a webcam
    capture (chromium's fake camera) becomes the reference. A link to an upload the server does not have says so
    and shows a seed; a file that is no picture gets a notice. Screenshots at 1280 and 390 px with the upload in
    place."""
    from gradio_client import Client, handle_file
    from playwright.sync_api import sync_playwright

    path = tmp_path / "face.png"
    Image.fromarray(render_face(EVAL_FACES.start + 11, 64)[0]).save(path)
    (tmp_path / "not-a-picture.png").write_bytes(b"hello, not a picture")
    part = "hair" if "hair" in served.parts else served.parts[-1]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"])
        try:
            errors = []
            page = browser.new_context(viewport={"width": 1280, "height": 1000}).new_page()
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(server.url)
            _settled(page, "#link", [f"model={served.model}&"])
            page.locator("#target-kind").get_by_text("Your picture").click()
            page.locator("#target-upload input[type=file]").set_input_files(str(path))
            link = _settled(page, "#link", ["target=upload:"], timeout=120)  # projected (a progress bar), edited
            name = re.search(r"target=(upload:[0-9a-f]{32})&", link)[1]
            line = page.locator("#target-fidelity").inner_text()
            assert re.search(r"PSNR \d+\.\d dB", line) and "only what it can represent" in line
            assert page.locator("#target-projection img").get_attribute("src")
            page.locator("#part input").click()
            page.get_by_role("option", name=part, exact=True).click()
            link = _settled(page, "#link", [f"target={name}&", f"part={part}&"])
            edited = _image_bytes(page, "#edited")
            page.locator("#edited img").evaluate("img => img.decode()")
            page.screenshot(path=str(UPLOAD_SCREENSHOTS[0]), full_page=True)

            # The API: the same file is the same upload, and /edit with its name gives the same bytes.
            client = Client(server.url, verbose=False)
            assert client.predict(served.model, handle_file(str(path)), api_name="/project")[2] == name
            query = dict(pair.split("=", 1) for pair in link.partition("?")[2].split("&"))
            through_api = client.predict(served.model, name, int(query["reference"]), part, float(query["epsilon"]),
                                         "sequential", float(query["threshold"]), 1.0, float(query["truncation"]),
                                         api_name="/edit")
            assert Path(through_api[0]).read_bytes() == edited and through_api[5] == "?" + link.partition("?")[2]

            again = browser.new_context(viewport={"width": 1280, "height": 1000}).new_page()
            again.on("pageerror", lambda e: errors.append(str(e)))
            again.goto(link)  # a new page: the upload is the target, and the edit is the same, byte for byte
            assert _settled(again, "#link", [f"target={name}&", f"part={part}&"]) == link
            deadline = time.monotonic() + 30
            while _image_bytes(again, "#edited") != edited and time.monotonic() < deadline:
                again.wait_for_timeout(200)
            assert _image_bytes(again, "#edited") == edited
            assert again.locator("#target-projection img").is_visible() and again.locator("#target-upload img").count()
            assert not again.locator("#target").is_visible() and not again.locator("#notice").is_visible()
            again.wait_for_timeout(1000)  # room for a late view of the page's load, were one on its way
            assert _image_bytes(again, "#edited") == edited and _field(again, "#link") == link
            again.locator("#reference-kind").get_by_text("Your picture").click()  # the webcam, as the reference
            again.locator("#reference-upload button[aria-label='Capture from camera']").click()
            again.get_by_text("Click to Access Webcam").click()
            again.wait_for_function("() => { const v = document.querySelector('#reference-upload video');"
                                    " return v && v.readyState >= 2 && v.videoWidth > 0; }", timeout=30_000)
            again.locator("#reference-upload button[aria-label='capture photo']").click()
            _settled(again, "#link", [f"target={name}&", "reference=upload:"], timeout=120)
            assert again.locator("#reference-projection img").is_visible()

            phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
            small = phone.new_page()
            small.on("pageerror", lambda e: errors.append(str(e)))
            small.goto(link)
            _settled(small, "#link", [f"target={name}&"])
            small.locator("#target-projection img").wait_for(timeout=30_000)
            assert small.evaluate("document.documentElement.scrollWidth") <= 390  # nothing sticks out sideways
            for pane in ("#target-upload", "#target-projection", "#target-fidelity"):
                box = small.locator(pane).bounding_box()
                assert box["x"] >= 0 and box["x"] + box["width"] <= 390, pane
            small.locator("#target-upload").scroll_into_view_if_needed()
            small.screenshot(path=str(UPLOAD_SCREENSHOTS[1]), full_page=True)

            # A link to an upload the server does not have: a notice that says so, and a seed target.
            made = len(server.views("edit"))
            page.goto(server.url + f"?model={served.model}&target=upload:{'0' * 32}&part={part}")
            page.locator("#notice").wait_for(state="visible", timeout=30_000)
            notice = page.locator("#notice").inner_text()
            assert "is no longer on the server" in notice and "upload it again" in notice
            # The fallback edit is at the part's own ε, and so is every view the load made: none of the part at
            # the default part's ε, read while the link's controls were half set.
            epsilon = _text(served.epsilons[served.parts.index(part)])
            link = _settled(page, "#link", [f"part={part}&", f"epsilon={epsilon}&"], absent=("upload:",))
            page.wait_for_timeout(1000)  # room for a late view of the load, were one on its way
            views = server.views("edit")[made:]
            assert views and all(f"epsilon={epsilon}&" in view for view in views), views
            assert _field(page, "#link") == link and link.endswith(views[-1])
            assert re.search(r"target=\d+&", link) and page.locator("#target").is_visible()
            # A file that is no picture: a notice, and the last good edit stays.
            page.locator("#target-kind").get_by_text("Your picture").click()
            page.locator("#target-upload input[type=file]").set_input_files(str(tmp_path / "not-a-picture.png"))
            page.get_by_text("not a picture this app can read").first.wait_for(timeout=60_000)
            assert page.get_by_text("Error", exact=True).count() == 0 and _field(page, "#link") == link
            assert not errors, errors
        finally:
            browser.close()
    for screenshot, width in zip(UPLOAD_SCREENSHOTS, (1280, 390), strict=True):
        assert Image.open(screenshot).size[0] == width
    report(capsys, f"browser: an uploaded face's hair edit came back byte for byte from its link ({name}); "
                   f"screenshots: {', '.join(map(str, UPLOAD_SCREENSHOTS))}")
