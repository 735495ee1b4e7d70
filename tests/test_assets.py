"""The embedded model in assets/: complete, small, safetensors only, and it edits locally."""

from pathlib import Path

import numpy as np
import pytest

from localedit import Editor, load_model

ASSETS = Path(__file__).resolve().parents[1] / "assets"


@pytest.fixture(scope="module")
def model():
    return load_model(str(ASSETS / "faces64"))


def test_assets_are_small_and_safe():
    files = [p for p in ASSETS.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= 25 * 2**20
    weights = {p.suffix for p in files} - {".md", ".json", ".png"}
    assert weights == {".safetensors"}, weights  # no pickles
    for folder in {p.parent for p in files if p.suffix == ".safetensors"}:
        assert (folder / "README.md").exists(), f"{folder} has no model card"


def test_embedded_model_has_named_parts(model):
    assert model.config.size == 64
    assert {"eyes", "mouth", "nose", "hair", "skin", "background"} <= set(model.catalog.parts)


def test_embedded_model_edits_locally(model):
    editor = Editor(model.generator, model.catalog)
    r = editor.edit(1, 0, "hair")
    assert not np.array_equal(r.edited, r.target)  # a visible change
    assert r.in_mse > 4 * r.out_mse  # that stays mostly inside the part
