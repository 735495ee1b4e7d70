"""`python -m localedit ...` end to end on a tiny model folder in a temp dir: catalog, label, edit, grid, bench."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from localedit.hub import load_model, save_generator

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "localedit", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_generator):
    folder = tmp_path_factory.mktemp("models") / "tiny"
    save_generator(folder, tiny_generator.config, tiny_generator.state_dict(), card="# tiny\nrandom weights")
    run("catalog", str(folder), "--layer", "convs.2", "--clusters", "4", "--samples", "8")
    run("label", str(folder), "eyes=0", "mouth=1,2", "--epsilon", "eyes=40", "--threshold", "mouth=0.25")
    return folder


def test_catalog_and_label(model_dir):
    model = load_model(str(model_dir))
    assert model.catalog.layer == "convs.2" and model.catalog.k == 4 and model.catalog.n_samples == 8
    assert model.catalog.parts["eyes"].clusters == (0,) and model.catalog.parts["eyes"].epsilon == 40
    assert model.catalog.parts["mouth"].clusters == (1, 2) and model.catalog.parts["mouth"].threshold == 0.25
    assert model.catalog.parts["eyes"].threshold == 0.1
    sheet = Image.open(model_dir / "catalog.png")
    assert sheet.width > 500 and sheet.height > 200


def test_label_sets_per_part_settings(model_dir, tmp_path):
    import shutil

    folder = tmp_path / "tiny"
    shutil.copytree(model_dir, folder)
    run("label", str(folder), "eyes=0", "--torgb", "eyes=on", "--profile", "eyes=1,0.5,0")
    eyes = load_model(str(folder)).catalog.parts["eyes"]
    assert eyes.torgb and dict(eyes.epsilon_profile) == {"coarse": 1.0, "middle": 0.5, "fine": 0.0}
    assert load_model(str(folder)).catalog.parts["mouth"].torgb is False  # other parts keep theirs
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "localedit", "label", str(folder), "eyes=0", "--profile", "eyes=1,1"],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert proc.returncode != 0 and "an ε profile is 3 weights" in proc.stderr and "Traceback" not in proc.stderr


def test_label_warns_about_shared_clusters_and_removes_parts(model_dir, tmp_path):
    import shutil

    folder = tmp_path / "tiny"
    shutil.copytree(model_dir, folder)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "localedit", "label", str(folder), "nose=1,3"], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=300)
    assert proc.returncode == 0 and "warning: cluster 1 is in mouth and nose" in proc.stderr
    run("label", str(folder), "--remove", "nose")
    assert set(load_model(str(folder)).catalog.parts) == {"eyes", "mouth"}
    assert "no such parts: ['tail']" in _fails("label", str(folder), "--remove", "tail")
    assert "cluster ids from `suggest`" in _fails("label", str(folder), "eyes=three")


def test_sheet_after_labelling(model_dir, tmp_path):
    out = tmp_path / "sheet.png"
    run("sheet", str(model_dir), "--n", "4", "-o", str(out))
    sheet = np.asarray(Image.open(out))
    overview = 128 + 2 * 2  # one row of 4 samples and their overlays, 128 px each
    assert sheet.shape[0] > overview + 2 * 64  # and a row of tiles below it: 2 × 2 half-size samples each
    assert sheet.shape[1] >= 8 * 128


def test_edit_strip_and_grid(model_dir, tmp_path):
    out = run("edit", "--model", str(model_dir), "--target", "3", "--reference", "7", "--part", "eyes",
              "--epsilon", "50", "-o", str(tmp_path / "strip.png"))
    assert "in-MSE" in out
    strip = np.asarray(Image.open(tmp_path / "strip.png"))
    assert strip.shape[1] > 4 * 192
    run("edit", "--model", str(model_dir), "--grid", "--targets", "1", "2", "--references", "3", "4", "5",
        "--part", "eyes,mouth", "-o", str(tmp_path / "grid.png"))
    grid = Image.open(tmp_path / "grid.png")
    assert grid.width > grid.height / 2  # 4 columns × (1 + 2 parts × 2 targets) rows


def test_edit_composite_and_image_only(model_dir, tmp_path):
    from localedit.composite import composite
    from localedit.edit import Editor
    from localedit.hub import load_model

    out = run("edit", "--model", str(model_dir), "--target", "3", "--composite", "eyes=7:30", "mouth=9",
              "-o", str(tmp_path / "strip.png"))
    assert "eyes: in-MSE" in out and "mouth: in-MSE" in out and "outside every part" in out
    strip = Image.open(tmp_path / "strip.png")  # target, 2 references, composite, diff
    assert strip.width > 5 * 192
    run("edit", "--model", str(model_dir), "--target", "3", "--composite", "eyes=7:30", "mouth=9", "--image-only",
        "-o", str(tmp_path / "composite.png"))
    model = load_model(model_dir)
    expected = composite(Editor(model.generator, model.catalog), 3, [("eyes", 7, 30.0), ("mouth", 9)]).edited
    assert np.array_equal(np.asarray(Image.open(tmp_path / "composite.png")), expected)
    run("edit", "--model", str(model_dir), "--target", "3", "--reference", "7", "--part", "eyes", "--image-only",
        "-o", str(tmp_path / "single.png"))
    single = Editor(model.generator, model.catalog).edit(3, 7, "eyes").edited
    assert np.array_equal(np.asarray(Image.open(tmp_path / "single.png")), single)
    for args, message in ((["eyes=7", "eyes=8"], "row 2 (eyes): part 'eyes' is already in row 1"),
                          (["eyes:7"], "PART=SEED"), (["eyes=7", "--part", "eyes"], "drop --grid")):
        assert message in _fails("edit", "--model", str(model_dir), "--target", "3", "--composite", *args,
                                 "-o", str(tmp_path / "bad.png"))
    assert not (tmp_path / "bad.png").exists()


def test_edit_is_reproducible_across_processes(model_dir, tmp_path):
    for name in ("a.png", "b.png"):
        run("edit", "--model", str(model_dir), "--target", "11", "--reference", "12", "--part", "mouth",
            "-o", str(tmp_path / name))
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


def _fails(*args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "localedit", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=300)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    return proc.stderr


def test_bad_input_is_a_clear_error(model_dir, tmp_path):
    seeds = ("--target", "1", "--reference", "2")
    assert "unknown part 'tail'" in _fails("edit", "--model", str(model_dir), *seeds, "--part", "tail",
                                           "-o", str(tmp_path / "x.png"))
    # No silent seeds 0 and 1, no PNG dropped into the current folder, no folder taken for a file.
    assert "--target and --reference" in _fails("edit", "--model", str(model_dir), "--part", "eyes",
                                                "-o", str(tmp_path / "x.png"))
    assert "-o/--output" in _fails("edit", "--model", str(model_dir), *seeds, "--part", "eyes")
    assert "is a folder" in _fails("edit", "--model", str(model_dir), *seeds, "--part", "eyes", "-o", str(tmp_path))
    assert not list(tmp_path.iterdir())


def test_output_folders_are_made(model_dir, tmp_path):
    out = tmp_path / "new" / "deeper" / "strip.png"
    run("edit", "--model", str(model_dir), "--target", "1", "--reference", "2", "--part", "eyes", "-o", str(out))
    assert Image.open(out).width > 0


def test_bench_prints_ratios(model_dir):
    out = run("bench", "--model", str(model_dir), "--samples", "8", "--clusters", "4", "--repeats", "3")
    assert "edit ÷ synth" in out and "cluster ÷ gen" in out
    ratio = float(out.split("edit ÷ synth")[1].split()[0])
    assert ratio > 0  # a figure to read, not a threshold: timings in a test flake


def test_catalog_json_is_readable(model_dir):
    meta = json.loads((model_dir / "catalog.json").read_text())
    assert meta["layer"] == "convs.2" and set(meta["parts"]) == {"eyes", "mouth"}


def test_bench_sizes_prints_seconds_and_ratios():
    out = run("bench", "--sizes", "16", "32", "--repeats", "2")
    rows = [line.split() for line in out.splitlines() if line.startswith("size")]
    assert [int(r[1]) for r in rows] == [16, 32]
    assert all(float(r[2]) > 0 for r in rows)  # no size 256 asked for, so no ratio column
    assert all(len(r) == 4 for r in rows)


def test_bench_faces_prints_a_rate():
    out = run("bench", "--faces", "40", "--face-size", "32", "--workers", "2")
    assert out.startswith("rendered 40 procedural 32×32 faces")
    assert float(out.split(" in ")[1].split()[0]) > 0


def test_samples_grid(model_dir, tmp_path):
    out = tmp_path / "samples.png"
    run("samples", str(model_dir), "--n", "6", "--columns", "3", "-o", str(out))
    image = np.asarray(Image.open(out))
    cell = 128 // 32 * 32  # 32-pixel samples, upscaled to 128
    assert image.shape[:2] == (2 * cell + 3 * 2, 3 * cell + 4 * 2)  # 2 rows × 3 columns, 2-pixel gaps
    assert image[2:2 + cell, 2:2 + cell].std() > 0  # a picture, not a blank cell


def test_help_shows_defaults_and_the_model_has_both_spellings(model_dir, tmp_path):
    assert "(default: 12)" in run("catalog", "--help") and "(default: sequential)" in run("edit", "--help")
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    run("samples", str(model_dir), "--n", "2", "-o", str(a))
    run("samples", "--model", str(model_dir), "--n", "2", "-o", str(b))
    assert a.read_bytes() == b.read_bytes()
    assert "sheet needs a model" in _fails("sheet")
    assert "two models named" in _fails("sheet", str(model_dir), "--model", str(tmp_path))


def test_project_a_picture_then_edit_its_latent(model_dir, tmp_path):
    from localedit.edit import Editor
    from localedit.projection import load_latent

    model = load_model(model_dir)
    picture = Editor(model.generator, model.catalog).sample(5, 0.7).pixels
    Image.fromarray(np.pad(picture, ((0, 0), (8, 8), (0, 0)))).save(tmp_path / "me.png")  # wider than tall
    out = run("project", str(tmp_path / "me.png"), "--model", str(model_dir), "--steps", "5", "--perceptual", "0",
              "-o", str(tmp_path / "proj"))
    assert "PSNR" in out and f"crop {picture.shape[0]}×{picture.shape[0]} at (8, 0)" in out
    assert "has no encoder" in out  # the tiny model has none: the average face is the start
    assert Image.open(tmp_path / "proj" / "projection.png").width > 3 * 64
    latent = load_latent(tmp_path / "proj" / "latent.safetensors")
    run("edit", "--model", str(model_dir), "--target-latent", str(tmp_path / "proj" / "latent.safetensors"),
        "--reference", "7", "--part", "eyes", "--image-only", "-o", str(tmp_path / "edit.png"))
    expected = Editor(model.generator, model.catalog).edit(latent, 7, "eyes").edited
    assert np.array_equal(np.asarray(Image.open(tmp_path / "edit.png")), expected)
    (tmp_path / "text.png").write_text("not a picture")
    assert "not a picture" in _fails("project", str(tmp_path / "text.png"), "--model", str(model_dir),
                                     "-o", str(tmp_path / "bad"))
    assert not (tmp_path / "bad").exists()  # nothing written for a bad picture
    assert "optimizer must be one of lbfgs, adam" in _fails("project", str(tmp_path / "me.png"), "--model",
                                                            str(model_dir), "--optimizer", "sgd",
                                                            "-o", str(tmp_path / "bad"))
    assert not (tmp_path / "bad").exists()
    assert "not a latent file" in _fails("edit", "--model", str(model_dir), "--target-latent",
                                         str(tmp_path / "text.png"), "--reference", "7", "--part", "eyes",
                                         "-o", str(tmp_path / "bad.png"))
    assert "name one target" in _fails("edit", "--model", str(model_dir), "--target", "3", "--target-latent",
                                       str(tmp_path / "proj" / "latent.safetensors"), "--reference", "7",
                                       "--part", "eyes", "-o", str(tmp_path / "bad.png"))
