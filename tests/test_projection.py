"""Projection: reading pictures (and refusing what isn't one), fitting them to the model, and W+ optimisation."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from localedit.encoder import Encoder, EncoderConfig, EncoderTrainConfig, load_encoder, save_encoder, train_encoder
from localedit.projection import ProjectSettings, fit_image, project, psnr, read_image, start_latents


def _png(array: np.ndarray, mode: str | None = None, **kwargs) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buf, format="PNG", **kwargs)
    return buf.getvalue()


def test_read_image_gives_rgb_and_refuses_what_is_not_one(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    assert np.array_equal(read_image(_png(rgb)), rgb)
    path = tmp_path / "a.png"
    path.write_bytes(_png(rgb))
    assert np.array_equal(read_image(path), rgb)
    palette = Image.fromarray(rgb).convert("P")
    buf = io.BytesIO()
    palette.save(buf, format="PNG")
    assert read_image(buf.getvalue()).shape == (20, 30, 3)  # a palette picture without transparency is RGB
    cases = [
        (b"hello, not a picture", "not a picture"),
        (_png(rgb)[:200], "damaged or truncated"),
        (_png(rgb[..., 0]), "no colour channels"),
        (_png(np.dstack([rgb, np.full((20, 30), 128, np.uint8)])), "transparent pixels"),
        (42, "a file's bytes or its path"),
        (str(tmp_path / "missing.png"), "no such picture file"),
    ]
    for data, message in cases:
        with pytest.raises(ValueError, match=message) as e:
            read_image(data)
        assert " object at 0x" not in str(e.value)
    # An alpha channel that is opaque everywhere (a webcam capture) hides nothing: the RGB is read.
    assert np.array_equal(read_image(_png(np.dstack([rgb, np.full((20, 30), 255, np.uint8)]))), rgb)


def test_a_huge_picture_is_refused_before_it_is_decoded(monkeypatch):
    import localedit.projection as projection
    monkeypatch.setattr(projection, "MAX_PIXELS", 100)
    with pytest.raises(ValueError, match="megapixels"):
        read_image(_png(np.zeros((20, 30, 3), np.uint8)))


def test_fit_image_centre_crops_and_reports_it():
    image = np.zeros((40, 100, 3), np.uint8)
    image[:, 30:70] = 255  # the centred 40×40 square is all white
    fitted, crop = fit_image(image, 16)
    assert fitted.shape == (16, 16, 3) and fitted.min() == 255
    assert (crop.left, crop.top, crop.side, crop.width, crop.height) == (30, 0, 40, 100, 40)
    with pytest.raises(ValueError, match="at least 8 pixels"):
        fit_image(np.zeros((4, 100, 3), np.uint8), 16)
    with pytest.raises(ValueError, match=r"uint8 \[H, W, 3\]"):
        fit_image(np.zeros((40, 40), np.uint8), 16)


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_projection_recovers_a_sample_and_is_deterministic(tiny_generator, optimizer):
    g = tiny_generator
    with torch.inference_mode():
        w = g.truncate(g.mapping(torch.randn(1, g.style_dim, generator=torch.Generator().manual_seed(5))), 0.7)
        image = g.synthesize(g.styles(w))
    pixels = ((image[0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
    calls = []
    settings = ProjectSettings(steps=40, perceptual=0.0, use_encoder=False, optimizer=optimizer)
    a = project(g, pixels, settings=settings, progress=lambda step, total: calls.append((step, total)))
    b = project(g, pixels, settings=settings)
    assert calls == [(i, 40) for i in range(1, 41)]
    assert a.latent.shape == (g.n_latent, g.style_dim) and a.image.shape == pixels.shape
    assert torch.equal(a.latent, b.latent) and np.array_equal(a.image, b.image)  # the same pixels, the same bytes
    start = project(g, pixels, settings=ProjectSettings(steps=0, use_encoder=False))
    assert a.psnr > start.psnr + 3 and min(a.losses) < a.losses[0]  # refinement moves towards the picture
    assert torch.equal(start.latent, g.latent_avg.expand(g.n_latent, -1))


def test_an_untrained_encoder_answers_the_average_face_and_round_trips(tiny_generator, tmp_path):
    g = tiny_generator
    encoder = Encoder(EncoderConfig.for_generator(g, channels=(8, 8, 8), head=8)).eval()
    images = torch.rand(2, 3, g.config.size, g.config.size) * 2 - 1
    start = start_latents(g, images, encoder)
    assert torch.equal(start, g.latent_avg.expand(2, g.n_latent, -1))
    with torch.no_grad():
        encoder.out.bias.normal_()
    with torch.no_grad():  # weights a float16 file holds exactly, so the round trip is exact
        for p in encoder.parameters():
            p.copy_(p.half().float())
    save_encoder(tmp_path, encoder, {"steps": 0})
    loaded = load_encoder(tmp_path, g)
    assert torch.equal(start_latents(g, images, loaded), start_latents(g, images, encoder))
    assert load_encoder(tmp_path / "nothing", g) is None


def test_psnr_of_equal_and_opposite_images():
    x = torch.zeros(1, 3, 4, 4)
    assert float(psnr(x - 1, x + 1)[0]) == pytest.approx(0.0)  # black against white: the whole range
    assert float(psnr(x, x)[0]) > 100


def test_encoder_training_checkpoints_resumes_and_refuses_another_run(tiny_generator, tmp_path):
    """A few steps on the tiny model: the checkpoint's folder is made, a finished run reloads as it was, and a
    checkpoint of other settings is refused rather than mixed in."""
    config = EncoderTrainConfig(steps=3, batch=4, n_faces=4, seed=1)
    checkpoint = tmp_path / "not" / "yet" / "latest.pt"
    encoder, record = train_encoder(tiny_generator, config, checkpoint, progress=False)
    assert checkpoint.is_file() and record["steps"] == 3 and np.isfinite(record["final_pixel_mse"])
    again, record_again = train_encoder(tiny_generator, config, checkpoint, progress=False)
    assert record_again["seconds"] == record["seconds"]  # nothing more was trained
    assert all(torch.equal(a, b) for a, b in zip(encoder.state_dict().values(), again.state_dict().values(),
                                                 strict=True))
    with pytest.raises(ValueError, match="was trained with"):
        train_encoder(tiny_generator, EncoderTrainConfig(steps=4, batch=4, n_faces=4, seed=1), checkpoint,
                      progress=False)


def test_a_refiner_starts_as_the_encoder_it_refines_trains_alone_and_round_trips(tiny_generator, tmp_path):
    """add_refiner answers what the one-stage encoder answers until trained; training it leaves the first stage as
    it was and moves the answer; the two stages save and load as one encoder."""
    g = tiny_generator
    one = Encoder(EncoderConfig.for_generator(g, channels=(8, 8, 8), head=8)).eval()
    with torch.no_grad():
        one.out.bias.normal_(std=0.1)
    images = torch.rand(3, 3, g.config.size, g.config.size) * 2 - 1
    two = one.add_refiner()
    assert two.config.refine and two.refiner.inputs == 6
    assert torch.equal(start_latents(g, images, two), start_latents(g, images, one))
    with pytest.raises(ValueError, match="already has a refiner"):
        two.add_refiner()
    with pytest.raises(ValueError, match="pass init"):
        train_encoder(g, EncoderTrainConfig(steps=1, batch=4, n_faces=4, refiner=True), progress=False)
    config = EncoderTrainConfig(steps=3, batch=4, n_faces=4, seed=1, refiner=True, face_share=0.75)
    trained, record = train_encoder(g, config, progress=False, init=one)
    assert trained.refiner is not None and record["steps"] == 3
    assert all(torch.equal(a, b) for a, b in zip(one.state_dict().values(),
                                                 {k: v for k, v in trained.state_dict().items()
                                                  if not k.startswith("refiner.")}.values(), strict=True))
    assert not torch.equal(start_latents(g, images, trained), start_latents(g, images, one))
    with torch.no_grad():  # weights a float16 file holds exactly, so the round trip is exact
        for p in trained.parameters():
            p.copy_(p.half().float())
    save_encoder(tmp_path, trained, {"steps": 3})
    loaded = load_encoder(tmp_path, g)
    assert loaded.refiner is not None
    assert torch.equal(start_latents(g, images, loaded), start_latents(g, images, trained))


def test_the_perceptual_loss_can_run_on_every_kth_step_only(tiny_generator, monkeypatch):
    """perceptual_every=3 over 6 steps: the judge's features of the goal once, and of the rendering on steps 3 and
    6; each call otherwise costs about one and a half synthesis passes more per step."""
    from localedit import projection
    from localedit.judge import Judge, JudgeConfig

    judge = Judge(JudgeConfig(channels=(4, 8), size=32)).eval()
    seen = []
    features = projection._features
    monkeypatch.setattr(projection, "_features", lambda j, images: seen.append(images.requires_grad)
                        or features(j, images))
    target = torch.zeros(1, 3, 32, 32)
    start = tiny_generator.latent_avg.detach()[None, None].expand(1, tiny_generator.n_latent, -1)
    projection.refine(tiny_generator, target, start, ProjectSettings(steps=6, perceptual=0.5, perceptual_every=3,
                                                                     optimizer="adam"), judge)
    assert seen == [False, True, True]  # the goal's (no gradient), then two renderings'
    with pytest.raises(ValueError, match="perceptual_every must be a whole number from 1"):
        ProjectSettings(perceptual_every=0, optimizer="adam")
    with pytest.raises(ValueError, match="L-BFGS's line search needs the same loss"):
        ProjectSettings(perceptual_every=2)


def test_lbfgs_keeps_to_its_budget_answers_its_best_point_and_solves_each_image_alone(tiny_generator, monkeypatch):
    """Within `steps` evaluations however its line search goes, the latent is the lowest-loss point it evaluated,
    and a batch gives each image what it would get alone."""
    from localedit import projection

    g = tiny_generator
    targets = torch.rand(2, 3, g.config.size, g.config.size) * 2 - 1
    start = g.latent_avg.detach()[None, None].expand(2, g.n_latent, -1).clone()
    settings = ProjectSettings(steps=7, perceptual=0.0, history=3)
    calls, evaluated = [], []
    synthesize = g.synthesize
    monkeypatch.setattr(g, "synthesize", lambda styles: evaluated.append(1) or synthesize(styles))
    both, losses = projection.refine(g, targets, start, settings, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(i, 14) for i in range(1, 15)] and len(losses) == 7 and len(evaluated) == 14
    alone, _ = projection.refine(g, targets[1:], start[1:], settings)
    assert torch.equal(both[1], alone[0])


def test_lbfgs_answers_the_best_point_it_evaluated_not_the_last():
    """A first trial step far too long lands worse than the start: with the budget spent there, the answer is the
    start. A flat loss and a NaN loss spend the budget without looping and answer the start too."""
    from localedit import projection

    start = torch.ones(1, 2, 3)
    quadratic = lambda w: (w - 0.5).square().sum()  # noqa: E731
    for loss_of, steps in ((quadratic, 2), (lambda w: (w * 0).sum(), 5), (lambda w: (w * float("nan")).sum(), 5)):
        reports = []
        latent, losses = projection._lbfgs(loss_of, start, ProjectSettings(steps=steps, lr=100.0), reports.append)
        assert len(losses) == steps and reports == list(range(1, steps + 1))
        assert torch.equal(latent, start)
        if loss_of is quadratic:
            assert losses[1] > losses[0]  # the trial overshot: the last point evaluated is not the answer
    # Over a longer budget it converges, answering its best point.
    latent, losses = projection._lbfgs(quadratic, start, ProjectSettings(steps=20), lambda k: None)
    assert float((latent - 0.5).square().sum()) == pytest.approx(min(losses)) and min(losses) < 1e-6
    with pytest.raises(ValueError, match="optimizer must be one of lbfgs, adam"):
        ProjectSettings(optimizer="sgd")
