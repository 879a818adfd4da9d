"""Hub models against an in-memory fake Hub on 127.0.0.1: download, cache, offline, pinning, integrity, push."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pytest
from fakehub import fake_hub, hub_env, set_offline  # noqa: F401  (pytest fixtures)

from denoise.checkpoint import CheckpointError, read_model_config, sha256_file, write_config
from denoise.hub import check_model_folder, download_model, parse_hub_id, push_model
from denoise.modelcard import count_parameters, read_safetensors_header, render_model_card
from denoise.registry import bundled_models, resolve_model

MODEL_FILES = ("config.json", "model.safetensors", "model.onnx", "model_stream.onnx")


def bundled_small() -> Path:
    return bundled_models()["small"]


def files_of(folder: Path, names=MODEL_FILES) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in names if (folder / name).is_file()}


def model_copy(tmp_path: Path, name: str = "model") -> Path:
    folder = tmp_path / name
    folder.mkdir()
    for file in MODEL_FILES:
        shutil.copyfile(bundled_small() / file, folder / file)
    return folder


def change_first_weight(folder: Path, value: float) -> None:
    """Give the model different (still valid) weights and re-record the hashes, without torch."""
    path = folder / "model.safetensors"
    data = bytearray(path.read_bytes())
    (header_length,) = struct.unpack("<Q", data[:8])
    tensors = read_safetensors_header(path)
    name = next(n for n, spec in tensors.items() if spec["dtype"] == "F32")
    start = 8 + header_length + tensors[name]["data_offsets"][0]
    data[start:start + 4] = struct.pack("<f", value)
    path.write_bytes(bytes(data))
    config, document = read_model_config(folder)
    write_config(folder, config, {k: v for k, v in document.items() if k not in ("format", "model", "files")})


def publish(hub, repo_id: str, folder: Path, message: str = "upload") -> str:
    if repo_id not in hub.repos:
        hub.create_repo(repo_id)
    return hub.commit(repo_id, files_of(folder, (*MODEL_FILES, "README.md")), message)


def test_parse_hub_id():
    assert parse_hub_id("acme/denoise-small") == parse_hub_id(" acme/denoise-small ")
    pinned = parse_hub_id("acme/denoise-small@v1.0")
    assert (pinned.repo_id, pinned.revision, str(pinned)) == ("acme/denoise-small", "v1.0", "acme/denoise-small@v1.0")
    for bad in ("acme", "a/b/c", "/abs/path", "acme/..", "acme/x@", "acme/x@a@b", "acme/x y"):
        with pytest.raises(CheckpointError, match="not a Hub model id"):
            parse_hub_id(bad)


def test_download_gives_the_published_files_verified(fake_hub, tmp_path, hub_env):
    publish(fake_hub, "acme/small", bundled_small())
    folder = resolve_model("acme/small")  # the registry hands Hub ids to denoise.hub
    assert files_of(folder) == files_of(bundled_small())
    assert Path(hub_env["HF_HUB_CACHE"]) in folder.parents
    assert folder.name == fake_hub.repos["acme/small"].branches["main"]  # the snapshot of the exact commit
    check_model_folder(folder)  # hashes, safetensors header, both ONNX graphs load in onnxruntime


def test_cached_model_works_offline_and_with_the_hub_down(fake_hub, monkeypatch):
    publish(fake_hub, "acme/small", bundled_small())
    folder = download_model("acme/small")
    fake_hub.stop()
    assert download_model("acme/small") == folder  # Hub unreachable, HF_HUB_OFFLINE unset: falls back to cache
    set_offline(monkeypatch, True)
    assert download_model("acme/small") == folder
    assert files_of(folder) == files_of(bundled_small())


def test_offline_and_not_cached_is_one_clear_line(hub_env, monkeypatch):
    set_offline(monkeypatch, True)
    with pytest.raises(CheckpointError) as caught:
        resolve_model("acme/missing@v2")
    message = str(caught.value)
    assert message == ("acme/missing@v2: not in the local cache and the Hub is unreachable (offline); download it "
                       "once with `denoise models download acme/missing@v2` or use a bundled model")


def test_unreachable_hub_fails_fast_without_retries(hub_env):
    import time

    start = time.monotonic()
    with pytest.raises(CheckpointError, match="the Hub is unreachable .cannot connect to http://127.0.0.1"):
        download_model("acme/missing")
    assert time.monotonic() - start < 5  # huggingface_hub alone would back off for ~25 s


def test_revision_pinning_by_commit_tag_and_branch(fake_hub, tmp_path):
    old = model_copy(tmp_path, "old")
    new = model_copy(tmp_path, "new")
    change_first_weight(new, 0.123)
    assert files_of(old)["model.safetensors"] != files_of(new)["model.safetensors"]
    first = publish(fake_hub, "acme/small", old, "v1")
    fake_hub.repos["acme/small"].tags["v1"] = first
    fake_hub.repos["acme/small"].branches["stable"] = first
    second = publish(fake_hub, "acme/small", new, "v2")

    assert files_of(download_model("acme/small")) == files_of(new)
    assert download_model("acme/small").name == second
    for pin in (first, "v1", "stable"):
        pinned = download_model(f"acme/small@{pin}")
        assert pinned.name == first
        assert files_of(pinned) == files_of(old)


def test_corrupt_download_is_rejected_and_dropped_from_the_cache(fake_hub, tmp_path):
    folder = model_copy(tmp_path)
    config = (folder / "config.json").read_bytes()
    change_first_weight(folder, 3.125)
    (folder / "config.json").write_bytes(config)  # config.json still has the old weights' sha256
    publish(fake_hub, "acme/tampered", folder)
    with pytest.raises(CheckpointError) as caught:
        download_model("acme/tampered")
    assert str(caught.value) == ("acme/tampered: model.safetensors does not match the sha256 in config.json (corrupt "
                                 "or tampered download; removed from the cache, nothing was loaded)")
    from huggingface_hub import constants

    assert list(Path(constants.HF_HUB_CACHE).rglob("model.safetensors")) == []  # a retry downloads it afresh


@pytest.mark.parametrize("listed", ["model.bin", "weights.pkl", "../model.onnx", "sub/model.onnx"])
def test_files_other_than_safetensors_and_onnx_are_never_fetched(fake_hub, tmp_path, listed):
    folder = model_copy(tmp_path)
    document = json.loads((folder / "config.json").read_text())
    document["files"][listed] = "0" * 64
    (folder / "config.json").write_text(json.dumps(document))
    publish(fake_hub, "acme/pickled", folder)
    with pytest.raises(CheckpointError, match="only .safetensors and .onnx are allowed"):
        download_model("acme/pickled")
    assert not any("model.bin" in r or "pkl" in r for r in fake_hub.requests)


def test_model_without_hashes_is_refused(fake_hub, tmp_path):
    folder = model_copy(tmp_path)
    document = json.loads((folder / "config.json").read_text())
    del document["files"]
    (folder / "config.json").write_text(json.dumps(document))
    publish(fake_hub, "acme/unhashed", folder)
    with pytest.raises(CheckpointError, match="lists no sha256 for model.onnx; refusing unverified weights"):
        download_model("acme/unhashed")


def test_missing_repo_revision_and_non_model_repo(fake_hub):
    with pytest.raises(CheckpointError, match="^acme/nothing: no such local folder and no such model on the Hub"):
        resolve_model("acme/nothing")
    publish(fake_hub, "acme/small", bundled_small())
    with pytest.raises(CheckpointError, match="^acme/small@nope: the Hub repo has no revision 'nope'"):
        resolve_model("acme/small@nope")
    fake_hub.create_repo("acme/text")
    fake_hub.commit("acme/text", {"notes.txt": b"hello"})
    with pytest.raises(CheckpointError, match=r"^acme/text: not a denoise model \(config.json missing"):
        resolve_model("acme/text")


def test_push_round_trip_creates_repo_card_and_branch(fake_hub, tmp_path):
    folder = model_copy(tmp_path)
    (folder / "training_log.txt").write_text("not part of the model")
    url, card_written = push_model(folder, "acme/pushed", private=True, message="first release")
    repo = fake_hub.repos["acme/pushed"]
    head = repo.commits[repo.branches["main"]]
    assert card_written and (folder / "README.md").is_file()
    assert repo.private and head.message == "first release" and url.endswith(head.sha)
    assert set(head.files) == {".gitattributes", "README.md", *MODEL_FILES}  # the log stays local
    downloaded = download_model("acme/pushed")
    assert files_of(downloaded, (*MODEL_FILES, "README.md")) == files_of(folder, (*MODEL_FILES, "README.md"))

    change_first_weight(folder, 0.375)
    push_model(folder, "acme/pushed", branch="dev")
    assert repo.branches["main"] == head.sha  # main untouched
    assert files_of(download_model("acme/pushed@dev")) == files_of(folder)
    assert files_of(download_model("acme/pushed")) != files_of(folder)


def test_push_validates_the_folder_first(fake_hub, tmp_path):
    missing = model_copy(tmp_path, "missing")
    (missing / "model.onnx").unlink()
    with pytest.raises(CheckpointError, match="model.onnx: file missing"):
        push_model(missing, "acme/x")
    tampered = model_copy(tmp_path, "tampered")
    (tampered / "model.safetensors").write_bytes((tampered / "model.safetensors").read_bytes()[:-4] + b"\0\0\0\1")
    with pytest.raises(CheckpointError, match="sha256 does not match"):
        push_model(tampered, "acme/x")
    broken = model_copy(tmp_path, "broken")
    (broken / "model_stream.onnx").write_bytes(b"this is not an onnx graph" * 10)
    config, document = read_model_config(broken)
    write_config(broken, config, {})
    with pytest.raises(CheckpointError, match="model_stream.onnx: not a loadable ONNX graph"):
        push_model(broken, "acme/x")
    assert "acme/x" not in fake_hub.repos  # nothing was created for a bad folder


def test_safetensors_header_is_read_without_torch(tmp_path):
    assert count_parameters(bundled_small() / "model.safetensors") > 10_000
    garbage = tmp_path / "model.safetensors"
    for data in (b"", b"\xff" * 8 + b"{}", struct.pack("<Q", 4) + b"{no}", struct.pack("<Q", 2) + b"{}" + b"x"):
        garbage.write_bytes(data)
        with pytest.raises(CheckpointError, match="not a valid safetensors file"):
            read_safetensors_header(garbage)


def test_model_card_front_matter_and_metrics(tmp_path):
    folder = model_copy(tmp_path)
    card = render_model_card(folder, {"metrics": {"testset_ood": {"pesq_wb": 2.71234, "dnsmos_ovrl": 3.1}},
                                      "training_data": "Debian game speech + noise", "stage2": {"encoder": "frozen"},
                                      "datasets": ["acme/speech"], "license": "apache-2.0"})
    front = card.split("---")[1]
    for line in ('license: "apache-2.0"', "library_name: denoise", "pipeline_tag: audio-to-audio", '- "speech-enhancement"',
                 '- "denoising"', '- "onnx"', '- "model-as-loss"', '- "acme/speech"'):
        assert line in front.splitlines()
    assert "| testset_ood | pesq_wb | 2.712 |" in card
    assert "Stage 2 (Model as Loss): encoder=frozen" in card
    assert "Debian game speech + noise" in card
    assert f"| `model.safetensors` | `{sha256_file(folder / 'model.safetensors')}` |" in card
    assert f"| Parameters | {count_parameters(folder / 'model.safetensors'):,} |" in card
