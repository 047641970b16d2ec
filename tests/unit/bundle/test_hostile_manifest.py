"""Specification: parsing a manifest costs bounded time and memory, and names are exact.

``rtserve.yaml`` is read with YAML aliases refused before anything expands them, with its size,
node count and nesting depth capped; names and versions match their rule over the whole string.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import rtserve
from rtserve import Bundle
from rtserve.bundle import manifest as manifest_module
from rtserve.bundle.integrity import compute_digest
from rtserve.bundle.manifest import (
    MANIFEST_FILE,
    MAX_MANIFEST_BYTES,
    parse_manifest,
    read_manifest,
)
from rtserve.bundle.naming import check_name, check_version
from rtserve.errors import (
    BundleError,
    BundleFormatError,
    BundleTooLargeError,
    IntegrityError,
)


def _with_options(directory: Path, options_yaml: str) -> bytes:
    """The bundle's manifest text with ``runtime.options`` replaced by ``options_yaml``."""
    text = (directory / MANIFEST_FILE).read_text()
    head, rest = text.split("  options:\n", 1)
    tail = rest[rest.index("\n", rest.index("\n") + 1) :]  # drop the old option lines' start
    while tail.startswith("\n    "):  # and every further line of the old options mapping
        tail = tail[tail.index("\n", 1) :]
    return (head + "  options:\n" + options_yaml + tail).encode()


def _alias_bomb(levels: int = 9, width: int = 9) -> str:
    """The "billion laughs": ``width ** levels`` strings from a couple of KiB of aliases."""
    lines = ["    l0: &l0 [" + ", ".join(['"lol"'] * width) + "]"]
    for level in range(1, levels):
        refs = ", ".join([f"*l{level - 1}"] * width)
        lines.append(f"    l{level}: &l{level} [{refs}]")
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_in_runtime_options_is_refused_in_well_under_a_second(
    fraud_bundle_copy: Path,
) -> None:
    bomb = _with_options(fraud_bundle_copy, _alias_bomb())
    assert len(_alias_bomb()) < 2_700  # 9 ** 9 = 387 million strings once expanded
    (fraud_bundle_copy / MANIFEST_FILE).write_bytes(bomb)

    started = time.perf_counter()
    with pytest.raises(BundleFormatError, match="is a YAML alias") as caught:
        Bundle.open(fraud_bundle_copy, check=False)
    elapsed = time.perf_counter() - started

    assert elapsed < 0.5
    assert caught.value.field == "runtime.options.l1.0"  # the first alias, by its key path
    assert "write the value out in full" in caught.value.message


def test_a_lone_alias_is_refused_too(fraud_bundle_copy: Path) -> None:
    text = (fraud_bundle_copy / MANIFEST_FILE).read_text()
    text = text.replace("description: ''", "description: &d ''", 1)
    text = text.replace("profile: profile.json", "profile: *d", 1)
    with pytest.raises(BundleFormatError, match="YAML alias") as caught:
        parse_manifest(text.encode())
    assert caught.value.field == "profile"


def test_a_manifest_over_the_size_limit_is_refused_unread(fraud_bundle_copy: Path) -> None:
    path = fraud_bundle_copy / MANIFEST_FILE
    path.write_bytes(path.read_bytes() + b"#" * MAX_MANIFEST_BYTES + b"\n")

    with pytest.raises(BundleTooLargeError, match=r"over the limit of 8388608 bytes") as caught:
        Bundle.open(fraud_bundle_copy, check=False)

    assert caught.value.field == MANIFEST_FILE
    assert caught.value.code == "bundle_too_large"


def test_a_manifest_with_more_nodes_than_the_budget_is_refused(
    fraud_bundle_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(manifest_module, "MAX_MANIFEST_NODES", 50)
    with pytest.raises(BundleTooLargeError, match="more than 50 YAML values"):
        read_manifest(fraud_bundle_copy)


def test_a_deeply_nested_manifest_is_refused_before_the_parser_recurses(
    fraud_bundle_copy: Path,
) -> None:
    deep = "    deep: " + "[" * 100 + "]" * 100 + "\n"  # libyaml itself stops at 1000
    (fraud_bundle_copy / MANIFEST_FILE).write_bytes(_with_options(fraud_bundle_copy, deep))

    with pytest.raises(BundleTooLargeError, match="nests deeper than 64 levels") as caught:
        Bundle.open(fraud_bundle_copy, check=False)

    assert caught.value.field == MANIFEST_FILE


def test_an_enormous_integer_is_a_refusal_not_a_crash(fraud_bundle_copy: Path) -> None:
    (fraud_bundle_copy / MANIFEST_FILE).write_bytes(
        _with_options(fraud_bundle_copy, "    big: " + "9" * 5000 + "\n")
    )
    with pytest.raises(IntegrityError, match="no longer valid UTF-8 YAML"):
        Bundle.open(fraud_bundle_copy, check=False)


def test_a_yaml_syntax_error_says_where_but_never_quotes_the_file(fraud_bundle_copy: Path) -> None:
    path = fraud_bundle_copy / MANIFEST_FILE
    path.write_text(path.read_text() + "secret-token-7f3a: [unclosed, 'root:x:0:0\n")

    with pytest.raises(IntegrityError, match=r"at line \d+, column \d+") as caught:
        Bundle.open(fraud_bundle_copy, check=False)

    assert "secret-token-7f3a" not in caught.value.message
    assert "root:" not in caught.value.message
    assert caught.value.__cause__ is None


def test_manifests_are_written_without_aliases_so_they_always_read_back(
    fraud_bundle_dir: Path,
) -> None:
    manifest = read_manifest(fraud_bundle_dir)
    shared = ["x", "y"]
    runtime = manifest.runtime.model_copy(update={"options": {"a": shared, "b": shared}})
    text = manifest.model_copy(update={"runtime": runtime}).to_yaml()

    assert "&" not in text
    assert "*id" not in text
    assert parse_manifest(text.encode()).runtime.options == {"a": shared, "b": shared}


@pytest.mark.parametrize("name", ["fraud\n", "fraud\r\n", "fraud\x00", "fra\tud", "fraud\x1b[2J"])
def test_a_name_with_a_newline_or_control_character_is_refused(name: str) -> None:
    with pytest.raises(BundleFormatError, match="model name") as caught:
        check_name(name)
    assert caught.value.field == "name"


@pytest.mark.parametrize("version", ["1\n", "1.0\n", "1\x00", "v1\x07"])
def test_a_version_with_a_newline_or_control_character_is_refused(version: str) -> None:
    with pytest.raises(BundleFormatError, match="model version") as caught:
        check_version(version)
    assert caught.value.field == "version"


@pytest.mark.parametrize(("name", "version"), [("fraud", "1"), ("a", "A"), ("a.b-c_d", "1.2+x")])
def test_valid_names_and_versions_still_pass(name: str, version: str) -> None:
    assert (check_name(name), check_version(version)) == (name, version)


@pytest.mark.parametrize(("key", "value"), [("name", "fraud\n"), ("version", "1\n")])
def test_a_manifest_whose_name_ends_in_a_newline_is_refused_even_when_resealed(
    fraud_bundle_copy: Path, key: str, value: str
) -> None:
    manifest = read_manifest(fraud_bundle_copy).model_copy(update={key: value})
    manifest.model_copy(update={"digest": compute_digest(manifest)}).write(fraud_bundle_copy)

    with pytest.raises(BundleFormatError) as caught:
        rtserve.load(fraud_bundle_copy)

    assert caught.value.field == key


def test_build_refuses_a_name_with_a_trailing_newline(
    fraud_pipeline: object, transactions: object
) -> None:
    with pytest.raises(BundleError) as caught:
        rtserve.build(fraud_pipeline, transactions, name="fraud\n", version="1", optimize="off")
    assert caught.value.field == "name"
