"""Models on the Hugging Face Hub: download (cached, verified, revision-pinned), list the cache, publish.

Everything goes through `huggingface_hub`, so its cache, ``HF_HOME``/``HF_HUB_CACHE``, ``HF_HUB_OFFLINE``,
``HF_ENDPOINT`` and tokens (``HF_TOKEN``, ``hf auth login``) all apply. Only ``config.json``, ``README.md``,
``*.safetensors`` and ``*.onnx`` files are ever fetched: no pickles, no code. Every weight file is checked
against the sha256 recorded in ``config.json`` before the folder is handed out.

`huggingface_hub` is imported inside the functions: bundled models never pay for it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from denoise.checkpoint import (CONFIG_FILE, OFFLINE_FILE, WEIGHTS_FILE, CheckpointError, load_onnx, read_model_config,
                                verify_file)
from denoise.modelcard import CARD_FILE, read_safetensors_header, write_model_card
MODEL_FILE_SUFFIXES = (".safetensors", ".onnx")
REQUIRED_FILES = (CONFIG_FILE, WEIGHTS_FILE, OFFLINE_FILE)

_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_HUB_ID = re.compile(rf"^(?P<repo>{_NAME}/{_NAME})(?:@(?P<revision>[^@\s]+))?$")


@dataclass(frozen=True)
class HubId:
    repo_id: str
    revision: str | None = None

    def __str__(self) -> str:
        return self.repo_id + (f"@{self.revision}" if self.revision else "")


def parse_hub_id(spec: str) -> HubId:
    """``owner/name`` or ``owner/name@revision`` (a branch, tag or commit sha)."""
    match = _HUB_ID.match(spec.strip())
    if match is None or match["repo"].endswith((".", "-")) or ".." in match["repo"]:
        raise CheckpointError(f"{spec}: not a Hub model id (expected owner/name or owner/name@revision)")
    return HubId(match["repo"], match["revision"])


def _hub_error(hub_id: HubId, error: Exception) -> CheckpointError:
    """Turn a huggingface_hub / network exception into one clear line."""
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    import httpx2

    if isinstance(error, (LocalEntryNotFoundError, OfflineModeIsEnabled, httpx2.TransportError)):
        why = "offline" if constants.is_offline_mode() else f"cannot connect to {constants.ENDPOINT}"
        return CheckpointError(
            f"{hub_id}: not in the local cache and the Hub is unreachable ({why}); download it once with "
            f"`denoise models download {hub_id}` or use a bundled model")
    if isinstance(error, GatedRepoError):
        return CheckpointError(f"{hub_id}: gated model; accept its terms on the Hub and log in (`hf auth login`)")
    if isinstance(error, RepositoryNotFoundError):
        return CheckpointError(f"{hub_id}: no such local folder and no such model on the Hub (if it is private, "
                               "log in with `hf auth login` or set HF_TOKEN)")
    if isinstance(error, RevisionNotFoundError):
        return CheckpointError(f"{hub_id}: the Hub repo has no revision {hub_id.revision!r} (branch, tag or commit)")
    if isinstance(error, RemoteEntryNotFoundError):
        return CheckpointError(f"{hub_id}: not a denoise model ({error.response.url.path.rsplit('/', 1)[-1]} "
                               "missing from the Hub repo)")
    if isinstance(error, HfHubHTTPError):
        status = error.response.status_code if error.response is not None else "?"
        if status == 401:
            return CheckpointError(f"{hub_id}: not authorised (HTTP 401); log in with `hf auth login` or set HF_TOKEN")
        return CheckpointError(f"{hub_id}: Hub request failed (HTTP {status}): {str(error).strip().splitlines()[0]}")
    first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return CheckpointError(f"{hub_id}: download failed ({first_line})")


def _is_model_file(name: str) -> bool:
    return "/" not in name and "\\" not in name and not name.startswith(".") and name.endswith(MODEL_FILE_SUFFIXES)


def _discard_cached(path: Path) -> None:
    """Remove a bad file from the Hub cache (the snapshot link and the blob) so the next try downloads it again."""
    blob = path.resolve()
    for item in (path, blob):
        try:
            item.unlink()
        except OSError:
            pass


def _fail_fast_when_unreachable(hub_id: HubId) -> None:
    """One HEAD request without retries when config.json is not cached yet.

    huggingface_hub retries a failed connection for ~25 s (printing each retry) before it gives up on an
    uncached file; with no network at all the user should get the one-line error at once.
    """
    import httpx2
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url, try_to_load_from_cache

    if constants.is_offline_mode():
        return
    if isinstance(try_to_load_from_cache(hub_id.repo_id, CONFIG_FILE, revision=hub_id.revision), str):
        return
    try:
        get_hf_file_metadata(hf_hub_url(hub_id.repo_id, CONFIG_FILE, revision=hub_id.revision), timeout=10)
    except httpx2.TransportError as error:
        raise _hub_error(hub_id, error) from None
    except Exception:
        pass  # anything else (missing repo, HTTP errors) is reported by the real download below


def download_model(spec: str, force: bool = False) -> Path:
    """Snapshot folder of Hub model ``owner/name[@revision]`` in the huggingface_hub cache, files verified.

    ``config.json`` is fetched first; the rest is fetched at the exact commit it came from, so a folder never
    mixes files of two commits. Raises `CheckpointError` with a one-line message on any failure.
    """
    hub_id = parse_hub_id(spec)
    import httpx2
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    network_errors = (HfHubHTTPError, OfflineModeIsEnabled, httpx2.HTTPError, OSError, ValueError)
    _fail_fast_when_unreachable(hub_id)
    try:
        config_path = Path(hf_hub_download(hub_id.repo_id, CONFIG_FILE, revision=hub_id.revision,
                                           force_download=force))
    except network_errors as error:
        raise _hub_error(hub_id, error) from None
    folder = config_path.parent
    commit = folder.name  # snapshots/<commit sha>/config.json
    try:
        _, document = read_model_config(folder)
    except CheckpointError as error:
        raise CheckpointError(f"{hub_id}: {error}") from None
    hashes = document.get("files")
    if not isinstance(hashes, dict) or OFFLINE_FILE not in hashes:
        raise CheckpointError(f"{hub_id}: config.json lists no sha256 for {OFFLINE_FILE}; refusing unverified weights")
    bad = [name for name in hashes if not _is_model_file(name)]
    if bad:
        raise CheckpointError(f"{hub_id}: config.json lists files denoise never loads ({', '.join(bad)}): "
                              "only .safetensors and .onnx are allowed")
    for name in sorted(hashes):
        try:
            hf_hub_download(hub_id.repo_id, name, revision=commit, force_download=force)
        except network_errors as error:
            raise _hub_error(hub_id, error) from None
        try:
            verify_file(folder, name, document)
        except CheckpointError:
            _discard_cached(folder / name)
            raise CheckpointError(f"{hub_id}: {name} does not match the sha256 in config.json (corrupt or tampered "
                                  "download; removed from the cache, nothing was loaded)") from None
    try:
        hf_hub_download(hub_id.repo_id, CARD_FILE, revision=commit, force_download=force)
    except network_errors:
        pass  # the model card is nice to have: a repo without one (or offline, card not cached) still works
    return folder


# -- the local cache ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CachedModel:
    hub_id: str  # owner/name@<ref or short sha>
    folder: Path


def cached_models() -> list[CachedModel]:
    """Every denoise model snapshot in the huggingface_hub cache (``HF_HUB_CACHE``), named by ref when it has one."""
    from huggingface_hub import constants

    root = Path(constants.HF_HUB_CACHE)
    found = []
    for repo_dir in sorted(root.glob("models--*")) if root.is_dir() else []:
        repo_id = repo_dir.name[len("models--"):].replace("--", "/")
        refs = {}
        for ref in sorted((repo_dir / "refs").rglob("*")) if (repo_dir / "refs").is_dir() else []:
            if ref.is_file():
                refs.setdefault(ref.read_text().strip(), str(ref.relative_to(repo_dir / "refs")))
        for snapshot in sorted((repo_dir / "snapshots").glob("*")):
            config = snapshot / CONFIG_FILE
            if not config.is_file() or not _is_denoise_config(config):
                continue
            revision = refs.get(snapshot.name, snapshot.name[:10])
            found.append(CachedModel(f"{repo_id}@{revision}", snapshot))
    return found


def _is_denoise_config(path: Path) -> bool:
    try:
        return json.loads(path.read_text()).get("format") == "denoise-model"
    except (OSError, ValueError, AttributeError):
        return False


# -- checking and publishing --------------------------------------------------------------------------------


def check_model_folder(folder: Path) -> dict:
    """Everything a published model needs, or `CheckpointError`: config.json, model.safetensors and model.onnx
    present and listed with matching sha256, safetensors header sound, ONNX graphs loadable by onnxruntime.
    Returns the config document."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: not a folder")
    _, document = read_model_config(folder)
    hashes = document.get("files") or {}
    for name in REQUIRED_FILES[1:]:
        if name not in hashes:
            raise CheckpointError(f"{folder / CONFIG_FILE}: no sha256 recorded for {name} "
                                  "(re-run `denoise export` on the folder to refresh config.json)")
    for name in hashes:
        if not _is_model_file(name):
            raise CheckpointError(f"{folder / CONFIG_FILE}: lists {name!r}; only .safetensors and .onnx are allowed")
        verify_file(folder, name, document)
    read_safetensors_header(folder / WEIGHTS_FILE)
    for name in hashes:
        if name.endswith(".onnx"):
            load_onnx(folder / name)
    return document


def push_model(folder: Path, spec: str, private: bool = False, branch: str | None = None,
               message: str | None = None) -> tuple[str, bool]:
    """Create (or update) Hub repo ``spec`` with the model in ``folder``; returns (commit url, card_written).

    The folder is checked first; a README.md model card is generated into it when missing. Only config.json,
    README.md and the files listed in config.json are uploaded.
    """
    from huggingface_hub import HfApi

    hub_id = parse_hub_id(spec)
    if hub_id.revision and branch and hub_id.revision != branch:
        raise CheckpointError(f"{spec}: give the branch either as @{hub_id.revision} or as --branch, not both")
    branch = branch or hub_id.revision
    folder = Path(folder)
    document = check_model_folder(folder)
    card_written = False
    if not (folder / CARD_FILE).is_file():
        write_model_card(folder)
        card_written = True
    api = HfApi()
    try:
        api.create_repo(hub_id.repo_id, private=private, exist_ok=True, repo_type="model")
        if branch and branch != "main":
            api.create_branch(hub_id.repo_id, branch=branch, exist_ok=True)
        info = api.upload_folder(
            repo_id=hub_id.repo_id, folder_path=str(folder), revision=branch,
            allow_patterns=[CONFIG_FILE, CARD_FILE, *sorted(document["files"])],
            commit_message=message or f"Upload denoise model ({document['model'].get('size', 'model')})",
        )
    except Exception as error:  # huggingface_hub and httpx raise many types; the user gets one line either way
        raise _hub_error(HubId(hub_id.repo_id, branch), error) from None
    return str(info.commit_url), card_written
