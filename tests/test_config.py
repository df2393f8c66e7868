"""The config schema: coercion, unknown keys, and every check naming its field."""

from __future__ import annotations

import pickle

import pytest

from sweeps.config import SweepConfig

from trainables.config import AdapterConfig, ResourcesConfig, TrainConfig, TrialConfig
from trainables.errors import UserError
from trainables.schema import deep_merge, field_paths, from_dict, set_path, to_dict


def test_defaults_are_the_papers_e2e_settings():
    cfg = TrialConfig()
    assert (cfg.adapter.r, cfg.adapter.lora_alpha, cfg.adapter.dropout, cfg.adapter.targets) == (4, 32.0, 0.1, "qv")
    t = cfg.train
    assert (t.lr, t.weight_decay, t.warmup_steps, t.label_smoothing, t.batch_size, t.epochs) == \
        (2e-4, 0.01, 500, 0.1, 8, 5.0)
    e = cfg.eval
    # LoRA paper Table 11, E2E column: beam 10, length penalty 0.9, no-repeat 4-gram; 64 new
    # tokens is microsoft/LoRA's E2E command (gpt2_beam.py --eval_len 64).
    assert (e.num_beams, e.length_penalty, e.no_repeat_ngram_size, e.max_new_tokens) == (10, 0.9, 4, 64)


def test_strings_from_the_command_line_are_coerced_by_type():
    cfg = from_dict(TrialConfig, {"train": {"lr": "1e-4", "batch_size": "16", "max_grad_norm": "null"},
                                  "eval": {"meteor": "false"}})
    assert cfg.train.lr == 1e-4 and cfg.train.batch_size == 16 and cfg.train.max_grad_norm is None
    assert cfg.eval.meteor is False


def test_round_trip_through_plain_data_and_pickle():
    cfg = from_dict(SweepConfig, {"trial": {"adapter": {"r": 8}}, "search": {"algorithm": "optuna"}})
    again = from_dict(SweepConfig, to_dict(cfg))
    assert again == cfg
    assert pickle.loads(pickle.dumps(cfg)) == cfg


@pytest.mark.parametrize("data, field, fragment", [
    ({"train": {"lrr": 1}}, "train.lrr", "did you mean 'lr'"),
    ({"adapter": {"r": 0}}, "adapter.r", "positive integer"),
    ({"adapter": {"r": 2.5}}, "adapter.r", "expected an integer"),
    ({"train": {"lr": -1}}, "train.lr", "> 0"),
    ({"train": {"lr": "fast"}}, "train.lr", "expected a number"),
    ({"adapter": {"dropout": 1.0}}, "adapter.dropout", "[0, 1)"),
    ({"adapter": {"method": "lora2"}}, "adapter.method", "did you mean 'lora'"),
    ({"adapter": {"alpha": None}}, "adapter.alpha", "alpha_over_r"),
    ({"adapter": {"alpha_over_r": 2}}, "adapter.alpha", "not both"),
    ({"train": {"scheduler": "cosin"}}, "train.scheduler", "did you mean 'cosine'"),
    ({"train": {"epochs": float("nan")}}, "train.epochs", "> 0"),
    ({"model": {"dtype": "int8"}}, "model.dtype", "'float32', 'bfloat16' or 'float16'"),
])
def test_bad_trial_values_name_their_field(data, field, fragment):
    with pytest.raises(UserError) as err:
        from_dict(TrialConfig, data)
    assert err.value.field == field
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


def test_an_unknown_task_is_named_where_tasks_are_looked_up():
    """The registry checks task names (the config does not import it: the registry names
    every task module, and those import the config)."""
    from trainables.tasks.registry import get_task

    with pytest.raises(UserError) as err:
        get_task("e2f")
    assert err.value.field == "task" and "did you mean 'e2e'" in err.value.message


@pytest.mark.parametrize("data, field", [
    ({"resources": {"workers_per_trial": 0}}, "resources.workers_per_trial"),
    ({"resources": {"gpus_per_trial": 1.5}}, "resources.gpus_per_trial"),
    ({"resources": {"trial_shape": "function", "workers_per_trial": 2}}, "resources.trial_shape"),
    ({"scheduler": {"reduction_factor": 1}}, "scheduler.reduction_factor"),
    ({"search": {"algorithm": "hyperopt"}}, "search.algorithm"),
    ({"keep_best_k": 0}, "keep_best_k"),
    ({"name": "a/b"}, "name"),
])
def test_bad_sweep_values_name_their_field(data, field):
    with pytest.raises(UserError) as err:
        from_dict(SweepConfig, data)
    assert err.value.field == field


def test_alpha_as_a_multiple_of_rank():
    a = AdapterConfig(r=8, alpha=None, alpha_over_r=2.0)
    assert a.lora_alpha == 16.0
    assert AdapterConfig(r=8, alpha=32).lora_alpha == 32


def test_trial_shape_follows_the_worker_count():
    assert not ResourcesConfig().uses_train_workers
    assert ResourcesConfig(workers_per_trial=2).uses_train_workers
    assert ResourcesConfig(trial_shape="train").uses_train_workers


def test_warmup_ratio_is_optional():
    assert TrainConfig(warmup_ratio=0.06).warmup_ratio == 0.06
    with pytest.raises(UserError):
        TrainConfig(warmup_ratio=1.0)


def test_plain_data_helpers():
    d: dict = {}
    set_path(d, "a.b.c", 1)
    assert d == {"a": {"b": {"c": 1}}}
    assert deep_merge({"a": {"b": 1, "c": 2}}, {"a": {"b": 3}}) == {"a": {"b": 3, "c": 2}}
    paths = field_paths(TrialConfig)
    assert paths["train.lr"] is float and "adapter.targets" in paths and "model" not in paths


def test_a_user_error_survives_pickling_with_its_field_and_message():
    """A trial's UserError reaches the driver through pickle (Ray): both parts survive."""
    import pickle

    from trainables.errors import UserError

    err = pickle.loads(pickle.dumps(UserError("train.batching", "padding_free mixes examples")))
    assert (err.field, err.message) == ("train.batching", "padding_free mixes examples")
    assert str(err) == "train.batching: padding_free mixes examples"


@pytest.mark.parametrize("error, limit, quoted", [
    (OSError(), 200, "OSError"),  # no text: the type's name, never an IndexError
    (ValueError(""), 200, "ValueError"),
    (ValueError(" \n\t \n"), 200, "ValueError"),  # whitespace only counts as no text
    (ValueError("\n  \ndisk full\nat block 7"), 200, "disk full"),  # blank lines first: the first written one
    (ValueError("a" * 250 + "\nb"), 200, "a" * 200),
    (ValueError("abcdefgh"), 5, "abcde"),
    (ValueError("a" * 250), None, "a" * 250),  # None: the whole first line
])
def test_an_error_is_quoted_by_its_first_line_or_its_type(error, limit, quoted):
    from trainables.errors import first_line

    assert first_line(error, limit=limit) == quoted


@pytest.mark.parametrize("cpus_per_trial, workers, threads", [(4, 2, 2), (8, 2, 4), (2, 1, 2), (1, 2, 1), (3, 2, 1)])
def test_each_worker_computes_on_its_share_of_the_trials_cpus(cpus_per_trial, workers, threads):
    """A worker's share is the trial's CPUs less its driver's sliver, split over the workers:
    (4 - 0.01) / 2 = 1.995 CPUs compute on 2 threads, not 1; a share of 1.495 or under one on one thread."""
    from trainables.trial import TRAIN_DRIVER_CPU, torch_threads

    assert torch_threads((cpus_per_trial - TRAIN_DRIVER_CPU) / workers) == threads
