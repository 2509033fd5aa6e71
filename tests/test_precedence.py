"""One precedence rule for `vacnn` and `python -m reproduce.tableN`: the profile or --config file,
then --set and the option flags at one rank; a flag not given changes nothing, and a flag and a
--set that disagree are an error."""

from __future__ import annotations

import pytest

from vacnn_tf.config import ConfigError


def _vacnn_config(*argv: str):
    from vacnn_tf.cli import build_parser
    from vacnn_tf.cli.train import _config

    return _config(build_parser().parse_args(["finetune", "--target", "emodb", *argv]))


def _reproduce_config(*argv: str):
    from reproduce.common import make_config, parser

    return make_config(parser("").parse_args(list(argv)))


@pytest.mark.parametrize("config_of", [_vacnn_config, _reproduce_config], ids=["vacnn", "reproduce"])
@pytest.mark.parametrize("argv, protocol", [
    ((), "paper"),
    (("--set", "protocol.name=speaker"), "speaker"),  # no --protocol: its default must not undo the --set
    (("--protocol", "speaker"), "speaker"),
    (("--protocol", "speaker", "--set", "protocol.name=speaker"), "speaker"),
    (("--config", "configs/paper.yaml", "--protocol", "speaker"), "speaker"),  # the flag beats the file
    (("--config", "configs/paper.yaml", "--set", "protocol.name=speaker"), "speaker"),
])
def test_flags_and_set_both_beat_the_file_and_agree(config_of, argv, protocol):
    assert config_of(*argv).protocol.name == protocol


@pytest.mark.parametrize("config_of", [_vacnn_config, _reproduce_config], ids=["vacnn", "reproduce"])
def test_a_flag_and_a_set_that_disagree_are_an_error(config_of):
    with pytest.raises(ConfigError, match=r"--protocol and --set protocol.name=speaker disagree: "
                                          r"the flag gives protocol.name='paper'"):
        config_of("--protocol", "paper", "--set", "protocol.name=speaker")


def test_reproduce_seed_flags_rank_with_set():
    assert _reproduce_config("--set", "seed=7").seed == 7
    assert _reproduce_config("--seed", "7", "--set", "seed=7").seed == 7
    with pytest.raises(ConfigError, match="--seeds and --set seed=7 disagree"):
        _reproduce_config("--seeds", "1,2", "--set", "seed=7")


@pytest.mark.parametrize("key, flag", [("out", "--out"), ("profile", "--profile"), ("data.data_root", "--data-root")])
def test_reproduce_refuses_a_set_of_what_only_its_flags_set(key, flag):
    with pytest.raises(ConfigError, match=f"takes '{key}' from {flag}"):
        _reproduce_config("--set", f"{key}=x")


def test_reproduce_reports_the_conflict_in_one_line(capsys):
    from reproduce import table10

    with pytest.raises(SystemExit) as exit_:
        table10.main(["--protocol", "paper", "--set", "protocol.name=speaker"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("python -m reproduce.table10: error: --protocol and --set")
