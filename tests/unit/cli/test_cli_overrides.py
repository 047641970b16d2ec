"""Schema overrides from `--set FIELD.ATTR=VALUE` and from a YAML file."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from rtserve.cli.overrides import merge, parse_set, read_file
from rtserve.errors import SchemaDefinitionError


def test_set_values_are_yaml_scalars_and_lists() -> None:
    parsed = parse_set(
        [
            "amount.minimum=0",
            "amount.maximum=1e4",
            "email.pii=true",
            "country.allowed=[DE, FR]",
            "country.unseen=reject",
            "hour.maximum=",
        ]
    )

    assert parsed == {
        "amount": {"minimum": 0, "maximum": 1e4},
        "email": {"pii": True},
        "country": {"allowed": ["DE", "FR"], "unseen": "reject"},
        "hour": {"maximum": None},
    }


def test_set_keeps_dots_in_field_names() -> None:
    assert parse_set(["user.age.minimum=18"]) == {"user.age": {"minimum": 18}}


@pytest.mark.parametrize("assignment", ["amount", "amount=3", ".minimum=3", "amount.colour=red"])
def test_set_rejects_malformed_assignments(assignment: str) -> None:
    with pytest.raises(typer.BadParameter):
        parse_set([assignment])


def test_command_line_wins_over_the_file_attribute_by_attribute(tmp_path: Path) -> None:
    path = tmp_path / "overrides.yaml"
    path.write_text("hour: {minimum: 0, maximum: 30}\nemail: {pii: true}\n")

    merged = merge(read_file(path), parse_set(["hour.maximum=23"]))

    assert merged == {"hour": {"minimum": 0, "maximum": 23}, "email": {"pii": True}}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("- amount\n", "expected a mapping"),
        ("amount: 3\n", "expected a mapping"),
        ("amount: {colour: red}\n", "not a field attribute"),
        ("amount: {minimum: [\n", "not valid YAML"),
    ],
)
def test_an_overrides_file_with_wrong_content_is_refused(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "overrides.yaml"
    path.write_text(content)

    with pytest.raises(SchemaDefinitionError, match=message):
        read_file(path)


def test_an_empty_overrides_file_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "overrides.yaml"
    path.write_text("")

    assert read_file(path) == {}
