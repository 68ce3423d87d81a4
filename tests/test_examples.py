"""The reproduction scripts in examples/ on made-up data of their formats: a
run cut after epoch 2 and resumed from its checkpoint ends exactly where
the uninterrupted run ends, its results file holding every epoch; unusable
--checkpoint/--resume combinations end with a usage error before any data
is read.  (The real reproductions take minutes to an hour: docs/reproductions.md.)"""
import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
# what two runs of the same training cannot share
TIMES = {"seconds", "tokens_per_sec", "eval_seconds", "wall_seconds"}


def _ptb_folder(root):
    """Mikolov's file names and a 10,000-word vocabulary (load_ptb checks it)."""
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(9998)]          # + <eos>, <unk> = 10,000
    folder = root / "ptb"
    folder.mkdir()
    for split, order in (("train", rng.permutation(9998)), ("valid", rng.integers(0, 9998, 600)),
                         ("test", rng.integers(0, 9998, 600))):
        lines = [" ".join(words[i] for i in order[k:k + 20]) for k in range(0, len(order), 20)]
        (folder / f"ptb.{split}.txt").write_text("\n".join(lines) + "\n")
    return folder, ["--max-batches", "3", "--eval-tokens", "300"]


def _text_file(root):
    rng = np.random.default_rng(1)
    path = root / "input.txt"
    # the script ends with a sample from the prompt "ROMEO:\n"
    path.write_text("".join(rng.choice(list("ROMEO:\nabc de"), 30_000)))
    return path, ["--max-batches", "3", "--hidden-size", "16", "--num-layers", "1"]


def _sums_file(root):
    """DLFS2's addition.txt layout: question padded to 7, '_' then answer to 5."""
    rng = np.random.default_rng(2)
    a, b = rng.integers(0, 1000, (2, 400))
    path = root / "addition.txt"
    path.write_text("".join(f"{f'{x}+{y}':<7}_{x + y:<4}\n" for x, y in zip(a, b)))
    return path, ["--max-batches", "2", "--hidden-size", "16", "--max-test", "40"]


SCRIPTS = {"zaremba_ptb_small.py": _ptb_folder, "tinyshakespeare_char.py": _text_file,
           "seq2seq_addition.py": _sums_file, "dlfs2_ptb_lm.py": _ptb_folder}


def _run(script, *args, expect=0):
    done = subprocess.run([sys.executable, str(EXAMPLES / script), "--quiet", *map(str, args)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == expect, done.stdout + done.stderr
    return done


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_a_resumed_run_ends_as_the_uninterrupted_one(script, tmp_path):
    data, quick = SCRIPTS[script](tmp_path)
    common = ["--data", data, *quick]
    whole, cut = tmp_path / "whole.json", tmp_path / "cut.json"
    _run(script, *common, "--epochs", 3, "--output", whole)
    _run(script, *common, "--epochs", 2, "--output", cut, "--checkpoint", tmp_path / "c.ckpt")
    assert len(json.loads(cut.read_text())["epochs"]) == 2
    resumed = _run(script, *common, "--epochs", 3, "--output", cut,
                   "--checkpoint", tmp_path / "c.ckpt", "--resume")
    assert "after epoch 2" in resumed.stdout
    assert resumed.stdout.count("epoch  3 |") == 1 and "epoch  1 |" not in resumed.stdout
    rows, expected = (json.loads(p.read_text())["epochs"] for p in (cut, whole))
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert [{k: v for k, v in r.items() if k not in TIMES} for r in rows] == \
        [{k: v for k, v in r.items() if k not in TIMES} for r in expected]
    # the resumed run's wall clock goes on from the first run's
    walls = [r["wall_seconds"] for r in rows]
    assert walls == sorted(walls) and walls[0] > 0
    # resuming a finished run trains nothing and keeps the results
    again = _run(script, *common, "--epochs", 3, "--output", cut,
                 "--checkpoint", tmp_path / "c.ckpt", "--resume")
    assert "epoch  3 |" not in again.stdout
    assert json.loads(cut.read_text())["epochs"] == rows


@pytest.mark.parametrize("args, message", [
    (["--resume"], "--resume: needs --checkpoint"),
    (["--resume", "--checkpoint", "{tmp}/none.ckpt"], "no checkpoint at"),
    (["--checkpoint", "{tmp}/missing/c.ckpt"], "--checkpoint:"),
])
def test_unusable_checkpoint_flags_are_a_usage_error(args, message, tmp_path):
    # --data points nowhere: the flags are refused before anything is read
    args = [a.format(tmp=tmp_path) for a in args]
    done = _run("seq2seq_addition.py", "--data", tmp_path / "absent.txt", *args, expect=2)
    assert message in done.stderr and "usage:" in done.stderr


# each script once (a subprocess each), each kind of flag at least once
@pytest.mark.parametrize("script, flag, value", [
    (script, *bad) for script, bad in zip(
        sorted(p.name for p in EXAMPLES.glob("[!_]*.py")),
        itertools.cycle([("--epochs", 0), ("--max-batches", 0), ("--threads", -1),
                         ("--seed", -1)]))])
def test_counts_out_of_range_are_a_usage_error(script, flag, value, tmp_path):
    done = _run(script, "--data", tmp_path / "absent", flag, value, expect=2)
    assert f"argument {flag}: expected an integer >= " in done.stderr


def test_resuming_another_runs_checkpoint_is_an_error_naming_the_settings(tmp_path):
    data, quick = _sums_file(tmp_path)
    quick = [a for a in quick if a not in ("--hidden-size", "16")]
    ckpt = tmp_path / "c.ckpt"
    _run("seq2seq_addition.py", "--data", data, *quick, "--epochs", 1, "--hidden-size", 16,
         "--output", tmp_path / "a.json", "--checkpoint", ckpt)
    done = _run("seq2seq_addition.py", "--data", data, *quick, "--epochs", 2,
                "--hidden-size", 24, "--output", tmp_path / "b.json", "--checkpoint", ckpt,
                "--resume", expect=2)
    assert "error: model: the checkpoint" in done.stderr and "Traceback" not in done.stderr
    assert "hidden_size=16; the model given has hidden_size=24" in done.stderr
    assert not (tmp_path / "b.json").exists()


def test_the_dlfs2_simple_rnnlm_recipe_trains_on_the_first_1000_words(tmp_path):
    """ch05's recipe: the first 1,000 training tokens, a vocabulary sized
    by their largest id (the book's int(max(corpus) + 1)), training
    perplexity only."""
    folder, _ = _ptb_folder(tmp_path)
    out = tmp_path / "simple.json"
    done = _run("dlfs2_ptb_lm.py", "--recipe", "simple-rnnlm", "--data", folder,
                "--epochs", 2, "--output", out)
    from rnnfast.data import load_ptb
    size = int(load_ptb(folder).train[:1000].max()) + 1
    assert size < 10_000 and f"1,000 training tokens, vocabulary {size:,};" in done.stdout
    rows = json.loads(out.read_text())["epochs"]
    assert [r["epoch"] for r in rows] == [1, 2] and "test_ppl" not in rows[0]
    assert rows[1]["train_ppl"] < rows[0]["train_ppl"]


def test_the_dlfs2_better_rnnlm_recipe_quarters_lr_after_an_epoch_without_a_best(tmp_path):
    """ch06's BetterRnnlm: two layers of 650, tied weights, and lr / 4
    after any epoch whose validation perplexity is not the best so far."""
    folder, _ = _ptb_folder(tmp_path)
    out = tmp_path / "better.json"
    _run("dlfs2_ptb_lm.py", "--recipe", "better-rnnlm", "--data", folder, "--epochs", 3,
         "--max-batches", 2, "--eval-tokens", 300, "--output", out)
    rows = json.loads(out.read_text())["epochs"]
    lrs, valid = [r["lr"] for r in rows], [r["valid_ppl"] for r in rows]
    assert lrs[0] == 20.0
    for k in range(1, len(rows)):
        best_before = valid[k - 1] <= min(valid[:k])
        assert lrs[k] == (lrs[k - 1] if best_before else lrs[k - 1] / 4), (lrs, valid)
