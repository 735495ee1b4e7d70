"""Command handlers that edit a picture or make one editable: edit and project. Heavy modules are imported inside
each handler, so the command line starts fast."""

from __future__ import annotations

import argparse
from pathlib import Path

from localedit.cli import cataloged, encoder_and_judge, output_path, projection_settings, torgb_override


def cmd_edit(args: argparse.Namespace) -> None:
    from PIL import Image

    from localedit.composite import composite, parse_row
    from localedit.edit import Editor
    from localedit.projection import load_latent
    from localedit.sheets import composite_strip, edit_grid, edit_strip

    if args.target_latent is not None:
        if args.target is not None or args.targets:
            raise ValueError("name one target: --target or --target-latent")
        args.target = load_latent(args.target_latent)
    if args.reference_latent is not None:
        if args.reference is not None or args.references:
            raise ValueError("name one reference: --reference or --reference-latent")
        args.reference = load_latent(args.reference_latent)
    targets = args.targets or ([args.target] if args.target is not None else [])
    references = args.references or ([args.reference] if args.reference is not None else [])
    if args.composite is not None:
        if args.grid or references or args.part or args.method != "sequential" or args.lam is not None \
                or args.epsilon is not None or args.threshold is not None:
            raise ValueError("--composite takes the references, parts and ε from its rows (PART=SEED[:EPSILON]), "
                             "and its own parts' thresholds: drop --grid, --reference(s), --part, --epsilon, "
                             "--threshold, --method and --lam")
        rows = [parse_row(text) for text in args.composite]  # before any model loads: a typo fails fast
        if args.target is None:
            raise ValueError("name the target with --target")
    elif not targets or not references:
        raise ValueError("name the images: --target and --reference (with --grid, --targets and --references)")
    elif not args.grid and args.part is None:
        raise ValueError("name the part to edit with --part")
    if args.image_only and args.grid:
        raise ValueError("--image-only writes one edited image; a grid has many")
    output = output_path(args.output)
    model = cataloged(args.model)
    editor = Editor(model.generator, model.catalog, include_torgb=torgb_override(args.torgb))
    knobs = dict(epsilon=args.epsilon, threshold=args.threshold, method=args.method, lam=args.lam,
                 truncation=args.truncation)
    if args.composite is not None:
        result = composite(editor, args.target, rows, args.truncation)
        image = Image.fromarray(result.edited) if args.image_only else composite_strip(editor, result)
        print("  ".join(f"{part}: in-MSE {v:.2f}, {result.changed[part]} channels" for part, v in
                        result.in_mse.items()) + f"  out-MSE (outside every part) {result.out_mse:.2f}")
    elif args.grid:
        parts = args.part.split(",") if args.part else list(editor.parts)
        image = edit_grid(editor, targets, references, parts, **knobs)
    else:
        result = editor.edit(args.target, args.reference, args.part, **knobs)
        image = Image.fromarray(result.edited) if args.image_only else edit_strip(editor, result)
        print(f"in-MSE {result.in_mse:.2f}  out-MSE {result.out_mse:.2f}  "
              f"channels changed {sum(result.changed.values())}")
    image.save(output)
    print(f"wrote {output}")


def cmd_project(args: argparse.Namespace) -> None:
    from tqdm.auto import tqdm

    from localedit.hub import load_model
    from localedit.projection import project, read_image, save_latent
    from localedit.sheets import projection_figure

    image = read_image(args.image)  # a bad picture fails before any model loads or anything is written
    settings = projection_settings(args)
    model = load_model(args.model)
    encoder, judge = encoder_and_judge(model, args, settings)
    if settings.use_encoder and encoder is None:
        print(f"{args.model} has no encoder: the projection starts from the average face")
    with tqdm(total=settings.steps, desc="projecting") as bar:
        result = project(model.generator, image, encoder, judge, settings, lambda step, total: bar.update())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    save_latent(out / "latent.safetensors", result, args.model)
    projection_figure(result).save(out / "projection.png")
    c = result.crop
    print(f"PSNR {result.psnr:.2f} dB; crop {c.side}×{c.side} at ({c.left}, {c.top}) of {c.width}×{c.height}")
    print(f"wrote {out / 'latent.safetensors'} and {out / 'projection.png'}; edit it with "
          f"python -m localedit edit --model {args.model} --target-latent {out / 'latent.safetensors'} ...")
