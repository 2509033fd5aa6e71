import dataclasses
import re
import typing
from pathlib import Path

import pytest

from vacnn_tf.config import ConfigError, RunConfig, load_config, packaged_configs, reference_markdown, replace


def test_defaults_follow_the_paper():
    cfg = RunConfig()
    assert cfg.features.n_fft == 2048 and cfg.features.hop_length == 512
    assert cfg.features.image_size == 224
    assert cfg.train.batch_size == 8 and cfg.train.learning_rate == 1e-3
    assert cfg.model.l2 == 1e-4 and cfg.bovw.k == 128 and cfg.protocol.folds == 5


def test_yaml_then_overrides(tmp_path: Path):
    path = tmp_path / "c.yaml"
    path.write_text("seed: 7\ntrain:\n  epochs: 4\nprotocol:\n  name: speaker\n")
    cfg = load_config(path, ["train.epochs=2", "features.fmax=8000", "data.data_root=null"])
    assert cfg.seed == 7 and cfg.train.epochs == 2 and cfg.protocol.name == "speaker"
    assert cfg.features.fmax == 8000.0 and cfg.data.data_root is None


@pytest.mark.parametrize(
    "override, message",
    [("train.epoch=3", "Unknown config key"), ("train.epochs=abc", "expects an integer"),
     ("model.use_bovw=3", "expects true or false"), ("noequals", "section.key=value"),
     ("model.attention_gate_bias=abc", "expects a number"),
     ("train.patience=0", r"train.patience must be 1 or more .*Received: patience=0"),
     ("train.pretrain_patience=-1", "train.pretrain_patience must be 1 or more"),
     ("protocol.max_folds=0", r"protocol.max_folds must be 1 or more, or null .*Received: max_folds=0"),
     ("seed=-1", r"Config key .seed. must be a whole number, 0 or more. Received: seed=-1")],
)
def test_bad_overrides_are_named(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=[override])


def test_replace_with_dotted_keys():
    cfg = replace(RunConfig(), **{"train.epochs": 3, "seed": 1})
    assert cfg.train.epochs == 3 and cfg.seed == 1 and cfg.train.batch_size == 8


def test_configuration_reference_is_current():
    doc = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
    assert doc.read_text() == reference_markdown(), "run `make docs-config` to regenerate"


@pytest.mark.parametrize("name", packaged_configs())
def test_every_shipped_config_loads_from_any_folder(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    assert isinstance(load_config(name), RunConfig)


def test_a_file_on_disk_wins_over_the_shipped_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "demo.yaml").write_text("seed: 3\n")
    assert load_config("configs/demo.yaml").seed == 3


@pytest.mark.parametrize(
    "path, overrides, message",
    [("configs/dmeo.yaml", [], r"Config file not found: configs/dmeo.yaml; did you mean configs/demo.yaml\?"),
     (None, ["model.dense_unit=3"], r"Did you mean model.dense_units\?"),
     (None, ["trian.epochs=3"], r"Did you mean train\?")],
)
def test_near_misses_get_a_suggestion(path, overrides, message):
    with pytest.raises(ConfigError, match=message) as raised:
        load_config(path, overrides)
    assert "\n" not in str(raised.value)


ENUMERATED = {
    "profile": "paper", "features.resize": "linear", "bovw.normalization": "l1", "bovw.kmeans": "minibatch",
    "model.architecture": "vacnn", "model.state_pooling": "flatten", "model.input_norm": "scale",
    "model.bovw_input": "raw", "train.select_on": "accuracy", "train.precision": "float32",
    "train.strategy": "default", "train.batch_per": "replica", "train.class_weight": "none", "protocol.name": "paper",
}


def _settings(cls: type = RunConfig, prefix: str = "") -> dict[str, dataclasses.Field]:
    """Every field of ``cls`` by dotted key, sub-configs included both as a field and walked."""
    found: dict[str, dataclasses.Field] = {}
    for f in dataclasses.fields(cls):
        found[prefix + f.name] = f
        sub = typing.get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(sub):
            found.update(_settings(sub, f"{prefix}{f.name}."))
    return found


@pytest.mark.parametrize("key", sorted(_settings()))
def test_every_setting_is_documented(key: str):
    assert _settings()[key].metadata.get("doc", "").strip(), f"{key} has no doc in its field metadata"


def test_every_setting_with_choices_is_checked_below():
    with_choices = {key: f.default for key, f in _settings().items() if "choices" in f.metadata}
    assert with_choices == ENUMERATED


@pytest.mark.parametrize("key", sorted(ENUMERATED))
def test_every_enumerated_setting_is_checked_when_the_config_is_built(key: str):
    assert load_config(None, [f"{key}={ENUMERATED[key]}"])  # the default is allowed
    with pytest.raises(ConfigError, match=rf"Config key '{key}' must be one of \[.*'{ENUMERATED[key]}'.*\]\. "
                                          rf"Received: {key}='flaten'$"):
        load_config(None, [f"{key}=flaten"])


def test_a_state_pooling_typo_stops_at_the_config():
    with pytest.raises(ConfigError, match="model.state_pooling") as raised:
        load_config(None, ["model.state_pooling=flaten"])
    assert "['flatten', 'gap', 'time_gap']" in str(raised.value)


def test_allowed_values_have_one_owner():
    from vacnn_tf import config  # not fitting or the networks: they load TensorFlow
    from vacnn_tf.cli.model import MODEL_CHOICES
    from vacnn_tf.datasets import folds
    from vacnn_tf.features import bovw
    from vacnn_tf.models import runtime

    assert folds.PROTOCOLS is config.PROTOCOLS and runtime.PRECISIONS is config.PRECISIONS
    assert bovw.BOVW_NORMALIZATIONS is config.BOVW_NORMALIZATIONS and bovw.KMEANS_MODES is config.KMEANS_MODES
    assert MODEL_CHOICES == (*config.ARCHITECTURES, "finetuned")


@pytest.mark.parametrize("size", [64, 96, 128, 224, 256])
def test_image_size_takes_multiples_of_32_from_64(size: int):
    assert load_config(None, [f"features.image_size={size}"]).features.image_size == size


@pytest.mark.parametrize("size", [112, 48, 100, 0])
def test_image_size_off_the_vacnn_strides_is_refused(size: int):
    with pytest.raises(ConfigError, match=rf"must be a multiple of 32 of at least 64 .*Received: features\.image_size={size}$"):
        load_config(None, [f"features.image_size={size}"])


def test_from_dict_checks_as_a_config_file_does(tmp_path: Path):
    from dataclasses import asdict

    from vacnn_tf.config import FeatureConfig, from_dict

    stored = asdict(FeatureConfig(n_mels=64))
    assert from_dict(FeatureConfig, stored, "features.") == FeatureConfig(n_mels=64)
    source = tmp_path / "feature_config.json"
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(source))}: Unknown config key\(s\) \['features.n_melz'\]"):
        from_dict(FeatureConfig, {**stored, "n_melz": 32}, "features.", source=source)
    with pytest.raises(ConfigError, match="Received: features.resize='bilinear'"):
        from_dict(FeatureConfig, {**stored, "resize": "bilinear"}, "features.")



def test_a_bad_choice_is_refused_however_the_config_is_built():
    from vacnn_tf.config import TrainConfig

    with pytest.raises(ConfigError, match=r"^Config key 'train.strategy' must be one of \['default', 'mirrored'\]\. "
                                          r"Received: train.strategy='mirored'$"):
        replace(RunConfig(), **{"train.strategy": "mirored"})
    with pytest.raises(ConfigError, match=r"^Config key 'train.batch_per' must be one of"):
        TrainConfig(batch_per="local")


# Marking a setting neutral, or keyed only off its default, changes the run key of every run made
# with it set otherwise: the lists are pinned here so that such a change is deliberate.
NEUTRAL = {"out": "runs", "data.cache_dir": "cache", "data.workers": 0, "train.verbose": 1,
           "train.steps_per_execution": 4, "train.intra_op_threads": 0, "train.inter_op_threads": 0, "train.jobs": 1}
KEYED_ONLY_OFF_DEFAULT = {"train.strategy": "default", "train.batch_per": "replica", "protocol.first_fold": 0,
                          "train.baseline_epochs": None, "train.jobs": 1, "train.pretrain_patience": None,
                          "train.pretrain_augment": None, "train.pretrain_mixup": None, "train.pretrain_decay_every": None,
                          "model.baseline_image_size": None, "model.residual": False,
                          "model.finetune_fc": True, "model.attention_gate_bias": None, "train.class_weight": "none"}


def test_neutral_and_off_default_settings_are_the_pinned_ones():
    from vacnn_tf.config import keyed_only_off_default, neutral_settings

    assert neutral_settings() == NEUTRAL
    assert keyed_only_off_default() == KEYED_ONLY_OFF_DEFAULT


def _other(value):
    return value + 3 if isinstance(value, int) else f"{value}-elsewhere"


@pytest.mark.parametrize("key", sorted(NEUTRAL))
def test_a_neutral_setting_leaves_the_run_key_alone(key: str):
    from vacnn_tf.training.run_dirs import run_key

    base = RunConfig()
    assert run_key(replace(base, **{key: _other(NEUTRAL[key])})) == run_key(base)
    assert run_key(replace(base, **{key: _other(NEUTRAL[key]), "seed": 1})) == run_key(replace(base, seed=1))


def test_a_setting_keyed_off_default_is_hashed_only_when_changed():
    from vacnn_tf.training.run_dirs import key_tree, run_key

    base = RunConfig()
    assert "strategy" not in key_tree(base)["train"] and "batch_per" not in key_tree(base)["train"]
    mirrored = replace(base, **{"train.strategy": "mirrored"})
    assert key_tree(mirrored)["train"]["strategy"] == "mirrored" and "batch_per" not in key_tree(mirrored)["train"]
    assert len({run_key(base), run_key(mirrored), run_key(replace(mirrored, **{"train.batch_per": "global"}))}) == 3
    assert run_key(replace(base, **{"model.architecture": "resnet"})) != run_key(base)


def test_baseline_epochs_apply_to_the_baselines_alone():
    train = load_config(None, ["train.epochs=20", "train.pretrain_epochs=30", "train.baseline_epochs=8"]).train
    assert (train.epochs_for(False, pretraining=True), train.epochs_for(False, pretraining=False)) == (30, 20)
    assert (train.epochs_for(True, pretraining=True), train.epochs_for(True, pretraining=False)) == (8, 8)
    unset = load_config(None, ["train.epochs=20"]).train
    assert (unset.epochs_for(True, pretraining=True), unset.epochs_for(True, pretraining=False)) == (20, 20)
