"""The options are generated from the settings dataclasses, and library messages come back in flags:
a strategy's settings have their own namespace (``--der.alpha``), the short flag where it is unambiguous,
every run setting also under its part (``--train.lr``), and an error names the flag the user typed."""

from __future__ import annotations

import pytest

from lifelong.cli import build_parser, config_of, console_main, main
from lifelong.cli.options import render
from lifelong.errors import SettingError, UsageError
from tests.helpers import TINY

DATA = ["--data-dir", str(TINY), "--no-download"]


def test_each_part_of_a_composite_has_its_own_namespace():
    cfg = config_of(["--strategy", "der+lwf", "--der.alpha", "0.3", "--lwf.alpha", "2", *DATA])
    der, lwf = cfg.strategy.parts
    assert (der.alpha, lwf.alpha) == (0.3, 2.0)
    # the short flag where one meaning is meant: EWC's λ, and every part's when the parts agree on it
    assert config_of(["--strategy", "ewc", "--lambda", "7", *DATA]).strategy.lam == 7.0
    assert config_of(["--strategy", "ewc", "--ewc.lam", "7", *DATA]) == config_of(["--strategy", "ewc", "--lambda", "7",
                                                                                   *DATA])
    both = config_of(["--strategy", "ewc+l2", "--lambda", "3", "--l2.lam", "0.5", *DATA]).strategy.parts
    assert (both[0].lam, both[1].lam) == (3.0, 0.5)  # the dotted one wins for its part


def test_run_settings_are_also_named_by_their_part():
    short = config_of(["--lr", "0.01", "--batch-size", "32", "--hidden", "64,64", *DATA])
    dotted = config_of(["--train.lr", "0.01", "--train.batch-size", "32", "--model.hidden", "64,64", *DATA])
    assert short == dotted and short.train.lr == 0.01 and short.model.hidden == (64, 64)


def test_a_flag_shared_by_the_parts_of_a_composite_is_refused_naming_the_dotted_ones(capsys):
    assert console_main(["run", "--strategy", "der+lwf", "--alpha", "0.5", *DATA]) == 2
    err = capsys.readouterr().err
    assert "in der+lwf it means different things to der and lwf; name the part: --der.alpha or --lwf.alpha" in err
    assert err.count("\n") == 1


def test_library_messages_are_rewritten_in_the_flags_the_user_typed():
    _, flags = build_parser(["ewc", "der"])
    e = SettingError("ewc", "lam", "must be >= 0, got -1")
    assert render(e, flags) == "--lambda must be >= 0, got -1"
    assert render(e, flags, ["--ewc.lam", "-1"]) == "--ewc.lam must be >= 0, got -1"
    assert render(e.within("sweep run 2 of 3"), flags) == "sweep run 2 of 3: --lambda must be >= 0, got -1"
    quoted = UsageError("runs/x holds another run; choose another `out` or pass `overwrite=True`")
    assert quoted.params == ("out", "overwrite")
    assert render(quoted, flags) == "runs/x holds another run; choose another --out or pass --overwrite"
    switch = UsageError("no data here; allow `download=True`, or give `data_dir=/data/mnist`")
    assert render(switch, flags) == "no data here; allow --download, or give --data-dir /data/mnist"
    assert render(UsageError("`download=False` means offline"), flags) == "--no-download means offline"
    plain = UsageError("lr is the learning rate")  # a word that is not quoted is left alone
    assert render(plain, flags) == "lr is the learning rate"


def test_a_folder_of_another_run_names_the_flags_on_the_command_line_and_the_parameters_in_python(tmp_path, capsys):
    from lifelong.experiments import RunConfig, run

    out = tmp_path / "r"
    args = ["run", "--benchmark", "split-mnist", "--tasks", "1", "--iterations", "1", "--hidden", "8",
            "--no-progress", "--out", str(out), *DATA]
    main(args)
    assert console_main([*args, "--seed", "4"]) == 2
    assert "choose another --out or pass --overwrite" in capsys.readouterr().err
    cfg = RunConfig.make(benchmark="split-mnist", tasks=1, iterations=1, hidden=(8,), out=str(out), seed=4,
                         data_dir=str(TINY), download=False)
    with pytest.raises(UsageError, match="choose another `out` or pass `overwrite=True`"):
        run(cfg)


def test_sweep_set_with_a_part_varies_that_part_only(tmp_path):
    from lifelong.cli.sweep import parse_set
    from lifelong.experiments.grid import expand

    assert parse_set("der.alpha=0.1,1") == (None, "der.alpha", [0.1, 1.0])
    cfgs = expand({"base": {"benchmark": "split-mnist", "tasks": 2, "data_dir": str(TINY)},
                   "grid": [{"strategy": "der+lwf", "der.alpha": [0.1, 1.0]}], "seeds": [0]})
    assert [(c.strategy.parts[0].alpha, c.strategy.parts[1].alpha) for c in cfgs] == [(0.1, 1.0), (1.0, 1.0)]
    with pytest.raises(UsageError, match="alpha"):  # the bare name means different things to der and lwf
        expand({"base": {"benchmark": "split-mnist", "tasks": 2, "data_dir": str(TINY)},
                "grid": [{"strategy": "der+lwf", "alpha": [0.1, 1.0]}], "seeds": [0]})
