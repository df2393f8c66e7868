"""The configuration reference is generated from the config dataclasses and kept in the docs."""

from __future__ import annotations

from conftest import REPO


def test_every_setting_is_documented_and_settable():
    from sweeps.cli import parse_assignment
    from sweeps.settings import settings

    found = settings()
    keys = [s.key for s in found]
    # Only `seed` is named twice: the trial's (--set seed=...) and the sweep's (--seed).
    assert keys.count("seed") == 2 and len(set(keys)) == len(keys) - 1
    assert {"adapter.r", "train.lr", "scheduler.groups", "search.num_samples", "eval.num_beams"} <= set(keys)
    undocumented = [s.key for s in found if not s.doc]
    assert undocumented == []
    for s in found:
        if s.section not in ("sweep",):
            dotted, _ = parse_assignment(f"{s.key}=1")
            assert dotted.startswith(("trial.", "search.", "scheduler.", "resources.")), s.key


def test_docs_configuration_md_is_the_generated_reference():
    from sweeps.settings import markdown

    assert (REPO / "docs" / "configuration.md").read_text(encoding="utf-8") == markdown(), (
        "docs/configuration.md is stale: python -m sweeps.settings --markdown > docs/configuration.md")


def test_an_unknown_top_level_key_lists_each_accepted_key_once():
    """``--set seed=N`` is the trial seed (the sweep seed is ``--seed``), so ``seed`` is listed
    once, with the trial sections; the sweep settings are SweepConfig's fields the command line
    does not fill in itself."""
    import pytest

    from sweeps.cli import parse_assignment
    from trainables.errors import UserError

    assert parse_assignment("seed=3") == ("trial.seed", 3)
    with pytest.raises(UserError) as e:
        parse_assignment("nosuch=1")
    assert str(e.value) == (
        "nosuch: unknown setting; a key starts with a trial section ('task', 'seed', 'model', 'data', 'adapter', "
        "'train' or 'eval'; seed is the trial seed) or a sweep setting ('description', 'name', 'space', 'trial', "
        "'search', 'scheduler', 'resources', 'max_trainable_params', 'seeds', 'keep_best_k', 'max_failures', "
        "'tracking_uri', 'experiment' or 'storage'; the sweep seed is --seed)")
