"""Filling the feature caches once, on every core, before ``--jobs`` workers start.

Every fold of a corpus reads the log-mel images of the whole corpus, and with BOVW its KAZE
descriptors. Workers started on a cold cache would each compute them all, each on its own
share of the cores: N workers doing the same work N times over, N times slower. The command
that starts the workers fills the caches first with every core it has; the workers then read
them. (``--shard`` workers of a cluster job have no such parent: ``vacnn features`` run once
before the job array does the same for the log-mel images.)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional

from vacnn_tf.config import RunConfig
from vacnn_tf.corpora.labels import PRETRAIN_CORPORA

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CacheNeed:
    """What one run reads: ``corpus`` as ``config`` renders it, with its KAZE descriptors when ``descriptors``."""

    config: RunConfig
    corpus: str
    descriptors: bool

    def images_key(self) -> tuple[object, ...]:
        """Two needs with one key read the same cached log-mel images."""
        cfg = self.config
        subsample = cfg.protocol.subsample
        return (self.corpus, cfg.data.data_root, cfg.data.cache_dir, cfg.features.key(), subsample,
                cfg.seed if subsample else None)


def cache_needs(config: RunConfig, target: str, variant: str,
                pretrained: str | Path | None = None) -> list[CacheNeed]:
    """The corpora a ``vacnn finetune`` (``variant`` finetuned, pure or linear) or a pretraining
    (``target`` ``pretrain``) reads: its target, with descriptors where the model uses BOVW, and
    TESS + RAVDESS where it pretrains first (no ``pretrained`` given)."""
    if target == "pretrain":
        return [CacheNeed(config, name, False) for name in PRETRAIN_CORPORA]
    needs = [CacheNeed(config, target, config.model.use_bovw)]
    if variant == "finetuned" and pretrained is None:
        needs += [CacheNeed(config, name, False) for name in PRETRAIN_CORPORA if name != target]
    return needs


def fill_caches(needs: Iterable[CacheNeed], note: Callable[[str], None] = print) -> int:
    """Compute what ``needs`` read into the caches (a cached file is read, not recomputed), each
    corpus rendering read once; the number of renderings. A corpus that cannot be read is left
    to the run that needs it, which reports it with the file and the reason."""
    from vacnn_tf.datasets.loading import load_corpus
    from vacnn_tf.features.bovw import descriptors_for
    from vacnn_tf.features.kaze import kaze_settings_key
    from vacnn_tf.storage import bovw_cache_dir

    groups: dict[tuple[object, ...], list[CacheNeed]] = {}
    for need in needs:
        groups.setdefault(need.images_key(), []).append(need)
    for group in groups.values():
        first = group[0]
        # one descriptor pass per KAZE setting (and cache) among the group's models with BOVW
        kaze = {(kaze_settings_key(n.config.bovw), n.config.data.cache_dir): n for n in group if n.descriptors}
        note(f"[caches] {first.corpus}: log-mel images" + (" and KAZE descriptors" if kaze else "")
             + " on every core, before the workers start")
        try:
            data = load_corpus(first.config, first.corpus)
            for n in kaze.values():
                descriptors_for(data.images, n.config.bovw, cache_dir=bovw_cache_dir(n.config),
                                progress=n.config.train.verbose > 0, workers=n.config.data.workers)
        except (OSError, ValueError) as err:
            log.warning("caches: %s not filled (%s); the workers that need it will say why", first.corpus, err)
    return len(groups)
