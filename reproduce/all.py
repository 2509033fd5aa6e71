"""Every table of the paper, sharing one pretraining and one feature cache.

    python -m reproduce.all                                   # demo profile, synthetic corpus
    python -m reproduce.all --data-root ../shared/corpora --profile quick

Prints, at the end, which tables could not be built and why (missing corpora named).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

TABLES = ("table2", "table3", "table4", "table5", "table6", "table7", "table8", "table9", "table10")


def main(argv: list[str] | None = None, tables: tuple[str, ...] = TABLES) -> int:
    argv = sys.argv[1:] if argv is None else argv
    from reproduce.common import make_config, parser
    from vacnn_tf.config import ConfigError
    from vacnn_tf.storage import read_json

    cli = parser("", prog="python -m reproduce.all")
    args = cli.parse_args(argv)
    try:
        make_config(args)  # a bad flag or config stops here, once, not in every table
    except ConfigError as err:
        cli.error(str(err))
    out = Path(args.out)
    codes = {}
    for name in tables:
        module = importlib.import_module(f"reproduce.{name}")
        codes[name] = module.main(argv)
    index = read_json(out / "index.json")["tables"]
    print("\n[reproduce.all] summary:")
    for name in tables:
        runs = index.get(name, {}).get("runs", {})
        missing = {k: r["status"] for k, r in runs.items() if r["status"] != "ok"}
        if not missing:
            print(f"  {name}: built")
            continue
        state = "partly built" if len(missing) < len(runs) else "NOT built"
        print(f"  {name}: {state}; rows not run:")
        for key, status in missing.items():
            print(f"    {key}: {status}")
    return 0 if all(c == 0 for c in codes.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
