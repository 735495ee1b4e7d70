"""`python -m localedit <command>`: the command line turns flags into library calls, and holds no logic.

This module builds the parser and runs the chosen command; the handlers live in localedit.cli_models (catalog,
sheet, label, suggest, samples, tune, convert, push), localedit.cli_edits (edit, project) and
localedit.cli_measure (bench, evaluate, evaluate-projection, train, train-encoder, train-judge, render-faces,
ceiling), and what they share in localedit.cli. --help shows only the first paragraph above.
"""

from __future__ import annotations

import argparse
import sys

from localedit import cli_edits, cli_measure, cli_models


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
    parser = argparse.ArgumentParser(prog="python -m localedit", description=__doc__.partition("\n\n")[0],
                                     formatter_class=_Help)
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
    p.set_defaults(func=cli_models.cmd_catalog)

    p = command("sheet", help="the contact sheet of a model's catalog, with the parts named so far")
    _model(p, "a local model folder with a catalog")
    p.add_argument("--n", type=int, default=8, help="samples (seeds 0..n-1)")
    p.add_argument("-o", "--output", help="PNG (default: MODEL/catalog.png)")
    p.set_defaults(func=cli_models.cmd_sheet)

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
    p.set_defaults(func=cli_models.cmd_label)

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
    p.set_defaults(func=cli_edits.cmd_edit)

    def projection_knobs(p: argparse.ArgumentParser) -> None:
        p.add_argument("--steps", type=int, help="the refinement's gradient evaluations after the encoder (default: "
                       "the app's)")
        p.add_argument("--optimizer", help="the refinement's optimizer, lbfgs or adam (default: the app's, "
                       "lbfgs)")
        p.add_argument("--lr", type=float, help="the refinement's step: L-BFGS's first trial step or Adam's rate "
                       "(default: the optimizer's own)")
        p.add_argument("--perceptual", type=float, help="weight of the judge-feature loss (0: pixels only)")
        p.add_argument("--no-encoder", action="store_true", help="start from the average face, as Image2StyleGAN")
        p.add_argument("--judge", default="assets/judge", help="the judge's folder (for the perceptual loss)")

    p = command("project", help="project a picture into a model's W+: latent.safetensors and projection.png")
    p.add_argument("image", help="a picture file (PNG, JPEG, ...); it is centre-cropped to a square")
    _model(p, "a local folder or owner/name[@revision]")
    projection_knobs(p)
    p.add_argument("-o", "--out", required=True, help="the folder to write latent.safetensors and projection.png")
    p.set_defaults(func=cli_edits.cmd_project)

    p = command("evaluate-projection", help="projection fidelity, time and editability on held-out faces")
    _model(p, "a local folder or owner/name[@revision] with a catalog")
    projection_knobs(p)
    p.add_argument("--faces", type=int, default=32, help="procedural faces to project (held-out, or tuning ones)")
    p.add_argument("--out", help="the folder to write projection.json and projection.png")
    p.add_argument("--tune", action="store_true", help="instead, compare settings on tuning faces (never the "
                   "held-out ones): every combination of the --tune-* values")
    p.add_argument("--tune-optimizer", nargs="+", default=["lbfgs"], help="lbfgs, adam or both")
    p.add_argument("--tune-steps", type=int, nargs="+", default=[60, 80, 100])
    p.add_argument("--tune-lr", type=float, nargs="+", default=[None], help="applies to each "
                   "--tune-optimizer, meaning its own step (default: each optimizer's own)")
    p.add_argument("--tune-perceptual", type=float, nargs="+", default=[0.05, 0.1])
    p.add_argument("--tune-history", type=int, nargs="+", default=[50], help="L-BFGS only: the curvature "
                   "pairs it keeps")
    p.add_argument("--tune-perceptual-every", type=int, nargs="+", default=[1],
                   help="Adam only: the judge's loss on every k-th refinement step only")
    p.set_defaults(func=cli_measure.cmd_evaluate_projection)

    p = command("train-encoder", help="train an encoder (image → W+) for a model; it goes into the model folder")
    _model(p, "a local model folder, or owner/name[@revision] with --out")
    p.add_argument("--steps", type=int, default=7000)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--face-share", type=float, default=0.5, help="the share of each batch that is procedural "
                   "faces; the rest are generator samples")
    p.add_argument("--refiner", action="store_true", help="train a second stage on top of the model's encoder "
                   "(which stays fixed): it reads the picture and the first answer's rendering and corrects it")
    p.add_argument("--latent-weight", type=float, default=1.0, help="weight of the latent loss on generator "
                   "samples, against the pixel loss")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    p.add_argument("--checkpoint", help="a file to save progress to and resume from (e.g. runs/encoder/latest.pt)")
    p.add_argument("--further", action="store_true", help="start from the model's encoder (a further phase, e.g. "
                   "at a lower --lr), not from scratch")
    p.add_argument("--out", help="a local folder to write into (default: the model's own folder)")
    p.set_defaults(func=cli_measure.cmd_train_encoder)

    p = command("suggest", help="propose cluster names from the judge's part labels on generated samples")
    _model(p, "a local folder or owner/name[@revision] with a catalog")
    p.add_argument("--judge", default="assets/judge", help="the judge's folder")
    p.add_argument("--samples", type=int, default=200, help="tuning-seed samples to tabulate")
    p.set_defaults(func=cli_models.cmd_suggest)

    p = command("samples", help="a grid PNG of seeded samples")
    _model(p, "a local folder or owner/name[@revision]")
    p.add_argument("--n", type=int, default=64, help="how many samples")
    p.add_argument("--first", type=int, default=0, help="the first seed")
    p.add_argument("--columns", type=int, default=8, help="samples per row")
    p.add_argument("--truncation", type=float, help="ψ (default: the model's)")
    p.add_argument("-o", "--output", default="samples.png", help="the PNG to write")
    p.set_defaults(func=cli_models.cmd_samples)

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
    p.set_defaults(func=cli_measure.cmd_bench)

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
    p.set_defaults(func=cli_models.cmd_tune)

    p = command("evaluate", help="validity, cluster semantics, locality curves and realism vs the judge")
    _model(p, "a local folder or owner/name[@revision] with a catalog")
    p.add_argument("--judge", default="assets/judge", help="the judge's folder")
    p.add_argument("--out", required=True, help="folder for metrics.json and the PNGs")
    p.add_argument("--quick", action="store_true", help="a CI-sized run (seconds) instead of the full one")
    p.add_argument("--torgb", choices=["on", "off"], help="edit the toRGB layers' styles for every part, or none "
                   "(default: each part's own setting)")
    p.set_defaults(func=cli_measure.cmd_evaluate)

    p = command("train", help="train the compact StyleGAN2 on the procedural faces, or --export it")
    p.add_argument("--run-dir", default="runs/faces64", help="checkpoints (latest.pt), grids/ and the face cache")
    p.add_argument("--steps", type=int, default=12000, help="train until this many steps in total")
    p.add_argument("--resume", help="a checkpoint to start from (default: RUN_DIR/latest.pt when it exists)")
    p.add_argument("--branch-from", metavar="CHECKPOINT", help="a new run that continues this training checkpoint's "
                   "whole state (G, D, EMA, optimisers, step) with other loss settings: --color-stats, "
                   "--within-group, --part-swap, --swap-pairs, --swap-weight, --swap-gan, --swap-from-init with more "
                   "--swap-per-part, "
                   "--stat-parts, --part-area, --lr; the same command resumes it")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda[:N]")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--sample-every", type=int, default=250, help="steps between sample grids")
    p.add_argument("--checkpoint-every", type=int, default=500, help="steps between checkpoints")
    p.add_argument("--keep-every", type=int, default=0, help="keep a copy of the checkpoint, RUN_DIR/step-NNNNNN.pt, "
                   "every this many steps (0: only latest.pt, which each checkpoint overwrites)")
    p.add_argument("--size", type=int, help="image size (a new run; default: 64)")
    p.add_argument("--channels", help="G channels at 4, 8, ..., size, comma-separated (D mirrors them)")
    p.add_argument("--style-dim", type=int, help="w's size (a new run)")
    p.add_argument("--n-mlp", type=int, help="mapping layers (a new run)")
    p.add_argument("--batch", type=int, help="batch size (a new run)")
    p.add_argument("--mixing", type=float, help="style-mixing probability")
    p.add_argument("--lr", type=float, help="Adam's learning rate for G and D (a new run or a branch; default 0.0025)")
    p.add_argument("--n-faces", type=int, help="distinct procedural faces to train on")
    p.add_argument("--seed", type=int, help="the run's seed (a new run)")
    p.add_argument("--part-area", type=float, help="weight of the part-area loss: each part's share of a generated "
                   "image, by the judge's soft masks, keeps the training faces' mean and spread; 0 leaves it out")
    p.add_argument("--color-stats", type=float, help="weight of the part-colour statistics loss (the means, spreads "
                   "and correlations of the skin's, irises' and lips' colours, matched to the data's); 0 leaves it out")
    p.add_argument("--stat-parts", help="the parts whose colours the statistics losses match, comma-separated "
                   "(default skin,eyes,mouth; add eyebrows to keep them as distinct from the skin as the data's)")
    p.add_argument("--within-group", type=float, help="weight of the within-group loss: the irises' and lips' "
                   "colours must vary among samples that share their coarse styles; 0 leaves it out")
    p.add_argument("--shared-below", type=int, help="the within-group loss's groups share w below this layer "
                   "(default 3)")
    p.add_argument("--part-swap", type=float, help="weight of the part-swap loss: reserved fine-layer channels "
                   "must carry the eyes' and lips' colours (and the nose's or skin's, when they have channels) and "
                   "nothing else (see part_swap.py); 0 leaves it out")
    p.add_argument("--swap-pairs", type=int, help="pairs of samples per step for the part-swap loss, shared "
                   "equally among the swapped parts (default 16)")
    p.add_argument("--swap-gan", type=float, help="the weight of G's GAN loss on the part-swap loss's swapped "
                   "images, which must look real too (default 0.5; the plain batch's is 1)")
    p.add_argument("--swap-weight", action="append", default=[], metavar="PART=W", help="a part's weight within "
                   "the part-swap loss (one it swaps; default 1), its colour and locality terms alike: a lagging "
                   "part pulled harder against the GAN loss and the other parts, as local as before")
    p.add_argument("--swap-from-init", action="store_true", help="the part-swap loss reserves the channels the "
                   "--init model's catalog ranks highest for the eyes and the mouth, and the nose or skin with "
                   "--swap-per-part nose=N or skin=N (default: channels 0–5 for the eyes and the mouth); a branch "
                   "keeps its checkpoint's and takes the added ones from that catalog as it is now")
    p.add_argument("--swap-per-part", action="append", default=[], metavar="N|PART=N", help="with "
                   "--swap-from-init: channels reserved per part in each layer (default 3), or for one part (nose=N or "
                   "skin=N adds that part to the eyes and the mouth; the skin's layers start at 8 px); the 64 "
                   "px layers have only 32, and what the parts take the rest cannot draw. A branch may add channels "
                   "to its checkpoint's")
    p.add_argument("--init", help="a new run starts G from this model folder's generator (D from scratch)")
    p.add_argument("--init-d", help="with --init: D starts from this training checkpoint's discriminator "
                   "(RUN_DIR/latest.pt or a kept step) instead of from scratch")
    p.add_argument("--d-warmup", type=int, help="steps at the start of a new run in which only D learns")
    p.add_argument("--fp32", action="store_true", help="no bf16 autocast (by default it is used only where the "
                   "hardware runs bf16 natively)")
    p.add_argument("--export", metavar="MODEL_DIR", help="write the checkpoint's EMA generator as a model folder")
    p.add_argument("--name", default="faces64", help="the exported model's display name")
    p.add_argument("--description", default="A compact StyleGAN2 trained on localedit's procedural cartoon faces.",
                   help="the exported model's one-line description")
    p.set_defaults(func=cli_measure.cmd_train)

    p = command("probe", help="a quick look at training checkpoints on tuning seeds: the reserved channels' swap, "
                "the realism (judge-feature FD, brow contrast, the small parts' areas) and the colour variety")
    p.add_argument("paths", nargs="+", metavar="PATH", help="training checkpoints (.pt) or model folders (a folder's "
                   "catalog picks its stand-in reserved channels)")
    p.add_argument("--pairs", type=int, default=48, help="tuning pairs for the swap")
    p.add_argument("--samples", type=int, default=256, help="tuning samples for the realism and the variety")
    p.add_argument("--per-part", type=int, default=1, help="for a model folder: stand-in channels per part and layer")
    p.add_argument("--sheets", metavar="DIR", help="also write DIR/NAME-swap.png per path: target | reference | "
                   "swapped for six pairs per part whose colours differ")
    p.add_argument("--judge", default="assets/judge", help="the judge's folder")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.set_defaults(func=cli_measure.cmd_probe)

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
    p.set_defaults(func=cli_measure.cmd_train_judge)

    p = command("render-faces", help="a grid PNG of procedural faces and one of their part labels")
    p.add_argument("--out", default="faces.png", help="the label grid goes next to it as *_labels.png")
    p.add_argument("--n", type=int, default=64, help="how many faces")
    p.add_argument("--size", type=int, default=64, help="their size in pixels")
    p.add_argument("--offset", type=int, default=0, help="first face index")
    p.add_argument("--upscale", type=int, default=4, help="pixel enlargement in the PNG")
    p.set_defaults(func=cli_measure.cmd_render_faces)

    p = command("ceiling", help="the transfer figures of perfect edits of the procedural faces (the renderer's own "
                "part swap): the most a part's gates can ask")
    p.add_argument("--part", default="nose", help="the part (one that draws its whole look from its own stream)")
    p.add_argument("--pairs", type=int, default=300, help="held-out face pairs")
    p.set_defaults(func=cli_measure.cmd_ceiling)

    p = command("convert", help="a rosinality .pt or NVIDIA .pkl StyleGAN2 checkpoint → a model folder")
    p.add_argument("checkpoint", help="rosinality .pt/.pth/.ckpt (g_ema) or NVIDIA stylegan2-ada/stylegan3 .pkl")
    p.add_argument("out_dir", help="the model folder to write")
    p.add_argument("--name", help="display name (default: the checkpoint's file name)")
    p.add_argument("--overwrite", action="store_true", help="replace the model files of an existing folder")
    p.set_defaults(func=cli_models.cmd_convert)

    p = command("push", help="upload a model folder to a Hub repo (token: HF_TOKEN or `hf auth login`)")
    p.add_argument("folder", help="a local model folder")
    p.add_argument("repo_id", help="owner/name, created if needed")
    p.add_argument("--revision", help="a branch to push to (created from main if needed; default: main)")
    p.add_argument("--private", action="store_true", help="create the repo as private")
    p.set_defaults(func=cli_models.cmd_push)

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
