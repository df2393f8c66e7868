"""QLoRA trials on a Ray Train worker group: DDP over a 4-bit NF4 base (bitsandbytes), end to
end through the study's entry point (``run_study``) in the test process, with real local Ray
(one for both sweeps), a real MLflow SQLite store and the tiny Llama of the QLoRA smoke preset.

Each rank loads its own copy of the quantised base on its device; only the LoRA weights train,
so DDP averages their gradients alone. The same one-trial sweep runs as a one-process trial and
on 2 workers (halves of the same 16-example global batches): the same record and, step by step,
the same train loss. The adapter's dropout is 0 (dropout draws different masks for half a batch
than for the whole); the tiny Llama has no other dropout.
"""

from __future__ import annotations

import pytest
from sweep_runs import run_sweep_in_process
from test_ray_train import ONE_PROCESS, TWO_WORKERS, _record, assert_same_train_loss

pytestmark = pytest.mark.integration

STEPS = 4
FLAGS = ["--preset", "smoke", "--scheduler", "fifo", "--set", f"train.max_steps={STEPS}",
         "--set", "train.log_every_steps=1", "--set", "adapter.dropout=0", "--set", "eval.generate=false"]


@pytest.fixture(scope="module")
def qlora_pair(tmp_path_factory, one_local_ray):
    root = tmp_path_factory.mktemp("ray-train-qlora")
    space = root / "space.yaml"
    space.write_text("scientific:\n  r: {grid: [4]}\nfixed: {alpha: 16, targets: all-linear, lr: 1.0e-3}\n")
    out = []
    for name, flags in (("one-process", ONE_PROCESS), ("two-workers", TWO_WORKERS)):
        uri = f"sqlite:///{root / (name + '.db')}"
        argv = [*FLAGS, "--search-space", str(space), "--tracking-uri", uri, "--storage", str(root / "rr"),
                "--name", name, *flags]
        out.append(run_sweep_in_process("qlora_guanaco", argv, cwd=root, uri=uri,
                                        experiment="lorasweep-qlora_guanaco", completed=1))
    return out


def test_a_two_worker_qlora_trial_trains_on_the_one_process_loss_step_by_step(qlora_pair):
    """The same record in both shapes, and each logged train loss the one-process loss of that
    step within float32 rounding of sums made in another order (1e-5 relative, as for the
    full-precision base in ``test_ray_train.py``: the 4-bit weights dequantise to the same
    values on every rank)."""
    one, two = (_record(s) for s in qlora_pair)
    assert one == two
    assert one["status"] == ("FINISHED", "completed")
    assert_same_train_loss(qlora_pair, STEPS)
    parents = [s.client.get_run(s.trials[0].data.tags["mlflow.parentRunId"]) for s in qlora_pair]
    assert [p.data.params["resources.workers_per_trial"] for p in parents] == ["1", "2"]
