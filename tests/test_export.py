"""Adapters out of a real sweep: real local Ray, a real MLflow SQLite store, real training.

Two sweeps run once per module through their studies' entry point (``run_study``) in the test
process, on one local Ray:

* ``rank_e2e.py --preset smoke`` over four adapter layouts on the tiny GPT-2: LoRA on the qv
  views, LoRA on the fused c_attn, DoRA and PiSSA on the qv views;
* ``variants_glue.py --preset smoke --task mrpc``: its seven methods on MiniLM (full, LoRA,
  DoRA, VeRA, LoRA+, LoRA-FA, PiSSA).

Every adapter the sweeps logged loads with plain ``PeftModel.from_pretrained`` on the
unmodified base and gives the logits of the trial's own model, rebuilt as a resumed trial
rebuilds it (the trial's code, then its own layout's weights). The sweep's parent run names its
best trial; ``python -m sweeps.export`` writes it out (merged or not, registered in MLflow) and
refuses what it cannot do with one line and exit code 2, writing nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO
from sweep_runs import ONE_AT_A_TIME, run_sweep_in_process

pytestmark = pytest.mark.integration

LAYOUTS = "scientific:\n  method+targets: {grid: [[lora, qv], [lora, c_attn], [dora, qv], [pissa, qv]]}\n"
SMALL = ["--set", "data.train_limit=64", "--set", "data.val_limit=32", "--set", "train.epochs=1"]
TEXT = ["name[The Eagle] eatType[coffee shop] food[French]", "name[Blue Spice] area[riverside] near[Rainbow]"]


def _sweep(root: Path, study: str, *args: str) -> dict:
    uri = f"sqlite:///{root / 'mlruns.db'}"
    s = run_sweep_in_process(study, ["--preset", "smoke", "--tracking-uri", uri, "--storage", str(root / "rr"),
                                     *ONE_AT_A_TIME, *args], cwd=root, uri=uri, experiment=f"lorasweep-{study}")
    return {"root": root, "uri": uri, "out": s.out, "client": s.client, "parent": s.parent, "trials": s.trials}


@pytest.fixture(scope="module")
def layouts(tmp_path_factory, smoke_assets, one_local_ray):
    root = tmp_path_factory.mktemp("layouts")
    (root / "space.yaml").write_text(LAYOUTS)
    return _sweep(root, "rank_e2e", "--search-space", str(root / "space.yaml"), "--scheduler", "fifo",
                  "--name", "layouts", "--set", "eval.generate=false", *SMALL)


@pytest.fixture(scope="module")
def variants(tmp_path_factory, one_local_ray):
    root = tmp_path_factory.mktemp("variants")
    return _sweep(root, "variants_glue", "--task", "mrpc", "--name", "v", *SMALL,
                  "--set", "data.test_limit=16", "--set", "data.max_length=32")


def _download(sweep: dict, run, name: str) -> Path:
    dest = sweep["root"] / "downloads" / run.info.run_id
    dest.mkdir(parents=True, exist_ok=True)
    return Path(sweep["client"].download_artifacts(run.info.run_id, name, str(dest)))


def _trial_model(cfg, own_layout: Path):
    """The trial's model as a resumed trial rebuilds it: the task's base, the trial's adapter
    built by the trial's code, then the weights of its own layout."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    from trainables.adapters import build_adapter_model
    from trainables.tasks.registry import get_task

    task = get_task(cfg.task)
    model, tokenizer = task.load_model(cfg)
    model = build_adapter_model(model, cfg.adapter, task_type=task.peft_task_type)
    if (own_layout / "adapter_model.safetensors").is_file():
        result = set_peft_model_state_dict(model, load_file(str(own_layout / "adapter_model.safetensors")))
        assert not result.unexpected_keys
    else:  # full fine-tuning: the whole model
        model.load_state_dict(load_file(str(own_layout / "model.safetensors")), strict=False)
    return model.eval(), tokenizer


def _logits(model, tokenizer) -> torch.Tensor:
    batch = tokenizer(TEXT, return_tensors="pt", padding=True)
    with torch.no_grad():
        return model(**batch).logits


def _assert_base_unmodified(model, before: dict[str, torch.Tensor]) -> None:
    """Loading the adapter left the base's weights as they were (a PiSSA adapter saved as it
    trains would make peft move its principal part out of them again)."""
    adapted = 0
    for name, module in model.named_modules():
        if hasattr(module, "base_layer") and hasattr(module.base_layer, "weight"):
            key = name.removeprefix("base_model.model.") + ".weight"
            assert torch.equal(module.base_layer.weight, before[key]), key
            adapted += 1
    assert adapted


def _check_logged_adapters(sweep: dict, plain_base) -> set[str]:
    """Each trial's logged adapter/ on the unmodified base (``plain_base(path)``) against the
    trial's own model; returns the methods checked."""
    from peft import PeftModel

    from trainables.config import TrialConfig
    from trainables.schema import from_dict

    methods = set()
    for run in sweep["trials"]:
        artifacts = {a.path for a in sweep["client"].list_artifacts(run.info.run_id)}
        cfg = from_dict(TrialConfig, json.loads(_download(sweep, run, "trial_config.json").read_text()))
        standard = _download(sweep, run, "adapter")
        own = _download(sweep, run, "trial_adapter") if "trial_adapter" in artifacts else standard
        want_model, tokenizer = _trial_model(cfg, own)
        want = _logits(want_model, tokenizer)
        if cfg.adapter.method == "full":  # no adapter: the whole model, loaded by transformers
            from transformers import AutoModelForSequenceClassification

            got_model = AutoModelForSequenceClassification.from_pretrained(str(standard))
        else:
            base = plain_base(cfg.model.name_or_path)
            before = {k: v.detach().clone() for k, v in base.state_dict().items()}
            got_model = PeftModel.from_pretrained(base, str(standard))
            _assert_base_unmodified(got_model, before)
        got = _logits(got_model.eval(), tokenizer)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0, msg=lambda m: f"{cfg.adapter.method}: {m}")
        assert "PeftModel.from_pretrained" in (standard / "README.md").read_text() or cfg.adapter.method == "full"
        methods.add(f"{cfg.adapter.method} {cfg.adapter.targets}")
    return methods


def test_gpt2_adapters_of_every_layout_load_with_plain_peft_and_give_the_trials_logits(layouts):
    from transformers import AutoModelForCausalLM

    methods = _check_logged_adapters(layouts, lambda path: AutoModelForCausalLM.from_pretrained(path))
    assert methods == {"lora qv", "lora c_attn", "dora qv", "pissa qv"}
    # The qv views are GPT-2's c_attn to plain peft: rank 2r there (2 x 4), alpha 2 x 32.
    lora_qv = next(t for t in layouts["trials"]
                   if (t.data.params["adapter.method"], t.data.params["adapter.targets"]) == ("lora", "qv"))
    config = json.loads((_download(layouts, lora_qv, "adapter") / "adapter_config.json").read_text())
    assert (config["target_modules"], config["r"], config["lora_alpha"]) == (["c_attn"], 8, 64.0)


def test_variants_glue_smoke_methods_load_with_plain_peft_and_give_the_trials_logits(variants):
    from transformers import AutoModelForSequenceClassification

    # MRPC: two classes; MiniLM's tokenizer has a pad token (id 0) of its own.
    base = lambda path: AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)  # noqa: E731
    methods = _check_logged_adapters(variants, base)
    assert methods == {f"{m} qv" for m in ("full", "lora", "dora", "vera", "loraplus", "lora-fa", "pissa")}


def test_variants_glue_smoke_records_quality_speed_and_memory_per_method(variants):
    """Every method's row: its task metrics, speed and memory in MLflow, the comparison table
    printed and logged to the parent; full fine-tuning saves the whole model, the others an
    adapter."""
    client, trials = variants["client"], {t.data.params["adapter.method"]: t for t in variants["trials"]}
    for method, t in trials.items():
        assert t.data.tags["lorasweep.status"] == "completed", method
        m = t.data.metrics
        assert {"accuracy", "f1", "val_accuracy", "trainable_params", "samples_per_s", "peak_mem_mb"} <= set(m), method
        assert m["samples_per_s"] > 0 and m["peak_mem_mb"] > 100
    n = {k: t.data.metrics["trainable_params"] for k, t in trials.items()}
    assert n["full"] == trials["full"].data.metrics["total_params"] > 22e6  # MiniLM-L6 + head
    assert all(n[k] < n["full"] for k in trials if k != "full")
    files = {k: {a.path for a in client.list_artifacts(t.info.run_id, "adapter")} for k, t in trials.items()}
    assert "adapter/model.safetensors" in files["full"]  # the whole model
    assert all("adapter/adapter_model.safetensors" in files[k] for k in trials if k != "full")
    parent = variants["parent"]
    assert {"methods.csv", "methods.png"} <= {a.path for a in client.list_artifacts(parent.info.run_id)}
    # The table's metric is the one the source reports (MRPC: F1), so the two sit side by side.
    table = variants["out"][variants["out"].index("methods on glue-mrpc (F1: median over completed trials"):]
    for method in trials:
        assert f"\n{method} " in table
    assert "trainable params" in table and "samples/s" in table and "peak MB" in table
    # Beside each method, the study's own source: UT Austin Table 1's MRPC F1 (0.92, 0.92,
    # 0.91, 0.91, 0.92 for full, LoRA, DoRA, LoRA-FA, VeRA), not the LoRA paper's LoRA row.
    assert "reference (UT Austin LoRA reproduction, Table 1, RoBERTa-base): each method's, in the methods " \
           "table below" in variants["out"] and "Table 2" not in variants["out"]
    lines = {words[0]: line.rstrip() for line in table.splitlines() if (words := line.split()) and words[0] in trials}
    for method, f1 in {"full": 92, "lora": 92, "dora": 91, "lora-fa": 91, "vera": 92}.items():
        assert method in lines and lines[method].endswith(f"F1 {f1:.2f}"), table
    assert all(lines[m].endswith(" -") for m in set(trials) - {"full", "lora", "dora", "lora-fa", "vera"})


# --------------------------------------------------------------------------- the best trial


def _best(sweep: dict):
    """The trial the parent names best, checked against the children's own records: a
    completed trial with the best value of the task's metric (others may tie with it)."""
    from trainables.tasks.registry import get_task

    metric = get_task(sweep["parent"].data.params["task"]).metric
    done = [t for t in sweep["trials"] if t.data.tags["lorasweep.status"] == "completed"]
    value = (max if metric.mode == "max" else min)(t.data.metrics[metric.name] for t in done)
    best = next(t for t in done if t.info.run_id == sweep["parent"].data.tags["lorasweep.best_run_id"])
    assert best.data.metrics[metric.name] == value
    return best, metric.name


@pytest.mark.parametrize("name", ["layouts", "variants"])
def test_the_parent_run_names_its_best_trial_and_carries_its_metrics(request, name):
    sweep = request.getfixturevalue(name)
    parent = sweep["parent"]
    best, metric = _best(sweep)
    assert parent.data.tags["lorasweep.best_trial_id"] == best.data.tags["lorasweep.trial_id"]
    for key in (metric, "trainable_params"):
        assert parent.data.metrics[f"best_{key}"] == best.data.metrics[key]
    assert f"its adapter: runs:/{best.info.run_id}/adapter" in sweep["out"]
    assert (f"export it: python -m sweeps.export --run {parent.info.run_id} --tracking-uri {sweep['uri']} "
            f"--out {parent.data.tags['lorasweep.sweep']}-best") in sweep["out"]


# --------------------------------------------------------------------------- python -m sweeps.export


def _export(sweep: dict, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "sweeps.export", "--tracking-uri", sweep["uri"], *args]
    return subprocess.run(cmd, cwd=sweep["root"], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})


def test_export_merged_generates_what_base_plus_adapter_generates_and_is_registered(layouts, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    parent = layouts["parent"]
    best, _ = _best(layouts)
    plain = _export(layouts, "--run", parent.info.run_id, "--out", str(tmp_path / "adapter"))
    merged = _export(layouts, "--sweep", "layouts", "--merge", "--register", "layouts-best",
                     "--out", str(tmp_path / "merged"))
    for proc in (plain, merged):
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert f"exported trial run {best.info.run_id}" in proc.stdout
    assert "registered: MLflow model 'layouts-best' version 1" in merged.stdout

    base_path = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())["base_model_name_or_path"]
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "merged")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()
    with_adapter = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_path),
                                             str(tmp_path / "adapter")).eval()
    with_adapter.generation_config = GenerationConfig.from_pretrained(tmp_path / "adapter")  # as its card does
    base = AutoModelForCausalLM.from_pretrained(base_path).eval()
    x = tokenizer(TEXT[0], return_tensors="pt")

    def generate(m):
        with torch.no_grad():
            return m.generate(**x, max_new_tokens=8, do_sample=False, pad_token_id=tokenizer.pad_token_id)

    assert torch.equal(generate(model), generate(with_adapter))
    torch.testing.assert_close(_logits(model, tokenizer), _logits(with_adapter, tokenizer), atol=1e-5, rtol=0)
    assert (_logits(model, tokenizer) - _logits(base, tokenizer)).abs().max() > 1e-3  # the adapter is in it
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in (tmp_path / "merged").iterdir()}
    umask = os.umask(0)
    os.umask(umask)
    for path in (tmp_path / "merged", tmp_path / "adapter"):  # readable by others, as the umask allows
        assert path.stat().st_mode & 0o777 == 0o777 & ~umask
        assert {p.stat().st_mode & 0o777 for p in path.rglob("*") if p.is_file()} == {0o666 & ~umask}, path

    card = (tmp_path / "adapter" / "README.md").read_text()
    assert "sweep `layouts` (study `rank_e2e`, preset `smoke`" in card and best.info.run_id in card
    assert f"| adapter.r | {best.data.params['adapter.r']} |" in card
    assert f"| val_loss | {best.data.metrics['val_loss']:.6g} |" in card
    assert "| train.batching | grouped |" in card  # the mode the trial ran with
    assert f"val_examples {parent.data.params['data.val_examples']}" in card.split("## How the metrics")[1]
    if best.data.params["eval.generate"] == "True":
        assert f"num_beams {best.data.params['eval.num_beams']}" in card
    assert "library_name: transformers" in (tmp_path / "merged" / "README.md").read_text()

    versions = layouts["client"].search_model_versions("name = 'layouts-best'")
    assert [(int(v.version), v.run_id) for v in versions] == [(1, best.info.run_id)]
    # Its pyfunc predicts with the trial's decoding (never the base's sampling), in its dtype.
    import mlflow

    mlflow.set_tracking_uri(layouts["uri"])
    flavors = mlflow.models.get_model_info("models:/layouts-best/1").flavors
    p, config = best.data.params, flavors["python_function"]["config"]
    assert (config["do_sample"], config["num_beams"], config["max_new_tokens"]) == (
        False, int(p["eval.num_beams"]), int(p["eval.max_new_tokens"]))
    assert flavors["transformers"]["torch_dtype"] == f"torch.{p['model.dtype']}"


def test_the_cards_heading_and_origin_render_user_given_names_as_written(layouts, tmp_path):
    """The best trial's card, its sweep, study and preset given names with markup in them (raw
    HTML, emphasis, backticks), rendered by markdown-it-py: the heading and the code spans of
    the origin line read as the names."""
    markdown_it = pytest.importorskip("markdown_it")
    from types import SimpleNamespace

    from sweeps.export import _download, _trial_config, model_card

    best, parent = _best(layouts)[0], layouts["parent"]
    adapter = _download(layouts["client"], best, tmp_path)
    cfg, meta = _trial_config(adapter.parent), json.loads((adapter / "lorasweep_adapter.json").read_text())
    names = {"lorasweep.sweep": "sweep <t> *t* #", "lorasweep.study": "a`b``c", "lorasweep.preset": "`p` _q_"}
    odd = SimpleNamespace(info=parent.info, data=SimpleNamespace(tags={**parent.data.tags, **names},
                                                                 params=parent.data.params))
    html = markdown_it.MarkdownIt("commonmark").render(model_card(best, odd, cfg, meta, merged=False))

    def shown(s: str) -> str:  # as markdown-it writes text in HTML
        return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")

    assert f"<h1>{shown(names['lorasweep.sweep'])}: {meta['method']} on {cfg.task}</h1>" in html
    for name in names.values():
        assert f"<code>{shown(name)}</code>" in html, name


def test_the_study_and_the_sweep_name_resolve_to_the_parents_best_trial(layouts):
    import argparse

    from sweeps.export import find_trial

    best, _ = _best(layouts)
    for source in ({"study": "rank_e2e"}, {"sweep": "layouts"}, {"run": layouts["parent"].info.run_id},
                   {"run": best.info.run_id}):
        args = argparse.Namespace(**{"run": None, "sweep": None, "study": None, **source})
        trial, parent = find_trial(layouts["client"], args, layouts["uri"])
        assert (trial.info.run_id, parent.info.run_id) == (best.info.run_id, layouts["parent"].info.run_id), source


def test_a_run_without_an_adapter_is_one_line_exit_2_and_nothing_written(layouts, tmp_path):
    client, parent = layouts["client"], layouts["parent"]
    stopped = client.create_run(parent.info.experiment_id, tags={
        "lorasweep.kind": "trial", "lorasweep.status": "stopped_early", "mlflow.parentRunId": parent.info.run_id})
    client.set_terminated(stopped.info.run_id)
    proc = _export(layouts, "--run", stopped.info.run_id, "--out", str(tmp_path / "x"))
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == (f"error: --run: run {stopped.info.run_id} (stopped_early) has no adapter in MLflow: "
                           "only completed trials record theirs; export a completed trial or its sweep\n")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, message", [
    (["--run", "0123abcd"], "--run: no MLflow run 0123abcd in"),
    (["--sweep", "nope"], "--sweep: no sweep 'nope' in this MLflow store; its sweeps: 'layouts'\n"),
    (["--study", "glue_rank"], "--study: no finished sweep of study 'glue_rank' in this MLflow store; its studies: "
                               "'rank_e2e'\n"),
    (["--sweep", "layouts", "--register", " "], "--register: name the registered model"),
    (["--sweep", "layouts", "--push-to-hub", "not a repo!"], "--push-to-hub: 'not a repo!' is not a Hub repository id"),
    (["--sweep", "layouts", "--push-to-hub", "me/adapter"], "--push-to-hub: HF_HUB_OFFLINE is set"),
    (["--sweep", "layouts"], "--out: "),  # an output directory that is in use
    (["--sweep", "layouts"], "--out: cannot write in /proc ("),  # nowhere to write, even for root
    (["--sweep", "layouts"], "is a file, not a directory to write"),
    (["--sweep", "layouts", "--study", "rank_e2e"], "not allowed with argument"),
])
def test_bad_export_arguments_are_one_line_exit_2_and_nothing_written(layouts, tmp_path, capsys, args, message):
    from sweeps.export import main

    out = tmp_path / "out"
    if message == "--out: ":
        out.mkdir()
        (out / "keep.txt").write_text("mine")
    elif "/proc" in message:
        out = Path("/proc/lorasweep-export")
    elif "is a file" in message:
        (tmp_path / "notes.txt").write_text("mine")
        out = tmp_path / "notes.txt" / "out"
    before = sorted(p.name for p in tmp_path.rglob("*"))
    try:
        code = main(["--tracking-uri", layouts["uri"], *args, "--out", str(out)])
    except SystemExit as e:  # argparse's own usage errors
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_a_push_without_a_token_is_refused_before_anything_is_written(layouts, tmp_path, capsys, monkeypatch):
    """The Hub is not reachable from the test machine: an upload is checked, not made."""
    from huggingface_hub import constants

    from sweeps.export import main

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    code = main(["--tracking-uri", layouts["uri"], "--sweep", "layouts", "--push-to-hub", "me/adapter",
                 "--out", str(tmp_path / "out")])
    assert code == 2 and "--push-to-hub: no Hugging Face token" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_an_export_pushed_to_the_hub_arrives_there_whole(layouts, tmp_path):
    """The upload through the real ``huggingface_hub`` client, to a local stand-in for the Hub
    (``tests/hub_server.py``): the repository receives every file the export wrote, byte for byte,
    in one commit made with the user's token."""
    from hub_server import HubServer

    out = tmp_path / "adapter"
    with HubServer(tmp_path / "hub") as hub:
        proc = _export(layouts, "--sweep", "layouts", "--out", str(out), "--push-to-hub", "me/layouts-best",
                       env={"HF_ENDPOINT": hub.url, "HF_TOKEN": "hf_local_test", "HF_HUB_OFFLINE": "0"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"pushed to the Hub: {hub.url}/me/layouts-best/commit/" in proc.stdout

    def files(root: Path) -> dict[str, bytes]:
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}

    assert {"adapter_model.safetensors", "adapter_config.json", "README.md"} <= set(files(out))
    assert files(tmp_path / "hub" / "me" / "layouts-best") == files(out)
    assert [(c["repo"], c["header"]["summary"]) for c in hub.commits] == [("me/layouts-best", "lorasweep export")]
    assert {auth for _, _, auth in hub.requests} == {"Bearer hf_local_test"}


def test_a_warm_start_from_a_gpt2_qv_run_reads_the_trials_own_layout(layouts):
    """adapter/ is the fused layout; a warm start of a qv trial needs the views' (trial_adapter/)."""
    from trainables.adapters import build_adapter_model, warm_start
    from trainables.config import TrialConfig
    from trainables.schema import from_dict
    from trainables.tasks.registry import get_task
    from trainables.warmstart import check_compatible, resolve_init_from

    run = next(t for t in layouts["trials"]
               if (t.data.params["adapter.method"], t.data.params["adapter.targets"]) == ("lora", "qv"))
    path = resolve_init_from(f"runs:/{run.info.run_id}", layouts["uri"])
    assert path.name == "trial_adapter"
    check_compatible(path, r=4, modules=("c_attn.q", "c_attn.v"), value=f"runs:/{run.info.run_id}")
    cfg = from_dict(TrialConfig, json.loads(_download(layouts, run, "trial_config.json").read_text()))
    model = build_adapter_model(get_task("e2e").load_model(cfg)[0], cfg.adapter)
    assert warm_start(model, path) == 2 * 2 * 2  # layers x (q, v) x (A, B)


def test_the_model_card_says_how_its_metrics_were_measured():
    """The evaluation sets' sizes (the parent's), a generation task's decoding settings, and
    which report's weights the metrics are when the trial kept its best report's."""
    from types import SimpleNamespace as NS

    from sweeps.export import _measured

    params = {"eval.generate": "True", "eval.num_beams": "10", "eval.length_penalty": "0.9",
              "eval.no_repeat_ngram_size": "4", "eval.max_new_tokens": "64", "data.format": "paper"}
    trial = NS(data=NS(params=params, metrics={"best_step": 20.0, "best_epoch": 1.0, "val_loss": 1.5}))
    parent = NS(data=NS(params={"data.val_examples": "159", "data.test_mrs": "24", "data.train_examples": "9"}))
    text = "\n".join(_measured(trial, parent, generates=True))
    assert "Validation (`val_*`) and test sets: val_examples 159, test_mrs 24." in text
    assert "num_beams 10, length_penalty 0.9, no_repeat_ngram_size 4, max_new_tokens 64" in text
    assert "report at step 20 (epoch 1)" in text
    plain = NS(data=NS(params={"eval.generate": "False"}, metrics={"val_loss": 1.5}))
    assert _measured(plain, None, generates=True) == []


def test_the_cards_tables_write_integer_valued_metrics_in_full():
    """MLflow keeps every metric as a float: a parameter count or a step is written as the
    integer it is, any other float to 6 significant digits."""
    from sweeps.export import _table

    rows = _table("Metrics", {"total_params": 22752390.0, "best_step": 120.0, "val_loss": 1.23456789,
                              "lr": 2e-3, "val_accuracy": 0.5, "trainable_params": 0.0})
    assert rows[4:-1] == ["| total_params | 22752390 |", "| best_step | 120 |", "| val_loss | 1.23457 |",
                          "| lr | 0.002 |", "| val_accuracy | 0.5 |", "| trainable_params | 0 |"]


def test_the_card_gives_decoding_settings_only_for_a_task_that_generates():
    """A classifier's trial records the eval.* defaults too; its card does not say it generated."""
    from types import SimpleNamespace

    from sweeps.export import _measured

    params = {"eval.generate": "True", "eval.num_beams": "10", "eval.length_penalty": "0.9",
              "eval.no_repeat_ngram_size": "4", "eval.max_new_tokens": "64", "data.format": "paper"}
    trial = SimpleNamespace(data=SimpleNamespace(params=params, metrics={}))
    parent = SimpleNamespace(data=SimpleNamespace(params={"data.val_examples": "40"}))
    assert "Generated with num_beams 10" in "\n".join(_measured(trial, parent, generates=True))
    assert "Generated" not in "\n".join(_measured(trial, parent, generates=False))


def test_a_study_whose_sweeps_never_finished_is_named_with_its_sweeps(tmp_path, capsys):
    from mlflow import MlflowClient

    from sweeps.export import main

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("lorasweep-rank_e2e")
    client.create_run(exp, tags={"lorasweep.kind": "sweep", "lorasweep.study": "rank_e2e",
                                 "lorasweep.sweep": "killed"})  # still RUNNING: its driver was killed
    capsys.readouterr()  # MLflow's own log of creating the store
    assert main(["--tracking-uri", uri, "--study", "rank_e2e", "--out", str(tmp_path / "x")]) == 2
    assert capsys.readouterr().err == ("error: --study: no sweep of study 'rank_e2e' finished in this MLflow "
                                       "store; export one of its sweeps by name with --sweep: 'killed'\n")
    assert not (tmp_path / "x").exists()
