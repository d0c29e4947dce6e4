"""The vector table: how well the registered drivers agree with the reference vectors.

Each ``*.jsonl`` file of the vector directory (format: protocols.md section 10) holds device frames
(``direction: device_to_server``) with reference values, and server commands (``server_to_device``,
``kind: command``) taken from encoder tests. :func:`vector_table` decodes every device row the way
``relay decode --protocol auto`` does and checks it with :func:`mismatches`, the one definition of
"agrees with the reference" (``tests/vectors.py`` asserts the same rules); it also asks each driver's
encoder to reproduce the command rows. :func:`format_table` prints the result as Markdown.

Nothing here writes anything; the only I/O is reading the vector files.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from drivers import Command, CommandType, DriverError, Transport, decode_stream, drivers

from ..errors import RelayError

#: The clock handed to drivers when decoding vectors (replies that carry "now" are not compared).
NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
#: The reference vectors kept in a source checkout (absent from an installed wheel).
REPOSITORY_VECTORS = Path(__file__).resolve().parents[2] / "tests" / "data" / "vectors"
#: The clock Traccar's encoder tests run at (commands stamped with the time show 01:02:03).
ENCODER_NOW = datetime(2026, 11, 23, 1, 2, 3, tzinfo=UTC)
#: The device id Traccar's encoder tests use in every command row.
COMMAND_DEVICE_ID = "123456789012345"

DEVICE_TO_SERVER = "device_to_server"
SERVER_TO_DEVICE = "server_to_device"

#: Tolerances of the agreement check.
COORDINATE_TOLERANCE = 1e-5
SPEED_TOLERANCE_KMH = 0.1
COURSE_TOLERANCE = 0.01
_KNOTS_TO_KMH = 1.852

#: Traccar command types (``Command.TYPE_*``) that are one of ours: the members are named after them.
TRACCAR_COMMANDS: Mapping[str, CommandType] = {f"TYPE_{kind.name}": kind for kind in CommandType}

# The rows do not carry the parameters Traccar's encoder tests used, so a small grid of plausible
# values is tried, under the drivers' parameter names (``drivers.PARAMETERS``). A CUSTOM row's text is
# searched among the frame's substrings, and a binary frame's payload is tried as hex.
_INTERVALS_S = (10, 20, 30, 60, 120, 300, 600, 3600)
_QUARTER_HOURS = tuple(quarter / 4 for quarter in range(-12 * 4, 14 * 4 + 1))
_SPEED_LIMITS_KMH = tuple(range(10, 310, 10))
_OUTPUTS = tuple(range(5))
#: Frames longer than this have only their maximal printable runs tried as CUSTOM text.
_MAX_SUBSTRING_SEARCH = 160


class VectorFileError(RelayError):
    """A vector file cannot be read or is not JSON lines; the message names the file and line."""


class Disagreement(NamedTuple):
    """One vector row that does not agree, by its line in the protocol's file."""

    line: int
    reason: str


@dataclass(frozen=True)
class Row:
    """The agreement of one protocol's vectors with its driver."""

    protocol: str
    #: A driver of this name is registered.
    registered: bool
    #: Device rows (each one frame, or a sequence of frames decoded in one session).
    frames: int
    #: Device rows detected as this protocol with ``protocol="auto"``.
    detected: int
    #: Device rows with no mismatch at all.
    agreeing: int
    disagreements: tuple[Disagreement, ...]
    #: Command rows (``kind: command``).
    commands: int
    #: Command rows whose Traccar type is not exactly one :class:`CommandType`.
    commands_not_mapped: int
    #: Mapped command rows the driver's encoder reproduces byte for byte.
    commands_reproduced: int
    command_failures: tuple[Disagreement, ...]

    @property
    def commands_mapped(self) -> int:
        return self.commands - self.commands_not_mapped

    def to_json(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol,
            "registered": self.registered,
            "frames": self.frames,
            "detected": self.detected,
            "agreeing": self.agreeing,
            "disagreements": [disagreement._asdict() for disagreement in self.disagreements],
            "commands": self.commands,
            "commands_not_mapped": self.commands_not_mapped,
            "commands_reproduced": self.commands_reproduced,
            "command_failures": [failure._asdict() for failure in self.command_failures],
        }


# -- reading rows ------------------------------------------------------------------------------


def load_rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """Every row of a vector file with its 1-based line number (blank lines skipped).

    :raises VectorFileError: the file cannot be read, or a line is not a JSON object.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise VectorFileError(f"{path}: cannot read: {error}") from error
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as error:
            raise VectorFileError(f"{path}:{number}: not JSON: {error}") from None
        if not isinstance(row, dict) or "protocol" not in row:
            raise VectorFileError(f"{path}:{number}: expected an object with a 'protocol'")
        rows.append((number, row))
    return rows


def row_frames(row: Mapping[str, Any]) -> list[bytes]:
    """The row's frame(s) as bytes (``encoding`` is ``hex`` or ``ascii``, read as latin-1)."""
    frames = row.get("frames") or [row["frame"]]
    if row.get("encoding") == "hex":
        return [bytes.fromhex(frame) for frame in frames]
    return [frame.encode("latin-1") for frame in frames]


def row_transport(row: Mapping[str, Any]) -> Transport:
    return Transport(row.get("transport", "tcp"))


def reference(row: Mapping[str, Any]) -> dict[str, Any]:
    """Expected values: ``derived`` overlaid with the test-asserted ``expect`` values."""
    ref = dict(row.get("derived") or {})
    expect = row.get("expect") or {}
    for key in ("time", "valid", "lat", "lon", "alarm", "course", "altitude", "device_id"):
        if key in expect:
            ref[key] = expect[key]
    return ref


def decode_row(row: Mapping[str, Any], protocol: str = "auto") -> dict[str, Any]:
    """The row decoded as ``relay decode`` would (``decode_stream`` with the fixed :data:`NOW`)."""
    return decode_stream(
        row_frames(row),
        now=NOW,
        protocol=protocol,
        transport=row_transport(row),
        messages=True,
    ).summary()


# -- the agreement check -----------------------------------------------------------------------


def mismatches(row: Mapping[str, Any], out: Mapping[str, Any]) -> list[str]:
    """Everything in ``out`` (a ``decode_stream`` result) that disagrees with the row's reference.

    Checked: detection, lat/lon within 1e-5, time exact, speed within 0.1 km/h, validity, course,
    the alarm, the device id, and the reply bytes when the source shows them. An empty list means
    full agreement. A detection failure is the only problem reported for such a row.
    """
    problems: list[str] = []
    if out["protocol"] != row["protocol"]:
        problems.append(f"detected as {out['protocol']!r}")
        return problems
    if out["error"]:
        problems.append(f"error: {out['error']}")
    ref = reference(row)
    positions = [report for report in out["reports"] if report["lat"] is not None]
    if "lat" in ref and ref.get("lat") is not None:
        if not positions:
            return [*problems, "no position decoded"]
        got = positions[0]
        if (
            abs(got["lat"] - ref["lat"]) > COORDINATE_TOLERANCE
            or abs(got["lon"] - ref["lon"]) > COORDINATE_TOLERANCE
        ):
            problems.append(f"position {got['lat']},{got['lon']} != {ref['lat']},{ref['lon']}")
        if "time" in ref and got["time"] != ref["time"]:
            problems.append(f"time {got['time']} != {ref['time']}")
        if "valid" in ref and got["valid"] != ref["valid"]:
            problems.append(f"valid {got['valid']} != {ref['valid']}")
        speed = ref.get("speed_kmh")
        if speed is None and ref.get("speed_knots") is not None:
            speed = ref["speed_knots"] * _KNOTS_TO_KMH
        if speed is not None and abs((got["speed_kmh"] or 0.0) - speed) > SPEED_TOLERANCE_KMH:
            problems.append(f"speed {got['speed_kmh']} != {speed} km/h")
        course = ref.get("course")
        if course is not None and abs((got["course_deg"] or 0.0) - course) > COURSE_TOLERANCE:
            problems.append(f"course {got['course_deg']} != {ref['course']}")
    if ref.get("alarm"):
        wanted = set(str(ref["alarm"]).split(","))
        found = {alarm for report in out["reports"] for alarm in report["alarms"]}
        if not wanted <= found:
            problems.append(f"alarms {sorted(found)} lack {sorted(wanted - found)}")
    if ref.get("device_id") and out["reports"]:
        ids = {report["device_id"] for report in out["reports"]}
        if ref["device_id"] not in ids and not row.get("expect", {}).get("result", "").startswith("none"):
            problems.append(f"device ids {sorted(map(str, ids))} lack {ref['device_id']}")
    reply = row.get("reply") or row.get("reply_derived")
    if reply and reply.lower() not in out["replies"]:
        problems.append(f"replies {out['replies']} lack {reply}")
    return problems


# -- commands ----------------------------------------------------------------------------------


def command_type(row: Mapping[str, Any]) -> CommandType | None:
    """Our command type for a command row, or ``None`` when it does not map to exactly one."""
    types = (row.get("expect") or {}).get("command_types_in_test") or []
    if len(types) != 1:
        return None
    return TRACCAR_COMMANDS.get(types[0])


def command_candidates(kind: CommandType, frame: bytes) -> Iterable[dict[str, Any]]:
    """The parameter sets tried to reproduce ``frame`` as a command of type ``kind``."""
    match kind:
        case CommandType.POSITION_PERIODIC:
            return ({"frequency": seconds} for seconds in _INTERVALS_S)
        case CommandType.OUTPUT_CONTROL:
            return ({"index": index, "data": on} for index in _OUTPUTS for on in (1, 0))
        case CommandType.SET_TIMEZONE:
            return ({"timezone": hours} for hours in _QUARTER_HOURS)
        case CommandType.ALARM_SPEED:
            return ({"speed": limit} for limit in _SPEED_LIMITS_KMH)
        case CommandType.CUSTOM:
            texts = ({"data": text} for text in _printable_substrings(frame))
            return itertools.chain(texts, ({"data": hexes, "hex": True} for hexes in _hex_substrings(frame)))
    return ({},)


def _hex_substrings(frame: bytes) -> Iterable[str]:
    """Every run of whole bytes of a short binary frame, as hex (longest first from each start)."""
    if len(frame) > _MAX_SUBSTRING_SEARCH:
        return ()
    return (frame[start:end].hex() for start in range(len(frame)) for end in range(len(frame), start, -1))


def _printable_substrings(frame: bytes) -> list[str]:
    runs: list[str] = []
    current = bytearray()
    for byte in [*frame, None]:
        if byte is not None and (32 <= byte < 127 or byte in (9, 10, 13)):
            current.append(byte)
            continue
        if current:
            runs.append(current.decode("ascii"))
            current = bytearray()
    if len(frame) > _MAX_SUBSTRING_SEARCH:
        return runs
    found: dict[str, None] = {}
    for run in runs:
        for start in range(len(run)):
            for end in range(len(run), start, -1):
                found.setdefault(run[start:end])
    return list(found)


def check_command(row: Mapping[str, Any], kind: CommandType) -> str | None:
    """``None`` if the protocol's encoder reproduces the row's frame, else why not."""
    try:
        driver = drivers()[row["protocol"]]
    except KeyError:
        return "no driver"
    frame = row_frames(row)[0]
    session = driver.new_session(row_transport(row), device_id=COMMAND_DEVICE_ID)
    last = "no candidate parameters"
    closest: bytes | None = None
    for params in command_candidates(kind, frame):
        command = Command(type=kind, device_id=COMMAND_DEVICE_ID, params=params)
        try:
            encoded = session.encode(command, now=ENCODER_NOW)
        except (DriverError, KeyError, ValueError, TypeError) as error:
            last = f"{type(error).__name__}: {error}"
            continue
        if encoded == frame:
            return None
        closest = closest or encoded
    if closest is not None:
        return f"{kind.value}: encoder gives {closest!r}, not {frame!r}"
    return f"{kind.value}: {last}"


# -- the table ---------------------------------------------------------------------------------


def default_directory() -> Path | None:
    """The checkout's ``tests/data/vectors`` when this relay runs from a source checkout, else ``None``."""
    return REPOSITORY_VECTORS if REPOSITORY_VECTORS.is_dir() else None


def vector_table(directory: Path) -> list[Row]:
    """One :class:`Row` per protocol found in ``directory/*.jsonl``, in protocol name order.

    Device rows are decoded with ``protocol="auto"`` through every registered driver, as on the
    relay's single port; a protocol without a registered driver still gets a row (nothing detected).

    :raises VectorFileError: not a directory, no vector file in it, or a file is unreadable.
    """
    if not Path(directory).is_dir():
        raise VectorFileError(f"{directory}: not a directory")
    paths = sorted(Path(directory).glob("*.jsonl"))
    if not paths:
        raise VectorFileError(f"{directory}: no *.jsonl vector files")
    by_protocol: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for path in paths:
        for number, row in load_rows(path):
            by_protocol.setdefault(str(row["protocol"]), []).append((number, row))
    registered = drivers()
    return [
        _protocol_row(protocol, rows, protocol in registered)
        for protocol, rows in sorted(by_protocol.items())
    ]


def _protocol_row(protocol: str, rows: Sequence[tuple[int, dict[str, Any]]], registered: bool) -> Row:
    frames = detected = agreeing = commands = not_mapped = reproduced = 0
    disagreements: list[Disagreement] = []
    failures: list[Disagreement] = []
    for number, row in rows:
        direction = row.get("direction", DEVICE_TO_SERVER)
        if direction == DEVICE_TO_SERVER:
            frames += 1
            out = decode_row(row)
            problems = mismatches(row, out)
            detected += out["protocol"] == protocol
            if problems:
                disagreements.append(Disagreement(number, "; ".join(problems)))
            else:
                agreeing += 1
        elif direction == SERVER_TO_DEVICE and row.get("kind") == "command":
            commands += 1
            kind = command_type(row)
            if kind is None:
                not_mapped += 1
                continue
            why = check_command(row, kind)
            if why is None:
                reproduced += 1
            else:
                failures.append(Disagreement(number, why))
    return Row(
        protocol=protocol,
        registered=registered,
        frames=frames,
        detected=detected,
        agreeing=agreeing,
        disagreements=tuple(disagreements),
        commands=commands,
        commands_not_mapped=not_mapped,
        commands_reproduced=reproduced,
        command_failures=tuple(failures),
    )


def format_table(rows: Sequence[Row]) -> str:
    """Markdown: ``protocol | frames | detected | agreeing`` with a total, then the command check."""
    lines = ["| protocol | frames | detected | agreeing |", "|---|---:|---:|---:|"]
    for row in rows:
        name = row.protocol if row.registered else f"{row.protocol} (no driver)"
        lines.append(
            f"| {name} | {row.frames} | {_share(row.detected, row.frames)} | "
            f"{_share(row.agreeing, row.frames)} |"
        )
    frames = sum(row.frames for row in rows)
    detected = sum(row.detected for row in rows)
    agreeing = sum(row.agreeing for row in rows)
    lines.append(f"| **total** | {frames} | {_share(detected, frames)} | {_share(agreeing, frames)} |")
    lines += ["", "| protocol | commands | not mapped | reproduced |", "|---|---:|---:|---:|"]
    for row in rows:
        if row.commands:
            lines.append(
                f"| {row.protocol} | {row.commands} | {row.commands_not_mapped} | "
                f"{_share(row.commands_reproduced, row.commands_mapped)} |"
            )
    return "\n".join(lines)


def _share(part: int, whole: int) -> str:
    if not whole:
        return f"{part}"
    return f"{part} ({100 * part / whole:.0f}%)"
