"""The offline assets of tests and ``--preset smoke``: synthetic E2E data and the tiny GPT-2."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from trainables.offline import e2e_synth, tiny_lm

REPO = Path(__file__).resolve().parents[1]
CSV_FILES = ("trainset.csv", "devset.csv", "testset_w_refs.csv")
MR_ITEM = r"(name|eatType|food|priceRange|customer rating|area|familyFriendly|near)\[[^\]]+\]"
MR_RE = re.compile(rf"{MR_ITEM}(, {MR_ITEM})*")


@pytest.fixture(scope="module")
def csv_dir(tmp_path_factory) -> Path:
    return e2e_synth.write_e2e_dataset(tmp_path_factory.mktemp("e2e"), n_train_mrs=120,
                                       n_dev_mrs=20, n_test_mrs=20, seed=3)


def _rows(path: Path) -> list[tuple[str, str]]:
    with open(path, encoding="utf-8", newline="") as fh:
        return [(r["mr"], r["ref"]) for r in csv.DictReader(fh)]


# --------------------------------------------------------------------------------------------
# Synthetic E2E


def test_csv_has_the_official_layout(csv_dir):
    for name in CSV_FILES:
        raw = (csv_dir / name).read_bytes()
        assert raw.startswith(b"mr,ref\n")
        # Fields are quoted (MRs contain commas) and the text is UTF-8 (£, é).
        assert raw.splitlines()[1].startswith(b'"name[')
        raw.decode("utf-8")
        rows = _rows(csv_dir / name)
        groups = e2e_synth.read_e2e_file(csv_dir / name)
        # An MR's references are consecutive rows: grouping them leaves each MR once.
        assert len({mr for mr, _ in groups}) == len(groups)
        assert sum(len(refs) for _, refs in groups) == len(rows)
        for mr, refs in groups:
            assert MR_RE.fullmatch(mr), mr
            assert 2 <= len(refs) <= 6 and len(set(refs)) == len(refs)
    assert len(e2e_synth.read_e2e_file(csv_dir / "trainset.csv")) == 120
    assert len(e2e_synth.read_e2e_file(csv_dir / "devset.csv")) == 20


def test_mrs_follow_e2e_slots_order_and_values(csv_dir):
    seen_slots = set()
    for name in CSV_FILES:
        for mr, refs in e2e_synth.read_e2e_file(csv_dir / name):
            slots = e2e_synth.parse_mr(mr)
            assert e2e_synth.format_mr(slots) == mr
            order = [e2e_synth.SLOTS.index(s) for s in slots]
            assert order == sorted(order) and order[0] == 0  # name first, E2E order
            assert 3 <= len(slots) <= 8
            for slot, value in slots.items():
                assert value in e2e_synth.VALUES[slot]
            assert slots.get("near") != slots["name"]
            seen_slots.update(slots)
            for ref in refs:
                assert slots["name"] in ref
                # Every fact is realised, and the text is sentence-shaped.
                missing = [s for s, v in slots.items() if not e2e_synth.mentions(ref, s, v)]
                assert not missing, (mr, ref, missing)
                assert ref[0].isupper() and ref.endswith(".") and "  " not in ref
    assert seen_slots == set(e2e_synth.SLOTS)


def test_references_of_one_mr_really_differ():
    groups = e2e_synth.generate_e2e(60, seed=0)
    # Different sentence plans, not one template with synonyms swapped: the references of
    # almost every MR do not all open with the same four words.
    varied = [len({" ".join(ref.split()[:4]) for ref in refs}) > 1 for _, refs in groups]
    assert sum(varied) >= 0.8 * len(groups)
    openers = {ref.split()[0] for _, refs in groups for ref in refs}
    assert {"There", "Near", "Located"} <= openers or len(openers) > 10


def test_generation_is_deterministic_by_seed(tmp_path):
    kw = dict(n_train_mrs=30, n_dev_mrs=5, n_test_mrs=5)
    a = e2e_synth.write_e2e_dataset(tmp_path / "a", seed=7, **kw)
    b = e2e_synth.write_e2e_dataset(tmp_path / "b", seed=7, **kw)
    c = e2e_synth.write_e2e_dataset(tmp_path / "c", seed=8, **kw)
    for name in CSV_FILES:
        assert (a / name).read_bytes() == (b / name).read_bytes()
    assert (a / "trainset.csv").read_bytes() != (c / "trainset.csv").read_bytes()


def test_splits_do_not_share_mrs(csv_dir):
    mrs = [{mr for mr, _ in e2e_synth.read_e2e_file(csv_dir / name)} for name in CSV_FILES]
    assert not (mrs[0] & mrs[1]) and not (mrs[0] & mrs[2]) and not (mrs[1] & mrs[2])


def test_jsonl_variant_has_the_same_rows(tmp_path):
    kw = dict(n_train_mrs=25, n_dev_mrs=5, n_test_mrs=5, seed=1)
    c = e2e_synth.write_e2e_dataset(tmp_path / "csv", **kw)
    j = e2e_synth.write_e2e_dataset(tmp_path / "jsonl", fmt="jsonl", **kw)
    for csv_name, jsonl_name in zip(CSV_FILES, ("train.jsonl", "dev.jsonl", "test.jsonl")):
        lines = (j / jsonl_name).read_text(encoding="utf-8").splitlines()
        records = [json.loads(line) for line in lines]
        assert all(set(r) == {"mr", "ref"} for r in records)
        assert [(r["mr"], r["ref"]) for r in records] == _rows(c / csv_name)
    assert "£" in (j / "train.jsonl").read_text(encoding="utf-8")  # not \u00a3-escaped


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="fmt"):
        e2e_synth.write_e2e_dataset("unused", fmt="xml")
    with pytest.raises(ValueError, match="size"):
        tiny_lm.ensure_smoke_assets(size="xl")


def test_e2e_cli(tmp_path, capsys):
    e2e_synth.main([str(tmp_path), "--n-train", "10", "--n-dev", "3", "--n-test", "2",
                    "--format", "jsonl", "--seed", "5"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dev.jsonl", "test.jsonl", "train.jsonl"]
    assert "10 MRs" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------
# Tokenizer and model


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory) -> Path:
    groups = e2e_synth.generate_e2e(150, seed=11)
    texts = [mr for mr, _ in groups] + [r for _, refs in groups for r in refs]
    return tiny_lm.train_tokenizer(texts, tmp_path_factory.mktemp("tok"), vocab_size=600)


def test_tokenizer_round_trips_and_is_gpt2_like(tok_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tok_dir)
    assert tok.eos_token == tok.bos_token == tok.unk_token == "<|endoftext|>"
    assert tok.pad_token is None  # as GPT-2: padding is the task code's choice
    assert tok.eos_token_id == len(tok) - 1 and len(tok) <= 600  # GPT-2 puts it last
    for text in ["name[Café Adriatic], priceRange[less than £20]",
                 "Zizzi is a cheap Italian pub near The Sorrento.",
                 "  unseen words: Übermensch 東京 🍕 "]:
        assert tok.decode(tok(text)["input_ids"]) == text  # byte-level: nothing is lost
    ids = tok("It is family friendly.<|endoftext|>")["input_ids"]
    assert ids[-1] == tok.eos_token_id
    assert len(tok("The Vaults is a pub.")["input_ids"]) <= 6  # trained merges: whole words


@pytest.mark.parametrize("size", ["s", "m", "l"])
def test_model_loads_from_one_directory(tok_dir, tmp_path, size):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tiny_lm.build_tiny_gpt2(tmp_path / size, tokenizer_dir=tok_dir, size=size)
    model = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    cfg = model.config
    assert (cfg.n_layer, cfg.n_embd, cfg.n_head) == tuple(tiny_lm.SIZES[size].values())
    assert cfg.vocab_size == len(tok) and cfg.n_positions == 256
    assert cfg.eos_token_id == cfg.bos_token_id == tok.eos_token_id
    batch = tok(["Zizzi is a pub."], return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape == (1, batch["input_ids"].shape[1], len(tok))
    info = json.loads((out / tiny_lm.BUILD_INFO).read_text())
    assert info["n_params"] == sum(p.numel() for p in model.parameters())


def test_short_pretraining_lowers_held_out_loss(tok_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    train = [r for _, refs in e2e_synth.generate_e2e(80, seed=21) for r in refs]
    held_out = [r for _, refs in e2e_synth.generate_e2e(20, seed=22) for r in refs]
    assert not set(train) & set(held_out)
    init = tiny_lm.build_tiny_gpt2(tmp_path / "init", tokenizer_dir=tok_dir, seed=1)
    trained = tiny_lm.build_tiny_gpt2(tmp_path / "trained", tokenizer_dir=tok_dir, seed=1,
                                      pretrain_texts=train, pretrain_steps=60,
                                      eval_texts=held_out)
    tok = AutoTokenizer.from_pretrained(init)
    losses = [tiny_lm.evaluate_lm_loss(AutoModelForCausalLM.from_pretrained(d), tok, held_out)
              for d in (init, trained)]
    # A random init is near ln(vocab) (~6.4 nats for 600 ids); 60 steps learn most of it.
    assert losses[0] > 5.5 and losses[1] < losses[0] - 2.0, losses
    info = json.loads((trained / tiny_lm.BUILD_INFO).read_text())
    assert info["eval_loss"] == pytest.approx(losses[1], abs=1e-4)


# --------------------------------------------------------------------------------------------
# Smoke assets: built once, by one process, reused

_WORKER = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from trainables.offline import tiny_lm
    log = Path(sys.argv[2])
    real = tiny_lm.build_tiny_gpt2
    def counted(*args, **kwargs):  # record every model build in a shared log
        with open(log, "a") as fh:
            fh.write("built\\n")
        # The build goes on once the other caller has asked too (so it asked while this one
        # held the lock), and pretrains for two steps: what is tested is who builds, not the
        # model (the session's real build is checked below).
        deadline = time.monotonic() + 120
        while log.read_text().count("asked") < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        return real(*args, **{**kwargs, "pretrain_steps": 2})
    tiny_lm.build_tiny_gpt2 = counted
    with open(log, "a") as fh:
        fh.write("asked\\n")
    t0 = time.perf_counter()
    a = tiny_lm.ensure_smoke_assets(cache=sys.argv[1])
    print(json.dumps({"model_dir": str(a.model_dir), "data_dir": str(a.data_dir),
                      "seconds": time.perf_counter() - t0}))
""")


@pytest.fixture(scope="module")
def smoke_built(tmp_path_factory):
    """Two processes ask for the smoke assets at the same moment in one empty cache."""
    cache = tmp_path_factory.mktemp("cache")
    log = cache.parent / f"{cache.name}-builds.log"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", _WORKER, str(cache), str(log)], cwd=REPO,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=240) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
    results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    return cache, log, results


def test_concurrent_callers_build_once(smoke_built):
    cache, log, results = smoke_built
    assert results[0]["model_dir"] == results[1]["model_dir"]
    assert results[0]["data_dir"] == results[1]["data_dir"]
    assert log.read_text().count("asked") == 2
    assert log.read_text().count("built") == 1  # the second caller waited and reused it
    root = tiny_lm.smoke_root(cache)
    assert not [p for p in root.iterdir() if ".tmp-" in p.name]  # no half-built leftovers
    assert Path(results[0]["model_dir"]) == root / "gpt2-s"


def test_a_build_on_a_shared_cache_never_touches_another_hosts(tmp_path):
    """On a cache that several hosts share (NFS), the lock may not exclude another host: a
    build never reuses another builder's temporary directory (pids repeat across hosts), and
    never replaces a cache another host completed meanwhile."""
    from trainables.cache import build_once

    root = tmp_path / "shared"
    theirs = root / f".k.tmp-{os.getpid()}"  # another host's build in progress, same pid
    theirs.mkdir(parents=True)
    (theirs / "part").write_text("theirs")

    def build(tmp: Path) -> None:
        (tmp / "x").write_text("mine")
        done = root / "k"  # another host completes the cache meanwhile
        done.mkdir()
        (done / "x").write_text("theirs")
        (done / ".complete").write_text("ok\n")

    out = build_once(root, "k", build)
    assert (out / "x").read_text() == "theirs"
    assert (theirs / "part").read_text() == "theirs"
    assert sorted(p.name for p in root.iterdir() if ".tmp-" in p.name) == [theirs.name]


def test_smoke_assets_are_idempotent_and_usable(smoke_built, smoke_assets, capsys):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cache, _, results = smoke_built
    t0 = time.perf_counter()
    assets = tiny_lm.ensure_smoke_assets(cache=cache)
    assert time.perf_counter() - t0 < 0.5  # a cache hit imports nothing heavy
    assert str(assets.model_dir) == results[0]["model_dir"]
    assert str(assets.data_dir) == results[0]["data_dir"]
    assert tiny_lm.SMOKE_VERSION in str(assets.model_dir)
    assert sorted(p.name for p in assets.data_dir.glob("*.csv")) == sorted(CSV_FILES)
    assert len(e2e_synth.read_e2e_file(assets.data_dir / "trainset.csv")) == 300
    AutoModelForCausalLM.from_pretrained(assets.model_dir)
    AutoTokenizer.from_pretrained(assets.model_dir)
    # The session's build (the recipe's pretraining): on the train references, it lowers the
    # loss on the dev references a lot.
    info = json.loads((smoke_assets.model_dir / tiny_lm.BUILD_INFO).read_text())
    assert info["eval_loss"] < info["eval_loss_init"] - 3.0
    tiny_lm.main(["--cache", str(cache)])
    assert str(assets.model_dir) in capsys.readouterr().out
