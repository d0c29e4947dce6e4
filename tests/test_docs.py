"""The docs keep up with the code: every config key (walked from the settings dataclasses) is in the
annotated config/relay.toml and in the README, and every `relay` subcommand (walked from the argparse
parser) has its row in the README's command table."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from pathlib import Path

from relay.config import keys

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
ANNOTATED = (ROOT / "config" / "relay.toml").read_text(encoding="utf-8")

_HEADER = re.compile(r"^\[\[?([\w.]+)\]\]?")
_KEY = re.compile(r"^([A-Za-z_]\w*)\s*=\s*(.*)")


def _annotated_keys(text: str) -> set[tuple[str, str]]:
    """``(section, key)`` for every key line of a TOML file, commented out or not. A ``[[sinks]]``
    table's section is ``sinks.<its type>``."""
    found: set[tuple[str, str]] = set()
    section, block, sink_type = "relay", [], None

    def close() -> None:
        if section == "sinks":
            found.update((f"sinks.{sink_type}", key) for key in block)

    for line in text.splitlines():
        line = line.lstrip("# \t")
        if header := _HEADER.match(line):
            close()
            section, block, sink_type = header[1], [], None
            parent, dot, table_key = section.rpartition(".")
            if dot:  # [modem.senders]: the key senders of [modem]
                found.add((parent, table_key))
        elif key := _KEY.match(line):
            block.append(key[1])
            if section == "sinks" and key[1] == "type":
                sink_type = key[2].split("#")[0].strip().strip('"')
            if section != "sinks":
                found.add((section, key[1]))
    close()
    return found


def _readme_section(heading: str) -> str:
    start = README.index(heading)
    end = README.find("\n#", start + len(heading))
    return README[start : end if end >= 0 else None]


def test_every_config_key_is_in_the_annotated_config() -> None:
    annotated = _annotated_keys(ANNOTATED)
    missing = [f"{key.section}.{key.name}" for key in keys() if (key.section, key.name) not in annotated]
    assert missing == [], f"add these keys (commented out is fine) to config/relay.toml: {missing}"


def test_every_config_key_is_in_the_readme() -> None:
    sink_keys = _readme_section("### Sink keys")
    every_sink = sink_keys[: sink_keys.index("| type |")]
    rows = {line.split("|")[1].strip(): line for line in sink_keys.splitlines() if line.startswith("| ")}
    missing = []
    for key in keys():
        mention = f"`{key.name}`"
        if key.section.startswith("sinks."):
            where = every_sink + rows.get(key.section.removeprefix("sinks."), "")
        else:
            where = README
        if mention not in where:
            missing.append(f"{key.section}.{key.name}")
    assert missing == [], f"say what these keys do in the README (sinks: in the Sink keys table): {missing}"


def _commands(parser: argparse.ArgumentParser, prefix: str = "relay") -> Iterator[tuple[str, list[str]]]:
    """Every ``relay`` command as ``(its words, the subcommands it has)``."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                subs = [
                    choice
                    for inner in sub._actions
                    if isinstance(inner, argparse._SubParsersAction)
                    for choice in inner.choices
                ]
                yield f"{prefix} {name}", subs
                yield from _commands(sub, f"{prefix} {name}")


def test_every_subcommand_has_a_row_in_the_readme_command_table() -> None:
    from relay.cli._main import _parser

    table = _readme_section("## Two commands")
    rows = [line for line in table.splitlines() if line.startswith("| `relay ")]
    missing = []
    for command, subcommands in _commands(_parser()):
        mentioned = [row for row in rows if re.search(rf"`{re.escape(command)}[ `\\]", row)]
        if not mentioned and command.count(" ") == 1:
            missing.append(command)
        for sub in subcommands:
            if not any(re.search(rf"\b{re.escape(sub)}\b", row) for row in mentioned):
                missing.append(f"{command} {sub}")
    assert missing == [], f"add these commands to the README's command table: {missing}"
    assert len(rows) >= 10


def commands_table() -> str:
    """The README's "Supported commands per protocol" table, made from the drivers' declarations (each
    session's ``supported_commands`` and ``sms_commands``, and ``drivers._commands.PARAMETERS``).
    ``python -m tests.test_docs`` prints it."""
    import drivers
    from drivers import Via
    from drivers._commands import PARAMETERS

    def parameters(params: tuple) -> str:
        described = [f"`{p.name}`{'' if p.required else ' (optional)'}: {p.doc}" for p in params]
        return "; ".join(described) or "none"

    rows = ["| command type | over data | by SMS | parameters |", "|---|---|---|---|"]
    for kind, params in PARAMETERS.items():
        data = [name for name in drivers.drivers() if kind in drivers.supported_commands(name, Via.DATA)]
        sms = [name for name in drivers.drivers() if kind in drivers.supported_commands(name, Via.SMS)]
        cells = [f"`{kind.value}`", ", ".join(data) or "—", ", ".join(sms) or "—", parameters(params)]
        rows.append(f"| {' | '.join(cells)} |")
    return "\n".join(rows)


def test_the_readme_command_table_is_the_drivers_declarations() -> None:
    section = _readme_section("## Supported commands per protocol")
    assert commands_table() in section, (
        "the README's command table differs from the drivers; replace it with `python -m tests.test_docs`"
    )


def test_the_readme_says_which_commands_each_protocol_answers() -> None:
    """The protocols table's last column follows each session's ``answered_commands``; a protocol that
    takes no command is named as such."""
    import drivers
    from drivers import Via
    from drivers._registry import _DRIVERS

    section = _readme_section("## Supported commands per protocol")
    lines = [line.split("|") for line in section.splitlines() if line.startswith("| `")]
    rows = {cells[1].strip(" `"): cells for cells in lines}
    wrong = []
    for name in drivers.drivers():
        supported = drivers.supported_commands(name, Via.DATA) | drivers.supported_commands(name, Via.SMS)
        if not supported:
            if f"`{name}` takes no commands" not in section:
                wrong.append(f"{name}: say it takes no commands")
            continue
        if name not in rows:
            wrong.append(f"{name}: no row")
            continue
        answer = rows[name][4].strip()
        answered = _DRIVERS[name].session.answered_commands
        if not answered:
            ok = answer == "none decoded"
        elif answered == _DRIVERS[name].session.supported_commands:
            ok = answer.startswith("every command")
        else:
            ok = all(f"`{kind.value}`" in answer for kind in answered) and not answer.startswith("every")
        if not ok:
            wrong.append(f"{name}: answers {sorted(k.value for k in answered)}, the README says {answer!r}")
    assert wrong == []


if __name__ == "__main__":
    print(commands_table())
