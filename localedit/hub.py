"""Model folders, on disk or on the Hugging Face Hub: all of localedit's file and Hub I/O lives here.

A model folder (a local directory, `assets/<model>/`, or a Hub repo) holds
    config.json              GeneratorConfig.to_dict()
    generator.safetensors    rosinality's g_ema keys plus `latent_avg` (the fixed blur kernels may be left out)
    catalog.json             optional: Catalog.to_state()'s metadata
    catalog.safetensors      optional: the centroids and one M [K, C_l] per style layer
    README.md                the model card
Only safetensors is read: no pickle and no `torch.load`, so opening a model folder never runs code from it.
Every key and shape is checked before `load_state_dict(strict=True)`.

A Hub source is `owner/name` with an optional `@revision` (branch, tag or commit). It is fetched with
`huggingface_hub.snapshot_download` into the Hugging Face cache, so `HF_HUB_OFFLINE`, `HF_HOME`/`HF_HUB_CACHE`,
`HF_ENDPOINT` and `HF_TOKEN` work as they do for any Hub library.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from localedit.stylegan2 import Generator, GeneratorConfig

if TYPE_CHECKING:
    from localedit.catalog import Catalog

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "generator.safetensors"
CATALOG_META_FILE = "catalog.json"
CATALOG_TENSORS_FILE = "catalog.safetensors"
CARD_FILE = "README.md"
ENCODER_META_FILE = "encoder.json"  # optional: an encoder for projecting pictures (encoder.py)
ENCODER_TENSORS_FILE = "encoder.safetensors"
MODEL_FILES = (CONFIG_FILE, WEIGHTS_FILE, CATALOG_META_FILE, CATALOG_TENSORS_FILE, CARD_FILE, ENCODER_META_FILE,
               ENCODER_TENSORS_FILE)
# What makes a folder an editable model: a generator and a catalog (the card is optional).
EDITABLE_FILES = (CONFIG_FILE, WEIGHTS_FILE, CATALOG_META_FILE, CATALOG_TENSORS_FILE)

# Constant [1,3,3,1] filters, not learned: a file may omit them and they are rebuilt.
_FIXED_BUFFERS = (".blur.kernel", ".upsample.kernel")
_REPO_ID = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*)(?:@(?P<revision>[^@\s]+))?$")
_LISTED = 12  # keys named per category in a mismatch message; a wrong file would otherwise list hundreds


class ModelNotFoundError(ValueError):
    """A model folder, Hub repo, revision or model file cannot be found, or the Hub cannot be reached."""


@dataclass(frozen=True, eq=False)
class Model:
    """A loaded model and where it came from.

    folder is the local directory the files were read from (for a Hub model, a snapshot in the Hugging Face
    cache: read it, never write into it). repo_id, revision and commit are None for a local folder; commit is the
    40-hex commit that was loaded, so `f"{repo_id}@{commit}"` reloads exactly these weights.
    """

    generator: Generator
    catalog: Catalog | None
    config: GeneratorConfig
    source: str
    folder: Path
    repo_id: str | None = None
    revision: str | None = None
    commit: str | None = None


# --- reading -----------------------------------------------------------------------------------------------


def load_model(source: str | os.PathLike, revision: str | None = None) -> Model:
    """Load a model folder: a local directory, or a Hub repo `owner/name[@revision]`.

    An existing directory always wins; `./x`, `../x`, `/x` and `~/x` are always paths; any other `owner/name` is
    a Hub repo id. `revision` (or `@revision`) pins a branch, tag or commit. Raises ModelNotFoundError when the
    folder, repo, revision or a required file is missing or the Hub cannot be reached, and ValueError when the
    files are present but wrong (a corrupt file, a config/weights mismatch).
    """
    text = os.fspath(source)
    path = Path(text).expanduser()
    if path.is_dir():
        if revision is not None:
            raise ValueError(f"{text} is a local folder; a revision only applies to Hub repos (owner/name@rev)")
        generator, catalog = _load_folder(path, where=str(path))
        return Model(generator, catalog, generator.config, text, path)
    if path.exists():
        raise ValueError(f"{text} is a file, not a model folder (a folder with {CONFIG_FILE} and {WEIGHTS_FILE}); "
                         "convert a checkpoint with `python -m localedit convert CHECKPOINT OUT_DIR`")
    if text.startswith(("/", "./", "../", "~")) or text in (".", ".."):
        raise ModelNotFoundError(f"no such model folder: {text}")
    parsed = parse_repo_id(text)
    if parsed is None:
        raise ValueError(f"{text!r} is neither an existing model folder nor a Hub repo id owner/name[@revision]")
    repo_id, pinned = parsed
    if pinned is not None and revision is not None and pinned != revision:
        raise ValueError(f"{text} pins revision {pinned!r} but revision={revision!r} was also given")
    revision = pinned or revision
    folder = _download(repo_id, revision)
    generator, catalog = _load_folder(folder, where=f"{repo_id}@{revision or 'main'}")
    # snapshot_download returns .../snapshots/<commit>: the folder name is the commit that was loaded.
    return Model(generator, catalog, generator.config, text, folder, repo_id, revision, folder.name)


def parse_repo_id(text: str) -> tuple[str, str | None] | None:
    """`owner/name[@revision]` → (repo id, revision or None); None when `text` is not one ('..' never is)."""
    match = _REPO_ID.fullmatch(text)
    if match is None or ".." in text:
        return None
    return match["repo"], match["revision"]


def build_generator(config: GeneratorConfig, state: Mapping[str, Tensor], what: str) -> Generator:
    """A Generator in eval mode holding `state`, after checking every key and shape against `config`.

    The fixed blur kernels may be absent from `state`; they are taken from the freshly built module. Anything
    else missing, unexpected or mis-shaped raises one ValueError that lists it all.
    """
    # Building a module draws its random init from torch's global generator; loading must not move it.
    with torch.random.fork_rng(devices=[]):
        generator = Generator(config)
    expected = generator.state_dict()
    check_state(expected, state, f"{what} does not fit the generator its config describes ({_describe(config)})",
                optional=_FIXED_BUFFERS)
    generator.load_state_dict({k: state.get(k, v) for k, v in expected.items()}, strict=True)
    return generator.eval()


def check_state(expected: Mapping[str, Tensor], state: Mapping[str, Tensor], what: str,
                optional: tuple[str, ...] = ()) -> None:
    """Every key of `expected` in `state` with its shape (but those ending in `optional`), and nothing else:
    else one ValueError, starting with `what`, that lists every missing, unexpected and mis-shaped key."""
    missing = [k for k in expected if k not in state and not k.endswith(optional)]
    unexpected = sorted(set(state) - set(expected))
    wrong = [f"{k} {list(state[k].shape)} (expected {list(expected[k].shape)})"
             for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        raise ValueError(f"{what}: missing keys {_some(missing)}; unexpected keys {_some(unexpected)}; "
                         f"wrong shapes {_some(wrong)}")


def _describe(config: GeneratorConfig) -> str:
    table = (f"channels {list(config.channels)}" if config.channels
             else f"channel_multiplier {config.channel_multiplier}")
    return f"size {config.size}, style_dim {config.style_dim}, n_mlp {config.n_mlp}, {table}"


def _some(items: list[str]) -> str:
    shown = ", ".join(items[:_LISTED]) or "none"
    return shown + (f" … and {len(items) - _LISTED} more" if len(items) > _LISTED else "")


def _load_folder(folder: Path, where: str) -> tuple[Generator, Catalog | None]:
    absent = [name for name in (CONFIG_FILE, WEIGHTS_FILE) if not (folder / name).is_file()]
    if absent:
        present = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
        raise ModelNotFoundError(f"{where} is not a model folder: it has no {' and no '.join(absent)} "
                                 f"(files: {present})")
    config = _read_config(folder / CONFIG_FILE, where)
    generator = build_generator(config, _read_tensors(folder / WEIGHTS_FILE, where), f"{where}/{WEIGHTS_FILE}")
    return generator, _read_catalog(folder, where, generator)


def _read_config(path: Path, where: str) -> GeneratorConfig:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        return GeneratorConfig.from_dict(data)
    except (ValueError, TypeError) as e:  # JSONDecodeError is a ValueError; a missing field is a TypeError
        raise ValueError(f"{where}/{path.name} is not a valid generator config: {e}") from e


def _read_tensors(path: Path, where: str) -> dict[str, Tensor]:
    try:
        return load_file(path, device="cpu")
    except SafetensorError as e:
        raise ValueError(f"{where}/{path.name} is not a readable safetensors file ({e}); re-download or "
                         "re-convert it") from e


def _read_catalog(folder: Path, where: str, generator: Generator) -> Catalog | None:
    has_meta, has_tensors = (folder / CATALOG_META_FILE).is_file(), (folder / CATALOG_TENSORS_FILE).is_file()
    if not has_meta and not has_tensors:
        return None
    if not (has_meta and has_tensors):
        absent = CATALOG_TENSORS_FILE if has_meta else CATALOG_META_FILE
        raise ValueError(f"{where} has half a catalog: {absent} is missing (rebuild it with "
                         "`python -m localedit catalog`)")
    from localedit.catalog import Catalog  # the catalog's maths is only needed when a folder has one

    try:
        meta = json.loads((folder / CATALOG_META_FILE).read_text(encoding="utf-8"))
        catalog = Catalog.from_state(meta, _read_tensors(folder / CATALOG_TENSORS_FILE, where))
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from e
    # A catalog built on another generator would index channels that do not exist here.
    state = generator.state_dict()
    widths = {name: state[f"{name}.conv.modulation.weight"].shape[0] for name in generator.style_layers}
    got = {name: m.shape[1] for name, m in catalog.M.items()}
    if got != widths:
        raise ValueError(f"{where}: the catalog does not belong to this generator: its style layers and widths "
                         f"{got} differ from the generator's {widths}")
    return catalog


# --- the Hub -----------------------------------------------------------------------------------------------


def _download(repo_id: str, revision: str | None) -> Path:
    """snapshot_download of the model files at `revision`, with every failure turned into one clear error."""
    # Imported on first Hub use: local folders work without it, and HF_* variables set after
    # `import localedit` still apply (huggingface_hub reads them when it is imported).
    from huggingface_hub import HfApi, constants, snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = f"{repo_id}@{revision or 'main'}"
    unreachable: Exception | None = None
    if not constants.is_offline_mode():
        # snapshot_download's own metadata call has no timeout, so a black-holed endpoint would hang it.
        # This short probe decides first: answered → download; no answer → the cache alone.
        try:
            HfApi().model_info(repo_id, revision=revision, timeout=constants.HF_HUB_ETAG_TIMEOUT)
        except RepositoryNotFoundError as e:
            raise ModelNotFoundError(f"no local folder {repo_id}, and no model repo {repo_id} on "
                                     f"{constants.ENDPOINT} (if the repo is private or gated, log in with "
                                     "`hf auth login` or set HF_TOKEN)") from e
        except RevisionNotFoundError as e:
            raise ModelNotFoundError(f"{repo_id} has no revision {revision!r} (a branch, tag or commit) on "
                                     f"{constants.ENDPOINT}") from e
        except HfHubHTTPError as e:
            if e.response.status_code < 500:
                raise ModelNotFoundError(f"the Hub refused {where}: {e}") from e
            unreachable = e
        except (_transport_error(), OfflineModeIsEnabled) as e:
            unreachable = e
    try:
        folder = Path(snapshot_download(repo_id, revision=revision, allow_patterns=list(MODEL_FILES),
                                        local_files_only=constants.is_offline_mode() or unreachable is not None,
                                        etag_timeout=constants.HF_HUB_ETAG_TIMEOUT))
    except LocalEntryNotFoundError as e:
        if constants.is_offline_mode():
            raise ModelNotFoundError(
                f"{where} is not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and HF_HUB_OFFLINE is set: "
                f"download it once with network access (`hf download {repo_id}`), unset HF_HUB_OFFLINE, or pass "
                "a local model folder") from e
        raise ModelNotFoundError(
            f"cannot reach the Hub at {constants.ENDPOINT} ({type(unreachable).__name__}: {unreachable}) and "
            f"{where} is not in the Hugging Face cache: check the network, set HF_ENDPOINT to a reachable "
            f"endpoint or mirror, pre-download it (`hf download {repo_id}`) on a machine that can reach the Hub, "
            "or pass a local model folder") from e
    return folder


def _transport_error() -> type[Exception]:
    """The HTTP client's base class for 'no answer' (refused, timed out, DNS): httpx2 in huggingface_hub 2.x."""
    try:
        import httpx2

        return httpx2.TransportError
    except ImportError:  # huggingface_hub 1.x uses httpx
        import httpx

        return httpx.TransportError


def push(folder: str | os.PathLike, repo_id: str, revision: str | None = None, token: str | None = None,
         private: bool = False) -> str:
    """Upload a model folder's files to the Hub repo `repo_id` (created if needed); returns the commit hash.

    The folder is loaded first, exactly as users will load it, so a broken folder never leaves the machine and
    no request is made for it. `revision` names a branch (created from main if needed); `token` defaults to
    huggingface_hub's own (HF_TOKEN or `hf auth login`). Raises ValueError when the Hub refuses the push (a
    missing or rejected token, one without write access to the repo's namespace, any other refusal), and
    ModelNotFoundError when the Hub cannot be reached (or HF_HUB_OFFLINE is set).
    """
    folder = Path(folder)
    if _REPO_ID.fullmatch(repo_id) is None or "@" in repo_id:
        raise ValueError(f"repo_id must look like owner/name, got {repo_id!r}")
    if not folder.is_dir():
        raise ModelNotFoundError(f"no such model folder: {folder}")
    model = load_model(folder)
    if not (folder / CARD_FILE).is_file():
        raise ValueError(f"{folder} has no {CARD_FILE}: write a model card (where the weights come from, their "
                         "licence, how the catalog was made) before publishing")
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision is not None:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        commit = api.upload_folder(repo_id=repo_id, folder_path=folder, revision=revision,
                                   allow_patterns=list(MODEL_FILES),
                                   commit_message=f"Upload {model.config.name or folder.name} (localedit model folder)")
    except HfHubHTTPError as e:  # before OfflineModeIsEnabled: both are OSErrors
        raise _push_refused(e, api.endpoint, repo_id) from e
    except OfflineModeIsEnabled as e:
        raise ModelNotFoundError(f"cannot push to {repo_id}: HF_HUB_OFFLINE is set, so huggingface_hub makes no "
                                 "request; unset it to push") from e
    except _transport_error() as e:
        raise ModelNotFoundError(f"cannot reach the Hub at {api.endpoint} ({type(e).__name__}: {e}) to push to "
                                 f"{repo_id}: check the network, or set HF_ENDPOINT to a reachable endpoint") from e
    return commit.oid


def _push_refused(error: Exception, endpoint: str, repo_id: str) -> ValueError:
    """The Hub's refusal of a push as one actionable error. The status decides, not the exception's class: on
    https a 401 on /api/models/... comes as RepositoryNotFoundError, and a 403 as a plain HfHubHTTPError."""
    status = error.response.status_code
    if status == 401:
        return ValueError(f"the Hub at {endpoint} refused the token (or none was given): log in with "
                          "`hf auth login`, set HF_TOKEN, or pass a token with write access")
    if status == 403:
        return ValueError(f"the token cannot write to {repo_id}: use a token with write access to "
                          f"{repo_id.split('/')[0]}, or push to a repo of your own")
    said = getattr(error, "server_message", None) or next(iter(str(error).strip().splitlines()), "no message")
    return ValueError(f"the Hub at {endpoint} refused the push to {repo_id} (HTTP {status}): {said}")


# --- writing -----------------------------------------------------------------------------------------------


def save_generator(folder: str | os.PathLike, config: GeneratorConfig, state_dict: Mapping[str, Tensor],
                   card: str | None = None) -> Path:
    """Write config.json and generator.safetensors (and README.md when `card` is given) into `folder`.

    The state is checked against `config` first (it must load with strict=True) and written complete, as
    contiguous CPU float32, so identical weights give byte-identical files.
    """
    folder = Path(folder)
    generator = build_generator(config, state_dict, "the state dict to save")
    folder.mkdir(parents=True, exist_ok=True)
    _write_tensors(folder / WEIGHTS_FILE, generator.state_dict())
    write_atomic(folder / CONFIG_FILE, lambda p: p.write_text(_json(config.to_dict()), encoding="utf-8"))
    if card is not None:
        write_atomic(folder / CARD_FILE, lambda p: p.write_text(card, encoding="utf-8"))
    return folder


def writable_folder(model: Model, out: str | os.PathLike | None = None) -> Path:
    """Where a command may write a model's catalog: `out` when given (the model's files are copied there
    first, unless it already is that model folder), else the model's own folder when it is a local one. A Hub
    model's folder is a snapshot in the Hugging Face cache, which must never change: it needs `out`."""
    if out is None:
        if model.repo_id is not None:
            raise ValueError(f"{model.source} is a Hub model, whose files in the Hugging Face cache must not change; "
                             f"name a local folder to write into with --out (the model is copied there)")
        return Path(model.folder)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder")
    if out.resolve() != Path(model.folder).resolve():
        out.mkdir(parents=True, exist_ok=True)
        for name in MODEL_FILES:
            if (Path(model.folder) / name).is_file():
                shutil.copyfile(Path(model.folder) / name, out / name)
    return out


def save_catalog(folder: str | os.PathLike, catalog: Catalog) -> Path:
    """Write catalog.json and catalog.safetensors into an existing model folder."""
    folder = Path(folder)
    if not (folder / CONFIG_FILE).is_file():
        raise ModelNotFoundError(f"{folder} is not a model folder (no {CONFIG_FILE}); save the generator first")
    meta, tensors = catalog.to_state()
    _write_tensors(folder / CATALOG_TENSORS_FILE, tensors)
    write_atomic(folder / CATALOG_META_FILE, lambda p: p.write_text(_json(meta), encoding="utf-8"))
    return folder


def _json(data: dict) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def _write_tensors(path: Path, tensors: Mapping[str, Tensor]) -> None:
    # copy=True: safetensors refuses tensors that share storage, and views of one buffer would.
    plain = {k: v.detach().to("cpu", torch.float32, copy=True).contiguous() for k, v in tensors.items()}
    write_atomic(path, lambda p: save_file(plain, p, metadata={"format": "pt"}))


def write_atomic(path: Path, write: Callable[[Path], object]) -> None:
    """`write(tmp)`, then rename tmp to `path`: readers never see half a file, a kill mid-write leaves the old
    one, and a symlinked file (a Hub cache snapshot) is replaced rather than written through into the shared
    blob. The temporary name is unique per process and thread."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        write(tmp)
        # safetensors creates its files 0600; a model folder is read by other users and by web servers, so
        # the file gets the mode any new file would (0644 under the usual umask).
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
