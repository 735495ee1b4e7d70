"""The checkpoint probe: its swap measure reads what the swap moved, and the command reads checkpoints and folders."""

import math

import numpy as np
import pytest
import torch

from localedit.hub import load_model
from localedit.judge import load_judge
from localedit.probe import Probe, checkpoint_generator, probe
from localedit.train_config import TrainConfig
from localedit.train_run import train


@pytest.fixture(scope="module")
def faces64():
    return load_model("assets/faces64").generator


def _all_channels(g, parts, take: bool) -> dict:
    """Every channel of every style layer (the swap then renders R itself), or none (it renders T)."""
    widths = {name: s.shape[1] for name, s in g.seed_styles([0], 1.0).items()}
    return {part: {layer: list(range(c)) if take else [] for layer, c in widths.items()} for part in parts}


def test_the_swap_reads_full_transfer_when_every_channel_moves_and_none_when_none_does(faces64):
    judge = load_judge()
    everything = probe(faces64, judge, _all_channels(faces64, ("eyes", "mouth", "nose", "skin"), True), pairs=6,
                       samples=8, examples=2)
    nothing = probe(faces64, judge, _all_channels(faces64, ("eyes", "mouth"), False), pairs=6, samples=8)
    assert set(everything.swap) == {"eyes", "mouth", "nose", "skin"} and set(nothing.swap) == {"eyes", "mouth"}
    for part in ("eyes", "mouth", "nose", "skin"):
        assert everything.swap[part].color == pytest.approx(1.0, abs=1e-4)
        if part in nothing.swap:
            assert nothing.swap[part].color == pytest.approx(0.0, abs=1e-4)
            assert math.isnan(nothing.swap[part].leak)  # nothing changed inside: no ratio
            assert nothing.axes[part] == pytest.approx((0.0, 0.0, 0.0), abs=1e-4)
        assert everything.axes[part] == pytest.approx((1.0, 1.0, 1.0), abs=1e-4)  # each axis all the way
        target, reference, swapped = everything.examples[part][:3]  # every channel swapped: the reference itself
        assert np.abs(swapped.astype(int) - reference).max() <= 1 and np.abs(target.astype(int) - reference).max() > 50
        assert len(everything.examples[part]) in (3, 6) and nothing.examples == {}
    # The sample figures, and where the colours are decided, do not depend on the reserved channels.
    assert everything.fine == nothing.fine and all(-1 < v < 1.5 for v in everything.fine.values())
    assert everything.fd == nothing.fd and everything.area == nothing.area and everything.brows == nothing.brows
    assert everything.area["mouth"] > 10 and everything.fd > 0
    assert len(everything.row()) == len(nothing.row()) == len(Probe.HEADER)  # the columns line up
    for column in (2, 3):  # the nose's and the skin's
        assert everything.row().split()[column].startswith("1.00/100%/") and nothing.row().split()[column] == "—"


def test_a_checkpoint_gives_its_ema_generator_and_reserved_channels(tmp_path):
    tiny = TrainConfig(size=16, channels=(32, 16, 16), style_dim=32, batch=4, n_faces=8,
                       swap_channels={"eyes": {"convs.3": [1]}, "mouth": {"convs.3": [2]}})
    trainer = train(tmp_path, tiny, steps=1, progress=False)
    g, channels = checkpoint_generator(tmp_path / "latest.pt")
    assert channels == {"eyes": {"convs.3": [1]}, "mouth": {"convs.3": [2]}}
    assert not g.training
    for k, v in trainer.g_ema.state_dict().items():
        if k != "latent_avg":
            assert torch.equal(g.state_dict()[k], v), k


def test_the_command_probes_a_checkpoint_and_a_folder(tmp_path, capsys):
    from localedit.__main__ import main

    train(tmp_path / "run", TrainConfig(size=16, channels=(32, 16, 16), style_dim=32, batch=4, n_faces=8), steps=1,
          progress=False)
    with pytest.raises(SystemExit, match="no such checkpoint"):
        main(["probe", str(tmp_path / "run" / "nothing.pt"), "--pairs", "2", "--samples", "4"])
    main(["probe", str(tmp_path / "run" / "latest.pt"), "assets/faces64", "--pairs", "2", "--samples", "4",
          "--threads", "1", "--sheets", str(tmp_path / "sheets")])
    lines = capsys.readouterr().out.strip().splitlines()
    assert "iris moved" in lines[0] and len(lines) == 3
    assert lines[1].startswith(str(tmp_path)) and lines[2].startswith("assets/faces64")
    # The tiny run reserves no nose or skin; the folder's catalog names them, so their stand-ins are probed too.
    assert lines[1].split()[3:5] == ["—", "—"] and "—" not in lines[2].split()[3:5]
    assert sorted(p.name for p in (tmp_path / "sheets").iterdir()) == ["assets-faces64-swap.png", "run-latest-swap.png"]

