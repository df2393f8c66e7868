"""Grouped early stopping (``sweeps/schedulers.py``), replayed over learning curves written by hand.

The curves make the arithmetic easy to follow: rank r's trial with learning-rate index i has
validation loss ``base[r] + gap[i] - 0.1 * epoch``. Within each rank the middle learning rate
is best at every epoch; across ranks, rank 1 is worse than every rank-16 trial, so ASHA over
the whole sweep prunes rank 1 as a whole, and grouped ASHA never does.
"""

from __future__ import annotations

import random

import pytest

from analysis.replay import replay

RANKS = {1: 3.0, 4: 2.0, 16: 1.0}
GAPS = {0: 0.3, 1: 0.0, 2: 0.5}  # lr index 1 is best in every rank
EPOCHS = 9


def curves():
    return {(r, i): [base + gap - 0.1 * e for e in range(1, EPOCHS + 1)]
            for r, base in RANKS.items() for i, gap in GAPS.items()}


def orders(n=40):
    keys = list(curves())
    rng = random.Random(0)
    for _ in range(n):
        rng.shuffle(keys)
        yield list(keys)


@pytest.mark.parametrize("rule", ["stop", "pause"])
def test_grouped_asha_completes_every_ranks_best_trial_in_every_order(rule):
    for order in orders():
        done = replay(curves(), order, rule=rule, grace=1, eta=3, workers=2,
                      group_of=lambda k: k[0]).completed()
        assert {(r, 1) for r in RANKS} <= set(done), (rule, order, done)


@pytest.mark.parametrize("rule", ["stop", "pause"])
def test_grouped_asha_prunes_within_groups(rule):
    total = EPOCHS * len(curves())
    spent = [replay(curves(), order, rule=rule, grace=1, eta=3, workers=2,
                    group_of=lambda k: k[0]).spent for order in orders()]
    assert max(spent) < total  # something was pruned in every order
    # pause: per rank, 3 trials at rung 1 -> 1 promoted; the two others stop after 1 epoch,
    # once nothing else can run: 3 x (9 + 1 + 1) = 33 trial-epochs of 81, whatever the order.
    if rule == "pause":
        assert set(spent) == {3 * (EPOCHS + 1 + 1)}


def test_sweep_wide_asha_prunes_a_whole_rank():
    # Without groups, rank 1's trials compete with rank 16's: under promotions, the top
    # floor(9/3) = 3 at epoch 1 are rank 16's, and rank 1 never reaches the end.
    for order in orders(10):
        done = replay(curves(), order, rule="pause", grace=1, eta=3, workers=2).completed()
        assert not any(r == 1 for r, _ in done)


def test_a_group_too_small_for_eta_still_completes_its_best_trial():
    # Two trials per group and eta 3: floor(2/3) = 0 at every rung, so no promotion rule
    # alone ever moves them; once nothing else can run, the best waiting trial goes on.
    two = {k: v for k, v in curves().items() if k[1] in (0, 1)}
    for order in orders(10):
        order = [k for k in order if k in two]
        result = replay(two, order, rule="pause", grace=1, eta=3, workers=2, group_of=lambda k: k[0])
        assert sorted(result.completed()) == [(r, 1) for r in sorted(RANKS)]
        # The other trial of each group stopped at its first rung.
        assert all(result.epochs[(r, 0)] == 1 for r in RANKS)


def test_grouped_optuna_gives_each_group_its_own_study_in_turn():
    """Real Optuna TPE studies behind the Tune searcher: groups take turns, each gets exactly
    ``samples`` trials, each study only hears its own group's results, then FINISHED."""
    from ray import tune
    from ray.tune.search import Searcher

    from sweeps.searchers import GroupedOptuna

    points = [{"adapter.r": 1}, {"adapter.r": 16}]
    searcher = GroupedOptuna(points=points, space={"train.lr": tune.loguniform(1e-4, 1e-1)}, samples=3,
                             metric="val_loss", mode="min", seed=0, sweep="grouped")
    configs = []
    for i in range(6):
        config = searcher.suggest(f"t{i}")
        configs.append(config)
        # A loss that is best at lr = 1e-2 for r=1 and worse everywhere for r=16.
        r, lr = config["adapter.r"], config["train.lr"]
        searcher.on_trial_complete(f"t{i}", {"val_loss": abs(lr - 1e-2) + (10.0 if r == 16 else 0.0),
                                             "is_final": True})
    assert searcher.suggest("t6") == Searcher.FINISHED
    assert [c["adapter.r"] for c in configs] == [1, 16, 1, 16, 1, 16]
    assert all(1e-4 <= c["train.lr"] <= 1e-1 for c in configs)
    studies = {g: s._ot_study for g, s in searcher.studies.items()}
    assert [len(studies[g].trials) for g in (0, 1)] == [3, 3]
    values = [t.value for t in studies[1].trials]
    assert all(v >= 10.0 for v in values) and all(t.value < 10.0 for t in studies[0].trials)
    assert [studies[g].study_name for g in (0, 1)] == ["grouped/group-0", "grouped/group-1"]
    assert [studies[g].user_attrs["group"] for g in (0, 1)] == points


def test_a_rungs_promotable_trials_are_its_top_floor_n_over_eta_not_promoted_yet():
    from sweeps.schedulers import _Rungs

    rungs = _Rungs({1.0: {}}, {1.0: set()}, eta=2)
    for tid, score in [("a", 0.5), ("b", 0.9), ("c", 0.5), ("d", 0.1), ("e", 0.9), ("f", 0.7)]:
        rungs.record(1.0, tid, score)
    # 6 recorded, eta 2: the top 3 are b and e (0.9, b recorded first) and f (0.7).
    assert rungs.promotable(1.0) == ["b", "e", "f"]
    rungs.promote(1.0, "b")
    assert rungs.promotable(1.0) == ["e", "f"]
    rungs.record(1.0, "g", 1.0)
    # 7 recorded: still the top 3, now g, b, e; b went on already.
    assert rungs.promotable(1.0) == ["g", "e"]


@pytest.mark.parametrize("rule", ["stop", "pause"])
def test_a_grace_period_of_half_an_epoch_stops_a_trial_within_its_first_epoch(rule):
    """Two reports an epoch (``train.eval_every_steps``) and ``grace_period: 0.5``: the first
    rung is at half an epoch, so the worse of two trials stops there, before epoch 1."""
    from types import SimpleNamespace

    from ray.tune.schedulers import TrialScheduler

    from sweeps.config import SchedulerConfig
    from sweeps.schedulers import GroupedASHA, PromotingASHA

    grace = SchedulerConfig(grace_period=0.5).grace_period
    cls = PromotingASHA if rule == "pause" else GroupedASHA
    scheduler = cls(time_attr="epoch", grace_period=grace, reduction_factor=2, max_t=2, group_keys=(),
                    metric="m", mode="min")
    good, bad = (SimpleNamespace(trial_id=t, status="RUNNING", config={}) for t in ("good", "bad"))
    controller = SimpleNamespace(get_trials=lambda: [good, bad], search_alg=SimpleNamespace(is_finished=lambda: True),
                                 stop_trial=lambda t: setattr(t, "status", "TERMINATED"))
    for trial in (good, bad):
        scheduler.on_trial_add(controller, trial)
    first = scheduler.on_trial_result(controller, good, {"epoch": 0.5, "m": 1.0})
    second = scheduler.on_trial_result(controller, bad, {"epoch": 0.5, "m": 3.0})
    if rule == "stop":  # the first trial at a rung goes on; the worse one after it stops there
        assert (first, second) == (TrialScheduler.CONTINUE, TrialScheduler.STOP)
    else:  # both wait at the rung; the top floor(2 / 2) = 1, the better, goes on
        assert (first, second) == (TrialScheduler.PAUSE, TrialScheduler.PAUSE)
        good.status = bad.status = "PAUSED"
        assert scheduler.choose_trial_to_run(controller) is good
