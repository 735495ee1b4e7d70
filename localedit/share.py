"""The demo's allowlist of models and its shareable links, kept apart from the UI so that both are plain,
testable Python.

A link or an API call names a model by its key in the allowlist, so no other path or repo can ever be opened.
`Controls.query()` writes a link that `parse_link` reads back exactly (ε and the other floats round-trip bit for
bit), and `parse_link` turns a bad value into its default plus a notice, never an error. A composite link
(`CompositeControls`, `?model=&target=&composite=eyes:12:30,hair:7:88.5&truncation=`) is read the same way by
`parse_link` (its model, target and ψ) and then `parse_composite` (its rows, each checked by the library's
`localedit.composite.resolve_row`, the one check of a composite row).

A single edit's target or reference may also be a picture the server projected (the app's uploads): a link names
it `upload:<hex>`, the digest of the picture's bytes with the model and the projection settings, and holds only
that name, so the link works while the server keeps the projection; `parse_link` asks `upload_of` for it and,
when it is gone, falls back to a seed with a notice that says so.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from localedit.composite import MAX_ROWS, RowError, check_row_count, resolve_row
from localedit.edit import MAX_SEED, METHODS, Editor, check_seed
from localedit.hub import CONFIG_FILE, EDITABLE_FILES, WEIGHTS_FILE, load_model, parse_repo_id

LINK_KEYS = ("model", "target", "reference", "part", "epsilon", "method", "threshold", "lam", "truncation")
UPLOAD_PREFIX = "upload:"
UPLOAD_NAME = re.compile(r"upload:[0-9a-f]{32}")  # the prefix, then 128 bits of a SHA-256, in lower-case hex
_MAX_TEXT = 300  # longest link value or error message passed on; longer ones are cut


# --- models ----------------------------------------------------------------------------------------------


class Models:
    """The allowlist {key: source for load_model}, and one Editor per model, loaded on first use."""

    def __init__(self, sources: Mapping[str, str]):
        self.sources = dict(sources)
        self._editors: dict[str, Editor] = {}
        self._folders: dict[str, Path] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ, assets: Path = Path("assets")) -> Models:
        """The model folders under `assets` (or $LOCALEDIT_ASSETS), then the repos in $LOCALEDIT_MODELS."""
        assets = Path(environ.get("LOCALEDIT_ASSETS") or assets)
        sources = {folder.name: str(folder) for folder in model_folders(assets, catalog=True)}
        for repo in filter(None, (r.strip() for r in environ.get("LOCALEDIT_MODELS", "").split(","))):
            if parse_repo_id(repo) is None:
                raise ValueError(f"LOCALEDIT_MODELS: {repo!r} is not a Hub repo id owner/name[@revision]")
            sources[repo] = repo
        if not sources:
            raise RuntimeError(f"no models to serve: {assets} has no model folder with {', '.join(EDITABLE_FILES)}, "
                               "and LOCALEDIT_MODELS names no Hub repo. Export one with `python -m localedit "
                               "train --export assets/NAME`, or set LOCALEDIT_MODELS=owner/name")
        return cls(sources)

    @property
    def names(self) -> list[str]:
        return list(self.sources)

    def editor(self, name: object) -> Editor:
        if not isinstance(name, str) or name not in self.sources:
            raise ValueError(f"unknown model {short(name)}; this demo serves {self.names}")
        editor = self._editors.get(name)
        if editor is None:
            with self._lock:  # two requests racing for a cold model load it once
                editor = self._editors.get(name)
                if editor is None:
                    model = load_model(self.sources[name])
                    if model.catalog is None or not model.catalog.parts:
                        raise ValueError(f"model {name} has no labelled catalog; label its clusters with "
                                         "`python -m localedit catalog` and `python -m localedit label`")
                    self._folders[name] = model.folder
                    editor = self._editors[name] = Editor(model.generator, model.catalog)
        return editor

    def folder(self, name: object) -> Path:
        """The local folder a model was read from (a Hub model's is a snapshot in the cache: never write there)."""
        self.editor(name)
        return self._folders[name]


def model_folders(assets: Path, catalog: bool) -> list[Path]:
    """The model folders directly under `assets`, by name: those with a generator and a catalog (what the app
    serves), or with `catalog` False those with a generator and no catalog (what its builder offers besides).
    A folder with neither, such as assets/judge, is no model."""
    if not assets.is_dir():
        return []
    def has(folder: Path, files: Sequence[str]) -> bool:
        return all((folder / name).is_file() for name in files)

    return [folder for folder in sorted(assets.iterdir())
            if folder.is_dir() and has(folder, (CONFIG_FILE, WEIGHTS_FILE)) and has(folder, EDITABLE_FILES) == catalog]


# --- links -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Controls:
    """Everything a link or the controls set; `query()` writes it so that `parse_link` reads it back exactly.
    The target and the reference are each a seed, or an upload's name `upload:<hex>`."""

    model: str
    target: int | str
    reference: int | str
    part: str
    epsilon: float
    method: str
    threshold: float
    lam: float
    truncation: float

    def query(self) -> str:
        return "?" + urlencode({key: _text(getattr(self, key)) for key in LINK_KEYS}, safe="/@:")


CompositeRow = tuple[str, int, float]  # part, reference seed, ε


@dataclass(frozen=True)
class CompositeControls:
    """Everything a composite link sets: the target, its rows (part, reference seed, ε) and ψ, on a model.

    `query()` writes every row's ε, so the link restores the same bytes even if the catalog's defaults change:
    ?model=faces64&target=3&composite=hair:7:88.52,eyes:12:30&truncation=0.7 (rows apart by commas; a part name
    with a comma, colon or % in it is percent-encoded once more)."""

    model: str
    target: int
    rows: tuple[CompositeRow, ...]
    truncation: float

    def query(self) -> str:
        rows = ",".join(f"{quote(part, safe='')}:{reference}:{_text(epsilon)}"
                        for part, reference, epsilon in self.rows)
        return "?" + urlencode({"model": self.model, "target": self.target, "composite": rows,
                                "truncation": _text(self.truncation)}, safe="/@:,")


def _text(value: object) -> str:
    # repr is the shortest text that reads back to the same float, so a link restores ε bit for bit; a whole
    # float drops its ".0" (ε 30.0 reads "30"), and text, such as a model "owner/x@v1.0", stays as it is.
    if isinstance(value, float):
        text = repr(value)
        return text[:-2] if text.endswith(".0") else text
    return str(value)


def short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "…"


def parse_seed(name: str, value: object) -> int:
    """A seed from a link (text) or the API (a number): a whole number in [0, MAX_SEED], or ValueError."""
    if isinstance(value, str) and re.fullmatch(r"\s*\d{1,20}\s*", value):
        value = int(value)
    elif isinstance(value, float) and value.is_integer():
        value = int(value)  # a JSON number from a browser's number field may arrive as 3.0
    return check_seed(name, value)


def is_upload(value: object) -> bool:
    """Whether a source is named as an upload (`upload:…`), well formed or not."""
    return isinstance(value, str) and value.strip().startswith(UPLOAD_PREFIX)


def parse_upload(name: str, value: str) -> str:
    """An upload's name as links and the API write it, `upload:<32 hex digits>`; ValueError for anything else."""
    text = value.strip().lower()
    if not UPLOAD_NAME.fullmatch(text):
        raise ValueError(f"{name} {short(value)} is not an upload's name; an upload is named upload: and 32 hex "
                         "digits, as /project returns it")
    return text


def parse_source(name: str, value: object, model: str,
                 upload_of: Callable[[str, str, str], object] | None = None) -> int | str:
    """A link's target or reference: a seed (`parse_seed`), or the name of an upload that `upload_of(name,
    upload, model)` still has (it raises ValueError saying why not). Returns the seed or the upload's name."""
    if not is_upload(value):
        return parse_seed(name, value)
    upload = parse_upload(name, value)
    if upload_of is None:
        raise ValueError(f"{name} {upload}: this server takes no uploads")
    upload_of(name, upload, model)
    return upload


def as_seed(value: object) -> object:
    """A seed as the library takes it: a text "3" or a JSON 3.0 becomes 3, as `parse_seed` reads them; anything
    else is passed on for the library to refuse with its own message."""
    try:
        return parse_seed("reference", value)
    except ValueError:
        return value


def parse_number(value: object) -> object:
    """A number from a link's text; anything else is passed on for the library to accept or refuse."""
    if isinstance(value, str) and len(value) <= 40:
        try:
            return float(value)
        except ValueError:
            return value
    return value


def default_controls(model: str, editor: Editor, seeds: tuple[int, int]) -> Controls:
    part = editor.parts[0]
    p = editor.resolve(seeds[0], seeds[1], part)
    return Controls(model, p.target, p.reference, part, p.epsilon, p.method, p.threshold, p.lam, p.truncation)


def another_seed(target: int, seeds: tuple[int, int]) -> int:
    """A reference for `target` when none is given: the first of `seeds` that is another image."""
    return next(s for s in (*seeds, target + 1, 0) if s != target and 0 <= s <= MAX_SEED)


def default_row(editor: Editor, part: str, target: int, seeds: tuple[int, int]) -> CompositeRow:
    """A new composite row for `part`: the reference of the part's catalog example (`tune` picked one that shows
    the part plainly), else seeds[1], and never the target itself; ε the part's own."""
    reference = editor.catalog.examples.get(part, seeds)[1]
    if reference == target:
        reference = another_seed(target, seeds)
    return part, reference, editor.resolve_query(part).epsilon


DEFAULT_ROWS = 3  # a new composite starts with the catalog's first three parts


def default_rows(editor: Editor, target: int, seeds: tuple[int, int]) -> tuple[CompositeRow, ...]:
    """The rows a composite starts from: the default rows of the catalog's first DEFAULT_ROWS parts."""
    return tuple(default_row(editor, part, target, seeds) for part in editor.parts[:DEFAULT_ROWS])


def default_composite(model: str, editor: Editor, seeds: tuple[int, int]) -> CompositeControls:
    """The composite a page starts from: the default rows on target seeds[0], at the model's ψ."""
    return CompositeControls(model, seeds[0], default_rows(editor, seeds[0], seeds), editor.resolve_truncation())


def parse_link(query: Mapping[str, object], models: Sequence[str], editor_of: Callable[[str], Editor],
               seeds: tuple[int, int] = (0, 1), upload_of: Callable[[str, str, str], object] | None = None
               ) -> tuple[Controls, list[str]]:
    """A link's query → the controls it asks for, and one notice per value that fell back to its default.

    Values are checked by the library (`Editor.resolve`), one at a time, so a bad value costs only itself.
    The model must be one of `models`; `editor_of` is only ever called with a member. Values a link leaves out
    take their defaults quietly (a reference other than the target); unknown keys are ignored. A target or
    reference `upload:<hex>` is kept when `upload_of` has it (`parse_source`), else its seed is the default.
    """
    given = {key: query[key] for key in LINK_KEYS if key in query}
    notices: list[str] = []
    model = given.get("model", models[0])
    if not isinstance(model, str) or model not in models:
        notices.append(f"model {short(model)} is not served here (models: {', '.join(models)}); "
                       f"showing {models[0]}")
        model = models[0]
    try:
        editor = editor_of(model)
    except ValueError as e:
        notices.append(f"model {model} cannot be loaded ({cut(str(e))}); showing {models[0]}")
        model, editor = models[0], editor_of(models[0])
    c = default_controls(model, editor, seeds)
    if not given:
        return c, []
    values = asdict(c)
    if "part" in given:
        if isinstance(given["part"], str) and given["part"] in editor.parts:
            values["part"] = given["part"]
        else:
            notices.append(f"part {short(given['part'])} is not in {model}'s catalog ({', '.join(editor.parts)})"
                           f"; showing {c.part}")
    if "method" in given:
        if given["method"] in METHODS:
            values["method"] = given["method"]
        else:
            notices.append(f"method {short(given['method'])} is not one of {', '.join(METHODS)}; using {c.method}")
    # The part's own ε and threshold are the defaults for whichever part the link ends up with.
    defaults = editor.resolve_query(values["part"], method=values["method"])
    values.update(epsilon=defaults.epsilon, threshold=defaults.threshold, lam=defaults.lam)
    for key in ("target", "reference"):
        if key in given:
            try:
                values[key] = parse_source(key, given[key], model, upload_of)
            except ValueError as e:
                notices.append(f"{cut(str(e))}; using seed {values[key]}" if is_upload(given[key])
                               else f"{cut(str(e))}; using {values[key]}")
    for key in ("epsilon", "threshold", "lam", "truncation"):
        if key in given:
            try:
                number = parse_number(given[key])
                if key == "truncation":
                    values[key] = editor.resolve_truncation(number)
                else:
                    resolved = editor.resolve_query(values["part"], method=values["method"], **{key: number})
                    values[key] = getattr(resolved, key)
            except ValueError as e:
                notices.append(f"{cut(str(e))}; using {_text(values[key])}")
    if "reference" not in given and values["reference"] == values["target"]:
        # A short link names only a target: the default reference must be another image, or nothing changes.
        values["reference"] = another_seed(values["target"], seeds)
    return Controls(**values), notices


def parse_composite(query: Mapping[str, object], controls: Controls, editor: Editor,
                    seeds: tuple[int, int] = (0, 1)) -> tuple[CompositeControls | None, list[str]]:
    """A link's composite rows → the composite it asks for, on the model, target and ψ that `parse_link` read
    from the same link (so a bad one of those is noticed once), and one notice per value that fell back.
    None when the link has no `composite` key: it is a single edit's.

    A row is PART:SEED or PART:SEED:EPSILON; ε left out is the part's. Each row is checked by the library
    (`localedit.composite.resolve_row`, as every composite is): one that cannot be used (not a row, a part the
    model lacks or that an earlier row has, a bad seed) is left out, with the library's message naming it; a bad
    ε falls back to the part's; past MAX_ROWS rows the rest are left out. When no row is left, the default rows
    are shown.
    """
    if "composite" not in query:
        return None, []
    value = query["composite"]
    items = value.split(",") if isinstance(value, str) and value.strip() else []
    notices: list[str] = []
    try:
        check_row_count(len(items))
    except ValueError as e:
        notices.append(f"{e}; using the first {MAX_ROWS}")
        items = items[:MAX_ROWS]
    rows: list[CompositeRow] = []
    earlier: dict[str, int] = {}
    for number, item in enumerate(items, 1):
        part, *fields = item.split(":")
        if len(fields) not in (1, 2):
            notices.append(f"composite row {number} {short(item)} is not PART:SEED or PART:SEED:EPSILON; left out")
            continue
        row = (unquote(part), as_seed(fields[0]), *(parse_number(text) for text in fields[1:]))
        try:
            resolved = resolve_row(editor, number, row, earlier)
        except RowError as e:
            if e.field != "epsilon":
                notices.append(f"composite {cut(str(e))}; left out")
                continue
            resolved = resolve_row(editor, number, row[:2], earlier)  # good at the part's own ε
            notices.append(f"composite {cut(str(e))}; using {_text(resolved.epsilon)}")
        earlier[resolved.part] = number
        rows.append((resolved.part, resolved.reference, resolved.epsilon))
    if not rows:
        rows = default_rows(editor, controls.target, seeds)
        notices.append(f"the composite {short(value)} has no row to use; showing "
                       f"{', '.join(f'{part} from {reference}' for part, reference, _ in rows)}")
    return CompositeControls(controls.model, controls.target, tuple(rows), controls.truncation), notices


def query_of(link: str) -> dict[str, str]:
    """The query of a link, a URL or a bare query string, as {key: last value}."""
    if len(link) > 4096:
        raise ValueError(f"a link is at most 4096 characters, got {len(link)}")
    query = urlsplit(link).query if ("?" in link or "://" in link) else link
    try:
        return dict(parse_qsl(query, keep_blank_values=True, max_num_fields=64))
    except ValueError as e:
        raise ValueError(f"cannot read the link's query: {e}") from e


def cut(text: str) -> str:
    return text if len(text) <= _MAX_TEXT else text[:_MAX_TEXT - 1] + "…"
