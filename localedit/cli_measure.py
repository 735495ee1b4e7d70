"""Command handlers that measure and train: bench, evaluate, evaluate-projection, train, probe, train-encoder,
train-judge and render-faces. Heavy modules are imported inside each handler, so the command line starts fast."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from localedit.cli import cataloged, encoder_and_judge, output_path, parse_pair, projection_settings, torgb_override


def cmd_bench(args: argparse.Namespace) -> None:
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
        model = cataloged(args.model)
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


def cmd_evaluate(args: argparse.Namespace) -> None:
    from localedit.edit import Editor
    from localedit.evaluate import FULL, QUICK, evaluate
    from localedit.judge import load_judge
    from localedit.transfer import Transfer

    model = cataloged(args.model)
    editor = Editor(model.generator, model.catalog, include_torgb=torgb_override(args.torgb))
    metrics = evaluate(editor, load_judge(args.judge), Path(args.out), QUICK if args.quick else FULL)
    loc = metrics["locality"]
    print(json.dumps({"structure_validity": metrics["structure_validity"],
                      "cluster_iou": metrics["cluster_iou"], "cluster_iou_mean": metrics["cluster_iou_mean"],
                      "locality_judge_roi": loc["judge_roi"]["mean"],
                      "locality_cluster_roi": loc["cluster_roi"]["mean"],
                      "realism": metrics["realism"]}, indent=2))
    print(f"transfer at each part's settings, {metrics['pairs_per_part']} held-out pairs:")
    variety, dependence = metrics["color_variety"], metrics["skin_dependence"]
    print(f"{'part':>12} {Transfer.HEADER}   pairs differing in colour: procedural, generated | colour R² on the "
          "skin's: procedural, generated")
    for part, t in metrics["transfer"].items():
        r2 = "".join(f" {dependence[kind].get(part, math.nan):5.2f}" for kind in ("procedural", "generated"))
        print(f"{part:>12} {Transfer(**t).row()}   "
              f"{variety['procedural'][part]:5.0%} {variety['generated'][part]:5.0%} |{r2}")
    drawn = metrics["contrast"]
    print("contrast against the skin (median ΔE), procedural → generated: "
          + ", ".join(f"{part} {drawn['procedural'][part]:.1f} → {drawn['generated'][part]:.1f}"
                      for part in drawn["generated"]))
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


def cmd_evaluate_projection(args: argparse.Namespace) -> None:
    from localedit.edit import Editor
    from localedit.judge import load_judge
    from localedit.projection_eval import measure_projection, projection_sheet

    settings = projection_settings(args)
    model = cataloged(args.model)
    encoder, _ = encoder_and_judge(model, args, settings)
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
    low, high = t["projection_passes_range"]
    print(f"projection        median PSNR {m['projection_psnr_median']:6.2f} dB   {t['projection_passes']:6.1f} "
          f"synthesis passes ({low:.0f}–{high:.0f})   judge mIoU {m['projection_miou']:.3f} (on the inputs "
          f"themselves {m['input_miou']:.3f})   distance from W {m['projection_w_spread']:.3f}")
    print(f"{'part':>12}  projected targets: colour shape leak | seed targets: colour shape leak")
    _print_editability(m["editability"])
    c = m["editability_control"]
    print(f"control: {c['seeds']} generator samples from seed {c['first_seed']}, projected "
          f"({c['projection_psnr_median']:.2f} dB, distance from W {c['projection_w_spread']:.3f}), against the "
          "same seeds; the same columns")
    _print_editability(c["parts"])
    print(f"wrote {out / 'projection.json'} and {out / 'projection.png'}")


def _print_editability(parts: dict) -> None:
    for part, kinds in parts.items():
        a, b = kinds["projected"], kinds["seed"]
        ratio = f"{a['leak'] / b['leak']:.2f}" if b["leak"] > 0 else "—"
        print(f"{part:>12}  {a['color']:6.2f} {a['shape']:6.2f} {a['leak']:6.3f} | {b['color']:6.2f} "
              f"{b['shape']:6.2f} {b['leak']:6.3f}   leak ×{ratio}")


def _tune_projection(editor, encoder, judge, args: argparse.Namespace) -> None:
    from localedit.projection import DEFAULT, ProjectSettings
    from localedit.projection_eval import tune

    grid = [ProjectSettings(steps=steps, lr=lr, perceptual=perceptual, use_encoder=not args.no_encoder,
                            perceptual_every=every, optimizer=optimizer, history=history)
            for optimizer in args.tune_optimizer for steps in args.tune_steps for lr in args.tune_lr
            for perceptual in args.tune_perceptual
            for every in (args.tune_perceptual_every if optimizer == "adam" else [1])
            for history in (args.tune_history if optimizer == "lbfgs" else [DEFAULT.history])]
    print(f"{len(grid)} candidates on {args.faces} tuning faces; per candidate: median PSNR of the projection, judge "
          "mIoU, synthesis passes (batch 1)")
    for row in tune(editor, encoder, judge, grid, args.faces):
        s, t = row["settings"], row["time"]
        knob = f"history {s['history']:3d}" if s["optimizer"] == "lbfgs" else f"every {s['perceptual_every']}"
        print(f"{s['optimizer']:5s} steps {s['steps']:4d} lr {ProjectSettings(**s).rate:.3f} perceptual "
              f"{s['perceptual']:.2f} {knob}   "
              f"{row['projection_psnr_median']:6.2f} dB  mIoU {row['projection_miou']:.3f}  "
              f"{t['projection_passes']:6.1f} passes   (encoder alone {row['encoder_psnr_median']:.2f} dB)", flush=True)


def cmd_train(args: argparse.Namespace) -> None:
    import shlex

    import torch

    from localedit.train_config import TrainConfig
    from localedit.train_export import export
    from localedit.train_run import train

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
    overrides = {k: getattr(args, k) for k in ("size", "style_dim", "n_mlp", "batch", "mixing", "n_faces", "seed",
                                               "color_stats", "within_group", "shared_below", "init", "init_d",
                                               "d_warmup", "part_swap", "swap_pairs", "swap_gan", "part_area",
                                               "lr")
                 if getattr(args, k) is not None}
    if args.channels:
        overrides["channels"] = tuple(int(c) for c in args.channels.split(","))
    if args.stat_parts:
        overrides["stat_parts"] = tuple(p.strip() for p in args.stat_parts.split(","))
    if args.fp32:
        overrides["bf16"] = False
    if args.swap_weight:
        overrides["swap_weights"] = dict(parse_pair(w, float) for w in args.swap_weight)
    if args.swap_from_init and args.branch_from:  # the branch's init model chose its channels; it may add some
        made = torch.load(args.branch_from, map_location="cpu", weights_only=True)["config"]
        if not made.get("init") or not made.get("swap_channels"):
            raise ValueError(f"{args.branch_from} did not reserve its channels from an --init model's catalog, so "
                             "its branches cannot add any: drop --swap-from-init")
        had = {part: len(next(iter(layers.values()))) for part, layers in made["swap_channels"].items()}
        overrides["swap_channels"] = _added_channels(made["init"], made["size"], made["swap_channels"],
                                                     _per_part(args.swap_per_part, had) or had)
    elif args.swap_from_init:
        overrides["swap_channels"] = _reserved_channels(args.init, args.size or 64, _per_part(args.swap_per_part))
    elif args.swap_per_part:
        raise ValueError("--swap-per-part needs --swap-from-init: the default reserved channels are fixed")
    where = {"device": args.device, "resume": Path(args.resume) if args.resume else None,
             "sample_every": args.sample_every, "checkpoint_every": args.checkpoint_every,
             "keep_every": args.keep_every, "command": command}
    if args.branch_from:
        train(run_dir, None, args.steps, branch=Path(args.branch_from), changes=overrides, **where)
    else:
        train(run_dir, TrainConfig(**overrides) if overrides else None, args.steps, **where)


def cmd_probe(args: argparse.Namespace) -> None:
    import torch

    from localedit import viz
    from localedit.evaluate import procedural_reference
    from localedit.hub import load_model
    from localedit.judge import load_judge
    from localedit.part_swap import SWAP_CHANNELS, SWAP_PARTS
    from localedit.probe import Probe, checkpoint_generator, probe

    torch.set_num_threads(args.threads)
    for path in args.paths:
        if not Path(path).exists():
            raise ValueError(f"no such checkpoint or model folder: {path}")
    judge = load_judge(args.judge)
    procedural = procedural_reference(args.samples)
    width = max(len(p) for p in args.paths)
    print(f"{'':{width}} {Probe.HEADER}")
    for path in args.paths:
        if Path(path).is_dir():
            model = load_model(path)
            # The eyes and the mouth always (an unlabelled one is an error), the nose and skin where it names them.
            labelled = [part for part in SWAP_PARTS if part in SWAP_CHANNELS
                        or (model.catalog is not None and part in model.catalog.parts)]
            g, channels = model.generator, _catalog_reserved(model.catalog, path, model.config.size,
                                                             dict.fromkeys(labelled, args.per_part))
        else:
            g, channels = checkpoint_generator(path)
        result = probe(g, judge, channels, args.pairs, args.samples, procedural, examples=6 if args.sheets else 0)
        print(f"{path:{width}} {result.row()}", flush=True)
        if args.sheets:
            name = "-".join(Path(path).with_suffix("").parts[-2:])
            sheet = output_path(Path(args.sheets) / f"{name}-swap.png")
            viz.triples_sheet([(part, cells) for part, cells in result.examples.items()], scale=2).save(sheet)


def _per_part(values: list[str], had: dict[str, int] | None = None) -> int | dict[str, int] | None:
    """--swap-per-part's values: N for every part, PART=N for one. The parts are those `had` (a branch's
    checkpoint: {part: count}) reserves, else part_swap's defaults, and any part named (the nose or the skin, which
    no default reserves, joins only when named); a part not named keeps N, else the count it had, else PER_PART.
    None when no value is given."""
    from localedit.part_swap import PER_PART, SWAP_CHANNELS, SWAP_PARTS

    if not values:
        return None
    every, named = None, {}
    for value in values:
        if "=" in value:
            part, n = parse_pair(value, int)
            if part not in SWAP_PARTS:
                raise ValueError(f"--swap-per-part names a part of {list(SWAP_PARTS)}, got {part!r}")
            named[part] = n
        elif every is not None:
            raise ValueError(f"--swap-per-part gives one count for every part, got {every} and {value}")
        else:
            every = int(value)
    if not named and had is None:
        return every
    parts = [p for p in SWAP_PARTS if p in named or p in (had or SWAP_CHANNELS)]
    return {part: named.get(part, every if every is not None else (had or {}).get(part, PER_PART)) for part in parts}


def _reserved_channels(init: str | None, size: int, per_part: int | dict[str, int] | None = None) -> dict:
    """The part-swap loss's reserved channels from the --init model's catalog (`part_swap.reserve_channels`),
    `per_part` of them per part and layer (None: its default)."""
    from localedit.hub import load_model

    if not init:
        raise ValueError("--swap-from-init needs --init: the reserved channels come from that model's catalog")
    return _catalog_reserved(load_model(init).catalog, init, size, per_part)


def _added_channels(init: str, size: int, reserved: dict, counts: dict[str, int]) -> dict:
    """A branch's reserved channels: its checkpoint's `reserved` kept, and each part of `counts` filled up to its
    count from the channels `init`'s catalog, as it is now, ranks highest (`part_swap.extend_reserved`)."""
    from localedit.hub import load_model
    from localedit.part_swap import extend_reserved, swap_layers

    catalog = load_model(init).catalog
    rows = _catalog_rows(catalog, init, [part for part in counts if part not in reserved],
                         [part for part in counts if part in reserved])
    return extend_reserved(reserved, rows, {part: swap_layers(catalog.style_layers, size, part) for part in counts},
                           counts)


def _catalog_reserved(catalog, where: str, size: int, per_part: int | dict[str, int] | None = None) -> dict:
    """`_reserved_channels` of an already loaded catalog (None when the model has none), named `where` in errors."""
    from localedit.part_swap import SWAP_CHANNELS, reserve_channels, swap_layers, swap_parts

    parts = swap_parts(per_part) if isinstance(per_part, dict) else tuple(SWAP_CHANNELS)
    rows = _catalog_rows(catalog, where, parts)
    layers = {part: swap_layers(catalog.style_layers, size, part) for part in parts}
    return reserve_channels(rows, layers) if per_part is None else reserve_channels(rows, layers, per_part)


def _catalog_rows(catalog, where: str, parts, optional=()) -> dict:
    """The catalog's M rows ({part: {layer: [C]}}) of `parts`, each of which it must name, and of those `optional`
    parts it names; `where` names the model in errors."""
    if catalog is None:
        raise ValueError(f"{where} has no catalog: build one first (`catalog`)")
    missing = [part for part in parts if part not in catalog.parts]
    if missing:
        raise ValueError(f"{where}'s catalog names no {missing}: label them first (`label`)")
    return {part: catalog.part_rows(part) for part in (*parts, *optional) if part in catalog.parts}


def cmd_train_encoder(args: argparse.Namespace) -> None:
    from localedit.encoder import EncoderTrainConfig, save_encoder, train_encoder
    from localedit.hub import load_model, writable_folder

    model = load_model(args.model)
    folder = writable_folder(model, args.out)
    config = EncoderTrainConfig(steps=args.steps, batch=args.batch, face_share=args.face_share,
                                refiner=args.refiner, latent_weight=args.latent_weight, lr=args.lr,
                                seed=args.seed)
    checkpoint = Path(args.checkpoint) if args.checkpoint else None
    init, earlier = None, None
    if args.further or args.refiner:
        from localedit.encoder import load_encoder

        init = load_encoder(model.folder, model.generator)
        if init is None:
            raise ValueError(f"{args.model} has no encoder to train further or refine; drop --further/--refiner")
        earlier = json.loads((Path(model.folder) / "encoder.json").read_text())
    encoder, record = train_encoder(model.generator, config, checkpoint, threads=args.threads, init=init)
    if earlier is not None:
        record["earlier"] = {k: v for k, v in earlier.items() if k != "config"}
    save_encoder(folder, encoder, record)
    print(f"encoder: {record['steps']} steps in {record['seconds'] / 60:.0f} min, final pixel MSE "
          f"{record['final_pixel_mse']:.4f} → {folder}")


def cmd_train_judge(args: argparse.Namespace) -> None:
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


def cmd_render_faces(args: argparse.Namespace) -> None:
    from localedit.faces import save_grid

    out = output_path(args.out)
    labels = out.with_name(out.stem + "_labels" + out.suffix)
    save_grid(str(out), str(labels), n=args.n, size=args.size, offset=args.offset, upscale=args.upscale)
    print(f"wrote {out} and {labels}")


def cmd_ceiling(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from localedit.ceiling import ceiling
    from localedit.transfer import Transfer

    with tqdm(total=args.pairs, desc="perfect edits") as bar:
        figures = ceiling(args.part, args.pairs, progress=lambda i: bar.update(i - bar.n))
    print(f"a perfect {args.part} edit, {figures.pairs} held-out pairs of procedural faces, exact labels:")
    print(f"{'part':>12} {Transfer.HEADER}")
    print(f"{args.part:>12} {figures.row()}")
