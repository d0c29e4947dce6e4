"""What every ``relay`` subcommand shares."""

from __future__ import annotations

import argparse

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
