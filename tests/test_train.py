"""The trainer on a 16×16 model: finite losses, exact resumption, and an export that loads."""

import json
import shutil
from dataclasses import replace

import pytest
import torch

from localedit.discriminator import Discriminator, minibatch_stddev
from localedit.train import Trainer
from localedit.train_config import TrainConfig
from localedit.train_export import export
from localedit.train_run import train


class LabelsJudge:
    """Stands in for the judge in trainer tests: an untrained G draws no eyes to find, so this judge returns the
    training faces' own labels, the first len(images) of them."""

    def __init__(self, labels):
        self._labels = labels

    def labels(self, images):
        return self._labels[: len(images)].long()


TINY = TrainConfig(size=16, channels=(32, 16, 16), style_dim=32, batch=4, n_faces=8, r1_every=2)


def _states(trainer: Trainer) -> dict:
    return {name: getattr(trainer, name).state_dict() for name in ("g", "d", "g_ema", "opt_g", "opt_d")}


def _assert_same(a, b, where: str = "") -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    else:
        assert a == b, where


def test_discriminator_shapes():
    d = Discriminator(16, (32, 16, 16))
    assert d(torch.randn(8, 3, 16, 16)).shape == (8,)
    x = torch.randn(8, 5, 4, 4)
    y = minibatch_stddev(x)
    assert y.shape == (8, 6, 4, 4)
    # Samples n and n + B/4 share a group, so they see the same statistic; samples 0 and 1 do not.
    assert torch.equal(y[0, 5], y[2, 5]) and not torch.equal(y[0, 5], y[1, 5])


def test_resume_continues_exactly(tmp_path):
    run = tmp_path / "run"
    first = train(run, TINY, steps=2, sample_every=1, checkpoint_every=2, keep_every=1, progress=False)
    assert first.step == 2 and first.images_seen == 8
    assert (run / "grids" / "step-000002.png").exists()
    kept = [torch.load(run / f"step-00000{i}.pt", weights_only=True)["step"] for i in (1, 2)]
    assert kept == [1, 2]  # each a checkpoint of its own step, which latest.pt overwrites
    assert all(torch.isfinite(p).all() for p in first.g.parameters())
    shutil.copytree(run, tmp_path / "copy")

    # Step 3 includes R1 (r1_every=2): the regularised path must resume exactly too.
    straight = train(run, None, steps=3, progress=False)
    resumed = train(tmp_path / "elsewhere", None, steps=3, resume=tmp_path / "copy" / "latest.pt", progress=False)
    assert straight.step == resumed.step == 3
    assert [(s["start_step"], s["end_step"]) for s in straight.sessions] == [(0, 2), (2, 3)]
    _assert_same(_states(straight), _states(resumed))

    with pytest.raises(ValueError, match="cannot resume"):
        train(run, TrainConfig(**{**TINY.to_dict(), "batch": 8}), steps=4, progress=False)


def test_a_run_stopped_and_resumed_ends_where_one_that_never_stopped_does(tmp_path):
    """With the part losses on: their running moments and the RNG must come back with the weights. (The area loss
    keeps no state; it reads the real judge's soft masks, which the stand-in judge here has not.)"""
    from localedit.train import render_faces

    config = replace(TINY, size=32, channels=(32, 16, 16, 8), n_faces=16, batch=8, color_stats=1.0,
                     within_group=0.5, groups=2, group_size=4, part_swap=2.0, swap_pairs=4,
                     stat_parts=("skin", "eyes", "mouth", "eyebrows"))
    faces, labels = render_faces(16, 32)

    def steps(trainer: Trainer, n: int) -> Trainer:
        trainer.judge = LabelsJudge(labels)  # an untrained G draws no eyes for the real judge to find
        for _ in range(n):
            trainer.train_step()
        return trainer

    straight = steps(Trainer(config, faces, labels=labels), 4)  # each trainer seeds torch as it is built
    steps(Trainer(config, faces, labels=labels), 2).save(tmp_path / "latest.pt")
    resumed = steps(Trainer.load(tmp_path / "latest.pt", faces, labels=labels), 2)
    _assert_same(_states(straight), _states(resumed))
    assert straight.color_loss.second is not None
    assert torch.equal(straight.color_loss.second, resumed.color_loss.second)


def test_export_loads(tmp_path):
    run = tmp_path / "run"
    trainer = train(run, TINY, steps=1, progress=False)
    folder = tmp_path / "model"
    export(run / "latest.pt", folder, "tiny faces", "a test model", "python -m localedit train --export")
    from localedit.hub import load_model

    model = load_model(str(folder))
    config = json.loads((folder / "config.json").read_text())
    assert config["name"] == "tiny faces" and config["description"] == "a test model"
    card = (folder / "README.md").read_text()
    assert "4 images seen" in card and "python -m localedit train --export" in card

    g = model.generator
    ema = {k: v for k, v in trainer.g_ema.state_dict().items() if k != "latent_avg"}
    for k, v in ema.items():
        assert torch.equal(g.state_dict()[k], v), k
    # latent_avg is recomputed as the mean of the mapping, not the running mean from training.
    z = torch.randn(4096, TINY.style_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(g.latent_avg, g.mapping(z).mean(0), atol=1e-6)
        assert g(torch.randn(2, TINY.style_dim)).shape == (2, 3, 16, 16)


def test_cli_trains_and_exports(tmp_path):
    from localedit.__main__ import main

    run = tmp_path / "run"
    main(["train", "--run-dir", str(run), "--steps", "1", "--size", "16", "--channels", "32,16,16",
          "--style-dim", "32", "--batch", "4", "--n-faces", "8", "--fp32", "--lr", "0.001"])
    state = torch.load(run / "latest.pt", weights_only=True)
    assert state["step"] == 1 and state["config"]["bf16"] is False and state["wall_time"] > 0
    assert state["config"]["lr"] == 0.001
    main(["train", "--run-dir", str(run), "--export", str(tmp_path / "model")])
    assert (tmp_path / "model" / "generator.safetensors").exists()


def test_bf16_only_where_the_hardware_has_it(monkeypatch):
    import torch

    from localedit import train

    faces = torch.zeros(8, 3, 16, 16, dtype=torch.uint8)
    config = TrainConfig(size=16, channels=(16, 16, 8), style_dim=16, batch=4, n_faces=8)
    monkeypatch.setattr(train, "native_bf16", lambda device: False)
    assert train.Trainer(config, faces).precision == "fp32"  # an AVX2-only CPU: emulated bf16 is slow
    monkeypatch.setattr(train, "native_bf16", lambda device: True)
    assert train.Trainer(config, faces).precision == "bf16"
    assert train.Trainer(replace(config, bf16=False), faces).precision == "fp32"  # --fp32 always wins


def test_warm_start_and_d_warmup(tmp_path):
    run = tmp_path / "run"
    train(run, TINY, steps=1, progress=False)
    export(run / "latest.pt", tmp_path / "model", "tiny", "a test model")
    from localedit.hub import load_model

    source = load_model(str(tmp_path / "model")).generator.state_dict()
    warm = replace(TINY, init=str(tmp_path / "model"), d_warmup=2)
    trainer = train(tmp_path / "warm", warm, steps=2, progress=False)
    # Two steps of D only: G and its EMA are still the source model's (but the running mean of w), D has moved.
    for k, v in [*trainer.g.state_dict().items(), *trainer.g_ema.state_dict().items()]:
        assert k == "latent_avg" or torch.equal(v, source[k]), k
    assert not all(torch.equal(v, Discriminator(16, (32, 16, 16)).state_dict()[k])
                   for k, v in trainer.d.state_dict().items())
    card_state = torch.load(tmp_path / "warm" / "latest.pt", weights_only=True)
    from localedit.train_export import model_card

    assert "warm start" in model_card(card_state, "n", "d", "")
    trainer = train(tmp_path / "warm", None, steps=3, progress=False)
    assert not torch.equal(trainer.g.state_dict()["conv1.conv.weight"], source["conv1.conv.weight"])

    with pytest.raises(ValueError, match="channels"):
        train(tmp_path / "bad", replace(TINY, channels=(32, 32, 16), init=str(tmp_path / "model")), steps=1,
              progress=False)


def test_warm_start_carries_d_from_a_checkpoint(tmp_path):
    run = tmp_path / "run"
    source = train(run, TINY, steps=2, progress=False)
    export(run / "latest.pt", tmp_path / "model", "tiny", "a test model")
    warm = replace(TINY, init=str(tmp_path / "model"), init_d=str(run / "latest.pt"))
    trainer = Trainer(warm, torch.zeros(8, 3, 16, 16, dtype=torch.uint8))
    trainer.start_d_from(warm.init_d)
    for k, v in trainer.d.state_dict().items():
        assert torch.equal(v, source.d.state_dict()[k]), k
    train(tmp_path / "warm", warm, steps=1, progress=False)
    card_state = torch.load(tmp_path / "warm" / "latest.pt", weights_only=True)
    from localedit.train_export import model_card

    assert f"D from `{run / 'latest.pt'}`" in model_card(card_state, "n", "d", "")

    with pytest.raises(ValueError, match="needs init"):
        replace(TINY, init_d=str(run / "latest.pt"))
    wide = tmp_path / "wide"
    train(wide, replace(TINY, channels=(32, 32, 16)), steps=1, progress=False)
    with pytest.raises(ValueError, match="no discriminator this run can take"):
        Trainer(warm, torch.zeros(8, 3, 16, 16, dtype=torch.uint8)).start_d_from(wide / "latest.pt")


def test_color_stats_step_and_checkpoint(tmp_path):
    from localedit.train import render_faces

    coloured = replace(TINY, size=32, channels=(32, 16, 16, 8), color_stats=1.0, n_faces=16, batch=8,
                       stat_parts=("skin", "eyes", "mouth", "eyebrows"))
    faces, labels = render_faces(16, 32)
    trainer = Trainer(coloured, faces, labels=labels)

    trainer.judge = LabelsJudge(labels)
    trainer.train_step()
    stats = trainer.train_step()
    assert stats["color_stats"] > 0 and trainer.color_loss.mean is not None
    trainer.save(tmp_path / "latest.pt")
    loaded = Trainer.load(tmp_path / "latest.pt", faces, labels=labels)
    assert torch.equal(loaded.color_loss.second, trainer.color_loss.second)
    assert loaded.config.stat_parts == coloured.stat_parts and loaded.color_loss.target.mean.shape == (12,)
    with pytest.raises(ValueError, match="labels"):
        Trainer(coloured, faces)


def test_stat_parts_are_checked():
    with pytest.raises(ValueError, match="stat_parts"):
        replace(TINY, color_stats=1.0, stat_parts=("skin", "eyes", "fringe"))
    with pytest.raises(ValueError, match="stat_parts"):
        replace(TINY, color_stats=1.0, stat_parts=("eyes", "mouth"))  # no skin to stand against
    with pytest.raises(ValueError, match="within-group"):
        replace(TINY, within_group=1.0, stat_parts=("skin", "eyebrows"))


def test_a_branch_continues_the_whole_state_under_other_loss_settings(tmp_path):
    from localedit.train_export import model_card

    run = tmp_path / "run"
    source = train(run, TINY, steps=2, progress=False)
    changes = {"stat_parts": ("skin", "eyes", "mouth", "eyebrows")}
    branch = Trainer.load(run / "latest.pt", changes=changes)
    assert branch.step == 2 and branch.config.stat_parts == changes["stat_parts"]
    assert branch.config.branched_from == f"{run / 'latest.pt'} (step 2)"
    for name in ("g", "d", "g_ema"):
        for k, v in getattr(branch, name).state_dict().items():
            assert torch.equal(v, getattr(source, name).state_dict()[k]), (name, k)
    moments = [t.opt_g.state_dict()["state"][0]["exp_avg_sq"] for t in (branch, source)]
    assert torch.equal(*moments)  # Adam's moments carry over: no restart jolt

    trained = train(tmp_path / "branch", None, steps=3, progress=False, branch=run / "latest.pt", changes=changes)
    assert trained.step == 3
    state = torch.load(tmp_path / "branch" / "latest.pt", weights_only=True)
    assert "Branched from" in model_card(state, "n", "d", "")
    # The same call resumes the branch; another branch, or a resume named too, is refused.
    assert train(tmp_path / "branch", None, steps=4, progress=False, branch=run / "latest.pt",
                 changes=changes).step == 4
    with pytest.raises(ValueError, match="not this branch"):
        train(tmp_path / "branch", None, steps=5, progress=False, branch=run / "latest.pt",
              changes={"stat_parts": ("skin", "eyes", "mouth")})
    with pytest.raises(ValueError, match="not both"):
        train(tmp_path / "other", None, steps=5, progress=False, branch=run / "latest.pt",
              resume=run / "latest.pt")
    with pytest.raises(ValueError, match="a branch changes only"):
        Trainer.load(run / "latest.pt", changes={"channels": (32, 32, 16)})


def test_a_branch_may_change_the_learning_rate_and_keeps_it_on_resume(tmp_path):
    run = tmp_path / "run"
    train(run, TINY, steps=1, progress=False)
    faster = train(tmp_path / "branch", None, steps=2, progress=False, branch=run / "latest.pt",
                   changes={"lr": 0.004})
    c = TINY.r1_every / (TINY.r1_every + 1)
    assert [g["lr"] for g in faster.opt_g.param_groups] == [0.004]
    assert [g["lr"] for g in faster.opt_d.param_groups] == [pytest.approx(0.004 * c)]
    resumed = Trainer.load(tmp_path / "branch" / "latest.pt")
    assert resumed.config.lr == 0.004 and resumed.opt_g.param_groups[0]["lr"] == 0.004
    assert Trainer.load(run / "latest.pt").opt_g.param_groups[0]["lr"] == TINY.lr


def test_a_branch_that_reads_other_parts_restarts_the_running_moments(tmp_path):
    from localedit.train import render_faces

    coloured = replace(TINY, size=32, channels=(32, 16, 16, 8), color_stats=1.0, n_faces=16, batch=8)
    faces, labels = render_faces(16, 32)
    trainer = Trainer(coloured, faces, labels=labels)
    trainer.judge = LabelsJudge(labels)
    trainer.train_step()
    trainer.save(tmp_path / "latest.pt")
    heavier = Trainer.load(tmp_path / "latest.pt", faces, labels=labels, changes={"color_stats": 2.0})
    assert heavier.config.color_stats == 2.0 and torch.equal(heavier.color_loss.mean, trainer.color_loss.mean)
    browed = Trainer.load(tmp_path / "latest.pt", faces, labels=labels,
                          changes={"stat_parts": ("skin", "eyes", "mouth", "eyebrows")})
    assert browed.color_loss.mean is None and browed.color_loss.target.mean.shape == (12,)


def test_the_part_area_loss_trains_checkpoints_and_branches(tmp_path):
    from localedit.train import render_faces

    sized = replace(TINY, size=32, channels=(32, 16, 16, 8), part_area=1.0, n_faces=16, batch=8)
    faces, labels = render_faces(16, 32)
    trainer = Trainer(sized, faces)  # the area loss reads the judge's soft masks: no labels needed
    stats = trainer.train_step()
    assert stats["part_area"] > 0 and trainer.area_loss.target.mean.shape == (8,)
    trainer.save(tmp_path / "latest.pt")
    heavier = Trainer.load(tmp_path / "latest.pt", faces, changes={"part_area": 2.0})
    assert heavier.config.part_area == 2.0 and heavier.step == trainer.step
    assert torch.equal(heavier.area_loss.target.mean, trainer.area_loss.target.mean)
    with pytest.raises(ValueError, match="part_area"):
        replace(TINY, part_area=-1.0)
