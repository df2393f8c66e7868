"""The vision task family (CIFAR-10 with a ResNet): LoRA on Conv2d layers, the three data
readers, the seeded 80/20 split, early stopping, and the cifar_lora smoke sweep end to end.

Real parts: a tiny ResNet (transformers' ``ResNetForImageClassification``, pretrained for a
few seconds on synthetic shapes), synthetic images in the official ``cifar-10-batches-py``
format, real peft LoRA on Conv2d layers, real local Ray and a real MLflow SQLite store.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from sweep_runs import ONE_AT_A_TIME, run_study_here


@pytest.fixture(scope="session")
def vision_assets(torch_one_thread):
    from trainables.offline.vision_synth import smoke_cifar10_data, smoke_resnet

    return smoke_cifar10_data(), smoke_resnet()


def _trial(vision_assets, **overrides):
    from trainables.config import TrialConfig
    from trainables.schema import deep_merge, from_dict

    data_dir, model_dir = vision_assets
    base = {
        "task": "cifar10", "seed": 5,
        "model": {"name_or_path": str(model_dir)},
        "data": {"source": str(data_dir), "train_limit": 64, "val_limit": 48, "test_limit": 40},
        "adapter": {"method": "lora", "r": 4, "alpha": 8, "dropout": 0.1, "targets": "conv+fc"},
        "train": {"epochs": 2, "batch_size": 16, "lr": 1e-2, "weight_decay": 0.0, "warmup_steps": 0,
                  "scheduler": "constant", "label_smoothing": 0.0, "eval_batch_size": 48,
                  "log_every_steps": 1},
    }
    return from_dict(TrialConfig, deep_merge(base, overrides))


# --------------------------------------------------------------------------- LoRA on Conv2d


def test_lora_on_conv2d_changes_only_adapter_weights_and_the_new_head(vision_assets, tmp_path):
    """After a few optimizer steps every base parameter and buffer (BatchNorm statistics
    included) is byte-identical; every conv's LoRA A and B changed; the new 10-class head
    (peft ``modules_to_save``: trained in full, not LoRA-adapted) changed, its frozen original
    did not."""
    import torch
    from peft.tuners.lora import layer as lora_layer
    from torch.utils.data import DataLoader

    from trainables.adapters import build_adapter_model, count_parameters
    from trainables.optim import build_optimizer
    from trainables.tasks.registry import get_task

    cfg = _trial(vision_assets)
    task = get_task("cifar10")
    data = task.load_prepared(task.prepare(cfg, progress=False), cfg)
    model, size = task.load_model(cfg)
    torch.manual_seed(0)
    model = build_adapter_model(model, cfg.adapter, task_type=task.peft_task_type)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}

    convs = {n: m for n, m in model.named_modules() if isinstance(m, lora_layer.Conv2d)}
    # The 10 stage convolutions of the tiny ResNet (2 per stage + 3 shortcuts), not the stem.
    assert len(convs) == 11 and not any("embedder" in n for n in convs)
    assert all(isinstance(m.base_layer, torch.nn.Conv2d) for m in convs.values())
    assert not any(isinstance(m, lora_layer.Linear) for m in model.modules()), "the new head is not LoRA-adapted"
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_" in n or ".modules_to_save." in n for n in trainable)
    assert {n for n in trainable if ".modules_to_save." in n} == {
        "base_model.model.classifier.modules_to_save.default.1.weight",
        "base_model.model.classifier.modules_to_save.default.1.bias"}
    # r x (in x k x k + out) per conv, plus the 64 x 10 head: 13,440 + 650.
    assert count_parameters(model).trainable == 14090

    optimizer = build_optimizer(model, cfg.train)
    loader = DataLoader(data.train, batch_size=16, collate_fn=task.collate(size), shuffle=False)
    model.train()
    for _, batch in zip(range(3), loader):
        loss = task.train_loss(model, batch, cfg)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    after = model.state_dict()

    changed = {k for k in before if not torch.equal(before[k], after[k])}
    adapter_keys = {k for k in before if ".lora_" in k or ".modules_to_save." in k}
    assert not changed - adapter_keys, f"base weights or buffers changed: {sorted(changed - adapter_keys)[:5]}"
    for name in convs:
        for part in ("lora_A", "lora_B"):
            key = f"{name}.{part}.default.weight"
            assert key in changed, f"{key} did not train"
    assert "base_model.model.classifier.modules_to_save.default.1.weight" in changed
    assert "base_model.model.classifier.original_module.1.weight" not in changed
    running = [k for k in before if k.endswith("running_mean")]
    assert running and not set(running) & changed, "frozen BatchNorm statistics stay as loaded"

    # The saved adapter (LoRA + head) is the whole change: reloaded onto a freshly loaded base
    # it computes the same logits.
    from trainables.adapters import load_adapter, save_adapter

    save_adapter(model, tmp_path / "adapter", meta={"task": "cifar10"})
    fresh, _ = task.load_model(cfg)
    reloaded = load_adapter(fresh, tmp_path / "adapter")
    batch = next(iter(loader))
    model.eval()
    reloaded.eval()
    with torch.no_grad():
        assert torch.allclose(task._logits(model, batch), task._logits(reloaded, batch), atol=1e-6)


def test_resnet_target_groups_and_the_full_baseline(vision_assets):
    from trainables.adapters import build_adapter_model, count_parameters
    from trainables.errors import UserError
    from trainables.tasks.registry import get_task

    task = get_task("cifar10")
    cfg = _trial(vision_assets, adapter={"targets": "fc"})
    # fc alone on a freshly initialised head: nothing left for LoRA, refused before launch.
    with pytest.raises(UserError, match="only adapts the head"):
        build_adapter_model(task.skeleton(cfg), cfg.adapter, task_type=task.peft_task_type)
    conv = build_adapter_model(task.skeleton(cfg), _trial(vision_assets, adapter={"targets": "conv"}).adapter,
                               task_type=task.peft_task_type)
    all_conv = build_adapter_model(task.skeleton(cfg), _trial(vision_assets, adapter={"targets": "all-conv"}).adapter,
                                   task_type=task.peft_task_type)
    stem = 4 * (3 * 7 * 7 + 16)  # LoRA on the 7x7 stem conv, 3 -> 16 channels
    assert count_parameters(all_conv).trainable - count_parameters(conv).trainable == stem

    full_cfg = _trial(vision_assets, adapter={"method": "full"})
    model, _ = task.load_model(full_cfg)
    full = build_adapter_model(model, full_cfg.adapter, task_type=task.peft_task_type)
    counts = count_parameters(full)
    assert counts.trainable == counts.total == sum(p.numel() for p in model.parameters())
    import torch

    bns = [m for m in full.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    full.train()
    assert bns and all(m.training for m in bns), "full fine-tuning updates BatchNorm statistics"


# --------------------------------------------------------------------------- data


def test_cifar_pickle_imagefolder_and_hub_readers_give_the_same_arrays(tmp_path):
    from trainables.offline import vision_synth as vs
    from trainables.tasks.vision import (
        read_cifar_batches,
        read_hub,
        read_imagefolder,
        source_layout,
    )

    vs.write_cifar_batches(tmp_path / "pickles", n_train=60, n_test=20, seed=3)
    assert source_layout(str(tmp_path / "pickles")) == ("cifar", tmp_path / "pickles" / "cifar-10-batches-py")
    arrays, names = read_cifar_batches(tmp_path / "pickles" / "cifar-10-batches-py")
    assert names == vs.LABEL_NAMES and list(names) == sorted(names)
    # The pickles hold exactly what the generator drew (rows of R, G, B planes, read back HWC).
    x, y = vs.make_images(60, seed=3)
    assert arrays["train"][0].dtype == np.uint8 and arrays["train"][0].shape == (60, 32, 32, 3)
    assert np.array_equal(arrays["train"][0], x) and np.array_equal(arrays["train"][1], y)

    vs.write_imagefolder(tmp_path / "folder", arrays)
    assert source_layout(str(tmp_path / "folder"))[0] == "imagefolder"
    folder, folder_names = read_imagefolder(tmp_path / "folder")
    vs.write_hub_parquet(tmp_path / "hub", arrays)
    assert source_layout(str(tmp_path / "hub"))[0] == "hub"
    hub, hub_names = read_hub(str(tmp_path / "hub"), None)
    assert folder_names == hub_names == names
    for split in ("train", "test"):
        images, labels = arrays[split]
        # The hub copy keeps the pickle order; an image folder is in class, then file order.
        assert np.array_equal(hub[split][0], images) and np.array_equal(hub[split][1], labels)
        order = np.argsort(labels, kind="stable")
        assert np.array_equal(folder[split][0], images[order])
        assert np.array_equal(folder[split][1], labels[order])


def test_a_local_copy_of_the_hub_dataset_is_checked_and_keyed_by_its_files(tmp_path):
    """``hf download --repo-type dataset uoft-cs/cifar10 --local-dir DIR``: a card with the
    ``plain_text`` config, parquet shards under ``plain_text/``."""
    from trainables.config import TrialConfig
    from trainables.errors import UserError
    from trainables.offline import vision_synth as vs
    from trainables.schema import from_dict
    from trainables.tasks.registry import get_task

    def cfg(source):
        return from_dict(TrialConfig, {"task": "cifar10", "data": {"source": str(source)}})

    task = get_task("cifar10")
    x, y = vs.make_images(12, seed=1)
    hub = vs.write_hub_parquet(tmp_path / "hub", {"train": (x[:8], y[:8]), "test": (x[8:], y[8:])})
    assert (hub / "README.md").is_file()
    task.check(cfg(hub))
    key = task._key(cfg(hub), None)
    vs.write_hub_parquet(hub, {"train": (x[:8], y[:8]), "test": (x[8:], y[8:])})
    assert task._key(cfg(hub), None) == key  # the same images: the same files
    card = (hub / "README.md").read_text()
    (hub / "README.md").write_text(card + "A note.\n")
    assert task._key(cfg(hub), None) != key

    partial = vs.write_hub_parquet(tmp_path / "partial", {"train": (x[:8], y[:8])})
    with pytest.raises(UserError) as err:
        task.check(cfg(partial))
    assert err.value.message == f"{partial} has no 'test' split (it has 'train')"

    # One config of the hub's parquet conversion: split folders, no card (not an image folder).
    converted = tmp_path / "converted"
    for split in ("train", "test"):
        (converted / split).mkdir(parents=True)
        (hub / "plain_text" / f"{split}-00000-of-00001.parquet").rename(converted / split / "0000.parquet")
    from trainables.tasks.vision import source_layout

    assert source_layout(str(converted)) == ("hub", converted)
    task.check(cfg(converted))


def test_a_cifar_batch_that_would_run_code_is_refused_unrun(tmp_path):
    """CIFAR batches come from a download or shared storage: a pickle naming anything but
    numpy's array machinery (here ``os.system``) is refused before it is called."""
    from trainables.errors import UserError
    from trainables.tasks.vision import CIFAR_FILES, read_cifar_batches

    marker = tmp_path / "code-ran"
    evil = f"cos\nsystem\n(S'touch {marker}'\ntR.".encode()  # pickle protocol 0: os.system(...)
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    for name in CIFAR_FILES:
        (d / name).write_bytes(evil)
    with pytest.raises(UserError, match=r"batches.meta: not a CIFAR-10 batch \(it names os.system"):
        read_cifar_batches(d)
    assert not marker.exists()


def _py2_pickle(entries: list[tuple[bytes, bytes]]) -> bytes:
    """A dict pickled as Python 2's cPickle wrote the official batches (protocol 2): keys and
    byte strings as ``U``/``T`` opcodes, not Python 3's ``_codecs.encode`` calls."""
    return b"\x80\x02}(" + b"".join(k + v for k, v in entries) + b"u."


def _s(b: bytes) -> bytes:  # SHORT_BINSTRING (Python 2 str)
    return b"U" + bytes([len(b)]) + b


def test_a_batch_pickled_by_python_2_as_the_official_archive_is_read(tmp_path):
    """The release's pickles were written by Python 2 with numpy 1 (``numpy.core.multiarray``;
    the synthetic batches are Python 3's, naming ``numpy._core`` under numpy 2). Here one
    image per batch, typed opcode by opcode: ndarray(1 x 3072 uint8) via ``_reconstruct``."""
    import struct

    from trainables.tasks.vision import CIFAR_FILES, read_cifar_batches

    pixels = bytes(range(256)) * 12  # one 3072-byte row: R plane, G plane, B plane
    array = (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + _s(b"b") + b"\x87R(K\x01"
             b"K\x01M\x00\x0c\x86cnumpy\ndtype\n" + _s(b"u1") + b"K\x00K\x01\x87R(K\x03" + _s(b"|")
             + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89T" + struct.pack("<i", len(pixels)) + pixels + b"tb")
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    for i, name in enumerate(CIFAR_FILES[:-1]):
        (d / name).write_bytes(_py2_pickle([(_s(b"batch_label"), _s(name.encode())),
                                            (_s(b"labels"), b"]K" + bytes([i]) + b"a"), (_s(b"data"), array)]))
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    (d / "batches.meta").write_bytes(_py2_pickle([(_s(b"num_cases_per_batch"), b"M\x10'"),
                                                  (_s(b"label_names"), b"](" + b"".join(map(_s, names)) + b"e"),
                                                  (_s(b"num_vis"), b"M\x00\x0c")]))
    arrays, label_names = read_cifar_batches(d)
    assert label_names[:2] == ("airplane", "automobile") and len(label_names) == 10
    train_x, train_y = arrays["train"]
    assert train_x.shape == (5, 32, 32, 3) and train_y.tolist() == [0, 1, 2, 3, 4]
    # pixel (row 0, col 1) of channel c is byte c*1024 + 1 of the row
    assert train_x[0, 0, 1].tolist() == [1, (1024 + 1) % 256, (2048 + 1) % 256]
    assert arrays["test"][1].tolist() == [5]


def test_split_is_seeded_80_20_and_disjoint():
    from trainables.tasks.vision import split_indices

    train, val = split_indices(1000, seed=0)
    assert len(train) == 800 and len(val) == 200
    assert not set(train) & set(val) and set(train) | set(val) == set(range(1000))
    again_train, again_val = split_indices(1000, seed=0)
    assert np.array_equal(train, again_train) and np.array_equal(val, again_val)
    assert not np.array_equal(val, split_indices(1000, seed=1)[1])


def test_prepared_splits_follow_the_seed(vision_assets, tmp_path, monkeypatch):
    from trainables.tasks.registry import get_task
    from trainables.tasks.vision import split_indices

    task = get_task("cifar10")
    cfg = _trial(vision_assets, data={"train_limit": None, "val_limit": None, "test_limit": None})
    data = task.load_prepared(task.prepare(cfg, progress=False), cfg)
    train, val = split_indices(1000, seed=cfg.data.split_seed)
    assert np.array_equal(data.train.indices, train) and np.array_equal(data.val.indices, val)
    assert len(data.test) == 200 and data.stats["label_names"][0] == "circle-blue"
    assert data.val.images is data.train.images  # one memory-mapped array, two index sets
    # The resize happens per batch; the cache keeps 32 x 32.
    batch = task.collate(64)([data.val[i] for i in range(4)])
    assert tuple(batch["pixel_values"].shape) == (4, 3, 64, 64)
    assert abs(float(batch["pixel_values"].mean())) < 3.0


# --------------------------------------------------------------------------- early stopping


def test_early_stopping_keeps_and_restores_the_best_weights():
    import torch

    from trainables.early_stopping import EarlyStopping

    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    model[0].bias.requires_grad_(False)
    stop = EarlyStopping(2, "val_accuracy", "max")
    assert not stop.update(50.0, model=model, step=1, epoch=0.5)
    best_w = model[0].weight.detach().clone()
    best_stats = model[1].running_mean.clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
        model[1].running_mean.add_(3.0)
    assert not stop.update(50.0, model=model, step=2, epoch=1.0)  # equal is no improvement
    assert stop.update(40.0, model=model, step=3, epoch=1.5)  # second bad report: stop
    stop.restore(model)
    assert torch.equal(model[0].weight, best_w) and torch.equal(model[1].running_mean, best_stats)
    assert (stop.best, stop.best_step, stop.best_epoch) == (50.0, 1, 0.5)
    lower = EarlyStopping(1, "val_loss", "min")
    assert not lower.update(2.0, model=model, step=1, epoch=1.0)
    assert not lower.update(1.5, model=model, step=2, epoch=2.0)
    assert lower.update(1.5, model=model, step=3, epoch=3.0)


def test_a_trial_that_trains_to_the_end_is_evaluated_on_its_best_report(vision_assets):
    """With early stopping on, a trial whose last report is not its best (lr 1e-12: equal
    accuracy is no improvement) still ends on the best report's weights for the test set."""
    from trainables.loop import run_loop
    from trainables.session import LocalSession

    cfg = _trial(vision_assets, train={"lr": 1e-12, "eval_every_steps": 1, "max_steps": 2,
                                       "early_stopping_patience": 5}, adapter={"dropout": 0.0})
    session = LocalSession()
    last = run_loop(cfg, session)
    assert [r["step"] for r in session.reports] == [1, 2] and last["is_final"]
    assert last["best_step"] == 1 and "stopped_early_at" not in last
    assert last["final_note"].startswith("early stopping: the last report's val_accuracy was not the best")
    assert last["val_accuracy"] == session.reports[0]["val_accuracy"]


def test_trial_with_a_metric_that_cannot_improve_stops_after_patience(vision_assets, tmp_path):
    """lr 1e-12 cannot move validation accuracy: with patience 1 the trial stops at its second
    report, restores the first report's weights and ends with the final (test) evaluation.
    Restored from that final checkpoint (a driver killed before Tune recorded the end), the
    trial is over: it does not train on past the step it stopped at."""
    from trainables.loop import run_loop
    from trainables.optim import plan_steps
    from trainables.session import LocalSession

    cfg = _trial(vision_assets, train={"lr": 1e-12, "eval_every_steps": 1, "early_stopping_patience": 1},
                 adapter={"dropout": 0.0})
    session = LocalSession(tmp_path / "first")
    last = run_loop(cfg, session)
    restored = LocalSession(tmp_path / "again", restore_from=session.checkpoints[-1])
    assert run_loop(cfg, restored) == {} and restored.reports == []
    reports = session.reports
    assert [r["step"] for r in reports] == [1, 2, 2]
    assert [r["is_final"] for r in reports] == [False, False, True]
    assert plan_steps(cfg.train, 64).total_steps == 8  # it would have run 8 steps
    assert last is reports[-1] or last == reports[-1]
    assert last["stopped_early_at"] == reports[1]["epoch"] and last["best_epoch"] == reports[0]["epoch"]
    assert last["best_step"] == 1 and last["val_accuracy"] == reports[0]["val_accuracy"]
    assert last["final_note"].startswith("early stopping: no val_accuracy improvement in 1 report")
    assert 0.0 <= last["test_accuracy"] <= 100.0 and last["trainable_params"] == 14090
    assert last["samples_per_s"] > 0 and last["tokens_per_s"] is None and last["peak_mem_mb"] > 0


def test_a_full_fine_tuning_trial_resumes_from_its_checkpoint(vision_assets, tmp_path):
    """``method: full`` checkpoints the whole model (BatchNorm statistics included); a trial
    restored from its first report ends exactly like an uninterrupted one."""
    from conftest import DiesAfterFirstReport, Interrupted

    from trainables.loop import run_loop
    from trainables.session import LocalSession

    cfg = _trial(vision_assets, adapter={"method": "full"}, eval={"generate": False})
    whole = LocalSession(tmp_path / "whole")
    run_loop(cfg, whole)
    dying = DiesAfterFirstReport(tmp_path / "dying")
    with pytest.raises(Interrupted):
        run_loop(cfg, dying)
    assert (dying.checkpoints[0] / "adapter" / "model.safetensors").is_file()
    resumed = LocalSession(tmp_path / "resumed", restore_from=dying.checkpoints[0])
    run_loop(cfg, resumed)
    assert [r["epoch"] for r in resumed.reports] == [2.0]
    assert resumed.reports[-1]["val_loss"] == pytest.approx(whole.reports[-1]["val_loss"], rel=1e-5)
    assert resumed.reports[-1]["val_accuracy"] == whole.reports[-1]["val_accuracy"]


def test_bad_target_group_is_refused_before_launch(vision_assets, tmp_path, capsys):
    from sweeps.cli import EXIT_USAGE, run_study

    code = run_study("cifar_lora", ["--preset", "smoke", "--set", "adapter.targets=fc",
                                    "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}",
                                    "--storage", str(tmp_path / "rr")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == EXIT_USAGE and len(err) == 1 and err[0].startswith("error: adapter.targets:")
    assert not (tmp_path / "m.db").exists() and not (tmp_path / "rr").exists()


# --------------------------------------------------------------------------- the study


@pytest.mark.integration
def test_cifar_lora_smoke_sweep_records_lora_and_full_baseline(vision_assets, tmp_path, one_local_ray):
    """Both methods complete with their test accuracy and outputs in MLflow; with early
    stopping at patience 1 a trial that stops early has its final record too (where it
    stopped and its best report), although its final report repeats the step of the report
    that stopped it. The sweep runs through the study's entry point (``run_study``, what
    ``sweeps/cifar_lora.py`` calls) in the test process."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    code, out = run_study_here("cifar_lora", [
        "--preset", "smoke", "--tracking-uri", uri, "--storage", str(tmp_path / "ray_results"), "--name", "cl",
        "--set", "train.epochs=3", "--set", "train.early_stopping_patience=1", "--set", "data.train_limit=320",
        *ONE_AT_A_TIME], cwd=tmp_path)
    assert code == 0, out[-4000:]
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("lorasweep-cifar_lora")
    runs = client.search_runs([exp.experiment_id])
    trials = {r.data.params["adapter.method"]: r for r in runs if r.data.tags.get("lorasweep.kind") == "trial"}
    assert set(trials) == {"lora", "full"}
    for method, t in trials.items():
        m = t.data.metrics
        assert t.data.tags["lorasweep.status"] == "completed", method
        assert {"val_accuracy", "val_loss", "test_accuracy", "samples_per_s", "peak_mem_mb",
                "trainable_params", "total_params"} <= set(m), (method, sorted(m))
        assert len(client.get_metric_history(t.info.run_id, "val_accuracy")) >= 2
        assert m["samples_per_s"] > 0 and m["peak_mem_mb"] > 0
        if "stopped_early_at" in m:
            assert m["best_epoch"] <= m["stopped_early_at"] < 3.0
            assert t.data.tags["lorasweep.note"].startswith("early stopping: no val_accuracy improvement")
        artifacts = {a.path for a in client.list_artifacts(t.info.run_id, "outputs")}
        assert "outputs/test_predictions.csv" in artifacts
    assert any("stopped_early_at" in t.data.metrics for t in trials.values()), \
        "no trial stopped early: the sweep no longer tests the final record of one that does"
    lora, full = trials["lora"].data.metrics, trials["full"].data.metrics
    assert full["trainable_params"] == full["total_params"] == 158170
    assert lora["trainable_params"] == 14090 < full["trainable_params"]
    # The summary table shows both counts.
    assert "14,090" in out and "158,170" in out and "test Acc" in out
    adapter = {a.path for a in client.list_artifacts(trials["lora"].info.run_id, "adapter")}
    assert "adapter/adapter_model.safetensors" in adapter
    best = re.search(r"best trial: (.*) \(", out).group(1)
    assert best in ("method=lora", "method=full"), best
    # The best trial's weights are named for what they are: a whole model for full fine-tuning.
    said = "its model (full fine-tuning)" if best == "method=full" else "its adapter"
    assert f"{said}: runs:/{trials[best.split('=')[1]].info.run_id}/adapter" in out
    assert Path(tmp_path / "ray_results" / "cl" / "results.csv").is_file()


def test_paper_preset_has_the_issue_settings():
    """Checked without training or the hub: the preset and its space as the issue states them."""
    from search_spaces import apply_hyperparameters, base_with_fixed, load_space
    from sweeps.cli import build_config, build_parser
    from sweeps.study_file import load_study
    from trainables.config import TrialConfig
    from trainables.schema import from_dict, to_dict

    study = load_study("cifar_lora")
    cfg = build_config(study, build_parser(study).parse_args(["--preset", "paper"]))
    base = to_dict(cfg.trial)
    space = load_space(cfg.space, base=base)
    assert [(p.key, p.values) for p in space.swept] == [("adapter.method", ("lora", "full"))]
    trials = [from_dict(TrialConfig, apply_hyperparameters(base_with_fixed(base, space), point))
              for point in space.grid_points()]
    for t in trials:
        assert t.task == "cifar10" and t.model.name_or_path == "microsoft/resnet-18"
        assert (t.adapter.r, t.adapter.lora_alpha, t.adapter.dropout, t.adapter.targets) == (14, 16, 0.1, "conv+fc")
        assert (t.train.lr, t.train.weight_decay, t.train.batch_size) == (1e-4, 0.0, 32)  # Adam
        assert t.train.early_stopping_patience == 7 and t.train.eval_every_steps is None  # epochs
        assert t.data.image_size == 224 and t.data.source == "cifar10"
    assert [t.adapter.method for t in trials] == ["lora", "full"]


def test_a_worker_group_syncs_trainable_batchnorm_on_cuda_and_warns_on_cpu(vision_assets):
    """The tiny ResNet's BatchNorm layers train under ``method: full`` and are frozen under
    LoRA: only a full fine-tuning trial on several workers needs the batch statistics of the
    whole global batch, through SyncBatchNorm on CUDA; on CPU, which has none, it is warned."""
    import torch

    from trainables.adapters import build_adapter_model
    from trainables.session import BATCHNORM_PER_WORKER, batchnorm_plan
    from trainables.tasks.registry import get_task

    task = get_task("cifar10")
    models = {}
    for method in ("full", "lora"):
        cfg = _trial(vision_assets, adapter={"method": method, "targets": "conv"} if method == "lora"
                     else {"method": "full"})
        models[method] = build_adapter_model(task.load_model(cfg)[0], cfg.adapter, task_type=task.peft_task_type)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in models["lora"].modules())
    plans = {(method, world, cuda): batchnorm_plan(model, world_size=world, cuda=cuda)
             for method, model in models.items() for world in (1, 2) for cuda in (False, True)}
    assert plans == {("full", 1, False): None, ("full", 1, True): None,
                     ("full", 2, False): "per-worker", ("full", 2, True): "sync",
                     ("lora", 1, False): None, ("lora", 1, True): None,
                     ("lora", 2, False): None, ("lora", 2, True): None}
    assert "\n" not in BATCHNORM_PER_WORKER and BATCHNORM_PER_WORKER.startswith("warning: BatchNorm")
