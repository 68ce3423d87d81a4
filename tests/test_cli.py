"""The training commands of the command line, on tiny settings."""
import numpy as np
import pytest

import rnnfast.io as rio
from rnnfast.cli import main

TEXT = "the quick brown fox jumps over the lazy dog.\n" * 30


def _train_char_lm(tmp_path, text, epochs=1, hidden_size=4, batch_size=2):
    """`rnnfast train-lm` on `text` (a char model, 1 layer); the model's path."""
    path = tmp_path / "t.txt"
    path.write_text(text)
    out = tmp_path / "lm.npz"
    assert main(["train-lm", str(path), "--epochs", str(epochs), "--hidden-size",
                 str(hidden_size), "--num-layers", "1", "--batch-size", str(batch_size),
                 "--time-size", "5", "--quiet", "-o", str(out)]) == 0
    return out


def test_train_lm_on_a_text_file_then_generate(tmp_path, capsys):
    out = _train_char_lm(tmp_path, TEXT, epochs=2, hidden_size=8, batch_size=4)
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


def test_generate_refuses_what_is_not_a_language_model_with_its_vocabulary(
        tmp_path, capsys):
    """Each refusal says what the file holds, with exit status 2 (a user error)."""
    import rnnfast
    from rnnfast.models import RnnLM, Seq2seq
    rio.save(rnnfast.LSTM(2, 3), tmp_path / "net.npz")
    rio.save(Seq2seq(5, 3, 4), tmp_path / "s2s.npz", metadata={"vocab": {"tokens": []}})
    rio.save(RnnLM(5, 4), tmp_path / "lm.npz")
    for name, message in (("net", "holds a rnnfast.LSTM, not a language model"),
                          ("s2s", "holds a rnnfast.models.Seq2seq, not a language model"),
                          ("lm", "is a language model without a vocabulary")):
        with pytest.raises(SystemExit) as exc:
            main(["generate", str(tmp_path / f"{name}.npz")])
        assert exc.value.code == 2
        assert message in capsys.readouterr().err, name


def test_bench_refuses_a_negative_settle(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--settle", "-1", "--cells", "rnn", "--configs", "tiny"])
    assert exc.value.code == 2
    assert "--settle: expected seconds >= 0, got -1.0" in capsys.readouterr().err


def test_train_lm_without_a_validation_part_saves_the_model(tmp_path, capsys):
    path = tmp_path / "t.txt"
    path.write_text(TEXT)
    for fraction in ("0", "0.001"):                     # no or too few validation tokens
        out = tmp_path / f"lm{fraction}.npz"
        assert main(["train-lm", str(path), "--valid-fraction", fraction, "--epochs", "1",
                     "--hidden-size", "8", "--num-layers", "1", "--batch-size", "4",
                     "--time-size", "5", "--max-batches", "2", "--quiet",
                     "-o", str(out)]) == 0
        printed = capsys.readouterr().out
        assert "no validation perplexity" in printed and "epoch 1 | train loss" in printed
        assert "valid ppl" not in printed and "saved" in printed and out.exists()


@pytest.mark.parametrize("command, option, value", [
    ("train-seq2seq", "--max-train", "0"), ("train-seq2seq", "--max-train", "-5"),
    ("train-seq2seq", "--max-test", "0"), ("train-seq2seq", "--max-test", "-1"),
    ("train-seq2seq", "--epochs", "0"), ("train-lm", "--epochs", "0"),
    ("demo", "--epochs", "0"),
    # these were refused only after the data was read, in the library's words
    # ("batch_size: ...", "train: X holds no samples"), not by the flag
    ("train-lm", "--batch-size", "0"), ("train-lm", "--hidden-size", "0"),
    ("train-lm", "--num-layers", "0"), ("train-lm", "--time-size", "-1"),
    ("train-lm", "--max-batches", "0"), ("train-lm", "--embed-size", "0"),
    ("train-seq2seq", "--batch-size", "0"), ("train-seq2seq", "--hidden-size", "-2"),
    ("generate", "--top-k", "0"), ("demo", "--train-size", "0"),
    ("demo", "--hidden-size", "0"), ("demo", "--max-batches", "0")])
def test_counts_must_be_at_least_one(tmp_path, capsys, command, option, value):
    data = [] if command == "demo" else [str(tmp_path / "never-read.txt")]
    with pytest.raises(SystemExit) as exc:
        main([command, *data, option, value])
    assert exc.value.code == 2
    assert f"argument {option}: expected an integer >= 1, got {value}" in \
        capsys.readouterr().err


@pytest.mark.parametrize("value", ["nan", "-1", "0", "inf", "half"])
def test_decay_must_be_a_positive_number_even_without_decay_after(tmp_path, capsys, value):
    """--decay was read only with --decay-after, so a NaN or negative one
    went unnoticed without it."""
    with pytest.raises(SystemExit) as exc:
        main(["train-lm", str(tmp_path / "never-read.txt"), "--decay", value])
    assert exc.value.code == 2
    assert f"argument --decay: expected a finite number > 0, got '{value}'" in \
        capsys.readouterr().err


def test_report_of_an_empty_history(capsys):
    from rnnfast.cli import _report
    _report({}, [("valid_ppl", "valid ppl", "{:.2f}")])
    assert capsys.readouterr().out == ""


def test_generate_refuses_a_non_finite_temperature(tmp_path, capsys):
    from rnnfast.data import Vocab
    from rnnfast.models import RnnLM
    vocab = Vocab("char", unk_token=None)
    vocab.fit("abc \n")
    path = tmp_path / "lm.npz"
    rio.save(RnnLM(len(vocab), hidden_size=4), path, metadata={"vocab": vocab.to_dict()})
    for value in ("inf", "nan"):
        with pytest.raises(SystemExit) as exc:
            main(["generate", str(path), "--temperature", value, "--top-k", "3"])
        assert exc.value.code == 2
        assert "temperature: expected a finite number >= 0" in capsys.readouterr().err


def test_generate_samples_from_the_nucleus_with_top_p(tmp_path, capsys):
    from rnnfast.data import Vocab
    from rnnfast.models import RnnLM
    vocab = Vocab("char", unk_token=None)
    vocab.fit("abcdefgh \n")
    path = tmp_path / "lm.npz"
    rio.save(RnnLM(len(vocab), hidden_size=4, random_state=0), path,
             metadata={"vocab": vocab.to_dict()})
    runs = {}
    for top_p in ("1e-9", "1"):
        assert main(["generate", str(path), "--top-p", top_p, "--length", "40",
                     "--seed", "3", "--temperature", "1"]) == 0
        runs[top_p] = capsys.readouterr().out
    # a tiny nucleus is greedy, the whole one samples
    assert main(["generate", str(path), "--length", "40", "--temperature", "0"]) == 0
    assert runs["1e-9"] == capsys.readouterr().out != runs["1"]
    for bad in ("0", "1.5", "nan", "x"):
        with pytest.raises(SystemExit) as exc:
            main(["generate", str(path), "--top-p", bad])
        assert exc.value.code == 2
        assert f"argument --top-p: expected a number in (0, 1], got '{bad}'" in \
            capsys.readouterr().err


@pytest.mark.parametrize("command", ["train-lm", "train-seq2seq"])
@pytest.mark.parametrize("where", ["a directory", "a missing folder"])
def test_training_refuses_an_unusable_output_before_training(tmp_path, capsys, command,
                                                             where):
    path = tmp_path / "data.txt"
    if command == "train-lm":
        path.write_text(TEXT)
        sizes = ["--batch-size", "4", "--time-size", "5"]
    else:
        addition_file(path)
        sizes = ["--batch-size", "32"]
    out = tmp_path if where == "a directory" else tmp_path / "missing" / "m.npz"
    with pytest.raises(SystemExit) as exc:
        main([command, str(path), *sizes, "--epochs", "1", "--hidden-size", "8",
              "--max-batches", "2", "--quiet", "-o", str(out)])
    assert exc.value.code == 2
    captured = capsys.readouterr()
    assert "--output: " in captured.err and repr(str(out)) in captured.err
    assert ("is a directory" if where == "a directory" else "does not exist") in captured.err
    assert "epoch" not in captured.out                  # refused before training


def test_train_seq2seq_on_a_file_too_short_for_test_rows(tmp_path, capsys):
    path = tmp_path / "add.txt"
    addition_file(path, n=5)                             # 5 // 10 = 0 test rows
    assert main(["train-seq2seq", str(path), "--epochs", "1", "--hidden-size", "8",
                 "--batch-size", "2", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "no test accuracy" in printed and "epoch 1 | train loss" in printed
    assert "nan" not in printed and "test exact match" not in printed


def test_generate_without_prime_on_a_text_without_newlines(tmp_path, capsys):
    """The default prime is a newline only where the vocabulary has one."""
    out = _train_char_lm(tmp_path, "abc" * 30)
    capsys.readouterr()
    assert main(["generate", str(out), "--length", "10", "--seed", "0"]) == 0
    printed = capsys.readouterr().out.rstrip("\n")
    assert len(printed) == 10 and set(printed) <= set("abc")
    with pytest.raises(SystemExit) as exc:
        main(["generate", str(out), "--prime", "xyz"])
    assert exc.value.code == 2
    assert "--prime: token 'x' is not in the vocabulary" in capsys.readouterr().err


def test_generate_refuses_a_vocabulary_that_does_not_match_its_model(tmp_path, capsys):
    out = _train_char_lm(tmp_path, "abc" * 30)
    model, meta = rio.load(out), rio.read_metadata(out)["metadata"]
    meta["vocab"]["tokens"] = meta["vocab"]["tokens"][:-1]
    rio.save(model, tmp_path / "mismatch.npz", metadata=meta)
    with pytest.raises(SystemExit) as exc:
        main(["generate", str(tmp_path / "mismatch.npz")])
    assert exc.value.code == 2
    assert "vocabulary has 2 tokens and its model 3" in capsys.readouterr().err


@pytest.mark.parametrize("option,value", [("--threads", "0"), ("--threads", "1,-1"),
                                          ("--repeats", "0"), ("--peak-size", "0"),
                                          ("--min-time", "-1")])
def test_bench_refuses_counts_below_one_by_name(capsys, option, value):
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--cells", "rnn", "--configs", "tiny", "--impls", "rnnfast",
              option, value])
    assert exc.value.code == 2 and option in capsys.readouterr().err


@pytest.mark.parametrize("command,option,value", [
    ("train-lm", "--threads", "-3"), ("train-lm", "--seed", "-1"),
    ("train-lm", "--decay-after", "-2"), ("train-seq2seq", "--threads", "-1"),
    ("train-seq2seq", "--seed", "x"), ("generate", "--seed", "-5"),
    ("generate", "--length", "-1")])
def test_training_and_generation_refuse_negative_counts_by_name(capsys, command, option,
                                                                 value):
    """--threads -3 went to threadpoolctl as it was, --seed -1 to NumPy
    ("expected non-negative integer", no name), --decay-after -2 to the
    schedule as start_epoch: each is now refused by its flag, before any
    file is read."""
    with pytest.raises(SystemExit) as exc:
        main([command, "no-such-file", option, value])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}: expected an integer >= 0" in err, err


def test_a_directory_given_for_a_text_file_is_named_as_one(tmp_path, capsys):
    """It was reported as "no such file"."""
    with pytest.raises(SystemExit) as exc:
        main(["train-seq2seq", str(tmp_path), "--epochs", "1"])
    assert exc.value.code == 2
    assert f"path: {str(tmp_path)!r} is a directory, not a text file" in \
        capsys.readouterr().err


def test_version(capsys):
    import rnnfast
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"rnnfast {rnnfast.__version__}"


@pytest.mark.parametrize("command", ["train-lm", "train-seq2seq"])
def test_training_resumes_from_a_checkpoint_as_if_uninterrupted(tmp_path, capsys, command):
    """2 epochs with --checkpoint, then --resume up to 3: the model saved is
    bitwise the one 3 epochs in a row give, and epochs 1-2 are not trained
    again."""
    path = tmp_path / "data.txt"
    if command == "train-lm":
        path.write_text(TEXT)
        sizes = ["--batch-size", "4", "--time-size", "5", "--dropout", "0.2"]
    else:
        addition_file(path)
        sizes = ["--batch-size", "32", "--attention"]
    ck = tmp_path / "ck.npz"

    def train(epochs, out, *extra):
        assert main([command, str(path), *sizes, "--epochs", str(epochs), "--hidden-size",
                     "8", "--max-batches", "3", "--quiet", "-o", str(tmp_path / out),
                     *extra]) == 0
        return rio.load(tmp_path / out)
    straight = train(3, "straight.npz")
    train(2, "first.npz", "--checkpoint", str(ck))
    capsys.readouterr()
    resumed = train(3, "resumed.npz", "--checkpoint", str(ck), "--resume")
    assert all(np.array_equal(p, q) for p, q in zip(straight.params, resumed.params))
    assert rio.load_checkpoint(ck)["state"]["epoch"] == 3
    assert "tok/s" not in capsys.readouterr().err           # --quiet: no progress bar


@pytest.mark.parametrize("command", ["train-lm", "train-seq2seq"])
def test_resume_needs_a_checkpoint_that_exists(tmp_path, capsys, command):
    path = tmp_path / "data.txt"
    path.write_text(TEXT) if command == "train-lm" else addition_file(path)
    for extra, message in (([], "--resume: needs --checkpoint"),
                           (["--checkpoint", str(tmp_path / "none.npz")],
                            "--resume: no checkpoint at ")):
        with pytest.raises(SystemExit) as exc:
            main([command, str(path), "--epochs", "1", "--quiet", "--resume",
                  "-o", str(tmp_path / "m.npz"), *extra])
        assert exc.value.code == 2
        captured = capsys.readouterr()
        assert message in captured.err and "data:" not in captured.out   # before reading


def test_train_lm_carry_state_reaches_the_trainer(tmp_path, capsys):
    """--carry-state: the second epoch starts from the first one's last
    state, so the same seed trains other weights; a checkpointed run with
    it resumes."""
    path = tmp_path / "t.txt"
    path.write_text(TEXT)
    common = ["train-lm", str(path), "--epochs", "2", "--hidden-size", "4", "--num-layers",
              "1", "--batch-size", "2", "--time-size", "5", "--quiet", "--seed", "1"]
    params = {}
    for flag in ([], ["--carry-state"]):
        out = tmp_path / f"lm{len(flag)}.npz"
        assert main(common + flag + ["-o", str(out)]) == 0
        params[bool(flag)] = rio.load(out).params
    assert any((p != q).any() for p, q in zip(params[False], params[True]))
    ck = tmp_path / "c.ckpt"
    args = ["train-lm", str(path), "--hidden-size", "4", "--num-layers", "1", "--batch-size",
            "2", "--time-size", "5", "--quiet", "--seed", "1", "--carry-state",
            "--checkpoint", str(ck), "-o", str(tmp_path / "r.npz")]
    assert main(args + ["--epochs", "1"]) == 0
    assert main(args + ["--epochs", "2", "--resume"]) == 0
    for p, q in zip(params[True], rio.load(tmp_path / "r.npz").params):
        assert p.tobytes() == q.tobytes()
    capsys.readouterr()
