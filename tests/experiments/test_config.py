"""The run configuration: any combination of options gives a valid config that round-trips through
config.json and the flat keys, or one line saying what is wrong (hypothesis over the command line)."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from lifelong.errors import UsageError


CLI_OPTIONS = ["--benchmark", "--scenario", "--tasks", "--angles", "--split-groups", "--strategy", "--lambda", "--gamma",
               "--fisher", "--xi", "--alpha", "--update-every", "--rwalk-eps", "--mc-samples", "--der.alpha", "--lr",
               "--momentum", "--optimizer", "--batch-size", "--epochs", "--iterations", "--hidden", "--val-fraction",
               "--seed", "--threads", "--pad", "--mean", "--std", "--checkpoint-every", "--device", "--class-units",
               "--memory", "--memory-per-class", "--memory-policy", "--replay-batch", "--replay-mixing", "--ref-batch",
               "--gem-margin", "--beta", "--temperature", "--lwf-weighting", "--augment", "--train-samples",
               "--optimizer-state", "--model", "--ewc.lam", "--lwf.alpha", "--rwalk.alpha", "--l2.lam", "--units",
               "--log", "--nproc", "--data", "--stream", "--check-every", "--shuffle-classes", "--der.memory"]
VALUES = st.one_of(st.integers(-5, 5000).map(str), st.floats(allow_nan=True, allow_infinity=True).map(repr),
                   st.text(max_size=8), st.sampled_from(["0", "-1", "1e39", "1e-320", "nan", "inf", "0,1/1,2", "3,x",
                                                         "", "ewc+l2", "ewc.lam=3", "lam=abc", "cuda:7", "seen",
                                                         "er", "gem", "derpp", "icarl", "gdumb", "ewc+er", "er+der",
                                                         "reservoir", "class", "task", "concat", "crop-flip", "keep",
                                                         "resnet18", "split-cifar10",
                                                         "99999999999999999999"]))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(CLI_OPTIONS), VALUES), max_size=5))
@example([("--lambda", "\n")])  # found by this fuzzer: a newline typed after an option the strategy lacks
def test_fuzz_random_configs_give_a_valid_config_or_a_usage_error(opts):
    from lifelong.cli import config_of
    from lifelong.experiments.config import ResolvedRun, RunConfig

    argv = [x for o, v in opts for x in (o, v)]
    try:
        cfg = config_of(argv)
    except UsageError as e:
        assert "\n" not in str(e) and "Traceback" not in str(e)
        return
    assert isinstance(cfg, ResolvedRun)
    assert RunConfig.from_record(cfg.to_record()).resolve() == cfg  # it round-trips through config.json
    assert RunConfig.from_flat(cfg.flat()).resolve() == cfg  # and through the flat keys sweeps use
    data = {"dataset": "mnist", "md5": {}, "canonical": False}  # the id covers the data: the same data here
    assert RunConfig.from_record(cfg.to_record()).resolve().with_data(data).run_id == cfg.with_data(data).run_id


def test_unknown_keys_with_a_newline_still_make_one_line():
    """Found by the config fuzzer: a config.json key holding a newline split the error in two lines."""
    from lifelong.experiments.config import RunConfig
    from lifelong.strategies.registry import settings_from_dict

    for make in (lambda: RunConfig.from_flat({"a\nb": 1}), lambda: RunConfig.from_record({"a\nb": 1}),
                 lambda: RunConfig.from_record({"config_version": 3, "a\nb": 1})):
        with pytest.raises(UsageError) as info:
            make()
        assert "\n" not in str(info.value) and "'a\\nb'" in str(info.value)
    with pytest.raises(UsageError) as info:
        settings_from_dict("ewc", {"x\ny": 1, "bogus": 2})
    assert "\n" not in str(info.value) and "unknown settings bogus, 'x\\ny'" in str(info.value)


def _other_values(f, default):
    """Valid-looking values of a field other than its default (its other choices, a flipped bool, a
    changed number, a shorter tuple); the config decides whether each is valid."""
    from lifelong.settings import meta

    choices = meta(f)["choices"]
    if choices:
        return [c for c in choices if c != default]
    if isinstance(default, bool):
        return [not default]
    if isinstance(default, int):
        return [default + 1, 2]
    if isinstance(default, float):
        return [default * 2 + 0.25, 0.5]
    if isinstance(default, (tuple, list)):
        return [[100], [8, 8, 8], [[0, 1], [2, 3, 4]], ["task"]]
    return [0.5, 2, 1, "cpu", [0, 45], [[0, 1], [2, 3]], "x"]  # optional fields (None by default)


# what a field needs beside it to apply (the reference config gets it too)
_CONTEXT = {"momentum": {"optimizer": "sgd"}, "class_units": {"scenario": "class"}, "angles": {"benchmark": "rotated-mnist"},
            "eval_scenarios": {"scenario": "class"}}


def test_every_run_field_is_in_the_run_id_or_named_as_not_changing_results():
    """One source for a run's identity: changing any field of the stream, the model or training changes
    the method record the run id hashes, unless the field is listed in NOT_IN_ID (where it does not
    change the numbers: threads, paths, logging). A new field added without a thought about the id fails
    here instead of making two different experiments share one id."""
    from dataclasses import fields

    from lifelong.experiments.config import _PART_TYPES, NOT_IN_ID, RENAMES, RunConfig

    base = dict(benchmark="split-mnist", strategy="ewc")
    checked = []
    for part, cls in _PART_TYPES.items():
        for f in fields(cls):
            key = RENAMES.get((part, f.name), f.name)
            if key in ("benchmark", "data_file", "stream"):
                continue  # the data: covered by the data fingerprint (test_runs, test_custom)
            context = {**base, **_CONTEXT.get(key, {})}
            ref = RunConfig.make(**context).resolve().method_record()
            default = RunConfig.make(**context).resolve().flat().get(key)
            changed = None
            for value in _other_values(f, default):
                try:
                    changed = RunConfig.make(**context, **{key: value}).resolve().method_record()
                except (UsageError, TypeError, ValueError):
                    continue
                break
            if changed is None:
                continue
            checked.append(key)
            if key in NOT_IN_ID:
                assert changed == ref, key
            else:
                assert changed != ref, f"{part}.{f.name} does not change the run id: add it to the id or to NOT_IN_ID"
    assert len(checked) >= 30 and {"init", "optimizer_state", "hidden", "angles", "momentum", "class_units",
                                    "eval_scenarios", "device", "threads", "out"} <= set(checked), checked


def test_every_field_of_a_run_is_in_its_id_or_named_as_not_changing_results():
    """A field a new version adds is in the run id once it leaves its default (a task-free schedule, its
    evaluation period): none can be forgotten by a list of the id's keys."""
    from lifelong.experiments import config as C
    from lifelong.experiments.config import RunConfig

    flat = RunConfig.make(benchmark="split-mnist", strategy="naive").resolve().flat()
    assert all(k in C._V2_KEYS or k in C.ADDED_IN_ID or k in C.NOT_IN_ID for k in flat), sorted(flat)
    base = RunConfig.make(benchmark="split-mnist", strategy="naive", schedule="gradual").resolve()
    for change in ({"schedule": "blurry"}, {"schedule_width": 0.3}, {"eval_every": 100}, {"eval_per_group": 20}):
        other = RunConfig.make(benchmark="split-mnist", strategy="naive", **{"schedule": "gradual", **change}).resolve()
        assert other.method_record() != base.method_record(), change
