"""Options several `vacnn` commands share."""

from __future__ import annotations

import argparse


def add_config_options(parser: argparse.ArgumentParser, config_help: str, set_help: str, metavar: str | None = None) -> None:
    """``--config FILE`` and repeatable ``--set KEY=VALUE`` (into ``args.config`` / ``args.overrides``)."""
    parser.add_argument("--config", default=None, metavar=metavar, help=config_help)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=set_help)
