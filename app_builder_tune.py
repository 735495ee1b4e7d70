"""The "Build a catalog" tab's tuning: a named part's settings chosen as `python -m localedit tune` chooses them, by
measuring its edits on the tuning seeds with the judge, where the judge knows the generator's genre (localedit's
procedural faces). app_builder.py has the rest of the tab."""

from __future__ import annotations

from dataclasses import replace

import gradio as gr

from app_builder import VIEWS, Draft, cli_threads, started, views
from app_endpoints import PROJECTOR
from app_support import user_errors
from localedit.faces import PARTS as JUDGED
from localedit.hub import Model
from localedit.judge import Judge
from localedit.parts import LAYER_GROUPS, Part
from localedit.tune import choose, tune

TUNING_PAIRS = 32  # `python -m localedit tune`'s default


def judge_for(model: Model) -> Judge | None:
    """The assets folder's judge (the one projections use) when this generator is of its genre, as far as can be
    told: there is one, and it segments images of the generator's size (it knows localedit's procedural faces
    only)."""
    judge = PROJECTOR.judge()
    return judge if judge is not None and judge.config.size == model.config.size else None


def tune_part(draft: Draft | None, name, progress=gr.Progress(track_tqdm=True)):  # noqa: B008 (as `build`)
    """Tune: `python -m localedit tune --parts NAME`'s search and rule on the tuning seeds → (the chosen settings,
    as a Part, and what they measured). `apply_tuned` then sets them on the catalog as it is by then, so that
    parts named meanwhile stay."""
    with user_errors(), cli_threads():
        catalog = started(draft)._built()
        if name not in catalog.parts:
            raise ValueError("name the part first (Name part), then tune its settings")
        judge = judge_for(draft.model)
        if judge is None or name not in JUDGED:
            raise ValueError(f"tuning measures edits with the judge, which knows the parts {list(JUDGED)} of "
                             f"localedit's procedural faces at its own size; set {name}'s settings by hand")
        best = choose(tune(draft.model.generator, catalog, judge, [name], pairs=TUNING_PAIRS)[name])
        if best is None:
            raise ValueError(f"no setting changed {name}'s edits: check its clusters")
    t = best.transfer
    return best.part, (f"**Tuned {name}** on {TUNING_PAIRS} tuning pairs: {describe(best.part)}. Its edits there: "
                       f"colour transfer {t.color:.2f}, shape {t.shape:.2f}, visible in {t.visible:.0%} of the "
                       f"pairs that differ, leak {t.leak:.2f}.")


def apply_tuned(draft: Draft | None, tuned: Part | None):
    """The tuned settings on the part, in the catalog as it is now (its colour stays), and in the settings' boxes."""
    if tuned is None:
        return (gr.skip(),) * (len(VIEWS) + 4 + len(LAYER_GROUPS))
    with user_errors():
        catalog = started(draft)._built()
        now = catalog.parts.get(tuned.name)
        if now is None or now.clusters != tuned.clusters:
            raise ValueError(f"{tuned.name} was renamed or removed while it was tuned: tune it again")
        part = replace(tuned, color=now.color)
        catalog = replace(catalog, parts={**catalog.parts, part.name: part})
    profile = dict(part.epsilon_profile)
    return (*views(draft.with_catalog(catalog), part.name, keep=True), gr.skip(), part.color, part.epsilon,
            part.threshold, part.torgb, *(profile[g] for g in LAYER_GROUPS))


def describe(part: Part) -> str:
    """A part's settings in words."""
    weights = "/".join(f"{w:g}" for _, w in part.epsilon_profile)
    return (f"ε {part.epsilon:g}, threshold {part.threshold:g}, toRGB {'on' if part.torgb else 'off'}, ε weights "
            f"{weights} on the coarse/middle/fine layers")
