"""The MLflow UI links the sweep summary prints, and the study experiment's description.

The URLs are written out by hand from MLflow 3.17's UI routes (``#/experiments/<id>/runs``,
its ``searchFilter`` / ``orderByKey`` / ``orderByAsc`` / ``workflowType`` query); the headless
browser check that these links show the runs is ``test_cluster_multinode.py``."""

from __future__ import annotations

import pytest

from sweeps.tracking.links import print_links, study_description, ui_links


def test_a_local_store_links_to_mlflow_ui_on_its_default_address(capsys):
    links = ui_links("sqlite:///mlruns.db", "3", "abc123", "rank_e2e-smoke-1")
    assert links.served_by == "mlflow ui --backend-store-uri sqlite:///mlruns.db"
    assert links.parent == "http://127.0.0.1:5000/#/experiments/3/runs/abc123?workflowType=machine_learning"
    assert links.experiment == ("http://127.0.0.1:5000/#/experiments/3/runs?workflowType=machine_learning"
                                "&searchFilter=&orderByKey=attributes.start_time&orderByAsc=false")
    # tags.`lorasweep.sweep` = 'rank_e2e-smoke-1', percent-encoded; sorted by run name.
    assert links.sweep == ("http://127.0.0.1:5000/#/experiments/3/runs?workflowType=machine_learning"
                           "&searchFilter=tags.%60lorasweep.sweep%60%20%3D%20%27rank_e2e-smoke-1%27"
                           "&orderByKey=tags.%60mlflow.runName%60&orderByAsc=true")
    # The summary's link lists the trials best first by the task's metric: ascending for a loss,
    # descending for an accuracy.
    loss = ui_links("sqlite:///mlruns.db", "3", "abc123", "rank_e2e-smoke-1", ("val_loss", "min"))
    assert loss.sweep == links.sweep.replace("orderByKey=tags.%60mlflow.runName%60&orderByAsc=true",
                                             "orderByKey=metrics.%60val_loss%60&orderByAsc=true")
    acc = ui_links("sqlite:///mlruns.db", "3", "abc123", "s", ("val_accuracy", "max"))
    assert acc.sweep.endswith("&orderByKey=metrics.%60val_accuracy%60&orderByAsc=false")
    print_links("sqlite:///mlruns.db", "3", "abc123", "rank_e2e-smoke-1", ("val_loss", "min"))
    out = capsys.readouterr().out
    assert "mlflow ui --backend-store-uri sqlite:///mlruns.db  (serves http://127.0.0.1:5000)" in out
    assert loss.sweep in out and links.parent in out


def test_a_tracking_server_links_to_its_own_address():
    links = ui_links("https://mlflow.example.org:8443/team/", "7", "ff", "s")
    assert links.served_by is None
    assert links.parent == "https://mlflow.example.org:8443/team/#/experiments/7/runs/ff?workflowType=machine_learning"
    assert ui_links("databricks", "7", "ff", "s") is None


def test_the_experiment_description_is_the_study_scripts_first_paragraph():
    note = study_description("rank_e2e", "unused")
    assert note.startswith("The LoRA paper's E2E rank study (Table 18): which rank does GPT-2 need on E2E NLG?\n\n")
    assert "Model training" in note
    assert study_description("my-own", "  A study\n of mine. ").startswith("A study of mine.\n\n")
    assert study_description("export", "Mine.").startswith("Mine.\n\n")  # a module, not a study
    markdown_it = pytest.importorskip("markdown_it")  # a study named with emphasis marks, rendered as named
    assert markdown_it.MarkdownIt("commonmark").render(study_description("_x_", "")).startswith(
        "<p>lorasweep study _x_</p>")
