"""Which runs a table needs and running them: every unit claimed, so that workers sharing the
output folder (``--jobs``, ``--shard``) never train one twice.

A table states its runs (:class:`Need`); :func:`run_needs` runs them in this process and waits
for units other workers hold, :func:`work_needs` is one worker of several. The runs themselves
go through :func:`vacnn_tf.training.pretraining.pretrain` / :func:`vacnn_tf.training.finetuning.finetune`.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence

from vacnn_tf.config import RunConfig, replace
from vacnn_tf.corpora.labels import PRETRAIN_CORPORA
from vacnn_tf.training.workers import Shard, until_done

if TYPE_CHECKING:
    from vacnn_tf.training.caches import CacheNeed
    from vacnn_tf.training.claims import Claims
    from vacnn_tf.training.progress import Progress, Unit


@dataclass(frozen=True)
class Need:
    """One row group of a table: a fine-tuning run (target, variant, overrides) or the pretraining."""

    key: str  # the method / variant id used in the table (e.g. "vacnn_bovw", "pure")
    target: str  # ravdess | emodb | savee | pretrain
    variant: str = "finetuned"  # finetuned | pure | pretrain
    overrides: Mapping[str, Any] = field(default_factory=dict)

    def corpora(self) -> tuple[str, ...]:
        if self.target == "pretrain":
            return PRETRAIN_CORPORA
        if self.variant == "finetuned":
            # dict.fromkeys: the RAVDESS target is also a pretraining corpus; name it once
            return tuple(dict.fromkeys((self.target,) + PRETRAIN_CORPORA))
        return (self.target,)


@dataclass
class Outcome:
    """A need's result: the run directory of each seed, or why it was not run."""

    need: Need
    run_dir: Optional[Path] = None  # the first seed's run: what the per-class and confusion tables show
    missing: tuple[str, ...] = ()
    error: str = ""
    seed_runs: tuple[Path, ...] = ()  # one run per seed, in --seeds order (empty: run_dir alone)
    seeds: tuple[int, ...] = ()  # the seeds asked for (empty: the config's one seed)
    ensemble: bool = False  # --ensemble: accuracy tables add the seed ensemble's row
    held: bool = False  # not finished: other workers hold some of its units (a --shard worker's view)

    @property
    def several_seeds(self) -> bool:
        return len(self.seeds) > 1

    @property
    def ok(self) -> bool:
        return self.run_dir is not None

    @property
    def status(self) -> str:
        if self.ok:
            return "ok"
        if self.missing:
            return f"not run: corpora missing under --data-root: {', '.join(self.missing)}"
        if self.held:
            return "not finished: other workers hold some of its trainings"
        return f"failed: {self.error}"


def available_corpora(config: RunConfig) -> set[str]:
    """Corpora present under the data root (all four for the synthetic corpus)."""
    if config.data.data_root is None:
        return {"ravdess", "emodb", "tess", "savee"}
    root = Path(config.data.data_root)
    return {name for name in ("ravdess", "emodb", "tess", "savee") if (root / name).is_dir()}


def run_needs(config: RunConfig, needs: Sequence[Need], force: bool = False,
              seeds: Sequence[int] = ()) -> list[Outcome]:
    """Run (or reuse) every need whose corpora are present, once per seed; report the others with the reason.

    Seed by seed, so that the first seed's runs are all there before the next seed starts. A need
    that fails for one seed is not run for the seeds after it: its row needs every seed. One line
    is printed as each training starts (:mod:`vacnn_tf.training.progress`): which, of how many, and the
    time left. Each unit is claimed first (:mod:`vacnn_tf.training.claims`), so a unit that workers
    sharing ``config.out`` hold is waited for, not trained twice; ``force`` claims nothing (it
    must run alone).
    """
    grid = _Grid.plan(config, needs, tuple(seeds) or (config.seed,), force, "[reproduce]")
    with _claims(force, "") as claims:
        until_done(lambda: grid.step(claims, pretrainings_first=False), shard=None, note=grid.say)
    return grid.outcomes()


def work_needs(config: RunConfig, needs: Sequence[Need], shard: Shard, seeds: Sequence[int] = ()) -> list[Outcome]:
    """Be worker ``shard`` of a grid other workers share: train the units nobody else holds.

    Pretrainings are taken first, then the folds whose pretraining is finished; a fold whose
    pretraining another worker holds is waited for. Returns when every unit is finished or held
    by another live worker; needs not finished yet have ``held`` outcomes.
    """
    grid = _Grid.plan(config, needs, tuple(seeds) or (config.seed,), False, f"[reproduce] shard {shard}:", shard.count)
    with _claims(False, f"shard {shard}") as claims:
        until_done(lambda: grid.step(claims, pretrainings_first=True), shard=shard, note=grid.say)
    return grid.outcomes()


def _claims(force: bool, name: str) -> Any:
    from vacnn_tf.training.claims import Claims

    return contextlib.nullcontext() if force else Claims(name)


@dataclass
class _Grid:
    """The needs of a table, per seed, and what became of each while workers take their units."""

    config: RunConfig
    needs: Sequence[Need]
    seeds: tuple[int, ...]
    force: bool
    label: str
    missing: list[tuple[str, ...]]
    plans: list[tuple[int, int, RunConfig, list["Unit"]]]  # (seed index, need index, config, units)
    progress: "Progress"
    runs: list[list[Optional[Path]]] = field(default_factory=list)  # per need, per seed
    errors: dict[int, str] = field(default_factory=dict)

    @classmethod
    def plan(cls, config: RunConfig, needs: Sequence[Need], seeds: tuple[int, ...], force: bool, label: str,
             workers: int = 1) -> "_Grid":
        from vacnn_tf.training.progress import Progress
        from vacnn_tf.training.run_dirs import is_done

        present = available_corpora(config)
        missing = [tuple(c for c in need.corpora() if c not in present) for need in needs]
        runnable = [(i, need) for i, need in enumerate(needs) if not missing[i]]
        plans = _plans(config, runnable, seeds, force)
        progress = Progress([u for *_, units in plans for u in units], emit=lambda line: print(f"{label} {line}", flush=True),
                            finished=lambda key: is_done(Path(key)), workers=workers)
        return cls(config, needs, seeds, force, label, missing, plans, progress, [[None] * len(seeds) for _ in needs])

    def say(self, line: str) -> None:
        print(f"{self.label} {line}", flush=True)

    def step(self, claims: Any, pretrainings_first: bool) -> None:
        """One pass over every unit not finished; raises UnitsHeld when some are held elsewhere."""
        from vacnn_tf.training.claims import UnitsHeld
        from vacnn_tf.training.pretraining import pretrain

        held: list[UnitsHeld] = []
        for s, i, cfg, units in (self.plans if pretrainings_first else ()):
            for unit in (u for u in units if u.pretraining and i not in self.errors):
                try:
                    pretrain(cfg, exclude_speakers=dict(unit.exclude), resume=True, progress=self.progress, claims=claims)
                except UnitsHeld as err:
                    held.append(err)
                except Exception as err:  # noqa: BLE001 - one failed run must not lose the others' results
                    self._fail(i, s, err)
        for s, seed in enumerate(self.seeds):
            for i, need in enumerate(self.needs):
                if self.missing[i] or i in self.errors or self.runs[i][s] is not None:
                    continue
                try:
                    cfg = replace(self.config, seed=seed, **dict(need.overrides))
                    self.runs[i][s] = _run_need(cfg, need, self.force, self.progress, claims)
                except UnitsHeld as err:
                    held.append(err)
                except Exception as err:  # noqa: BLE001 - one failed run must not lose the others' results
                    self._fail(i, s, err)
        if held:
            raise UnitsHeld.merge(held)

    def _fail(self, i: int, s: int, err: Exception) -> None:
        need = self.needs[i]
        where = f" (seed {self.seeds[s]})" if len(self.seeds) > 1 else ""
        self.errors[i] = f"{type(err).__name__}: {err}{where}"
        print(f"{self.label} {need.key} on {need.target} failed: {self.errors[i]}", file=sys.stderr)

    def outcomes(self) -> list[Outcome]:
        outcomes = []
        for i, need in enumerate(self.needs):
            runs = self.runs[i]
            if self.missing[i] or i in self.errors:
                outcomes.append(Outcome(need, missing=self.missing[i], error=self.errors.get(i, ""), seeds=self.seeds))
            elif None in runs:
                outcomes.append(Outcome(need, held=True, seeds=self.seeds))
            else:
                outcomes.append(Outcome(need, run_dir=runs[0], seed_runs=tuple(runs), seeds=self.seeds))
        return outcomes


def _plans(config: RunConfig, needs: Sequence[tuple[int, Need]], seeds: Sequence[int],
           force: bool) -> list[tuple[int, int, RunConfig, list["Unit"]]]:
    """Per seed and need (by its index): its config and the trainings it will run, in order."""
    from vacnn_tf.training.progress import plan_finetune, plan_pretrain

    plans = []
    tables: dict[tuple[object, ...], Any] = {}
    for s, seed in enumerate(seeds):
        for i, need in needs:
            cfg = replace(config, seed=seed, **dict(need.overrides))
            try:
                units = (plan_pretrain(cfg, force=force) if need.variant == "pretrain"
                         else plan_finetune(cfg, need.target, need.variant, force=force, tables=tables))
            except Exception:  # noqa: BLE001 - a need that cannot be planned fails when it runs, and says why there
                continue
            plans.append((s, i, cfg, units))
    return plans


def plan_needs(config: RunConfig, needs: Sequence[Need], seeds: Sequence[int], force: bool) -> list["Unit"]:
    """The trainings ``needs`` will run, in order, as :class:`vacnn_tf.training.progress.Unit`."""
    return [u for _, u in planned_units(config, needs, seeds, force)]


def planned_units(config: RunConfig, needs: Sequence[Need], seeds: Sequence[int],
                  force: bool) -> list[tuple[RunConfig, "Unit"]]:
    """:func:`plan_needs`, each unit with the configuration that trains it."""
    return [(cfg, u) for _, _, cfg, units in _plans(config, list(enumerate(needs)), seeds, force) for u in units]


def _run_need(config: RunConfig, need: Need, force: bool, progress: Optional["Progress"] = None,
              claims: Optional["Claims"] = None) -> Path:
    from vacnn_tf.training.finetuning import finetune
    from vacnn_tf.training.pretraining import pretrain

    if need.variant == "pretrain":
        return Path(pretrain(config, resume=True, force=force, progress=progress, claims=claims))
    return Path(finetune(config, need.target, variant=need.variant, resume=True, force=force,
                         progress=progress, claims=claims).run_dir)


def grid_cache_needs(config: RunConfig, needs: Sequence[Need], seeds: Sequence[int]) -> list["CacheNeed"]:
    """What the runnable ``needs`` read from the feature caches, per seed (filled before ``--jobs`` workers start)."""
    from vacnn_tf.training.caches import cache_needs

    present = available_corpora(config)
    out = []
    for seed in seeds or (config.seed,):
        for need in needs:
            if all(c in present for c in need.corpora()):
                cfg = replace(config, seed=seed, **dict(need.overrides))
                out += cache_needs(cfg, "pretrain" if need.variant == "pretrain" else need.target, need.variant)
    return out


def clear_runs(config: RunConfig, needs: Sequence[Need], seeds: Sequence[int]) -> None:
    """Delete the run directories ``needs`` write (``--force``; the pretrainings fine-tunings use are kept)."""
    import shutil

    from vacnn_tf.training.claims import claims_dir
    from vacnn_tf.training.run_dirs import finetune_dir, pretrain_dir

    for seed in seeds:
        for need in needs:
            cfg = replace(config, seed=seed, **dict(need.overrides))
            path = pretrain_dir(cfg) if need.variant == "pretrain" else finetune_dir(cfg, need.target, need.variant)
            shutil.rmtree(path, ignore_errors=True)
            shutil.rmtree(claims_dir(path), ignore_errors=True)
