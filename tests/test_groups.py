"""analysis.groups: one best trial per scientific value, checked on rows worked out by hand."""

from __future__ import annotations

from analysis.groups import best_per_group


def row(r, lr, seed, status, loss):
    return {"r": r, "lr": lr, "seed": seed, "status": status, "val_loss": loss}


ROWS = [
    # r=1: lr 1e-3 completed at 1.5 and lr 1e-2 was stopped early at a lower (earlier-epoch)
    # loss: the stopped trial must not be chosen.
    row(1, 1e-3, 0, "completed", 1.5), row(1, 1e-2, 0, "stopped_early", 1.2),
    # r=4: two completed lrs, the lower loss wins.
    row(4, 1e-3, 0, "completed", 1.4), row(4, 1e-2, 0, "completed", 1.3),
    # r=16: nothing completed.
    row(16, 1e-3, 0, "failed", float("nan")), row(16, 1e-2, 0, "stopped_early", 2.0),
]


def test_one_group_per_scientific_value_best_completed_trial():
    groups = best_per_group(ROWS, scientific=["r"], metric="val_loss", mode="min")
    assert [g.values for g in groups] == [{"r": 1}, {"r": 4}, {"r": 16}]
    assert [r["lr"] for r in groups[0].chosen] == [1e-3]
    assert [r["lr"] for r in groups[1].chosen] == [1e-2]
    assert groups[2].chosen == [] and groups[2].stat("val_loss") is None
    assert groups[0].count("stopped_early") == 1 and len(groups[2].trials) == 2


def test_max_mode_and_numeric_order():
    rows = [dict(r, acc=-r["val_loss"]) for r in ROWS if r["r"] != 16] + [row(2, 1e-3, 0, "completed", 9.0)]
    groups = best_per_group(rows, scientific=["r"], metric="acc", mode="max")
    assert [g.values["r"] for g in groups] == [1, 2, 4]  # numbers in numeric order
    assert groups[2].chosen[0]["lr"] == 1e-2  # acc -1.3 beats -1.4


def test_seed_replicates_each_seed_tuned_then_median_and_range():
    rows = [row(4, lr, s, "completed", loss) for s, lr, loss in [
        (0, 1e-3, 1.40), (0, 1e-2, 1.30),   # seed 0 best: 1.30 (lr 1e-2)
        (1, 1e-3, 1.20), (1, 1e-2, 1.50),   # seed 1 best: 1.20 (lr 1e-3)
        (2, 1e-3, 1.60), (2, 1e-2, 1.35)]]  # seed 2 best: 1.35 (lr 1e-2)
    (group,) = best_per_group(rows, scientific=["r", "seed"], metric="val_loss", mode="min")
    assert group.values == {"r": 4}
    assert [r["seed"] for r in group.chosen] == [0, 1, 2]
    stat = group.stat("val_loss")
    assert (stat.median, stat.low, stat.high, stat.n) == (1.30, 1.20, 1.35, 3)
    assert group.chosen_values("lr") == [1e-2, 1e-3]
    assert stat.text("{:.2f}") == "1.30 (1.20-1.35, 3 seeds)"


def test_no_scientific_key_is_one_group_with_the_best_trial():
    (group,) = best_per_group(ROWS, scientific=[], metric="val_loss", mode="min")
    assert group.values == {} and group.chosen[0]["val_loss"] == 1.3
