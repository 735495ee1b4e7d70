"""Command handlers that make, name, tune, show and ship a model: catalog, sheet, label, suggest, samples, tune,
convert and push. Heavy modules are imported inside each handler, so the command line starts fast."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from localedit.cli import cataloged, output_path, parse_on_off, parse_pair, parse_profile


def cmd_catalog(args: argparse.Namespace) -> None:
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
    sheet = output_path(args.sheet or folder / "catalog.png")
    contact_sheet(Editor(model.generator, catalog), range(8), catalog.truncation).save(sheet)
    t = catalog.timings
    print(f"catalog: {args.layer}, K={args.clusters}, {args.samples} samples "
          f"(generation {t['generation']:.1f}s, clustering {t['clustering']:.1f}s) → {folder}")
    print(f"contact sheet → {sheet}; name the clusters with: python -m localedit label {folder} eyes=3,7 ...")


def cmd_sheet(args: argparse.Namespace) -> None:
    from localedit.edit import Editor
    from localedit.sheets import contact_sheet

    model = cataloged(args.model)
    out = output_path(args.output or Path(model.folder) / "catalog.png")
    contact_sheet(Editor(model.generator, model.catalog), range(args.n), model.catalog.truncation).save(out)
    print(f"contact sheet → {out}")


def cmd_label(args: argparse.Namespace) -> None:
    from localedit.hub import save_catalog, writable_folder

    model = cataloged(args.model)
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
    epsilon = dict(parse_pair(e, float) for e in args.epsilon)
    threshold = dict(parse_pair(t, float) for t in args.threshold)
    torgb = dict(parse_pair(t, parse_on_off) for t in args.torgb)
    profile = dict(parse_pair(p, parse_profile) for p in args.profile)
    catalog = model.catalog.without_parts(args.remove) if args.remove else model.catalog
    catalog = catalog.with_parts(parts, epsilon=epsilon, threshold=threshold, torgb=torgb, epsilon_profile=profile)
    save_catalog(folder, catalog)
    print(json.dumps({n: list(p.clusters) for n, p in catalog.parts.items()}))
    for cluster, names in catalog.shared_clusters().items():
        print(f"warning: cluster {cluster} is in {' and '.join(names)}; its pixels count for each, and the "
              f"contact sheet shows one name", file=sys.stderr)
    if folder != Path(model.folder):
        print(f"wrote {folder}")


def cmd_suggest(args: argparse.Namespace) -> None:
    from localedit.edit import Editor
    from localedit.evaluate import label_suggestion
    from localedit.faces import PARTS
    from localedit.judge import load_judge

    model = cataloged(args.model)
    shares, parts = label_suggestion(Editor(model.generator, model.catalog), load_judge(args.judge), args.samples)
    print("cluster  " + " ".join(f"{p[:8]:>8}" for p in PARTS))
    for cluster, row in enumerate(shares):
        print(f"{cluster:7d}  " + " ".join(f"{v:8.2f}" for v in row))
    print("suggested (check it on the contact sheet):")
    labels = " ".join(f"{part}={','.join(map(str, ids))}" for part, ids in parts.items())
    print(f"python -m localedit label {args.model} {labels}")


def cmd_samples(args: argparse.Namespace) -> None:
    from localedit.hub import load_model
    from localedit.sheets import sample_grid

    model = load_model(args.model)
    psi = model.config.truncation if args.truncation is None else args.truncation
    seeds = range(args.first, args.first + args.n)
    sample_grid(model.generator, seeds, psi, args.columns).save(output_path(args.output))
    print(f"wrote {args.output}: seeds {seeds.start}..{seeds.stop - 1}, truncation {psi}")


def cmd_tune(args: argparse.Namespace) -> None:
    from localedit.edit import Editor
    from localedit.evaluate import TUNING_SEED
    from localedit.hub import save_catalog, writable_folder
    from localedit.judge import load_judge
    from localedit.transfer import Transfer
    from localedit.tune import candidates, ceiling, choose, pick_examples, tune, with_choices

    model = cataloged(args.model)
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


def cmd_convert(args: argparse.Namespace) -> None:
    from localedit.convert import convert

    folder = convert(args.checkpoint, args.out_dir, name=args.name, overwrite=args.overwrite)
    print(f"wrote {folder}: config.json, generator.safetensors, README.md (check the card's licence section)")


def cmd_push(args: argparse.Namespace) -> None:
    from localedit.hub import push

    commit = push(args.folder, args.repo_id, revision=args.revision, private=args.private)
    print(f"pushed {args.folder} to {args.repo_id} at commit {commit}; load exactly this with "
          f"load_model('{args.repo_id}@{commit}')")
