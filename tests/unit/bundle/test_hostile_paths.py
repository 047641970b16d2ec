"""Specification: every path a bundle names resolves inside the bundle, or nothing is read.

A bundle is data anyone holding it can rewrite, hashes included: ``Bundle.seal`` (the project's
own integrity code) re-seals an edited manifest exactly as an attacker would. So each manifest
key that names a file is refused when it points outside (absolute, ``..``, NUL, a link), before
any read, and no refusal quotes the content of the file it pointed at.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import rtserve
from rtserve import Bundle
from rtserve.bundle.integrity import compute_digest
from rtserve.bundle.manifest import MANIFEST_FILE, Manifest, read_manifest
from rtserve.bundle.paths import check_relative, confine, read_bounded
from rtserve.errors import BundleError, IntegrityError, UnsafeArtifactError, UnsafePathError

#: A file outside every bundle whose first line an old rtserve showed in its errors.
SECRET = Path("/etc/passwd")
LEAK_MARKER = "root:"  # how /etc/passwd begins

OUTSIDE = [
    "/etc/passwd",
    "../../../../../../etc/passwd",
    "model/../../outside.json",
    "profile.json\x00.txt",
    "C:/Windows/win.ini",
    "model\\..\\..\\outside.json",
]


def forge(directory: Path, **changes: Any) -> None:
    """Edit the manifest and re-seal every hash and the digest, as anyone holding it can."""
    Bundle.seal(directory, read_manifest(directory).model_copy(update=changes))


def forge_listed_file(directory: Path, relative: str) -> None:
    """Add ``relative`` to ``files`` (and ``sizes``) and recompute the digest by hand."""
    manifest = read_manifest(directory)
    manifest = manifest.model_copy(
        update={
            "files": {**manifest.files, relative: "0" * 64},
            "sizes": {**(manifest.sizes or {}), relative: 1},
        }
    )
    manifest.model_copy(update={"digest": compute_digest(manifest)}).write(directory)


def _runtime_files(manifest: Manifest, value: str) -> dict[str, Any]:
    return {"runtime": manifest.runtime.model_copy(update={"files": [value]})}


def _optimized_files(manifest: Manifest, value: str) -> dict[str, Any]:
    optimized = manifest.optimized
    assert optimized is not None
    assert optimized.runtime is not None
    runtime = optimized.runtime.model_copy(update={"files": [value]})
    return {"optimized": optimized.model_copy(update={"runtime": runtime})}


EDITS: dict[str, Callable[[Manifest, str], dict[str, Any]]] = {
    "profile": lambda _, value: {"profile": value},
    "validation": lambda _, value: {"validation": value},
    "runtime.files": _runtime_files,
    "optimized.runtime.files": _optimized_files,
}


@pytest.mark.parametrize("key", sorted(EDITS))
@pytest.mark.parametrize("value", OUTSIDE)
def test_a_manifest_path_outside_the_bundle_is_refused_at_open_naming_its_key(
    fraud_bundle_copy: Path, key: str, value: str
) -> None:
    forge(fraud_bundle_copy, **EDITS[key](read_manifest(fraud_bundle_copy), value))

    with pytest.raises(UnsafePathError) as caught:
        Bundle.open(fraud_bundle_copy, check=False)

    assert caught.value.field == key
    assert caught.value.code == "unsafe_path"
    assert "inside the bundle" in caught.value.message  # the rule and what to do
    assert LEAK_MARKER not in caught.value.message


@pytest.mark.parametrize("value", OUTSIDE)
def test_a_files_key_outside_the_bundle_is_refused_before_any_hashing(
    fraud_bundle_copy: Path, value: str
) -> None:
    forge_listed_file(fraud_bundle_copy, value)

    with pytest.raises(UnsafePathError) as caught:
        Bundle.open(fraud_bundle_copy)

    assert caught.value.field == "files"


@pytest.mark.parametrize("key", ["profile", "validation"])
def test_rtserve_load_of_a_bundle_pointing_at_etc_passwd_is_refused_without_its_content(
    fraud_bundle_copy: Path, key: str
) -> None:
    forge(fraud_bundle_copy, **{key: str(SECRET)})

    with pytest.raises(UnsafePathError) as caught:
        rtserve.load(fraud_bundle_copy)

    assert caught.value.field == key
    assert "'/etc/passwd' is absolute" in caught.value.message
    assert LEAK_MARKER not in str(caught.value)


@pytest.mark.parametrize("key", ["profile", "validation"])
def test_rtserve_verify_refuses_a_bundle_pointing_at_etc_passwd_with_one_error_line(
    fraud_bundle_copy: Path, key: str
) -> None:
    from rtserve.cli.main import app

    forge(fraud_bundle_copy, **{key: str(SECRET)})

    result = CliRunner().invoke(app, ["verify", str(fraud_bundle_copy)], env={"NO_COLOR": "1"})

    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {key}: path '/etc/passwd' is absolute")
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.output
    assert LEAK_MARKER not in result.output


def test_a_bundle_file_that_is_a_link_out_of_the_bundle_is_never_read(
    fraud_bundle_copy: Path,
) -> None:
    (fraud_bundle_copy / "profile.json").unlink()
    (fraud_bundle_copy / "profile.json").symlink_to(SECRET)
    bundle = Bundle.open(fraud_bundle_copy, check=False)  # e.g. `rtserve inspect --no-verify`

    with pytest.raises(UnsafePathError, match="symbolic link") as caught:
        bundle.read_profile()

    assert caught.value.field == "profile"
    assert LEAK_MARKER not in caught.value.message
    with pytest.raises(IntegrityError, match="symbolic link"):
        bundle.verify()


def test_a_folder_that_is_a_link_out_of_the_bundle_is_never_read(
    fraud_bundle_copy: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "elsewhere"
    shutil.move(fraud_bundle_copy / "model", outside)
    (fraud_bundle_copy / "model").symlink_to(outside, target_is_directory=True)

    with pytest.raises(UnsafePathError, match="passes through the symbolic link 'model'"):
        confine(fraud_bundle_copy, "model/model.skops", field="runtime.files")
    with pytest.raises(IntegrityError, match="symbolic link"):
        rtserve.load(fraud_bundle_copy)


def test_a_manifest_that_is_a_link_is_refused_even_unverified(
    fraud_bundle_copy: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "manifest-elsewhere.yaml"
    shutil.move(fraud_bundle_copy / MANIFEST_FILE, outside)
    (fraud_bundle_copy / MANIFEST_FILE).symlink_to(outside)

    with pytest.raises(UnsafePathError) as caught:
        Bundle.open(fraud_bundle_copy, check=False)

    assert caught.value.field == MANIFEST_FILE


@pytest.mark.timeout(20)  # before the fix, reading the FIFO blocked forever
def test_a_fifo_in_place_of_a_bundle_file_is_refused_instead_of_blocking(
    fraud_bundle_copy: Path,
) -> None:
    (fraud_bundle_copy / "validation.json").unlink()
    os.mkfifo(fraud_bundle_copy / "validation.json")
    bundle = Bundle.open(fraud_bundle_copy, check=False)

    with pytest.raises(UnsafePathError, match="not a regular file"):
        bundle.read_validation()
    with pytest.raises(IntegrityError, match="special file") as caught:
        bundle.verify()
    assert caught.value.field == "validation.json"


def test_a_named_path_must_be_one_of_the_hashed_files(fraud_bundle_copy: Path) -> None:
    # validation: rtserve.yaml is inside the bundle, but no hash covers what it would be read as
    forge(fraud_bundle_copy, validation=MANIFEST_FILE)

    with pytest.raises(BundleError, match="not one of the files the manifest hashes") as caught:
        rtserve.load(fraud_bundle_copy)

    assert caught.value.field == "validation"


def test_a_corrupt_json_part_is_refused_without_quoting_it(fraud_bundle_copy: Path) -> None:
    (fraud_bundle_copy / "profile.json").write_text("root:x:0:0:root:/root:/bin/bash\n")
    bundle = Bundle.open(fraud_bundle_copy, check=False)

    with pytest.raises(BundleError, match=r"profile: 'profile.json' is not a valid profile") as c:
        bundle.read_profile()

    assert c.value.field == "profile"
    assert LEAK_MARKER not in c.value.message
    assert c.value.__cause__ is None  # nor in a traceback
    assert c.value.__suppress_context__


def test_an_oversized_json_part_is_refused_unread(
    fraud_bundle_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import rtserve.bundle.bundle as bundle_module

    monkeypatch.setattr(bundle_module, "MAX_PART_BYTES", 1024)
    bundle = Bundle.open(fraud_bundle_copy)

    with pytest.raises(BundleError, match=r"over the limit of 1024 bytes") as caught:
        bundle.read_validation()

    assert caught.value.code == "bundle_too_large"
    assert caught.value.field == "validation"


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("", "not a file path"),
        ("/abs/file", "absolute"),
        ("C:/file", "absolute"),
        ("a\\b", "absolute"),
        ("a/../b", "climbs out"),
        ("..", "climbs out"),
        ("a\x00b", "NUL or control"),
        ("a\nb", "NUL or control"),
        ("a\x1bb", "NUL or control"),
        ("./a", "canonical"),
        ("a//b", "canonical"),
        ("a/", "canonical"),
        ("x" * 256, "canonical"),
        ("a/" * 600, "characters long"),
    ],
)
def test_check_relative_names_what_is_wrong_with_a_path(value: str, why: str) -> None:
    with pytest.raises(UnsafePathError, match=re.escape(why)) as caught:
        check_relative(value, field="profile")
    assert caught.value.field == "profile"
    assert caught.value.message.startswith("profile: ")


@pytest.mark.parametrize("value", ["profile.json", "model/model.skops", "a/b.c/d-e_f+g"])
def test_check_relative_accepts_canonical_bundle_paths(value: str) -> None:
    assert check_relative(value, field="files") == value


def test_read_bounded_reads_a_regular_file_inside_the_bundle(tmp_path: Path) -> None:
    (tmp_path / "part.json").write_bytes(b"{}")
    assert read_bounded(tmp_path, "part.json", field="profile", limit=2) == b"{}"


def test_onnx_external_data_reached_through_a_link_is_refused(tmp_path: Path) -> None:
    import numpy as np
    from onnx import TensorProto, helper

    from rtserve.runtimes.onnx import check_external_data

    bundle = tmp_path / "bundle"
    (bundle / "model").mkdir(parents=True)
    (tmp_path / "secret.bin").write_bytes(np.ones(3, dtype=np.float32).tobytes())
    (bundle / "model" / "weights.bin").symlink_to(tmp_path / "secret.bin")
    weights = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=[3, 1])
    weights.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "weights.bin"), ("offset", "0"), ("length", "12")):
        entry = weights.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 1])],
        initializer=[weights],
    )
    proto = helper.make_model(graph)
    check_external_data(proto, where="model/model.onnx")  # the location's shape alone is fine

    with pytest.raises(UnsafeArtifactError, match="outside the bundle") as caught:
        check_external_data(proto, where="model/model.onnx", bundle=bundle)

    assert caught.value.field == "model/model.onnx"
