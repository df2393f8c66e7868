"""Search spaces as data: loading, validation before launch, conversion to Tune."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from ray import tune
from ray.tune.search.sample import Categorical, Float, Integer

from search_spaces import (apply_hyperparameters, available_spaces, base_with_fixed, load_space,
                           to_tune)
from trainables.config import TrialConfig
from trainables.errors import UserError
from trainables.schema import from_dict, to_dict

BASE = to_dict(TrialConfig())


def space(**sections):
    return load_space(dict(sections), base=BASE)


def test_every_shipped_space_is_valid_for_its_base():
    assert {"e2e_rank_paper", "e2e_rank_quick", "e2e_rank_smoke"} <= set(available_spaces())
    for name in available_spaces():
        s = load_space(name, base=BASE)
        assert s.description
        for algorithm in ("grid", "random"):
            to_tune(s, algorithm=algorithm)


def test_the_paper_space_is_ranks_1_to_1024():
    s = load_space("e2e_rank_paper", base=BASE)
    (r,) = s.swept
    assert r.key == "adapter.r" and r.kind == "grid"
    assert list(r.values) == [2**i for i in range(11)]
    assert s.fixed() == {"adapter.alpha": 32.0, "adapter.targets": "qv"}
    assert s.grid_size() == 11


def test_conversion_to_tune_domains():
    s = space(scientific={"r": {"grid": [1, 2]}, "targets": {"choice": ["qv", "mlp"]}},
              nuisance={"lr": {"loguniform": ["1e-5", "1e-3"]}, "dropout": {"uniform": [0, 0.2]},
                        "warmup_steps": {"randint": [0, 100]}, "batch_size": {"lograndint": [4, 64]}})
    ts = to_tune(s, algorithm="random")
    assert ts["adapter.r"] == tune.grid_search([1, 2])
    assert isinstance(ts["adapter.targets"], Categorical)
    assert isinstance(ts["train.lr"], Float) and ts["train.lr"].lower == 1e-5 and ts["train.lr"].upper == 1e-3
    assert isinstance(ts["train.lr"].sampler, Float._LogUniform)
    assert isinstance(ts["adapter.dropout"], Float)
    assert isinstance(ts["train.warmup_steps"], Integer)
    assert isinstance(ts["train.batch_size"].sampler, Integer._LogUniform)


def test_optuna_refuses_a_grid_before_launch():
    s = space(scientific={"r": {"grid": [1, 2]}})
    with pytest.raises(UserError) as err:
        to_tune(s, algorithm="optuna")
    assert err.value.field == "space.scientific.r" and "choice" in err.value.message
    assert to_tune(space(scientific={"r": {"choice": [1, 2]}}), algorithm="optuna")


@pytest.mark.parametrize("sections, field, fragment", [
    ({"scientific": {"r": {"grid": [0, 4]}}}, "space.scientific.r.grid[0]", "positive integer"),
    ({"scientific": {"lr": {"loguniform": [-1, 1e-3]}}}, "space.scientific.lr.loguniform", "> 0"),
    ({"scientific": {"lr": {"loguniform": [1e-3, 1e-4]}}}, "space.scientific.lr.loguniform", "below"),
    ({"scientific": {"lrr": {"grid": [1]}}}, "space.scientific.lrr", "did you mean 'lr'"),
    ({"scientific": {"r": {"gird": [1]}}}, "space.scientific.r", "did you mean 'grid'"),
    ({"scientific": {"r": 4}}, "space.scientific.r", "'fixed'"),
    ({"fixed": {"r": {"grid": [4]}}}, "space.fixed.r", "plain values"),
    ({"scientific": {"r": {"grid": []}}}, "space.scientific.r.grid", "non-empty"),
    ({"scientific": {"r": {"grid": [4, 4]}}}, "space.scientific.r.grid", "repeat"),
    ({"scientific": {"method": {"choice": ["lora", "vera2"]}}}, "space.scientific.method.choice[1]", "vera2"),
    ({"scientific": {"data.source": {"choice": ["a", "b"]}}}, "space.scientific.data.source", "set-up"),
    ({"scientific": {"r": {"grid": [1]}}, "nuisance": {"r": {"grid": [2]}}}, "space.nuisance.r", "already"),
    ({"fixed": {"alpha": 16, "alpha_over_r": 2}}, "space.fixed.alpha_over_r", "not both"),
    ({"scientific": {"batch_size": {"uniform": [1, 8]}}}, "space.scientific.batch_size.uniform", "integer"),
    ({"scientfic": {}}, "space.scientfic", "did you mean 'scientific'"),
    ({"scientific": {"r+data.columns": {"grid": [[4, {"prompt": "a"}], [4, {"prompt": "a"}]]}}},
     "space.scientific.r+data.columns.grid", "values repeat"),
    ({"nuisance": {"seed": {"randint": [0, 99999999999999999999]}}}, "space.nuisance.seed.randint",
     "from 0 to 2**32 - 1"),
    ({"nuisance": {"seed": {"grid": [1, -1]}}}, "space.nuisance.seed.grid[1]", "from 0 to 2**32 - 1"),
    ({"nuisance": {"seed": {"randint": [0, 2**32 + 1]}}}, "space.nuisance.seed.randint",
     "high - 1 = 4294967296: must be an integer from 0 to 2**32 - 1"),
    ({"nuisance": {"r": {"randint": [1, 8.5]}}}, "space.nuisance.r.randint", "expected an integer"),
    ({"nuisance": {"r": {"lograndint": [4, 4]}}}, "space.nuisance.r.lograndint", "below"),
    ({"fixed": {"data.split_seed": -1}}, "space.fixed.data.split_seed", "from 0 to 2**32 - 1"),
])
def test_bad_spaces_are_refused_with_the_field_named(sections, field, fragment):
    with pytest.raises(UserError) as err:
        space(**sections)
    assert err.value.field == field, err.value
    assert fragment in err.value.message


def test_an_integer_range_excludes_high_under_tune_and_optuna():
    """[low, high): the largest value drawn is high - 1, so a seed range may end at 2**32 (the
    seed is 0 to 2**32 - 1); Ray's Optuna conversion makes it Optuna's inclusive high - 1."""
    from ray.tune.search.optuna import OptunaSearch

    s = space(nuisance={"seed": {"randint": [0, 2**32]}, "r": {"lograndint": [1, 4]}})
    ts = to_tune(s, algorithm="optuna")
    assert {ts["adapter.r"].sample() for _ in range(300)} == {1, 2, 3}
    dists = OptunaSearch.convert_search_space(ts)
    assert (dists["seed"].low, dists["seed"].high) == (0, 2**32 - 1)
    assert (dists["adapter.r"].low, dists["adapter.r"].high, dists["adapter.r"].log) == (1, 3, True)


def test_a_coupled_parameter_may_take_a_mapping_value():
    s = space(scientific={"r+data.columns": {"grid": [[4, {"prompt": "a"}], [8, None]]}})
    assert s.values_of("data.columns") == [{"prompt": "a"}, None]


def test_bad_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("scientific:\n  r: {grid: [1, 2\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_space(str(bad), base=BASE)
    with pytest.raises(UserError, match="no search space"):
        load_space(str(tmp_path / "missing.yaml"), base=BASE)


def test_alpha_as_multiple_of_rank_clears_the_fixed_alpha():
    s = space(scientific={"r": {"grid": [4, 8]}}, fixed={"alpha_over_r": 2})
    base = base_with_fixed(BASE, s)
    assert base["adapter"]["alpha"] is None and base["adapter"]["alpha_over_r"] == 2.0
    cfg = from_dict(TrialConfig, apply_hyperparameters(base, {"adapter.r": 8}))
    assert cfg.adapter.lora_alpha == 16.0


def test_sweeping_alpha_over_r_clears_the_base_alpha():
    s = space(scientific={"alpha_over_r": {"grid": [1, 2]}})
    base = base_with_fixed(BASE, s)
    assert base["adapter"]["alpha"] is None


def test_apply_hyperparameters_keeps_the_base():
    before = to_dict(TrialConfig())
    out = apply_hyperparameters(before, {"adapter.r": 64, "train.lr": 1e-3})
    assert out["adapter"]["r"] == 64 and out["train"]["lr"] == 1e-3
    assert before == to_dict(TrialConfig())


def test_as_data_round_trips():
    s = space(scientific={"r": {"grid": [1, 2]}}, nuisance={"lr": {"loguniform": [1e-4, 1e-3]}},
              fixed={"targets": "qv"})
    again = load_space(s.as_data(), base=BASE)
    assert again.params == s.params


def test_a_grid_runs_every_point_num_samples_times_in_a_seeded_order():
    """Asynchronous ASHA needs trials in random order, not weak-to-strong as a grid is listed."""
    from ray.tune.search.variant_generator import _count_variants

    from sweeps.tune_setup import search_alg
    from sweeps.config import SweepConfig

    space = load_space({"scientific": {"r": {"grid": [1, 2, 4, 8]}, "lr": {"grid": [1e-4, 1e-3, 1e-2]}}},
                       base=BASE)
    grid = [tuple(sorted(p.items())) for p in space.grid_points()]

    def order(seed: int, num_samples: int = 1) -> list[tuple]:
        cfg = from_dict(SweepConfig, {"study": "t", "seed": seed, "search": {"num_samples": num_samples}})
        alg = search_alg(SimpleNamespace(cfg=cfg, space=space, points=None), "val_loss", "min")
        return [tuple(sorted(p.items())) for p in alg._points_to_evaluate]

    assert sorted(order(0)) == sorted(grid) and order(0) != grid
    assert order(0) == order(0) and order(0) != order(1)
    assert sorted(order(0, num_samples=2)) == sorted(grid * 2)
    # Tune counts exactly the grid: each preset point pins every grid key to one value.
    spec = {"config": to_tune(space, algorithm="grid"), "num_samples": 1}
    assert _count_variants(spec, [dict(p) for p in order(3)]) == len(grid)


def test_a_grid_crossed_with_sampled_settings_runs_in_a_seeded_order_too():
    """A grid beside a sampled setting: Tune's generator, left alone, crosses the grid in the
    order it is written whatever the seed (lr 1e-4, 1e-3, 1e-2: weak to strong, the order
    that lets every newcomer through ASHA's rungs)."""
    from sweeps.config import SweepConfig
    from sweeps.tune_setup import search_alg

    space = load_space({"scientific": {"r": {"grid": [1, 4]}},
                        "nuisance": {"lr": {"grid": [1e-4, 1e-3, 1e-2]}, "dropout": {"uniform": [0.0, 0.5]}}},
                       base=BASE)
    listed = [(r, lr) for r in (1, 4) for lr in (1e-4, 1e-3, 1e-2)]

    def trials(seed: int, num_samples: int) -> list[dict]:
        cfg = from_dict(SweepConfig, {"study": "t", "seed": seed, "search": {"num_samples": num_samples}})
        alg = search_alg(SimpleNamespace(cfg=cfg, space=space, points=None), "val_loss", "min")
        alg.add_configurations({"t": {"run": lambda config: None, "config": to_tune(space, algorithm="grid"),
                                      "num_samples": num_samples}})
        out = []
        while (trial := alg.next_trial()) is not None:
            out.append(trial.config)
        return out

    runs = trials(0, 2)
    points = [(c["adapter.r"], c["train.lr"]) for c in runs]
    assert sorted(points) == sorted(listed * 2)  # every point exactly num_samples times
    assert points == [(c["adapter.r"], c["train.lr"]) for c in trials(0, 2)]
    assert len({tuple((c["adapter.r"], c["train.lr"]) for c in trials(seed, 2)) for seed in range(4)}) == 4
    dropouts = [c["adapter.dropout"] for c in runs]  # still sampled, once per trial
    assert all(0.0 <= d < 0.5 for d in dropouts) and len(set(dropouts)) == len(runs)


def test_seed_replicates_under_optuna_need_groups_and_say_so():
    """--seeds adds a seed grid, one Optuna study per seed; one study over everything
    (groups=none) cannot take a grid, and the refusal names --seeds, not a space key."""
    from sweeps.config import SweepConfig
    from sweeps.grouping import group_keys
    from sweeps.planning import with_seed_replicates

    s = with_seed_replicates(space(scientific={"r": {"grid": [1, 4]}}, nuisance={"lr": {"loguniform": [1e-4, 1e-2]}}), 3)

    def cfg(groups: str):
        return from_dict(SweepConfig, {"study": "t", "seeds": 3, "search": {"algorithm": "optuna"},
                                       "scheduler": {"groups": groups}})

    assert group_keys(cfg("auto"), s) == ("adapter.r", "seed")
    with pytest.raises(UserError) as err:
        group_keys(cfg("none"), s)
    assert err.value.field == "seeds" and "scheduler.groups" in err.value.message


@pytest.mark.parametrize("algorithm, n, sections, refused", [
    # 3 samples of 2 dropout values per rank: by pigeonhole one value is drawn twice.
    ("random", 3, {"scientific": {"r": {"grid": [1, 4]}}, "nuisance": {"dropout": {"choice": [0.0, 0.1]}}},
     " per grid point of dropout, all choices (2 combinations)"),
    ("grid", 5, {"nuisance": {"dropout": {"choice": [0.0, 0.1]}, "targets": {"choice": ["qv", "mlp"]}}},
     " of dropout, targets, all choices (4 combinations)"),
    ("optuna", 3, {"scientific": {"r": {"grid": [1, 4]}}, "nuisance": {"targets": {"choice": ["qv", "mlp"]}}},
     " per group of targets, all choices (2 combinations)"),
    ("random", 2, {"scientific": {"r": {"grid": [1, 4]}}, "nuisance": {"dropout": {"choice": [0.0, 0.1]}}}, None),
    ("random", 3, {"nuisance": {"dropout": {"choice": [0.0, 0.1]}, "lr": {"loguniform": [1e-4, 1e-2]}}}, None),
    ("optuna", 3, {"scientific": {"targets": {"choice": ["qv", "mlp"]}},
                   "nuisance": {"lr": {"loguniform": [1e-4, 1e-2]}}}, None),
])
def test_more_samples_than_combinations_of_choices_are_refused(algorithm, n, sections, refused):
    """A trial's seed comes from its hyperparameters, so a combination of choice values drawn
    twice is the same trial twice."""
    from sweeps.config import SweepConfig
    from sweeps.planning import sweep_space

    cfg = from_dict(SweepConfig, {"study": "t", "space": sections,
                                  "search": {"algorithm": algorithm, "num_samples": n}})
    if refused is None:
        sweep_space(cfg)
        return
    with pytest.raises(UserError) as err:
        sweep_space(cfg)
    assert err.value.field == "search.num_samples"
    assert err.value.message.startswith(f"{n} samples{refused}"), err.value.message


def test_an_extension_counts_the_samples_the_sweep_ran_before():
    """--extend N after P samples per group of 2 targets values: P + N above 2 draws a value a
    group already ran, the same trial again (P samples of the stored sweep, N of the new run)."""
    from sweeps.config import SweepConfig
    from sweeps.planning import sweep_space

    def cfg(n: int):
        return from_dict(SweepConfig, {"study": "t", "search": {"algorithm": "optuna", "num_samples": n},
                                       "space": {"scientific": {"r": {"grid": [1, 4]}},
                                                 "nuisance": {"targets": {"choice": ["qv", "mlp"]}}}})

    sweep_space(cfg(1), prior=1)
    for n, prior, left in ((2, 1, "--extend 1 at most"), (1, 2, "no more samples")):
        with pytest.raises(UserError) as err:
            sweep_space(cfg(n), prior=prior)
        assert err.value.field == "--extend"
        assert err.value.message.startswith(f"{n} more samples per group after the sweep's {prior} of targets, "
                                            "all choices (2 combinations)"), err.value.message
        assert err.value.message.endswith(left)


def test_relative_paths_in_a_space_file_are_read_from_its_folder_then_the_working_folder(tmp_path, monkeypatch):
    """Trials run in folders of their own: a relative path a space gives a path setting is made
    absolute where it names something (the space file's folder first), in a fixed value, a grid,
    a list value (``tuned`` is no path) and a coupled grid; other values are left as written."""
    spaces, work = tmp_path / "spaces", tmp_path / "work"
    for folder in (spaces / "warm", work / "prompts.jsonl", work / "judge-base", work / "r8"):
        folder.mkdir(parents=True)
    (spaces / "warm" / "a").mkdir()
    monkeypatch.chdir(work)
    f = spaces / "space.yaml"
    f.write_text("scientific:\n"
                 "  r+init_from: {grid: [[8, r8], [4, warm/a]]}\n"
                 "nuisance:\n"
                 "  eval.compare_models: {choice: [[tuned, judge-base], [gpt2, tuned]]}\n"
                 "fixed:\n"
                 "  eval.prompts: prompts.jsonl\n"
                 "  targets: qv\n")
    s = load_space(str(f), base=BASE)
    by_key = {p.key: p.values for p in s.params}
    assert by_key["adapter.r+adapter.init_from"] == ([8, str(work / "r8")], [4, str(spaces / "warm" / "a")])
    assert by_key["eval.compare_models"] == (("tuned", str(work / "judge-base")), ("gpt2", "tuned"))
    assert s.fixed() == {"eval.prompts": str(work / "prompts.jsonl"), "adapter.targets": "qv"}


def test_sampled_data_settings_are_checked_one_at_a_time_not_in_every_combination():
    """Three sampled data settings of 8, 6 and 5 choices: the data-setting check reads each
    setting alone, so planning builds 8 + 6 + 5 = 19 trials, not 8 x 6 x 5 = 240."""
    from sweeps.planning import sampled_data_trials

    base = to_dict(TrialConfig())
    base["task"] = "agnews"
    space = load_space({"scientific": {"data.augment_prob": {"choice": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]},
                                       "data.augment_copies": {"choice": [1, 2, 3, 4, 5, 6]},
                                       "data.synonyms": {"choice": [1, 2, 3, 4, 5]}}}, base=base)
    trials = sampled_data_trials(base, space)
    assert len(trials) == 8 + 6 + 5
    assert sorted({t.data.augment_copies for t in trials}) == [1, 2, 3, 4, 5, 6]
