"""`python -m localedit bench`: what an edit costs, measured, as ratios taken within one run.

Goals from the method issue: a warm edit, and a warm composite, ≤ 1.15 × one synthesis pass (the cache leaves
only the query and the interpolation on top), and k-means clustering ≤ 0.5 × sample generation when a catalog is
built. From the data issue: rendering 50,000 procedural faces takes ≤ 2 minutes.
"""

from __future__ import annotations

import functools
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from localedit.catalog import Catalog, build_catalog
from localedit.composite import resolve_composite, run_composite
from localedit.edit import Editor
from localedit.faces import render_arrays
from localedit.stylegan2 import Generator, GeneratorConfig, seed_to_z


def _median_seconds(fn: Callable[[], object], repeats: int) -> float:
    return _interleaved({"fn": fn}, repeats)["fn"]


def _interleaved(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each function, timed in turns (a, b, c, a, b, c, ...), so a slow spell of a shared
    machine slows them all alike and their ratios hold."""
    for fn in fns.values():
        fn()  # warm-up: first calls pay for allocation and kernel selection
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def hardware(device: torch.device | str = "cpu") -> str:
    """What a timing depends on, in words for bench output and model cards: the CPU model and its cores (or the
    GPU), torch's threads and version."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    model = ""
    if Path("/proc/cpuinfo").exists():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    model = model or platform.processor() or platform.machine() or "CPU"
    return f"{model} ({os.cpu_count()} cores), {torch.get_num_threads()} torch threads, torch {torch.__version__}"


def bench_edit(editor: Editor, part: str, repeats: int = 30) -> dict[str, float]:
    """Median warm edit, one synthesis pass and one query, in seconds, with the edit ÷ synthesis ratio."""
    params = editor.resolve(1, 2, part)
    result = editor.run(params)  # fills the cache for both seeds
    styles = editor.sample(params.target, params.truncation).styles

    def synth() -> None:
        with torch.inference_mode():
            editor.generator.synthesize(styles)

    # A composite of up to three parts, each from its own reference: warm, it too is one synthesis pass.
    rows = [(p, 2 + i) for i, p in enumerate(editor.parts[:3])]
    composite = resolve_composite(editor, params.target, rows, params.truncation)
    t = _interleaved({"synth": synth, "edit": lambda: editor.run(params),
                      "composite": lambda: run_composite(editor, composite)}, repeats)
    edit, synthesis, composite_s = t["edit"], t["synth"], t["composite"]
    query = _median_seconds(lambda: editor.compute_query(params), repeats)  # uncached
    return {"edit_s": edit, "synthesize_s": synthesis, "edit_over_synthesize": edit / synthesis,
            "query_s": query, "channels_changed": sum(result.changed.values()),
            "composite_rows": len(rows), "composite_s": composite_s,
            "composite_over_synthesize": composite_s / synthesis}


def bench_catalog(generator: Generator, layer: str, k: int, samples: int, fit_rows: int | None = None,
                  progress: bool = False) -> tuple[dict[str, float], Catalog]:
    """Catalog build time split into sample generation and clustering, and their ratio; and the catalog."""
    catalog = build_catalog(generator, layer, k, n_samples=samples, fit_rows=fit_rows, progress=progress)
    t = catalog.timings
    return {"generation_s": t["generation"], "clustering_s": t["clustering"],
            "clustering_over_generation": t["clustering"] / t["generation"]}, catalog


def bench_synthesis(sizes: list[int], repeats: int = 5) -> dict[int, float]:
    """Median seconds of one `synthesize` call, batch 1, on random rosinality-table generators of each size."""
    out = {}
    for size in sizes:
        torch.manual_seed(0)
        g = Generator(GeneratorConfig(size=size)).eval()
        with torch.inference_mode():
            styles = g.styles(g.mapping(seed_to_z(0, g.style_dim)))
            out[size] = _median_seconds(functools.partial(g.synthesize, styles), repeats)
    return out


def bench_faces(n: int, size: int = 64, workers: int = 2) -> float:
    """Seconds to render procedural faces 0..n-1 with their labels, in `workers` processes."""
    start = time.perf_counter()
    render_arrays(n, size, workers=workers)
    return time.perf_counter() - start
