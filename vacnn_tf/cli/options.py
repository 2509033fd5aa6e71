"""Options several `vacnn` commands share, and how flags and ``--set`` combine.

One precedence rule for ``vacnn`` and ``python -m reproduce.tableN`` alike: the defaults, then
the profile or ``--config`` file, then the command line, where ``--set KEY=VALUE`` and the option
flags that stand for a config key (``--protocol`` for ``protocol.name``, ...) are of equal rank.
A flag not given changes nothing; a flag and a ``--set`` that give one key two values are an
error, never a silent choice (:func:`with_flags`).
"""

from __future__ import annotations

import argparse
from typing import Any, Mapping, Optional, Sequence


def add_config_options(parser: argparse.ArgumentParser, config_help: str, set_help: str, metavar: str | None = None) -> None:
    """``--config FILE`` and repeatable ``--set KEY=VALUE`` (into ``args.config`` / ``args.overrides``)."""
    parser.add_argument("--config", default=None, metavar=metavar, help=config_help)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=set_help)


def with_flags(overrides: Sequence[str], flags: Mapping[str, tuple[str, Optional[Any]]]) -> list[str]:
    """The ``--set`` overrides followed by the given flags, written as overrides of their keys.

    Args:
        overrides: ``--set`` texts, ``section.key=value``.
        flags: Config key -> (the flag as the user types it, its value, or None when the flag was
            not given), e.g. ``{"protocol.name": ("--protocol", args.protocol)}``; a flag's
            ``default`` must be None for "not given" to be told apart from a default.

    Returns:
        Overrides for :func:`vacnn_tf.config.load_config`.

    Raises:
        ConfigError: a flag and a ``--set`` of its key disagree (values compared as parsed, so
            ``--seed 7`` and ``--set seed=7`` agree).
    """
    from vacnn_tf.config import ConfigError, parse_override

    given = {}
    for text in overrides:
        key, value = parse_override(text)
        given[key] = (text, value)  # of two --set of one key the last wins, as in load_config
    merged = list(overrides)
    for key, (flag, value) in flags.items():
        if value is None:
            continue
        text = f"{key}={value}"
        ours = parse_override(text)[1]
        if key in given and given[key][1] != ours:
            raise ConfigError(f"{flag} and --set {given[key][0]} disagree: the flag gives {key}={ours!r}, the --set "
                              f"{key}={given[key][1]!r}. Keep one of them.")
        merged.append(text)
    return merged
