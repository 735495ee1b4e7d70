"""Model folders on disk and on a fake Hub: load_model, the writers, pinned revisions, the cache, errors, push.

The Hub tests run real huggingface_hub HTTP calls against tests/fakehub.py on 127.0.0.1 (conftest points
HF_ENDPOINT and HF_HOME at it). Offline mode and an unreachable Hub are read by huggingface_hub at import, so
those run in a subprocess with their own environment.
"""

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from localedit.hub import (
    CATALOG_TENSORS_FILE,
    CONFIG_FILE,
    WEIGHTS_FILE,
    ModelNotFoundError,
    load_model,
    push,
    save_catalog,
    save_generator,
    writable_folder,
)
from localedit.stylegan2 import Generator

ROOT = Path(__file__).resolve().parents[1]


def _perturbed(generator: Generator, seed: int) -> Generator:
    """A copy of `generator` with different weights, so two revisions can be told apart."""
    g = Generator(generator.config).eval()
    state = generator.state_dict()
    noise = torch.Generator().manual_seed(seed)
    g.load_state_dict({k: v + 0.01 * torch.randn(v.shape, generator=noise) for k, v in state.items()})
    return g


def _folder_files(tmp_path: Path, generator: Generator, catalog=None, card: str = "# tiny\n") -> dict[str, bytes]:
    folder = tmp_path / f"model-{len(list(tmp_path.iterdir()))}"
    save_generator(folder, generator.config, generator.state_dict(), card)
    if catalog is not None:
        save_catalog(folder, catalog)
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def _same_weights(a: Generator, b: Generator) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# --- local folders -----------------------------------------------------------------------------------------


def test_local_folder_round_trip(tmp_path, tiny_generator, tiny_catalog):
    folder = tmp_path / "tiny"
    save_generator(folder, tiny_generator.config, tiny_generator.state_dict(), card="# tiny\n")
    save_catalog(folder, tiny_catalog)
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["README.md", "config.json", "generator.safetensors", "catalog.json", "catalog.safetensors"])
    assert json.loads((folder / CONFIG_FILE).read_text()) == tiny_generator.config.to_dict()

    model = load_model(str(folder))
    assert model.config == tiny_generator.config and not model.generator.training
    assert (model.repo_id, model.commit, model.folder) == (None, None, folder)
    assert _same_weights(model.generator, tiny_generator)
    assert model.catalog.parts == tiny_catalog.parts and list(model.catalog.M) == list(tiny_catalog.M)
    assert all(torch.equal(model.catalog.M[k], tiny_catalog.M[k]) for k in tiny_catalog.M)
    assert load_model(folder).catalog is not None  # a Path works too


def test_writes_are_deterministic_float32(tmp_path, tiny_generator, tiny_catalog):
    first = _folder_files(tmp_path, tiny_generator, tiny_catalog)
    assert _folder_files(tmp_path, tiny_generator, tiny_catalog) == first
    # float64, non-contiguous copies of the same weights are stored as the same contiguous float32 bytes.
    odd = {k: v.double().t().contiguous().t() if v.ndim == 2 else v.double()
           for k, v in tiny_generator.state_dict().items()}
    assert not odd["style.1.weight"].is_contiguous()
    save_generator(tmp_path / "odd", tiny_generator.config, odd)
    assert (tmp_path / "odd" / WEIGHTS_FILE).read_bytes() == first[WEIGHTS_FILE]
    assert all(t.dtype == torch.float32 for t in load_file(tmp_path / "odd" / WEIGHTS_FILE).values())


def test_fixed_kernels_may_be_absent(tmp_path, tiny_generator):
    folder = tmp_path / "m"
    save_generator(folder, tiny_generator.config, tiny_generator.state_dict())
    state = load_file(folder / WEIGHTS_FILE)
    kernels = [k for k in state if k.endswith((".blur.kernel", ".upsample.kernel"))]
    assert kernels
    save_file({k: v for k, v in state.items() if k not in kernels}, folder / WEIGHTS_FILE)
    assert _same_weights(load_model(folder).generator, tiny_generator)  # the kernels included


def test_mismatch_lists_every_problem_in_one_error(tmp_path, tiny_generator):
    folder = tmp_path / "m"
    save_generator(folder, tiny_generator.config, tiny_generator.state_dict())
    state = load_file(folder / WEIGHTS_FILE)
    del state["style.1.bias"]
    state["extra.weight"] = torch.zeros(1)
    state["conv1.activate.bias"] = torch.zeros(7)
    save_file(state, folder / WEIGHTS_FILE)
    with pytest.raises(ValueError) as info:
        load_model(folder)
    message = str(info.value)
    assert "missing keys style.1.bias" in message and "unexpected keys extra.weight" in message
    assert "conv1.activate.bias [7] (expected [32])" in message and WEIGHTS_FILE in message
    with pytest.raises(ValueError, match="missing keys style.1.bias"):  # the writer checks too
        save_generator(tmp_path / "n", tiny_generator.config, {k: v for k, v in state.items() if "extra" not in k})


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_safetensors_is_a_clear_error(tmp_path, tiny_generator, damage):
    folder = tmp_path / "m"
    save_generator(folder, tiny_generator.config, tiny_generator.state_dict())
    raw = (folder / WEIGHTS_FILE).read_bytes()
    (folder / WEIGHTS_FILE).write_bytes(b"not a safetensors file" if damage == "garbage" else raw[: len(raw) // 2])
    with pytest.raises(ValueError, match=f"{WEIGHTS_FILE} is not a readable safetensors file"):
        load_model(folder)


def test_bad_config_and_half_catalog(tmp_path, tiny_generator, tiny_catalog):
    folder = tmp_path / "m"
    save_generator(folder, tiny_generator.config, tiny_generator.state_dict())
    save_catalog(folder, tiny_catalog)
    (folder / CATALOG_TENSORS_FILE).unlink()
    with pytest.raises(ValueError, match="half a catalog: catalog.safetensors is missing"):
        load_model(folder)
    (folder / CONFIG_FILE).write_text(json.dumps({**tiny_generator.config.to_dict(), "colour": 1}))
    with pytest.raises(ValueError, match=r"config.json is not a valid generator config: unknown .* \['colour'\]"):
        load_model(folder)


def test_source_forms(tmp_path, tiny_generator):
    (tmp_path / "file.pt").write_bytes(b"")
    with pytest.raises(ModelNotFoundError, match="no such model folder: ./missing"):
        load_model("./missing")
    with pytest.raises(ValueError, match="is a file, not a model folder"):
        load_model(tmp_path / "file.pt")
    with pytest.raises(ValueError, match="neither an existing model folder nor a Hub repo id"):
        load_model("not a repo")
    with pytest.raises(ModelNotFoundError, match="is not a model folder: it has no config.json"):
        load_model(tmp_path)
    with pytest.raises(ValueError, match="a revision only applies to Hub repos"):
        load_model(tmp_path, revision="main")
    with pytest.raises(ValueError, match="pins revision 'v1' but revision='v2'"):
        load_model("acme/x@v1", revision="v2")


# --- the fake Hub ------------------------------------------------------------------------------------------


def test_load_from_hub_with_pinned_revisions(fake_hub, tmp_path, tiny_generator, tiny_catalog):
    other = _perturbed(tiny_generator, seed=1)
    first = fake_hub.commit("acme/pinned", _folder_files(tmp_path, tiny_generator, tiny_catalog))
    fake_hub.tag("acme/pinned", "v1", first)
    second = fake_hub.commit("acme/pinned", _folder_files(tmp_path, other))

    latest = load_model("acme/pinned")
    assert (latest.repo_id, latest.revision, latest.commit) == ("acme/pinned", None, second)
    assert _same_weights(latest.generator, other) and latest.catalog is not None  # catalog files kept
    by_commit = load_model(f"acme/pinned@{first}")
    by_tag = load_model("acme/pinned", revision="v1")
    assert by_commit.commit == by_tag.commit == first
    assert _same_weights(by_commit.generator, tiny_generator) and _same_weights(by_tag.generator, tiny_generator)
    assert not _same_weights(latest.generator, tiny_generator)
    assert str(by_tag.folder).startswith(os.environ["HF_HUB_CACHE"]) and by_tag.folder.name == first


def test_hub_errors_are_clear_and_fast(fake_hub, tmp_path, tiny_generator):
    fake_hub.commit("acme/partial", {CONFIG_FILE: json.dumps(tiny_generator.config.to_dict()).encode()})
    start = time.perf_counter()
    with pytest.raises(ModelNotFoundError, match="no local folder acme/absent, and no model repo acme/absent on http://127.0.0.1"):
        load_model("acme/absent")
    with pytest.raises(ModelNotFoundError, match="acme/partial has no revision 'v9'"):
        load_model("acme/partial@v9")
    with pytest.raises(ModelNotFoundError, match=r"acme/partial@main is not a model folder: it has no "
                                                 r"generator.safetensors \(files: \['config.json'\]\)"):
        load_model("acme/partial")
    # Clear and fast: without the project's settings huggingface_hub retries for minutes. The bound is far above
    # any honest run, so it tells a hang from a slow machine without flaking.
    assert time.perf_counter() - start < 60


def _run(script: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", script], cwd=ROOT, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=60)


_TRY_LOADS = """
import sys, time
from localedit.hub import load_model, ModelNotFoundError
for source in sys.argv[1:]:
    start = time.perf_counter()
    try:
        print("loaded", source, load_model(source).commit)
    except ModelNotFoundError as e:
        print("error", source, round(time.perf_counter() - start, 1), e)
"""


def test_offline_uses_the_cache(fake_hub, tmp_path, tiny_generator):
    commit = fake_hub.commit("acme/offline", _folder_files(tmp_path, tiny_generator))
    assert load_model("acme/offline").commit == commit  # fills the cache
    before = len(fake_hub.requests)
    result = _run(_TRY_LOADS.replace("sys.argv[1:]", '["acme/offline", "acme/never-downloaded"]'),
                  HF_HUB_OFFLINE="1")
    lines = result.stdout.splitlines()
    assert lines[0] == f"loaded acme/offline {commit}", result.stderr
    assert lines[1].startswith("error acme/never-downloaded") and "HF_HUB_OFFLINE is set" in lines[1]
    assert len(fake_hub.requests) == before  # offline means no request at all


def test_unreachable_hub_falls_back_to_the_cache_or_says_what_to_do(fake_hub, tmp_path, tiny_generator):
    commit = fake_hub.commit("acme/cached", _folder_files(tmp_path, tiny_generator))
    assert load_model("acme/cached").commit == commit
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    result = _run(_TRY_LOADS.replace("sys.argv[1:]", '["acme/cached", "acme/uncached"]'),
                  HF_ENDPOINT=f"http://127.0.0.1:{closed}")
    lines = result.stdout.splitlines()
    assert lines[0] == f"loaded acme/cached {commit}", result.stderr
    _, _, seconds, message = lines[1].split(" ", 3)
    assert lines[1].startswith("error acme/uncached") and float(seconds) < 60  # no retrying for minutes
    assert f"cannot reach the Hub at http://127.0.0.1:{closed}" in message and "HF_ENDPOINT" in message
    assert "local model folder" in message


def test_push_then_load(fake_hub, tmp_path, tiny_generator, tiny_catalog):
    folder = tmp_path / "to-push"
    save_generator(folder, tiny_generator.config, tiny_generator.state_dict(), card="# tiny\n\nRandom weights.\n")
    save_catalog(folder, tiny_catalog)
    (folder / "catalog.png").write_bytes(b"not uploaded")
    commit = push(folder, "acme/pushed")
    model = load_model(f"acme/pushed@{commit}")
    assert _same_weights(model.generator, tiny_generator) and model.catalog is not None
    files = fake_hub.repos["acme/pushed"].commits[commit]
    assert "catalog.png" not in files and files["README.md"] == (folder / "README.md").read_bytes()

    dev = push(folder, "acme/pushed", revision="dev")  # a branch, created on the way
    assert fake_hub.repos["acme/pushed"].refs["dev"] == dev
    assert load_model("acme/pushed@dev").commit == dev


def test_push_validates_before_any_request(fake_hub, tmp_path, tiny_generator):
    folder = tmp_path / "no-card"
    save_generator(folder, tiny_generator.config, tiny_generator.state_dict())
    before = len(fake_hub.requests)
    with pytest.raises(ValueError, match="has no README.md"):
        push(folder, "acme/rejected")
    (folder / WEIGHTS_FILE).unlink()
    with pytest.raises(ModelNotFoundError, match="it has no generator.safetensors"):
        push(folder, "acme/rejected")
    with pytest.raises(ValueError, match="repo_id must look like owner/name"):
        push(folder, "rejected")
    assert len(fake_hub.requests) == before


def test_push_command(fake_hub, tmp_path, tiny_generator, capsys):
    from localedit.__main__ import main

    folder = tmp_path / "cli"
    save_generator(folder, tiny_generator.config, tiny_generator.state_dict(), card="# tiny\n")
    main(["push", str(folder), "acme/cli-push"])
    commit = fake_hub.repos["acme/cli-push"].refs["main"]
    assert f"load_model('acme/cli-push@{commit}')" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="error: no such model folder"):
        main(["push", str(tmp_path / "absent"), "acme/cli-push"])


# Namespaces only the token tests below use; the fake Hub is session-wide, so the tokens are removed after each.
_TOKENS = {"hf_locked_write": "locked-org", "hf_rival_write": "rival-user"}


@pytest.fixture
def owned_namespaces(fake_hub, monkeypatch, tmp_path):
    """locked-org and rival-user owned on the fake Hub, and no token but the one a test passes: conftest drops
    HF_TOKEN at import and points HF_HOME at a fresh folder; this also covers the rest of get_token's sources."""
    import huggingface_hub.constants

    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    fake_hub.tokens.update(_TOKENS)
    try:
        yield fake_hub
    finally:
        for token in _TOKENS:
            fake_hub.tokens.pop(token, None)


def _card_folder(tmp_path: Path, generator: Generator) -> Path:
    folder = tmp_path / "to-push"
    save_generator(folder, generator.config, generator.state_dict(), card="# tiny\n")
    return folder


def test_push_with_the_namespaces_token(owned_namespaces, tmp_path, tiny_generator):
    folder = _card_folder(tmp_path, tiny_generator)
    commit = push(folder, "locked-org/model", token="hf_locked_write")
    files = owned_namespaces.repos["locked-org/model"].commits[commit]
    assert {name: files[name] for name in (CONFIG_FILE, WEIGHTS_FILE, "README.md")} == {
        name: (folder / name).read_bytes() for name in (CONFIG_FILE, WEIGHTS_FILE, "README.md")}
    dev = push(folder, "locked-org/model", revision="dev", token="hf_locked_write")  # existing repo, new branch
    assert owned_namespaces.repos["locked-org/model"].refs["dev"] == dev


def test_push_without_a_valid_token_is_refused_and_commits_nothing(owned_namespaces, tmp_path, tiny_generator):
    from localedit.__main__ import main

    folder = _card_folder(tmp_path, tiny_generator)
    refused = (r"the Hub at http://127\.0\.0\.1:\d+ refused the token \(or none was given\): log in with "
               r"`hf auth login`, set HF_TOKEN, or pass a token with write access")
    with pytest.raises(ValueError, match=refused):
        push(folder, "locked-org/anonymous")  # no token at all: the Hub's 401
    with pytest.raises(ValueError, match=refused):
        push(folder, "locked-org/anonymous", token="hf_unknown")  # a token the Hub does not know: 401 too
    assert "locked-org/anonymous" not in owned_namespaces.repos
    # An existing repo: create_repo(exist_ok=True) finds it and passes, and the commit itself is refused.
    commit = push(folder, "locked-org/existing", token="hf_locked_write")
    refs = dict(owned_namespaces.repos["locked-org/existing"].refs)
    with pytest.raises(ValueError, match=refused):
        push(folder, "locked-org/existing")
    with pytest.raises(SystemExit, match="^error: " + refused):  # the command says it without a traceback
        main(["push", str(folder), "locked-org/existing"])
    assert owned_namespaces.repos["locked-org/existing"].refs == refs and refs["main"] == commit


def test_push_with_another_namespaces_token_cannot_write(owned_namespaces, tmp_path, tiny_generator):
    folder = _card_folder(tmp_path, tiny_generator)
    cannot = ("the token cannot write to locked-org/{}: use a token with write access to locked-org, or push to a "
              "repo of your own")
    with pytest.raises(ValueError, match=re.escape(cannot.format("rivalled"))):
        push(folder, "locked-org/rivalled", token="hf_rival_write")  # create refused: 403
    assert "locked-org/rivalled" not in owned_namespaces.repos
    push(folder, "locked-org/branched", token="hf_locked_write")
    refs = dict(owned_namespaces.repos["locked-org/branched"].refs)
    for revision in (None, "dev"):  # refused at the commit, and at the branch
        with pytest.raises(ValueError, match=re.escape(cannot.format("branched"))):
            push(folder, "locked-org/branched", revision=revision, token="hf_rival_write")
    assert owned_namespaces.repos["locked-org/branched"].refs == refs
    assert push(folder, "rival-user/own", token="hf_rival_write")  # the same token writes its own namespace


_TRY_PUSH = """
import time
from localedit.hub import push, ModelNotFoundError
start = time.perf_counter()
try:
    print("pushed", push(FOLDER, "acme/never-pushed"))
except ModelNotFoundError as e:
    print("error", round(time.perf_counter() - start, 1), e)
"""


@pytest.mark.parametrize("setting", ["unreachable", "offline"])
def test_push_without_the_hub_says_why(fake_hub, tmp_path, tiny_generator, setting):
    folder = _card_folder(tmp_path, tiny_generator)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    env = {"HF_ENDPOINT": f"http://127.0.0.1:{closed}"} if setting == "unreachable" else {"HF_HUB_OFFLINE": "1"}
    before = len(fake_hub.requests)
    result = _run(_TRY_PUSH.replace("FOLDER", repr(str(folder))), **env)
    _, seconds, message = result.stdout.strip().split(" ", 2) if result.stdout else ("", "", result.stderr)
    assert result.stdout.startswith("error ") and float(seconds) < 60, result.stderr
    if setting == "unreachable":
        assert f"cannot reach the Hub at http://127.0.0.1:{closed}" in message and "HF_ENDPOINT" in message
    else:
        assert "HF_HUB_OFFLINE is set" in message and len(fake_hub.requests) == before


def test_catalog_commands_never_write_into_the_hub_cache(fake_hub, tmp_path, tiny_generator, tiny_catalog):
    fake_hub.commit("acme/relabel", _folder_files(tmp_path, tiny_generator, tiny_catalog))
    model = load_model("acme/relabel")
    snapshot = {p.name: p.read_bytes() for p in model.folder.iterdir()}
    with pytest.raises(ValueError, match="Hub model, whose files in the Hugging Face cache must not change"):
        writable_folder(model)
    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "mine"

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "localedit", *args], capture_output=True, text=True, cwd=root,
                              env={**os.environ, "PYTHONPATH": str(root)}, timeout=300)

    refused = cli("label", "acme/relabel", "eyes=3")
    assert refused.returncode != 0 and "--out" in refused.stderr and "Traceback" not in refused.stderr
    done = cli("label", "acme/relabel", "eyes=3", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert load_model(str(out)).catalog.parts["eyes"].clusters == (3,)
    assert (out / "generator.safetensors").read_bytes() == snapshot["generator.safetensors"]
    assert {p.name: p.read_bytes() for p in model.folder.iterdir()} == snapshot  # the cache is untouched


def test_written_files_are_readable_by_others(tmp_path, tiny_generator, tiny_catalog):
    old = os.umask(0o022)
    try:
        folder = tmp_path / "shared"
        save_generator(folder, tiny_generator.config, tiny_generator.state_dict(), card="# tiny\n")
        save_catalog(folder, tiny_catalog)
    finally:
        os.umask(old)
    for path in folder.iterdir():
        assert path.stat().st_mode & 0o777 == 0o644, path.name  # safetensors alone would make them 0600
