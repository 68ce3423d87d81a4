"""The training commands of the command line, on tiny settings."""
import numpy as np
import pytest

import rnnfast.io as rio
from rnnfast.cli import main

TEXT = "the quick brown fox jumps over the lazy dog.\n" * 30


def test_train_lm_on_a_text_file_then_generate(tmp_path, capsys):
    path = tmp_path / "t.txt"
    path.write_text(TEXT)
    out = tmp_path / "lm.npz"
    assert main(["train-lm", str(path), "--epochs", "2", "--hidden-size", "8",
                 "--num-layers", "1", "--batch-size", "4", "--time-size", "5",
                 "--quiet", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "epoch 2" in printed and "valid ppl" in printed and "saved" in printed
    meta = rio.read_metadata(out)
    assert meta["class"] == "rnnfast.models.RnnLM" and meta["metadata"]["vocab"]["level"] == "char"
    args = ["generate", str(out), "--prime", "the ", "--length", "30", "--seed", "3"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert first.startswith("the ") and len(first.rstrip("\n")) >= 30
    assert set(first) <= set(TEXT)
    assert main(args) == 0
    assert capsys.readouterr().out == first            # seeded: the same text again


def test_train_lm_on_a_ptb_like_folder(tmp_path, capsys):
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(30)] + ["<unk>"]
    for split, n in (("train", 200), ("valid", 40), ("test", 40)):
        lines = [" " + " ".join(rng.choice(words, 6)) + " \n" for _ in range(n)]
        (tmp_path / f"ptb.{split}.txt").write_text("".join(lines))
    out = tmp_path / "ptb.npz"
    assert main(["train-lm", str(tmp_path), "--cell", "gru", "--epochs", "1",
                 "--hidden-size", "8", "--batch-size", "4", "--time-size", "5",
                 "--optimizer", "sgd", "--lr", "1", "--quiet", "-o", str(out)]) == 0
    assert "word" in capsys.readouterr().out
    assert main(["generate", str(out), "--length", "40", "--seed", "0",
                 "--temperature", "1"]) == 0
    text = capsys.readouterr().out.split()
    assert text and "<unk>" not in text and set(text) <= set(words)


def addition_file(path, n=200):
    rng = np.random.default_rng(1)
    lines = []
    for a, b in rng.integers(0, 100, (n, 2)):
        lines.append(f"{a}+{b}".ljust(5) + "_" + str(a + b).ljust(3))
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("flag", [[], ["--peeky"], ["--attention"]])
def test_train_seq2seq(tmp_path, capsys, flag):
    path = tmp_path / "add.txt"
    addition_file(path)
    out = tmp_path / "s2s.npz"
    assert main(["train-seq2seq", str(path), "--reverse", *flag, "--epochs", "1",
                 "--hidden-size", "8", "--batch-size", "32", "--quiet",
                 "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "test exact match" in printed and "answer" in printed
    kind = {"--peeky": "PeekySeq2seq", "--attention": "AttentionSeq2seq"}.get(
        flag[0] if flag else None, "Seq2seq")
    assert rio.read_metadata(out)["class"] == f"rnnfast.models.{kind}"


def test_demo_on_tiny_settings(capsys):
    assert main(["demo", "--epochs", "1", "--train-size", "300", "--max-batches", "2",
                 "--hidden-size", "8", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "held-out exact match" in printed and "NumPy reference" in printed
    examples = [line for line in printed.splitlines() if line.startswith(("  ok", "  BAD"))]
    assert len(examples) == 8 and all("+" in line for line in examples)


def test_generate_refuses_a_model_without_vocabulary(tmp_path):
    import rnnfast
    rio.save(rnnfast.LSTM(2, 3), tmp_path / "net.npz")
    with pytest.raises(SystemExit, match="not a language model"):
        main(["generate", str(tmp_path / "net.npz")])


def test_bench_refuses_a_negative_settle(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--settle", "-1", "--cells", "rnn", "--configs", "tiny"])
    assert exc.value.code == 2
    assert "--settle: expected seconds >= 0, got -1.0" in capsys.readouterr().err
