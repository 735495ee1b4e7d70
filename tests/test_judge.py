"""The judge: the shipped weights load strictly and segment held-out faces; the Fréchet distance is exact."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from localedit.faces import PARTS
from localedit.judge import HELDOUT_OFFSET, Judge, JudgeConfig, evaluate_judge, frechet_distance, load_judge

ASSETS = Path(__file__).resolve().parent.parent / "assets" / "judge"


@pytest.fixture(scope="module")
def judge():
    torch.manual_seed(0)
    return load_judge(ASSETS)


def test_shipped_judge_segments_held_out_faces(judge):
    iou = evaluate_judge(judge, n=64, offset=HELDOUT_OFFSET + 500_000)
    assert iou["mean"] >= 0.85, iou
    assert min(iou[p] for p in PARTS) >= 0.6, iou


def test_shipped_files_are_small_and_consistent(judge):
    assert (ASSETS / "judge.safetensors").stat().st_size < 2_000_000
    config = json.loads((ASSETS / "config.json").read_text())
    assert tuple(config["parts"]) == PARTS
    assert "mean" in (ASSETS / "README.md").read_text()


def test_load_refuses_a_mismatched_file(tmp_path):
    shutil.copy(ASSETS / "config.json", tmp_path / "config.json")
    state = load_file(str(ASSETS / "judge.safetensors"))
    dropped = next(iter(state))
    del state[dropped]
    state["extra.weight"] = torch.zeros(1)
    save_file(state, str(tmp_path / "judge.safetensors"))
    with pytest.raises(ValueError, match="missing") as error:
        load_judge(tmp_path)
    assert dropped in str(error.value) and "extra.weight" in str(error.value)


def test_segment_and_features_shapes(judge):
    images = torch.rand(3, 3, 64, 64) * 2 - 1
    labels = judge.segment(images)
    assert labels.shape == (3, 64, 64) and labels.dtype == torch.long and labels.max() < len(PARTS)
    features = judge.features(images)
    assert features.shape == (3, sum(judge.config.channels))
    with pytest.raises(ValueError, match=r"\[B, 3, 64, 64\]"):
        judge.segment(torch.zeros(3, 64, 64))


def test_a_tiny_untrained_judge_runs_forward():
    model = Judge(JudgeConfig(channels=(4, 8), size=16)).eval()
    assert model(torch.zeros(2, 3, 16, 16)).shape == (2, len(PARTS), 16, 16)


def test_frechet_distance_of_a_set_with_itself_is_zero():
    feats = np.random.default_rng(0).normal(size=(500, 8))
    assert abs(frechet_distance(feats, feats)) < 1e-6


def test_frechet_distance_matches_the_closed_form():
    # Two Gaussians with diagonal covariances: FD = |mu_a - mu_b|^2 + sum (sigma_a - sigma_b)^2.
    rng = np.random.default_rng(1)
    sigma_a, sigma_b = np.array([1.0, 2.0, 0.5]), np.array([1.5, 1.0, 0.5])
    shift = np.array([1.0, -2.0, 0.5])
    a = rng.normal(size=(200_000, 3)) * sigma_a
    b = rng.normal(size=(200_000, 3)) * sigma_b + shift
    expected = (shift**2).sum() + ((sigma_a - sigma_b) ** 2).sum()
    assert frechet_distance(a, b) == pytest.approx(expected, rel=0.02)
    assert frechet_distance(torch.from_numpy(a), torch.from_numpy(b)) == pytest.approx(frechet_distance(a, b))


def test_frechet_distance_refuses_mismatched_features():
    with pytest.raises(ValueError, match=r"\[N, F\]"):
        frechet_distance(np.zeros((10, 3)), np.zeros((10, 4)))
