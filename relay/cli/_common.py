"""What every ``relay`` subcommand shares."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from ..config import Config, defaults, load

#: What ``relay export --format`` writes.
EXPORT_FORMATS = ("jsonl", "csv", "geojson", "gpx")


def config_from(args: argparse.Namespace) -> Config:
    """The config ``--config`` names (else the embedded defaults), with ``--data-dir`` and ``--port``
    applied."""
    from dataclasses import replace

    config = load(args.config) if getattr(args, "config", None) else defaults()
    if getattr(args, "data_dir", None):
        config = replace(config, data_dir=args.data_dir)
    if getattr(args, "port", None) is not None:
        config = replace(config, listen=replace(config.listen, port=args.port))
    return config


class Deprecated(argparse.Action):
    """A flag kept for one release under its old name: it works as ``instead`` does, and warns."""

    def __init__(self, option_strings: Sequence[str], dest: str, *, instead: str, **kwargs: Any) -> None:
        self.instead = instead
        super().__init__(option_strings, dest, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        print(
            f"warning: {option_string} is deprecated here and will be removed in the next release;"
            f" use {self.instead}",
            file=sys.stderr,
        )
        setattr(namespace, self.dest, values)
