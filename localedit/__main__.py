"""`python -m localedit <command>`: the command line turns flags into library calls, and holds no logic."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path


def _output(path: str | Path) -> Path:
    """An output file's path, its folder made if missing (a typo'd folder costs a folder, not the run)."""
    path = Path(path)
    if path.exists() and path.is_dir():
        raise ValueError(f"{path} is a folder; name the file to write, e.g. {path / 'out.png'}")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _cataloged(source: str):
    """A model that has a catalog, or a ValueError that says how to make one."""
    from localedit.hub import load_model

    model = load_model(source)
    if model.catalog is None:
        raise ValueError(f"{source} has no catalog yet: run `python -m localedit catalog {source}` first")
    return model


def _cmd_catalog(args: argparse.Namespace) -> None:
    from localedit.catalog import build_catalog
    from localedit.edit import Editor
    from localedit.hub import load_model, save_catalog, writable_folder
    from localedit.sheets import contact_sheet

    model = load_model(args.model)
    folder = writable_folder(model, args.out)
    catalog = build_catalog(model.generator, args.layer, args.clusters, n_samples=args.samples,
                            truncation=args.truncation, seed=args.seed, fit_rows=args.fit_rows, resize=args.resize,
                            progress=True)
    save_catalog(folder, catalog)
    sheet = _output(args.sheet or folder / "catalog.png")
    contact_sheet(Editor(model.generator, catalog), range(8), catalog.truncation).save(sheet)
    t = catalog.timings
    print(f"catalog: {args.layer}, K={args.clusters}, {args.samples} samples "
          f"(generation {t['generation']:.1f}s, clustering {t['clustering']:.1f}s) → {folder}")
    print(f"contact sheet → {sheet}; name the clusters with: python -m localedit label {folder} eyes=3,7 ...")


def _cmd_sheet(args: argparse.Namespace) -> None:
    from localedit.edit import Editor
    from localedit.sheets import contact_sheet

    model = _cataloged(args.model)
    out = _output(args.output or Path(model.folder) / "catalog.png")
    contact_sheet(Editor(model.generator, model.catalog), range(args.n), model.catalog.truncation).save(out)
    print(f"contact sheet → {out}")


def _cmd_label(args: argparse.Namespace) -> None:
    from localedit.hub import save_catalog, writable_folder

    model = _cataloged(args.model)
    if not args.parts and not args.remove and not (args.epsilon or args.threshold or args.torgb or args.profile):
        raise ValueError("nothing to do: name parts (eyes=3,7), settings (--threshold eyes=0.1) or --remove NAME")
    folder = writable_folder(model, args.out)
    parts = {}
    for item in args.parts:
        name, _, ids = item.partition("=")
        if not name or not ids or not all(i.strip().isdigit() for i in ids.split(",")):
            raise ValueError(f"parts are written name=id,id,... with cluster ids from `suggest` or the contact "
                             f"sheet (e.g. eyes=3,7), got {item!r}")
        parts[name] = [int(i) for i in ids.split(",")]
    epsilon = dict(_pair(e, float) for e in args.epsilon)
    threshold = dict(_pair(t, float) for t in args.threshold)
    torgb = dict(_pair(t, _on_off) for t in args.torgb)
    profile = dict(_pair(p, _profile) for p in args.profile)
    catalog = model.catalog.without_parts(args.remove) if args.remove else model.catalog
    catalog = catalog.with_parts(parts, epsilon=epsilon, threshold=threshold, torgb=torgb, epsilon_profile=profile)
    save_catalog(folder, catalog)
    print(json.dumps({n: list(p.clusters) for n, p in catalog.parts.items()}))
    for cluster, names in catalog.shared_clusters().items():
        print(f"warning: cluster {cluster} is in {' and '.join(names)}; its pixels count for each, and the "
              f"contact sheet shows one name", file=sys.stderr)
    if folder != Path(model.folder):
        print(f"wrote {folder}")


def _cmd_suggest(args: argparse.Namespace) -> None:
    from localedit.edit import Editor
    from localedit.evaluate import label_suggestion
    from localedit.faces import PARTS
    from localedit.judge import load_judge

    model = _cataloged(args.model)
    shares, parts = label_suggestion(Editor(model.generator, model.catalog), load_judge(args.judge), args.samples)
    print("cluster  " + " ".join(f"{p[:8]:>8}" for p in PARTS))
    for cluster, row in enumerate(shares):
        print(f"{cluster:7d}  " + " ".join(f"{v:8.2f}" for v in row))
    print("suggested (check it on the contact sheet):")
    labels = " ".join(f"{part}={','.join(map(str, ids))}" for part, ids in parts.items())
    print(f"python -m localedit label {args.model} {labels}")


def _pair(item: str, cast: type) -> tuple[str, object]:
    name, _, value = item.partition("=")
    if not name or not value:
        raise ValueError(f"expected name=value, got {item!r}")
    return name, cast(value)


def _on_off(value: str) -> bool:
    if value not in ("on", "off"):
        raise ValueError(f"expected on or off, got {value!r}")
    return value == "on"


def _profile(value: str) -> dict[str, float]:
    from localedit.parts import LAYER_GROUPS

    weights = value.split(",")
    if len(weights) != len(LAYER_GROUPS):
        raise ValueError(f"an ε profile is {len(LAYER_GROUPS)} weights, {','.join(LAYER_GROUPS)}, e.g. 1,1,0; "
                         f"got {value!r}")
    return dict(zip(LAYER_GROUPS, map(float, weights), strict=True))


def _torgb_override(value: str | None) -> bool | None:
    return None if value is None else _on_off(value)


def _cmd_edit(args: argparse.Namespace) -> None:
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
    output = _output(args.output)
    model = _cataloged(args.model)
    editor = Editor(model.generator, model.catalog, include_torgb=_torgb_override(args.torgb))
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


def _projection_settings(args: argparse.Namespace):
    from localedit.projection import DEFAULT, ProjectSettings

    return ProjectSettings(steps=DEFAULT.steps if args.steps is None else args.steps,
                           lr=DEFAULT.lr if args.lr is None else args.lr,
                           perceptual=DEFAULT.perceptual if args.perceptual is None else args.perceptual,
                           use_encoder=not args.no_encoder)


def _encoder_and_judge(model, args: argparse.Namespace, settings):
    from localedit.encoder import load_encoder
    from localedit.judge import load_judge

    encoder = load_encoder(model.folder, model.generator) if settings.use_encoder else None
    judge = load_judge(args.judge) if settings.perceptual > 0 else None
    return encoder, judge


def _cmd_project(args: argparse.Namespace) -> None:
    from tqdm.auto import tqdm

    from localedit.hub import load_model
    from localedit.projection import project, read_image, save_latent
    from localedit.sheets import projection_figure

    image = read_image(args.image)  # a bad picture fails before any model loads or anything is written
    settings = _projection_settings(args)
    model = load_model(args.model)
    encoder, judge = _encoder_and_judge(model, args, settings)
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


def _cmd_evaluate_projection(args: argparse.Namespace) -> None:
    from localedit.edit import Editor
    from localedit.judge import load_judge
    from localedit.projection_eval import measure_projection, projection_sheet

    settings = _projection_settings(args)
    model = _cataloged(args.model)
    encoder, _ = _encoder_and_judge(model, args, settings)
    editor = Editor(model.generator, model.catalog)
    if args.tune:
        _tune_projection(editor, encoder, load_judge(args.judge), args)
        return
    if not args.out:
        raise ValueError("name the folder to write the figures into with --out")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    m, projected = measure_projection(editor, encoder, load_judge(args.judge), args.faces, settings)
    (out / "projection.json").write_text(json.dumps(m, indent=2) + "\n")
    projection_sheet(editor, projected).save(out / "projection.png")
    t = m["time"]
    print(f"{m['faces']} held-out faces from {m['first_face']}; {settings}")
    print(f"encoder only      median PSNR {m['encoder_psnr_median']:6.2f} dB   {t['encoder_passes']:6.1f} synthesis "
          f"passes")
    print(f"projection        median PSNR {m['projection_psnr_median']:6.2f} dB   {t['projection_passes']:6.1f} "
          f"synthesis passes   judge mIoU {m['projection_miou']:.3f} (on the inputs themselves "
          f"{m['input_miou']:.3f})")
    print(f"{'part':>12}  projected targets: colour shape leak | seed targets: colour shape leak")
    for part, kinds in m["editability"].items():
        a, b = kinds["projected"], kinds["seed"]
        print(f"{part:>12}  {a['color']:6.2f} {a['shape']:6.2f} {a['leak']:6.3f} | {b['color']:6.2f} "
              f"{b['shape']:6.2f} {b['leak']:6.3f}")
    print(f"wrote {out / 'projection.json'} and {out / 'projection.png'}")


def _tune_projection(editor, encoder, judge, args: argparse.Namespace) -> None:
    from localedit.projection import ProjectSettings
    from localedit.projection_eval import tune

    grid = [ProjectSettings(steps=steps, lr=lr, perceptual=perceptual, use_encoder=not args.no_encoder)
            for steps in args.tune_steps for lr in args.tune_lr for perceptual in args.tune_perceptual]
    print(f"{len(grid)} candidates on {args.faces} tuning faces; per candidate: median PSNR of the projection, judge "
          "mIoU, synthesis passes (batch 1)")
    for row in tune(editor, encoder, judge, grid, args.faces):
        s, t = row["settings"], row["time"]
        print(f"steps {s['steps']:4d} lr {s['lr']:.3f} perceptual {s['perceptual']:.2f}   "
              f"{row['projection_psnr_median']:6.2f} dB  mIoU {row['projection_miou']:.3f}  "
              f"{t['projection_passes']:6.1f} passes   (encoder alone {row['encoder_psnr_median']:.2f} dB)", flush=True)


def _cmd_train_encoder(args: argparse.Namespace) -> None:
    from localedit.encoder import EncoderTrainConfig, save_encoder, train_encoder
    from localedit.hub import load_model, writable_folder

    model = load_model(args.model)
    folder = writable_folder(model, args.out)
    config = EncoderTrainConfig(steps=args.steps, batch=args.batch, lr=args.lr, seed=args.seed)
    checkpoint = Path(args.checkpoint) if args.checkpoint else None
    encoder, record = train_encoder(model.generator, config, checkpoint, threads=args.threads)
    save_encoder(folder, encoder, record)
    print(f"encoder: {record['steps']} steps in {record['seconds'] / 60:.0f} min, final pixel MSE "
          f"{record['final_pixel_mse']:.4f} → {folder}")


def _cmd_samples(args: argparse.Namespace) -> None:
    from localedit.hub import load_model
    from localedit.sheets import sample_grid

    model = load_model(args.model)
    psi = model.config.truncation if args.truncation is None else args.truncation
    seeds = range(args.first, args.first + args.n)
    sample_grid(model.generator, seeds, psi, args.columns).save(_output(args.output))
    print(f"wrote {args.output}: seeds {seeds.start}..{seeds.stop - 1}, truncation {psi}")


def _cmd_bench(args: argparse.Namespace) -> None:
    import torch

    from localedit.bench import bench_catalog, bench_edit, bench_faces, bench_synthesis, hardware
    from localedit.edit import Editor
    from localedit.stylegan2 import Generator, GeneratorConfig

    if args.faces:
        seconds = bench_faces(args.faces, args.face_size, args.workers)
        print(f"rendered {args.faces:,} procedural {args.face_size}×{args.face_size} faces with labels in "
              f"{seconds:.1f} s ({args.faces / seconds:,.0f}/s, {args.workers} worker processes; goal for 50,000 "
              f"at 64 px: ≤ 120 s)")
        return
    if args.sizes:
        print(f"one synthesize call, batch 1, random generators ({hardware()})")
        times = bench_synthesis(args.sizes, repeats=args.repeats)
        base = times.get(256)
        for size, seconds in times.items():
            ratio = f"{seconds / base:8.3f} × size 256" if base else ""
            print(f"size {size:5d}  {seconds:8.3f} s  {ratio}")
        return
    if args.random:
        torch.manual_seed(0)
        generator = Generator(GeneratorConfig(size=args.random, name=f"random-{args.random}")).eval()
        layer = args.layer or "convs.5"
        name = f"random size-{args.random} generator"
    else:
        model = _cataloged(args.model)
        generator, name = model.generator, args.model
        layer = args.layer or model.catalog.layer
    print(f"bench on {name} ({hardware()})")
    # The catalog build is the slow part on a big generator (two passes over every sample): it is timed once,
    # with a progress bar, and a random generator's edits then use that catalog.
    print(f"building a catalog: {args.samples} samples, {layer}, K={args.clusters}", flush=True)
    c, built = bench_catalog(generator, layer, args.clusters, args.samples, args.fit_rows, progress=True)
    catalog = built.with_parts({"part0": [0]}) if args.random else model.catalog
    part = args.part or next(iter(catalog.parts))
    e = bench_edit(Editor(generator, catalog), part, repeats=args.repeats)
    print(f"warm edit       {e['edit_s'] * 1e3:8.2f} ms (median of {args.repeats}, timed in turns with synthesis)")
    print(f"synthesize      {e['synthesize_s'] * 1e3:8.2f} ms")
    print(f"edit ÷ synth    {e['edit_over_synthesize']:8.3f}   (goal ≤ 1.15)")
    print(f"composite ÷ synth {e['composite_over_synthesize']:6.3f}   (warm, {e['composite_rows']} rows; goal ≤ 1.15)")
    print(f"query           {e['query_s'] * 1e3:8.3f} ms")
    fit = f", k-means fitted on {args.fit_rows} rows" if args.fit_rows else ""
    print(f"catalog build   generation {c['generation_s']:.2f} s, clustering {c['clustering_s']:.2f} s "
          f"({args.samples} samples, {layer}, K={args.clusters}{fit})")
    print(f"cluster ÷ gen   {c['clustering_over_generation']:8.3f}   (goal ≤ 0.5)")


def _cmd_train(args: argparse.Namespace) -> None:
    import shlex

    import torch

    from localedit.train import TrainConfig, export, train

    torch.set_num_threads(args.threads)
    command = shlex.join(["python", "-m", "localedit", *sys.argv[1:]])
    run_dir = Path(args.run_dir)
    if args.export:
        checkpoint = Path(args.resume or run_dir / "latest.pt")
        if not checkpoint.exists():
            raise ValueError(f"no checkpoint at {checkpoint}: train first, or name one with --resume")
        export(checkpoint, Path(args.export), args.name, args.description, command)
        print(f"exported the EMA generator of {checkpoint} → {args.export}")
        return
    # Only the flags given override TrainConfig's defaults, so a bare resume keeps the checkpoint's config.
    overrides = {k: getattr(args, k) for k in ("size", "style_dim", "n_mlp", "batch", "mixing", "n_faces", "seed")
                 if getattr(args, k) is not None}
    if args.channels:
        overrides["channels"] = tuple(int(c) for c in args.channels.split(","))
    if args.fp32:
        overrides["bf16"] = False
    train(run_dir, TrainConfig(**overrides) if overrides else None, args.steps, device=args.device,
          resume=Path(args.resume) if args.resume else None, sample_every=args.sample_every,
          checkpoint_every=args.checkpoint_every, command=command)


def _cmd_train_judge(args: argparse.Namespace) -> None:
    import time

    import torch

    from localedit.bench import hardware
    from localedit.judge import HELDOUT_OFFSET, evaluate_judge, load_judge, model_card, save_judge, train_judge

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    judge = train_judge(steps=args.steps, batch=args.batch, lr=args.lr, n_train=args.n_train, seed=args.seed)
    seconds = time.perf_counter() - start
    save_judge(judge, args.out)
    # Measured on the shipped (float16) weights, as a user will load them.
    iou = evaluate_judge(load_judge(args.out), args.eval_n)
    record = dict(
        command=f"python -m localedit train-judge --steps {args.steps} --batch {args.batch} --lr {args.lr} "
                f"--n-train {args.n_train} --seed {args.seed} --out {args.out}",
        parts=list(judge.config.parts), parameters=sum(p.numel() for p in judge.parameters()),
        n_train=args.n_train, steps=args.steps, batch=args.batch, lr=args.lr, seed=args.seed, seconds=seconds,
        hardware=hardware(), eval_offset=HELDOUT_OFFSET, eval_n=args.eval_n,
        iou=iou, file_bytes=(Path(args.out) / "judge.safetensors").stat().st_size,
    )
    (Path(args.out) / "README.md").write_text(model_card(record))
    print(" ".join(f"{k} {v:.3f}" for k, v in iou.items()))
    print(f"trained in {seconds:.0f} s → {args.out}")


def _cmd_render_faces(args: argparse.Namespace) -> None:
    from localedit.faces import save_grid

    out = _output(args.out)
    labels = out.with_name(out.stem + "_labels" + out.suffix)
    save_grid(str(out), str(labels), n=args.n, size=args.size, offset=args.offset, upscale=args.upscale)
    print(f"wrote {out} and {labels}")


def _cmd_tune(args: argparse.Namespace) -> None:
    from localedit.edit import Editor
    from localedit.evaluate import TUNING_SEED
    from localedit.hub import save_catalog, writable_folder
    from localedit.judge import load_judge
    from localedit.transfer import Transfer
    from localedit.tune import candidates, ceiling, choose, pick_examples, tune, with_choices

    model = _cataloged(args.model)
    folder = writable_folder(model, args.out) if args.write else None
    if args.examples:
        examples = pick_examples(Editor(model.generator, model.catalog), args.parts)
        for part, (t, r) in examples.items():
            print(f"{part:>12}: target {t}, reference {r}")
        if args.write:
            save_catalog(folder, replace(model.catalog, examples={**model.catalog.examples, **examples}))
            print(f"wrote the examples into {folder}/catalog.json")
        return
    if args.ceiling:
        table = ceiling(model.generator, model.catalog, load_judge(args.judge), args.parts, args.pairs)
        print(f"every channel of one layer group moved (toRGB included), {args.pairs} pairs from seed {TUNING_SEED}:")
        print(f"{'part':>12} {'group':>7} {Transfer.HEADER}")
        for part, groups in table.items():
            for group, r in groups.items():
                print(f"{part:>12} {group:>7} {r.row()}")
        return
    grid = candidates(**{key: value for key, value in (("thresholds", args.thresholds), ("shares", args.shares))
                         if value})
    trials = tune(model.generator, model.catalog, load_judge(args.judge), args.parts, args.pairs, grid=grid)
    print(f"{len(grid)} candidates per part on {args.pairs} pairs from seed {TUNING_SEED}; rule: leak ≤ "
          f"{args.max_leak:g}, then visible ≥ 80 %, then the most colour + shape transfer")
    chosen = {}
    for part, rows in trials.items():
        best = choose(rows, args.max_leak)
        current = next((t for t in rows if t.part == model.catalog.parts[part]), None)
        print(f"\n{part}: {Transfer.HEADER}  settings")
        ranked = sorted(rows, key=lambda t: -t.score)[:args.top]
        shown = list(ranked)
        for t in (best, current):  # the chosen and the current settings, when the top rows miss them
            if t is not None and all(t is not u for u in shown):
                shown.append(t)
        for t in shown:
            mark = "← chosen" if t is best else "← current" if t is current else ""
            print(f"{'':>{len(part)}}  {t.transfer.row()}  {t.candidate.describe()} (ε {t.part.epsilon:g}) {mark}")
        if best is None:
            print(f"{'':>{len(part)}}  no candidate changed anything; settings unchanged")
            continue
        if best.transfer.leak > args.max_leak:
            print(f"{'':>{len(part)}}  no candidate keeps the leak ≤ {args.max_leak:g}: chose the least leaky")
        chosen[part] = best
    if args.write:
        catalog = with_choices(model.catalog, chosen)
        examples = pick_examples(Editor(model.generator, catalog), sorted(chosen))
        save_catalog(folder, replace(catalog, examples={**catalog.examples, **examples}))
        print(f"\nwrote the chosen settings of {sorted(chosen)}, and an example pair for each, into "
              f"{folder}/catalog.json")
    else:
        print("\nnothing written; --write saves the chosen settings into the catalog")


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from localedit.edit import Editor
    from localedit.evaluate import FULL, QUICK, evaluate
    from localedit.judge import load_judge
    from localedit.transfer import Transfer

    model = _cataloged(args.model)
    editor = Editor(model.generator, model.catalog, include_torgb=_torgb_override(args.torgb))
    metrics = evaluate(editor, load_judge(args.judge), Path(args.out), QUICK if args.quick else FULL)
    loc = metrics["locality"]
    print(json.dumps({"structure_validity": metrics["structure_validity"],
                      "cluster_iou": metrics["cluster_iou"], "cluster_iou_mean": metrics["cluster_iou_mean"],
                      "locality_judge_roi": loc["judge_roi"]["mean"],
                      "locality_cluster_roi": loc["cluster_roi"]["mean"],
                      "realism": metrics["realism"]}, indent=2))
    print(f"transfer at each part's settings, {metrics['pairs_per_part']} held-out pairs:")
    variety = metrics["color_variety"]
    print(f"{'part':>12} {Transfer.HEADER}   pairs differing in colour: procedural, generated")
    for part, t in metrics["transfer"].items():
        print(f"{part:>12} {Transfer(**t).row()}   "
              f"{variety['procedural'][part]:5.0%} {variety['generated'][part]:5.0%}")
    composite = metrics["composite"]
    if composite:
        print(f"composites: {composite['sets']} held-out sets of 2–4 parts ({composite['rows']} rows); each part "
              f"from the target to the composite | the row's own effect | alone (colour pairs):")
        header = f"{'colour':>7} {'shape':>6} {'visible':>8}"
        print(f"{'part':>12} {header} | {header} | {header}")
        for part, t in composite["parts"].items():
            figures = [Transfer(**t[kind]) for kind in ("composite", "own", "single")]
            print(f"{part:>12} " + " | ".join(f"{f.color:7.2f} {f.shape:6.2f} {f.visible:8.0%}" for f in figures)
                  + f"   ({figures[0].color_pairs}, {figures[1].color_pairs}, {figures[2].color_pairs})")
        print(f"leak outside the union of the parts: {composite['leak']:.3f}")
    print(f"wrote {args.out}/metrics.json, transfer.png, locality_*.png, heatmaps.png")


def _cmd_convert(args: argparse.Namespace) -> None:
    from localedit.convert import convert

    folder = convert(args.checkpoint, args.out_dir, name=args.name, overwrite=args.overwrite)
    print(f"wrote {folder}: config.json, generator.safetensors, README.md (check the card's licence section)")


def _cmd_push(args: argparse.Namespace) -> None:
    from localedit.hub import push

    commit = push(args.folder, args.repo_id, revision=args.revision, private=args.private)
    print(f"pushed {args.folder} to {args.repo_id} at commit {commit}; load exactly this with "
          f"load_model('{args.repo_id}@{commit}')")


class _Help(argparse.HelpFormatter):
    """--help shows every option's default, except where there is none to show (None, False, an empty list)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("%(default)" in text or default is None or default is False or default is argparse.SUPPRESS
                or default == []
                or not (action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE))):
            return text
        return f"{text} (default: %(default)s)".strip()


def _model(p: argparse.ArgumentParser, help: str) -> None:
    """The model, as a positional argument or as --model: every command takes both spellings."""
    p.add_argument("model", nargs="?", help=help)
    p.add_argument("--model", dest="model_option", metavar="MODEL", help="the same, as an option")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m localedit", description=__doc__, formatter_class=_Help)
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=help, formatter_class=_Help)

    p = command("catalog", help="cluster a layer's activations and compute M for every style layer")
    _model(p, "a local model folder, or owner/name[@revision] with --out")
    p.add_argument("--layer", default="convs.3", help="the style layer whose input is clustered")
    p.add_argument("--clusters", type=int, default=12, help="K")
    p.add_argument("--samples", type=int, default=200, help="generated samples to cluster")
    p.add_argument("--truncation", type=float, default=0.7, help="ψ of the samples")
    p.add_argument("--seed", type=int, default=0, help="the first sample's seed, and k-means' seed")
    p.add_argument("--fit-rows", type=int, help="fit k-means on this many random rows, then label them all "
                   "(faster on big models; default: all rows)")
    p.add_argument("--resize", choices=["nearest", "bilinear"], default="nearest",
                   help="how Eq. 1 resizes the cluster maps to each layer: nearest, as the authors' code, or "
                   "bilinear, as §3.1 writes (it transferred less on the embedded model; see its card)")
    p.add_argument("--sheet", help="contact sheet PNG (default: catalog.png in the folder written)")
    p.add_argument("--out", help="a local folder to write the model and its catalog into (needed for a Hub model; "
                   "default: the model's own folder)")
    p.set_defaults(func=_cmd_catalog)

    p = command("sheet", help="the contact sheet of a model's catalog, with the parts named so far")
    _model(p, "a local model folder with a catalog")
    p.add_argument("--n", type=int, default=8, help="samples (seeds 0..n-1)")
    p.add_argument("-o", "--output", help="PNG (default: MODEL/catalog.png)")
    p.set_defaults(func=_cmd_sheet)

    p = command("label", help="name catalog clusters as parts: eyes=3,7 mouth=5")
    _model(p, "a model folder with a catalog, or owner/name[@revision] with --out")
    p.add_argument("parts", nargs="*", metavar="NAME=IDS", help="a part and its cluster ids, from `suggest` or "
                   "the contact sheet (ids differ between catalogs)")
    p.add_argument("--remove", action="append", default=[], metavar="NAME", help="drop a part")
    p.add_argument("--epsilon", action="append", default=[], metavar="NAME=EPS", help="a part's default ε")
    p.add_argument("--threshold", action="append", default=[], metavar="NAME=T",
                   help="a part's sequential threshold (see the tune command)")
    p.add_argument("--torgb", action="append", default=[], metavar="NAME=on|off",
                   help="whether a part's edits touch the toRGB styles")
    p.add_argument("--profile", action="append", default=[], metavar="NAME=C,M,F",
                   help="a part's ε weights for the coarse (4–8 px), middle (16–32 px) and fine layers; 0 leaves "
                   "a group unedited")
    p.add_argument("--out", help="a local folder to write the model and its relabelled catalog into (needed for "
                   "a Hub model; default: the model's own folder)")
    p.set_defaults(func=_cmd_label)

    p = command("edit", help="edit one image (a strip), composite several parts, or draw a Fig. 3 grid")
    _model(p, "a local folder or owner/name[@revision] with a catalog")
    p.add_argument("--target", type=int, help="the target's seed")
    p.add_argument("--reference", type=int, help="the reference's seed")
    p.add_argument("--target-latent", metavar="FILE", help="the target: a latent.safetensors from `project`")
    p.add_argument("--reference-latent", metavar="FILE", help="the reference: a latent.safetensors from `project`")
    p.add_argument("--targets", type=int, nargs="*", help="grid rows")
    p.add_argument("--references", type=int, nargs="*", help="grid columns")
    p.add_argument("--part", help="a part name (a comma-separated list with --grid; default: all)")
    p.add_argument("--epsilon", type=float, help="the base ε (default: the part's)")
    p.add_argument("--threshold", type=float, help="the sequential threshold (default: the part's)")
    p.add_argument("--method", default="sequential", choices=["sequential", "simultaneous", "global"],
                   help="the query")
    p.add_argument("--lam", type=float, help="λ for simultaneous and global")
    p.add_argument("--truncation", type=float, help="ψ (default: the model's)")
    p.add_argument("--torgb", choices=["on", "off"], help="edit the toRGB layers' styles for every part, or none "
                   "(default: each part's own setting)")
    p.add_argument("--grid", action="store_true", help="targets × references for each part")
    p.add_argument("--composite", nargs="+", metavar="PART=SEED[:EPSILON]", help="several parts from several "
                   "references in one edit of --target, e.g. hair=7 eyes=12:30 mouth=40 (ε defaults to the part's)")
    p.add_argument("--image-only", action="store_true", help="write only the edited image, at the model's "
                   "resolution (default: a strip of target, references, edit and diff)")
    p.add_argument("-o", "--output", required=True, help="the PNG to write (its folder is made if missing)")
    p.set_defaults(func=_cmd_edit)

    def projection_knobs(p: argparse.ArgumentParser) -> None:
        p.add_argument("--steps", type=int, help="refinement steps after the encoder (default: the app's)")
        p.add_argument("--lr", type=float, help="Adam's rate for the refinement")
        p.add_argument("--perceptual", type=float, help="weight of the judge-feature loss (0: pixels only)")
        p.add_argument("--no-encoder", action="store_true", help="start from the average face, as Image2StyleGAN")
        p.add_argument("--judge", default="assets/judge", help="the judge's folder (for the perceptual loss)")

    p = command("project", help="project a picture into a model's W+: latent.safetensors and projection.png")
    p.add_argument("image", help="a picture file (PNG, JPEG, ...); it is centre-cropped to a square")
    _model(p, "a local folder or owner/name[@revision]")
    projection_knobs(p)
    p.add_argument("-o", "--out", required=True, help="the folder to write latent.safetensors and projection.png")
    p.set_defaults(func=_cmd_project)

    p = command("evaluate-projection", help="projection fidelity, time and editability on held-out faces")
    _model(p, "a local folder or owner/name[@revision] with a catalog")
    projection_knobs(p)
    p.add_argument("--faces", type=int, default=32, help="procedural faces to project (held-out, or tuning ones)")
    p.add_argument("--out", help="the folder to write projection.json and projection.png")
    p.add_argument("--tune", action="store_true", help="instead, compare settings on tuning faces (never the "
                   "held-out ones): every combination of the --tune-* values")
    p.add_argument("--tune-steps", type=int, nargs="+", default=[40, 80, 120])
    p.add_argument("--tune-lr", type=float, nargs="+", default=[0.02, 0.05])
    p.add_argument("--tune-perceptual", type=float, nargs="+", default=[0.0, 0.5])
    p.set_defaults(func=_cmd_evaluate_projection)

    p = command("train-encoder", help="train an encoder (image → W+) for a model; it goes into the model folder")
    _model(p, "a local model folder, or owner/name[@revision] with --out")
    p.add_argument("--steps", type=int, default=7000)
    p.add_argument("--batch", type=int, default=16, help="half generator samples, half procedural faces")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    p.add_argument("--checkpoint", help="a file to save progress to and resume from (e.g. runs/encoder/latest.pt)")
    p.add_argument("--out", help="a local folder to write into (default: the model's own folder)")
    p.set_defaults(func=_cmd_train_encoder)

    p = command("suggest", help="propose cluster names from the judge's part labels on generated samples")
    _model(p, "a local folder or owner/name[@revision] with a catalog")
    p.add_argument("--judge", default="assets/judge", help="the judge's folder")
    p.add_argument("--samples", type=int, default=200, help="tuning-seed samples to tabulate")
    p.set_defaults(func=_cmd_suggest)

    p = command("samples", help="a grid PNG of seeded samples")
    _model(p, "a local folder or owner/name[@revision]")
    p.add_argument("--n", type=int, default=64, help="how many samples")
    p.add_argument("--first", type=int, default=0, help="the first seed")
    p.add_argument("--columns", type=int, default=8, help="samples per row")
    p.add_argument("--truncation", type=float, help="ψ (default: the model's)")
    p.add_argument("-o", "--output", default="samples.png", help="the PNG to write")
    p.set_defaults(func=_cmd_samples)

    p = command("bench", help="time warm edits, synthesis, queries and catalog building")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="a local folder or owner/name[@revision] with a catalog")
    src.add_argument("--random", type=int, metavar="SIZE", help="a random rosinality-layout generator")
    src.add_argument("--sizes", type=int, nargs="+", metavar="SIZE", help="only time synthesis at these sizes")
    src.add_argument("--faces", type=int, metavar="N", help="only time rendering N procedural faces (e.g. 50000)")
    p.add_argument("--face-size", type=int, default=64, help="with --faces: the faces' size in pixels")
    p.add_argument("--workers", type=int, default=2, help="with --faces: rendering processes")
    p.add_argument("--part", help="the part to edit (default: the model's first)")
    p.add_argument("--layer", help="catalog layer to time (default: the model's, or convs.5)")
    p.add_argument("--clusters", type=int, default=12, help="K of the timed catalog")
    p.add_argument("--samples", type=int, default=200, help="samples of the timed catalog")
    p.add_argument("--fit-rows", type=int, help="time k-means fitted on this many rows (catalog --fit-rows)")
    p.add_argument("--repeats", type=int, default=30, help="timed runs of each measurement")
    p.set_defaults(func=_cmd_bench)

    p = command("tune", help="choose each part's edit settings (toRGB, threshold, ε profile) on tuning "
                       "seeds, by colour and shape transfer under a leak bound")
    _model(p, "a model folder with a catalog whose parts the judge knows")
    p.add_argument("--judge", default="assets/judge", help="the judge's folder")
    p.add_argument("--parts", nargs="+", help="parts to tune (default: every judged part)")
    p.add_argument("--pairs", type=int, default=32, help="target/reference pairs from the tuning seeds")
    p.add_argument("--thresholds", type=float, nargs="+", help="the thresholds to try (default: tune.THRESHOLDS, a "
                   "coarse grid that takes minutes)")
    p.add_argument("--shares", type=float, nargs="+", help="base ε as shares of the ε at which each query "
                   "saturates (default: tune.EPSILON_SHARES)")
    p.add_argument("--max-leak", type=float, default=0.1, help="the most leak a chosen setting may have")
    p.add_argument("--top", type=int, default=5, help="rows of the table per part")
    p.add_argument("--write", action="store_true", help="save the chosen settings into the model's catalog")
    p.add_argument("--out", help="with --write: a local folder to write the model and its catalog into (needed for "
                   "a Hub model)")
    p.add_argument("--ceiling", action="store_true", help="instead: what each layer group delivers when all of "
                   "its channels move, i.e. whether a part's look can be moved locally at all")
    p.add_argument("--examples", action="store_true", help="instead: pick each part's example pair (the app's "
                   "examples) at its current settings; --write stores them (--write without it stores them too)")
    p.set_defaults(func=_cmd_tune)

    p = command("evaluate", help="validity, cluster semantics, locality curves and realism vs the judge")
    _model(p, "a local folder or owner/name[@revision] with a catalog")
    p.add_argument("--judge", default="assets/judge", help="the judge's folder")
    p.add_argument("--out", required=True, help="folder for metrics.json and the PNGs")
    p.add_argument("--quick", action="store_true", help="a CI-sized run (seconds) instead of the full one")
    p.add_argument("--torgb", choices=["on", "off"], help="edit the toRGB layers' styles for every part, or none "
                   "(default: each part's own setting)")
    p.set_defaults(func=_cmd_evaluate)

    p = command("train", help="train the compact StyleGAN2 on the procedural faces, or --export it")
    p.add_argument("--run-dir", default="runs/faces64", help="checkpoints (latest.pt), grids/ and the face cache")
    p.add_argument("--steps", type=int, default=12000, help="train until this many steps in total")
    p.add_argument("--resume", help="a checkpoint to start from (default: RUN_DIR/latest.pt when it exists)")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda[:N]")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--sample-every", type=int, default=250, help="steps between sample grids")
    p.add_argument("--checkpoint-every", type=int, default=500, help="steps between checkpoints")
    p.add_argument("--size", type=int, help="image size (a new run; default: 64)")
    p.add_argument("--channels", help="G channels at 4, 8, ..., size, comma-separated (D mirrors them)")
    p.add_argument("--style-dim", type=int, help="w's size (a new run)")
    p.add_argument("--n-mlp", type=int, help="mapping layers (a new run)")
    p.add_argument("--batch", type=int, help="batch size (a new run)")
    p.add_argument("--mixing", type=float, help="style-mixing probability")
    p.add_argument("--n-faces", type=int, help="distinct procedural faces to train on")
    p.add_argument("--seed", type=int, help="the run's seed (a new run)")
    p.add_argument("--fp32", action="store_true", help="no bf16 autocast (by default it is used only where the "
                   "hardware runs bf16 natively)")
    p.add_argument("--export", metavar="MODEL_DIR", help="write the checkpoint's EMA generator as a model folder")
    p.add_argument("--name", default="faces64", help="the exported model's display name")
    p.add_argument("--description", default="A compact StyleGAN2 trained on localedit's procedural cartoon faces.",
                   help="the exported model's one-line description")
    p.set_defaults(func=_cmd_train)

    p = command("train-judge", help="train the part-segmentation judge on procedural faces")
    p.add_argument("--steps", type=int, default=1500, help="training steps")
    p.add_argument("--batch", type=int, default=32, help="batch size")
    p.add_argument("--lr", type=float, default=3e-3, help="Adam's learning rate")
    p.add_argument("--n-train", type=int, default=12_000, help="distinct training faces")
    p.add_argument("--eval-n", type=int, default=1000, help="held-out faces for the IoU in the model card")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=0, help="the run's seed")
    p.add_argument("--out", default="runs/judge", help="the judge's folder (--out assets/judge replaces the "
                   "shipped one)")
    p.set_defaults(func=_cmd_train_judge)

    p = command("render-faces", help="a grid PNG of procedural faces and one of their part labels")
    p.add_argument("--out", default="faces.png", help="the label grid goes next to it as *_labels.png")
    p.add_argument("--n", type=int, default=64, help="how many faces")
    p.add_argument("--size", type=int, default=64, help="their size in pixels")
    p.add_argument("--offset", type=int, default=0, help="first face index")
    p.add_argument("--upscale", type=int, default=4, help="pixel enlargement in the PNG")
    p.set_defaults(func=_cmd_render_faces)

    p = command("convert", help="a rosinality .pt or NVIDIA .pkl StyleGAN2 checkpoint → a model folder")
    p.add_argument("checkpoint", help="rosinality .pt/.pth/.ckpt (g_ema) or NVIDIA stylegan2-ada/stylegan3 .pkl")
    p.add_argument("out_dir", help="the model folder to write")
    p.add_argument("--name", help="display name (default: the checkpoint's file name)")
    p.add_argument("--overwrite", action="store_true", help="replace the model files of an existing folder")
    p.set_defaults(func=_cmd_convert)

    p = command("push", help="upload a model folder to a Hub repo (token: HF_TOKEN or `hf auth login`)")
    p.add_argument("folder", help="a local model folder")
    p.add_argument("repo_id", help="owner/name, created if needed")
    p.add_argument("--revision", help="a branch to push to (created from main if needed; default: main)")
    p.add_argument("--private", action="store_true", help="create the repo as private")
    p.set_defaults(func=_cmd_push)

    args = parser.parse_args(argv)
    if hasattr(args, "model_option"):
        if args.model and args.model_option and args.model != args.model_option:
            parser.error(f"two models named: {args.model} and --model {args.model_option}")
        args.model = args.model or args.model_option
        if not args.model:
            parser.error(f"{args.command} needs a model: python -m localedit {args.command} MODEL (or --model MODEL)")
    try:
        args.func(args)
    except ValueError as e:  # a user's mistake: say what is allowed, without a traceback
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
