"""Every table of the paper, sharing one pretraining and one feature cache.

    python -m reproduce.all                                   # demo profile, synthetic corpus
    python -m reproduce.all --data-root DATA --profile quick
    python -m reproduce.all --data-root DATA --jobs 4          # four workers, then every table

Prints, at the end, which tables could not be built and why (missing corpora named).
"""

from __future__ import annotations

import sys
from pathlib import Path

from reproduce.tables import SPECS

TABLES = tuple(SPECS)


def main(argv: list[str] | None = None, tables: tuple[str, ...] = TABLES) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    from reproduce.common import checked_config, clear_grids, parser, run_workers, seeds_of
    from vacnn_tf.storage import read_json

    cli = parser("", prog="python -m reproduce.all")
    args = cli.parse_args(argv)
    config = checked_config(cli, args)  # a bad flag or config stops here, once, not in every table
    specs = {name: SPECS[name] for name in tables}
    grids = [(config, s.needs(config), seeds_of(args, config)) for s in specs.values()]
    if args.jobs > 1:
        # the workers run every table's needs; then each table, alone, finds its runs and renders
        run_workers("reproduce.all", argv, args, grids)
        argv = [a for a in argv if a != "--force"] + ["--jobs", "1"]
    elif args.force:
        # once for every table: the tables share runs, which each table's own --force would train again
        clear_grids(grids)
        argv = [a for a in argv if a != "--force"]
    out = Path(args.out)
    codes = {name: spec.main(argv) for name, spec in specs.items()}
    if args.shard is not None:
        return 0 if all(c == 0 for c in codes.values()) else 1
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
