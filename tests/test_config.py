from pathlib import Path

import pytest

from vacnn_tf.config import ConfigError, RunConfig, load_config, reference_markdown, replace


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
     ("model.use_bovw=3", "expects true or false"), ("noequals", "section.key=value")],
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
