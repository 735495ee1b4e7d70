"""A training run in its folder: `python -m localedit train`'s loop around `Trainer` (train.py). It starts, resumes or
branches a run; writes RUN_DIR/latest.pt, the kept steps and the sample grids; and stops between steps on
SIGINT/SIGTERM with a checkpoint, so a run longer than a session goes on from where it stopped."""

from __future__ import annotations

import shutil
import signal
import threading
import time
from collections import defaultdict, deque
from pathlib import Path

from torch import Tensor
from tqdm import tqdm

from localedit.bench import hardware
from localedit.train import Trainer, render_faces, resolve_device
from localedit.train_config import TrainConfig


def _graceful_stop() -> tuple[dict, dict]:
    """Turn SIGINT/SIGTERM into a flag the loop checks between steps, so a stop never cuts a step in half."""
    flag: dict = {"signal": None}
    previous: dict = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda signum, _frame: flag.update(signal=signum))
    return flag, previous


def train(run_dir: Path, config: TrainConfig | None, steps: int, *, device: str = "auto", resume: Path | None = None,
          sample_every: int = 250, checkpoint_every: int = 500, keep_every: int = 0, command: str = "",
          progress: bool = True, faces: Tensor | None = None, labels: Tensor | None = None,
          branch: Path | None = None, changes: dict | None = None) -> Trainer:
    """Train until `steps` steps in total, resuming from `resume` or RUN_DIR/latest.pt when there is one.

    A new RUN_DIR with `branch` continues that checkpoint's whole state (G, D, EMA, optimisers, step) under
    `changes` to its loss settings (BRANCH_SETTINGS); the same call later resumes the branch.

    Writes RUN_DIR/latest.pt every `checkpoint_every` steps, at the end and on SIGINT/SIGTERM, a copy that is
    kept, RUN_DIR/step-NNNNNN.pt, every `keep_every` steps (0: none), and RUN_DIR/grids/step-NNNNNN.png every
    `sample_every` steps. A resume keeps the checkpoint's config; `config`
    (None: the defaults for a fresh run) must then match it.
    """
    started = time.perf_counter()
    dev = resolve_device(device)
    run_dir = Path(run_dir)
    latest = run_dir / "latest.pt"
    if branch is not None and resume is not None:
        raise ValueError("name either a checkpoint to resume or one to branch from, not both")
    resume = resume if resume is not None else (latest if latest.exists() else None)
    if resume is not None and branch is not None:
        trainer = Trainer.load(Path(resume), faces, dev, cache=run_dir / "faces.npy", labels=labels)
        made = trainer.config
        if not made.branched_from.startswith(f"{branch} (") or any(getattr(made, k) != v
                                                                  for k, v in (changes or {}).items()):
            raise ValueError(f"{run_dir} already holds a run that is not this branch of {branch} "
                             f"(it {'branched from ' + made.branched_from if made.branched_from else 'began there'})"
                             "; pick a new --run-dir")
        tqdm.write(f"resumed the branch {resume} at step {trainer.step}")
    elif branch is not None:
        trainer = Trainer.load(Path(branch), faces, dev, cache=run_dir / "faces.npy", labels=labels,
                               changes=changes)
        tqdm.write(f"branched from {trainer.config.branched_from}; its config now: {trainer.config}")
    elif resume is not None:
        trainer = Trainer.load(Path(resume), faces, dev, cache=run_dir / "faces.npy", labels=labels)
        if config is not None and config != trainer.config:
            changed = {k: v for k, v in config.to_dict().items() if trainer.config.to_dict()[k] != v}
            raise ValueError(f"{resume} was trained with {trainer.config}; it cannot resume with {changed}. "
                             "Drop those flags to resume, or pick a new --run-dir")
        tqdm.write(f"resumed {resume} at step {trainer.step} ({trainer.images_seen / 1000:.1f} kimg); "
                   f"its config: {trainer.config}")
    else:
        config = config or TrainConfig()
        if faces is None:
            faces, labels = render_faces(config.n_faces, config.size, run_dir / "faces.npy")
        trainer = Trainer(config, faces, dev, labels)
        if config.init:
            trainer.start_from(config.init)
        if config.init_d:
            trainer.start_d_from(config.init_d)
    session = {"command": command, "hardware": f"{hardware(dev)}, {trainer.precision}", "start_step": trainer.step,
               "end_step": trainer.step, "wall_s": 0.0}
    trainer.sessions.append(session)
    wall_before = trainer.wall_time

    def checkpoint() -> None:
        elapsed = time.perf_counter() - started
        session.update(end_step=trainer.step, wall_s=elapsed)
        trainer.wall_time = wall_before + elapsed
        trainer.save(latest)

    flag, previous = _graceful_stop()
    bar = tqdm(total=steps, initial=trainer.step, disable=not progress, dynamic_ncols=True, mininterval=5,
               unit="step")
    recent: dict[str, deque] = defaultdict(lambda: deque(maxlen=50))  # single-step GAN losses are too noisy
    try:
        while trainer.step < steps and flag["signal"] is None:
            t0 = time.perf_counter()
            stats = trainer.train_step()
            stats["s/step"] = time.perf_counter() - t0
            for k, v in stats.items():
                recent[k].append(v)
            running = {k: sum(v) / len(v) for k, v in recent.items()}
            bar.update(1)
            bar.set_postfix({k: f"{v:.3g}" for k, v in running.items()}, refresh=False)
            if trainer.step % sample_every == 0:
                trainer.sample_grid(run_dir / "grids" / f"step-{trainer.step:06d}.png")
                tqdm.write(f"step {trainer.step} kimg {trainer.images_seen / 1000:.1f} "
                           + " ".join(f"{k} {v:.4g}" for k, v in running.items()))
            keep = keep_every and trainer.step % keep_every == 0
            if keep or trainer.step % checkpoint_every == 0:
                checkpoint()
            if keep:
                shutil.copyfile(latest, run_dir / f"step-{trainer.step:06d}.pt")
    finally:
        bar.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    checkpoint()
    if flag["signal"] is not None:
        tqdm.write(f"stopped by signal {flag['signal']} at step {trainer.step}; checkpoint {latest}")
    return trainer
