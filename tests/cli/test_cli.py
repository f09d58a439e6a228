"""The `lifelong` command: results folder contents, determinism, and one-line errors for bad input."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from lifelong.cli import console_main, main
from lifelong.errors import TrainingDiverged, UsageError
from tests.helpers import FASHION, TINY

FAST = ["--data-dir", str(TINY), "--no-download", "--no-progress", "--hidden", "32", "--threads", "1"]


@pytest.fixture(autouse=True)
def _no_network_no_home_cache(tmp_path, monkeypatch):
    monkeypatch.delenv("LIFELONG_DATA_DIR", raising=False)
    monkeypatch.setenv("LIFELONG_CACHE_DIR", str(tmp_path / "cache"))


def test_run_writes_a_complete_results_folder(tmp_path):
    out = tmp_path / "run"
    res = main(["run", "--benchmark", "split-mnist", "--strategy", "ewc", "--tasks", "3", "--out", str(out), *FAST])
    R = np.array(res.accuracy_matrix)
    assert R.shape == (4, 3) and ((R >= 0) & (R <= 1)).all()
    assert R[1, 0] > 0.8  # task-incremental 0-vs-1 (chance 0.5) is easy even after 4 steps
    names = {"config.json", "results.json", "accuracy_matrix.csv", "accuracy_curves.png", "accuracy_matrix.png"}
    assert names <= {p.name for p in out.iterdir()}
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["run_id"] == res.run_id and cfg["strategy"]["name"] == "ewc" and cfg["stream"]["scenario"] == "task"
    assert cfg["strategy"]["settings"] == {"lam": 100.0, "fisher": "exact", "mc_samples": 1, "convention": "half",  # its own
                                           **CONSOLIDATION}
    assert set(cfg) == {"run_id", "config_version", "data", "stream", "model", "strategy", "train", "runtime", "seed"}
    saved = json.loads((out / "results.json").read_text())
    assert saved["accuracy_matrix"] == res.accuracy_matrix
    assert saved["metrics"]["average_accuracy"] == pytest.approx(R[-1].mean())
    for key in ("train_seconds", "after_task_seconds", "eval_seconds"):
        assert len(saved["timings"][key]) == 3
    assert saved["peak_memory_bytes"] > 0 and saved["versions"]["torch"] and saved["seed"] == 0


def test_same_config_gives_identical_results(tmp_path):
    args = ["run", "--benchmark", "permuted-mnist", "--tasks", "2", "--strategy", "online-ewc", "--fisher", "mc", *FAST]
    a = main([*args, "--out", str(tmp_path / "a")])
    b = main([*args, "--out", str(tmp_path / "b")])
    assert a.run_id == b.run_id
    assert a.accuracy_matrix == b.accuracy_matrix
    c = main([*args, "--seed", "1", "--out", str(tmp_path / "c")])
    assert c.run_id != a.run_id and c.accuracy_matrix != a.accuracy_matrix


def test_validation_split_is_measured_separately(tmp_path):
    res = main(["run", "--benchmark", "split-mnist", "--tasks", "2", "--val-fraction", "0.2", "--out", str(tmp_path / "v"), *FAST])
    assert np.array(res.val_accuracy_matrix).shape == (3, 2)
    assert res.val_accuracy_matrix != res.accuracy_matrix


def test_tune_selects_on_validation_and_reports_test(tmp_path):
    from lifelong.cli import main as cli_main

    res = cli_main(["tune", "--benchmark", "split-mnist", "--tasks", "2", "--strategy", "ewc", "--grid", "0,100",
                    "--out", str(tmp_path / "t"), *FAST])
    scores = {t["value"]: t["val_average_accuracy"] for t in res["trials"]}
    assert res["chosen"] == max(scores, key=scores.get)
    final_cfg = json.loads((tmp_path / "t" / "final" / "config.json").read_text())
    assert final_cfg["strategy"]["settings"]["lam"] == res["chosen"] and final_cfg["stream"]["val_fraction"] == 0.0
    assert json.loads((tmp_path / "t" / "tune.json").read_text())["chosen"] == res["chosen"]


BAD = [
    (["--benchmark", "cifar"], "invalid choice"),
    (["--strategy", "magic"], "unknown strategy 'magic'"),
    (["--strategy", "ewc+magic"], "unknown strategy 'magic'"),
    (["--strategy", "ewc+ewc"], "names a part twice"),
    (["--strategy", "si", "--fisher", "mc"], "--fisher mc: fisher is a setting of ewc"),
    (["--strategy", "ewc", "--setting", "xi=3"], "--setting was replaced by one option per setting: --ewc.lam"),
    (["--strategy", "ewc+l2", "--l2.fisher", "mc"], "unrecognized arguments: --l2.fisher"),
    (["--strategy", "der+lwf", "--alpha", "0.5"], "--alpha 0.5: in der+lwf it means different things to der and lwf"),
    (["--strategy", "der+lwf", "--der.alpha", "0.5", "--lwf.alpha", "-2"], "--lwf.alpha must be 0 or between"),
    (["--strategy", "der", "--der.alpha", "-1"], "--der.alpha must be 0 or between"),
    (["--strategy", "der", "--alpha", "-1"], "--alpha must be 0 or between"),
    (["--train.lr", "0"], "--train.lr must be > 0"),
    (["--strategy", "rwalk", "--update-every", "0"], "--update-every must be >= 1"),
    (["--device", "tpu"], "--device must be one of auto, cpu, cuda, cuda:N, mps, got 'tpu'"),
    (["--strategy", "ewc", "--ewc-lambda", "-1"], "--ewc-lambda must be >= 0"),  # the alias typed
    (["--strategy", "ewc", "--lambda", "-1"], "--lambda must be >= 0"),
    (["--strategy", "ewc", "--ewc.lam", "-1"], "--ewc.lam must be >= 0"),
    (["--lambda", "1"], "--lambda 1: lam is a setting of"),  # naive has no λ
    (["--strategy", "online-ewc", "--gamma", "-0.5"], "--gamma must be in [0, 1]"),
    (["--gamma", "1.5"], "--gamma 1.5: gamma is a setting of online-ewc"),
    (["--lr", "0"], "--lr must be > 0"),
    (["--epochs", "0"], "--epochs must be in 1.."),
    # numbers finite in Python but not in float32, or too large to allocate
    (["--strategy", "ewc", "--lambda", "1e39"], "--lambda must be at most 1e+30"),
    (["--lr", "1e39"], "at most 3.4e38 (a float32 number), got 1e+39"),
    (["--std", "1e-320"], "--std and --mean must be float32 numbers"),
    (["--mean", "1e38", "--std", "1e-30"], "overflow float32"),
    (["--hidden", "10000000000"], "--hidden must be positive widths up to"),
    (["--hidden", "9000000"], "more than the"),
    (["--strategy", "ewc", "--fisher", "mc", "--mc-samples", "99999999999999999999"], "--mc-samples must be at most"),
    (["--benchmark", "rotated-mnist", "--tasks", "99999999999999999999"], "--tasks must be in 1..1000"),
    (["--threads", "100000"], "--threads must be in 1..1024"),
    # options stored in the config must matter
    (["--benchmark", "permuted-mnist", "--angles", "0,90"], "--angles applies to rotated benchmarks"),
    (["--split-groups", "0,1/2,3"], "--split-groups applies to split benchmarks"),
    (["--optimizer", "adam", "--momentum", "0.9"], "--momentum applies to --optimizer sgd"),
    (["--epochs", "2", "--iterations", "5"], "--iterations and --epochs both set the length of a task"),
    (["--strategy", "ewc", "--mc-samples", "4"], "--mc-samples applies to --fisher mc"),
    (["--benchmark", "split-mnist", "--class-units", "seen"], "--class-units applies to the class scenario"),
    # splits that end up empty
    (["--val-fraction", "0.9999"], "empty train split"),
    (["--benchmark", "split-mnist", "--val-fraction", "0.001"], "empty val split"),
    (["--hidden", "40,x"], "integers separated by commas, like 400,400"),
    (["--benchmark", "split-mnist", "--tasks", "6"], "at most 5 tasks"),
    (["--benchmark", "split-mnist", "--split-groups", "0,1/1,2"], "overlap"),
    (["--benchmark", "rotated-mnist", "--tasks", "3", "--angles", "0,90"], "does not match"),
    (["--bogus-option"], "unrecognized arguments"),
]


@pytest.mark.parametrize("extra, message", BAD, ids=[" ".join(b[0]) for b in BAD])
def test_bad_input_is_one_line_and_exit_code_2(extra, message, tmp_path, capsys):
    code = console_main(["run", "--out", str(tmp_path / "x"), *FAST, *extra])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "x").exists()  # nothing was created for a rejected command


def test_missing_data_says_where_it_looked(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    code = console_main(["run", "--data-dir", str(empty), "--no-download", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and str(empty) in err and "LIFELONG_DATA_DIR" in err and err.count("\n") == 1


def test_unwritable_output_folder(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code = console_main(["run", "--out", str(blocker / "run"), *FAST])
    err = capsys.readouterr().err
    assert code == 2 and "cannot write the run folder" in err and "choose another --out" in err


def test_folder_of_another_run_is_refused_and_kept(tmp_path):
    out = tmp_path / "run"
    main(["run", "--benchmark", "split-mnist", "--tasks", "2", "--out", str(out), *FAST])
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(UsageError, match="holds another run"):
        main(["run", "--benchmark", "split-mnist", "--tasks", "2", "--seed", "5", "--out", str(out), *FAST])
    assert before == {p.name: p.read_bytes() for p in out.iterdir()}


def test_diverging_ewc_with_sgd_names_lambda_times_lr(tmp_path, capsys):
    args = ["run", "--benchmark", "split-mnist", "--tasks", "2", "--strategy", "ewc", "--lambda", "1e9",
            "--optimizer", "sgd", "--lr", "0.1", "--epochs", "10", "--out", str(tmp_path / "d"), *FAST]
    with pytest.raises(TrainingDiverged, match=r"--lambda x --lr x max\(F\)"):
        main(args)
    # the diverged run kept its last good checkpoint: the same command again is told to resume it
    assert console_main(args) == 2 and "--resume" in capsys.readouterr().err
    assert console_main([*args, "--overwrite"]) == 1
    err = capsys.readouterr().err
    assert "task 'classes 2-3'" in err and "lower --lambda or --lr" in err and "Traceback" not in err


def test_diverging_fine_tuning_blames_the_learning_rate(tmp_path):
    with pytest.raises(TrainingDiverged, match="lower --lr"):
        main(["run", "--benchmark", "split-mnist", "--tasks", "1", "--optimizer", "sgd", "--lr", "1e12",
              "--out", str(tmp_path / "n"), *FAST])


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit) as e:
        main(["run", "--strategy", "ewc", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for opt in ("--benchmark", "--scenario", "--tasks", "--strategy", "--ewc-lambda", "--fisher",
                "--optimizer", "--lr", "--batch-size", "--epochs", "--hidden", "--seed", "--data-dir", "--out"):
        assert opt in text




@pytest.mark.parametrize("stream_name", ["split-fashion", "permuted-fashion", "rotated-fashion"])
def test_fashion_mnist_works_wherever_mnist_does(stream_name, tmp_path):
    res = main(["run", "--benchmark", stream_name, "--tasks", "2", "--epochs", "4", "--out", str(tmp_path / "f"),
                *FAST[2:], "--data-dir", str(FASHION)])
    assert res.benchmark == stream_name and np.array(res.accuracy_matrix).shape == (3, 2)
    chance = 0.5 if stream_name.startswith("split") else 0.1  # 2-way task heads vs 10 classes
    assert np.array(res.accuracy_matrix)[1, 0] > chance + 0.2  # learned something in 32 steps


def test_cnn_and_iterations_per_task(tmp_path):
    res = main(["run", "--benchmark", "rotated-mnist", "--angles", "0,90", "--scenario", "class", "--model", "cnn",
                "--strategy", "ewc", "--fisher", "empirical", "--iterations", "7", "--optimizer", "sgd", "--lr", "0.05",
                "--out", str(tmp_path / "c"), *FAST])
    assert res.steps_per_task == [7, 7]
    assert res.config["model"]["name"] == "cnn" and res.n_parameters > 100_000
    assert res.task_names == ["rot0", "rot90"]


def test_progress_bar_shows_task_epoch_loss_and_penalty(tmp_path, capsys):
    main(["run", "--benchmark", "split-mnist", "--tasks", "2", "--strategy", "ewc", "--out", str(tmp_path / "p"),
          "--data-dir", str(TINY), "--no-download", "--hidden", "32", "--progress"])
    err = capsys.readouterr().err
    for text in ("task 2/2 classes 2-3", "epoch 1", "loss", "penalty"):
        assert text in err


@pytest.mark.parametrize("damage", ["truncated", "bad-magic", "count-mismatch"])
def test_corrupt_idx_files_are_one_line_exit_2_and_debug_shows_the_traceback(damage, tmp_path, capsys):
    import gzip
    import shutil

    from lifelong.errors import DataError

    data = tmp_path / "mnist"
    shutil.copytree(TINY, data)
    images = data / "train-images-idx3-ubyte.gz"
    raw = gzip.decompress(images.read_bytes())
    if damage == "truncated":
        raw = raw[: len(raw) // 3]
    elif damage == "bad-magic":
        raw = b"\x12\x34" + raw[2:]
    else:  # images say 1999, labels say 2000
        raw = raw[:4] + (1999).to_bytes(4, "big") + raw[8:16] + raw[16 : 16 + 1999 * 784]
    images.write_bytes(gzip.compress(raw))
    args = ["run", "--data-dir", str(data), "--no-download", "--out", str(tmp_path / "o")]
    assert console_main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "train-images-idx3-ubyte.gz" in err
    with pytest.raises(DataError):
        console_main(["--debug", *args])


#: the boundary-free consolidation's settings at their defaults (ewc, online-ewc, mas)
CONSOLIDATION = {"consolidate": "task", "consolidate_every": None, "importance_every": 0, "importance_decay": 0.1,
                 "plateau_window": 5, "plateau_mean": 0.2, "plateau_var": 0.1}


def test_settings_belong_to_their_strategy():
    from lifelong.experiments.config import RunConfig
    from lifelong.strategies.regularization import EWCSettings

    ewc = RunConfig.make(strategy="ewc", lam=5.0).resolve()
    assert ewc.strategy == EWCSettings(lam=5.0) and ewc.strategy.strategy == "ewc"  # the settings know their strategy
    assert ewc.to_record()["strategy"] == {"name": "ewc", "settings": {"lam": 5.0, "fisher": "exact", "mc_samples": 1,
                                                                     "convention": "half", **CONSOLIDATION}}
    assert RunConfig.make(strategy="ewc", lam=5).resolve().method_record() == ewc.method_record()  # 5 and 5.0: one
    with pytest.raises(UsageError, match="xi is not a setting of ewc"):  # SI's ξ cannot be given to EWC
        RunConfig.make(strategy="ewc", xi=0.3)
    with pytest.raises(UsageError, match="--xi must be > 0"):  # every value given is checked
        main(["run", "--strategy", "si", "--xi", "-1", *FAST])
    # a composite's parts each have their own settings, by prefix; a bare key sets every part having it
    both = RunConfig.make(strategy="ewc+l2", lam=3.0, **{"l2.lam": 0.5}).resolve()
    assert both.to_record()["strategy"]["settings"] == {"ewc": {"lam": 3.0, "fisher": "exact", "mc_samples": 1,
                                                                "convention": "half", **CONSOLIDATION},
                                                        "l2": {"lam": 0.5, "convention": "half"}}
    assert RunConfig.from_record(both.to_record()).resolve() == both


@pytest.mark.parametrize("seeds", ["abc", "", "0,x", "-1"])
def test_reproduce_bad_seeds_are_one_line(seeds, capsys):
    assert console_main(["reproduce", "hsu2018-split-mnist", "--seeds", seeds]) == 2
    err = capsys.readouterr().err
    assert "--seeds" in err and err.count("\n") == 1


@pytest.mark.parametrize("damage", ["no items", "train and test of different sizes"])
def test_data_sets_that_cannot_make_a_stream_are_one_line(damage, tmp_path, capsys):
    import numpy as np

    from lifelong.data.idx import read_idx, write_idx

    data = tmp_path / "mnist"
    shutil.copytree(TINY, data)
    if damage == "no items":
        write_idx(data / "t10k-images-idx3-ubyte.gz", np.zeros((0, 28, 28), np.uint8))
        write_idx(data / "t10k-labels-idx1-ubyte.gz", np.zeros((0,), np.uint8))
        message = "hold no items"
    else:
        images = read_idx(data / "t10k-images-idx3-ubyte.gz")
        write_idx(data / "t10k-images-idx3-ubyte.gz", images[:, :20, :20].copy())
        message = "come from different data sets"
    assert console_main(["run", "--data-dir", str(data), "--no-download", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not (tmp_path / "o").exists()
