"""relay.cli._vectors: the agreement table over the reference vector files, and its one agreement check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from relay.cli import _vectors as table
from tests import vectors

FILES = sorted(vectors.VECTORS.glob("*.jsonl"))


@pytest.fixture(scope="module")
def rows() -> dict[str, table.Row]:
    return {row.protocol: row for row in table.vector_table(vectors.VECTORS)}


@pytest.mark.parametrize("protocol", ["pt502", "gps103"])
def test_finished_drivers_agree_with_every_vector(rows: dict[str, table.Row], protocol: str) -> None:
    row = rows[protocol]
    assert row.registered
    assert row.frames == len(vectors.load(protocol)) > 0
    assert row.detected == row.agreeing == row.frames
    assert row.disagreements == ()


@pytest.mark.parametrize("protocol", ["pt502", "gps103"])
def test_finished_drivers_reproduce_their_command_rows(rows: dict[str, table.Row], protocol: str) -> None:
    row = rows[protocol]
    assert row.commands == len(vectors.load(protocol, direction="server_to_device")) > 0
    assert row.commands_not_mapped == 0
    assert row.commands_reproduced == row.commands
    assert row.command_failures == ()


def test_every_protocol_of_the_vector_files_has_a_row(rows: dict[str, table.Row]) -> None:
    assert set(rows) == {path.stem for path in FILES}
    assert list(rows) == sorted(rows)


def test_format_table_is_markdown_with_a_total(rows: dict[str, table.Row]) -> None:
    text = table.format_table(list(rows.values()))
    lines = text.splitlines()
    assert lines[0] == "| protocol | frames | detected | agreeing |"
    assert lines[1] == "|---|---:|---:|---:|"
    pt502 = rows["pt502"].frames
    assert f"| pt502 | {pt502} | {pt502} (100%) | {pt502} (100%) |" in lines
    assert lines[len(rows) + 2].startswith("| **total** |")
    assert "| protocol | commands | not mapped | reproduced |" in lines


def test_rows_serialise_to_json(rows: dict[str, table.Row]) -> None:
    for row in rows.values():
        data = json.loads(json.dumps(row.to_json()))
        assert data["frames"] == row.frames
        assert json.dumps(vars(row), default=str)  # what `relay vectors --json` prints


# -- on files made here ------------------------------------------------------------------------

#: A real gps103 row that agrees with its reference.
GPS103 = next(vector.row for vector in vectors.load("gps103") if (vector.row.get("derived") or {}).get("lat"))


def write(directory: Path, name: str, *rows: dict) -> Path:
    path = directory / name
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_a_wrong_reference_is_a_disagreement_naming_its_line(tmp_path: Path) -> None:
    wrong = {**GPS103, "derived": {**GPS103["derived"], "lat": 52.0}}
    write(tmp_path, "gps103.jsonl", GPS103, wrong)
    (row,) = table.vector_table(tmp_path)
    assert (row.frames, row.detected, row.agreeing) == (2, 2, 1)
    ((line, reason),) = row.disagreements
    assert line == 2
    assert "!= 52.0" in reason


def test_a_protocol_without_driver_is_listed_and_nothing_is_detected(tmp_path: Path) -> None:
    write(tmp_path, "nosuch.jsonl", {**GPS103, "protocol": "nosuch", "frame": "\x01\x02"})
    (row,) = table.vector_table(tmp_path)
    assert not row.registered
    assert (row.frames, row.detected, row.agreeing) == (1, 0, 0)
    assert "| nosuch (no driver) | 1 | 0 (0%) | 0 (0%) |" in table.format_table([row])


def test_command_rows_that_map_to_no_single_type_are_counted_not_mapped(tmp_path: Path) -> None:
    command = {"protocol": "gps103", "direction": "server_to_device", "kind": "command", "encoding": "ascii"}
    single = {"command_types_in_test": ["TYPE_POSITION_SINGLE"]}
    write(
        tmp_path,
        "gps103.jsonl",
        {**command, "frame": "**,imei:123456789012345,B", "expect": single},
        {**command, "frame": "**,imei:123456789012345,Z", "expect": single},
        {**command, "frame": "x", "expect": {"command_types_in_test": ["TYPE_SET_INDICATOR"]}},
        {**command, "frame": "x", "expect": {"command_types_in_test": ["TYPE_CUSTOM", "TYPE_MESSAGE"]}},
    )
    (row,) = table.vector_table(tmp_path)
    assert (row.commands, row.commands_not_mapped, row.commands_reproduced) == (4, 2, 1)
    ((line, reason),) = row.command_failures
    assert line == 2
    assert "positionSingle" in reason


def test_an_empty_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(table.VectorFileError, match=r"no \*\.jsonl"):
        table.vector_table(tmp_path)


def test_a_missing_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(table.VectorFileError, match="not a directory"):
        table.vector_table(tmp_path / "nowhere")


def test_a_broken_line_is_an_error_naming_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "gps103.jsonl"
    path.write_text(json.dumps(GPS103) + "\n\n{not json\n")
    with pytest.raises(table.VectorFileError, match=r"gps103\.jsonl:3: not JSON"):
        table.vector_table(tmp_path)


# -- the command ---------------------------------------------------------------------------------


def test_relay_vectors_without_a_directory_reads_the_repository_copy_from_any_directory(
    tmp_path: Path,
) -> None:
    from tests.test_cli import relay

    result = relay("vectors", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    pt502 = len(vectors.load("pt502"))
    assert f"| pt502 | {pt502} | {pt502} (100%) | {pt502} (100%) |" in result.stdout.splitlines()


def test_relay_vectors_without_a_directory_or_a_checkout_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from relay.cli import _main as cli

    monkeypatch.setattr(table, "REPOSITORY_VECTORS", Path("/nonexistent/tests/data/vectors"))
    assert table.default_directory() is None
    assert cli.main(["vectors"]) == 1
    assert "no vector directory given" in capsys.readouterr().err
