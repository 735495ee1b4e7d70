"""What the command handlers share: output paths, loading a cataloged model, parsing NAME=VALUE flags and the
projection settings. The handlers are in cli_models, cli_edits and cli_measure; the parser is in __main__."""

from __future__ import annotations

import argparse
from pathlib import Path


def output_path(path: str | Path) -> Path:
    """An output file's path, its folder made if missing (a typo'd folder costs a folder, not the run)."""
    path = Path(path)
    if path.exists() and path.is_dir():
        raise ValueError(f"{path} is a folder; name the file to write, e.g. {path / 'out.png'}")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def cataloged(source: str):
    """A model that has a catalog, or a ValueError that says how to make one."""
    from localedit.hub import load_model

    model = load_model(source)
    if model.catalog is None:
        raise ValueError(f"{source} has no catalog yet: run `python -m localedit catalog {source}` first")
    return model


def parse_pair(item: str, cast: type) -> tuple[str, object]:
    name, _, value = item.partition("=")
    if not name or not value:
        raise ValueError(f"expected name=value, got {item!r}")
    return name, cast(value)


def parse_on_off(value: str) -> bool:
    if value not in ("on", "off"):
        raise ValueError(f"expected on or off, got {value!r}")
    return value == "on"


def parse_profile(value: str) -> dict[str, float]:
    from localedit.parts import LAYER_GROUPS

    weights = value.split(",")
    if len(weights) != len(LAYER_GROUPS):
        raise ValueError(f"an ε profile is {len(LAYER_GROUPS)} weights, {','.join(LAYER_GROUPS)}, e.g. 1,1,0; "
                         f"got {value!r}")
    return dict(zip(LAYER_GROUPS, map(float, weights), strict=True))


def torgb_override(value: str | None) -> bool | None:
    return None if value is None else parse_on_off(value)


def projection_settings(args: argparse.Namespace):
    from localedit.projection import DEFAULT, ProjectSettings

    return ProjectSettings(steps=DEFAULT.steps if args.steps is None else args.steps, lr=args.lr,
                           perceptual=DEFAULT.perceptual if args.perceptual is None else args.perceptual,
                           use_encoder=not args.no_encoder, optimizer=args.optimizer or DEFAULT.optimizer)


def encoder_and_judge(model, args: argparse.Namespace, settings):
    from localedit.encoder import load_encoder
    from localedit.judge import load_judge

    encoder = load_encoder(model.folder, model.generator) if settings.use_encoder else None
    judge = load_judge(args.judge) if settings.perceptual > 0 else None
    return encoder, judge
