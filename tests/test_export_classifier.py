"""A sequence classifier out of a real sweep, on a base that already has a head of another size.

The base is a tiny BERT saved as a 2-label ``BertForSequenceClassification`` (the vocabulary and
tokenizer of the offline MiniLM); the data is the text_classification smoke set (three topics:
billing, shipping, technical). One trial of ``text_classification.py --preset smoke`` runs on a
local Ray into a real MLflow SQLite store: the trial replaces the 2-label head with a 3-label one.
``python -m sweeps.export`` writes its adapter (registered in MLflow) and the merged model; both
load with plain transformers and peft (the adapter through its model card's own loading code)
with the topics as labels: ``label2id`` is the inverse of ``id2label``. The registered adapter
loads back through MLflow (``mlflow.transformers.load_model`` and ``mlflow.pyfunc.load_model``)
as a text-classification pipeline with the topics as labels, its logits those of the plain peft
load. A ``--register`` name the MLflow Model Registry refuses is one line and exit code 2, with
nothing written.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from sweep_runs import ONE_AT_A_TIME, run_sweep_in_process

pytestmark = pytest.mark.integration

TOPICS = {0: "billing", 1: "shipping", 2: "technical"}
ONE_TRIAL = "scientific:\n  r: {grid: [4]}\nfixed:\n  lr: 5.0e-3\n  alpha_over_r: 2\n  dropout: 0.1\n  targets: qv\n"
TEXT = ["my parcel never arrived", "I was charged twice this month"]


def _two_label_bert(out: Path) -> Path:
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from trainables.offline.classification_assets import minilm

    tokenizer = AutoTokenizer.from_pretrained(minilm())
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, num_labels=2)
    BertForSequenceClassification(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, torch_one_thread, one_local_ray):
    root = tmp_path_factory.mktemp("classifier")
    base = _two_label_bert(root / "bert-2-labels")
    (root / "one.yaml").write_text(ONE_TRIAL)
    uri = f"sqlite:///{root / 'mlruns.db'}"
    s = run_sweep_in_process("text_classification", [
        "--preset", "smoke", "--model", str(base), "--search-space", str(root / "one.yaml"), "--scheduler", "fifo",
        "--name", "tc", "--set", "train.epochs=1", "--tracking-uri", uri, "--storage", str(root / "rr"),
        *ONE_AT_A_TIME], cwd=root, uri=uri, experiment="lorasweep-text_classification", completed=1)
    return {"root": root, "uri": uri, "base": base, "client": s.client, "parent": s.parent, "trial": s.trials[0]}


def _export(sweep: dict, *args: str) -> int:
    from sweeps.export import main

    return main(["--tracking-uri", sweep["uri"], "--run", sweep["parent"].info.run_id, *args])


def _logits(model, tokenizer) -> torch.Tensor:
    with torch.no_grad():
        return model(**tokenizer(TEXT, return_tensors="pt", padding=True)).logits


def _card_model(directory: Path):
    """The model the card's loading code (README.md's Python block) gives, run as it stands."""
    card = (directory / "README.md").read_text()
    code = card.split("## Loading", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    scope: dict = {}
    exec(code.replace("'<this directory>'", repr(str(directory))), scope)  # noqa: S102
    return scope["model"].eval()


def test_a_base_with_a_head_of_another_size_trains_a_new_head(sweep):
    trial = sweep["trial"]
    assert trial.data.tags["lorasweep.status"] == "completed"
    assert trial.data.metrics["val_accuracy"] >= 0


def test_the_exported_adapter_and_merged_model_load_with_the_topics_as_labels(sweep, tmp_path):
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    assert _export(sweep, "--out", str(tmp_path / "adapter"), "--register", "tc-best") == 0
    assert _export(sweep, "--out", str(tmp_path / "merged"), "--merge") == 0
    versions = sweep["client"].search_model_versions("name = 'tc-best'")
    assert [v.run_id for v in versions] == [sweep["trial"].info.run_id]

    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "merged")
    merged = AutoModelForSequenceClassification.from_pretrained(tmp_path / "merged").eval()
    adapted = _card_model(tmp_path / "adapter")
    for model in (merged, adapted):
        config = model.config
        assert (config.num_labels, config.id2label, config.label2id) == (3, TOPICS, {v: k for k, v in TOPICS.items()})
    torch.testing.assert_close(_logits(merged, tokenizer), _logits(adapted, tokenizer), atol=1e-5, rtol=0)
    assert AutoConfig.from_pretrained(tmp_path / "adapter" / "base").id2label == TOPICS  # the registered base
    _the_registered_version_loads_as_the_adapter(sweep, adapted, tokenizer)


def _the_registered_version_loads_as_the_adapter(sweep: dict, adapted, tokenizer) -> None:
    """``models:/tc-best/1`` through MLflow: a pipeline whose model is the adapter on a base
    with the trial's head (the topics as labels, the adapter's logits), and a pyfunc model
    predicting the topic the adapter's largest logit names."""
    import mlflow

    mlflow.set_tracking_uri(sweep["uri"])
    pipe = mlflow.transformers.load_model("models:/tc-best/1")
    assert pipe.task == "text-classification"
    assert (pipe.model.config.id2label, pipe.model.config.label2id) == (TOPICS, {v: k for k, v in TOPICS.items()})
    expected = _logits(adapted, tokenizer)
    torch.testing.assert_close(_logits(pipe.model.eval(), pipe.tokenizer), expected, atol=1e-5, rtol=0)
    topics = [TOPICS[int(i)] for i in expected.argmax(-1)]
    assert [p["label"] for p in pipe(TEXT)] == topics
    assert list(mlflow.pyfunc.load_model("models:/tc-best/1").predict(TEXT)["label"]) == topics


@pytest.mark.parametrize("name", ["a/b", "team:model", "..", "..x"])
def test_a_name_the_registry_refuses_is_one_line_exit_2_and_nothing_written(sweep, tmp_path, capsys, name):
    client, trial = sweep["client"], sweep["trial"]

    def recorded():
        logged = client.search_logged_models([trial.info.experiment_id])
        return (sorted(a.path for a in client.list_artifacts(trial.info.run_id)), [m.model_id for m in logged],
                [m.name for m in client.search_registered_models()])

    before = recorded()
    assert _export(sweep, "--out", str(tmp_path / "x"), "--register", name) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --register: {name!r} is not an MLflow registered model name") and \
        err.count("\n") == 1, err
    assert list(tmp_path.iterdir()) == [] and recorded() == before
