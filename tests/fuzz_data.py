"""A property fuzzer of rnnfast.data's text readers (load_text by
characters and by words, load_seq2seq, load_ptb) on files of random bytes.

Each case writes a file of 0 to 40 pieces drawn from letters, digits,
"_", "+", spaces, tabs, LF, CR, CRLF, a UTF-8 byte-order mark (leading
or not), NUL, a form feed, U+2028, an accented letter, invalid UTF-8
(0xff), lines such as "12+3_15" and the tokens "<unk>" and "<eos>";
one case in four is a well-formed seq2seq file of 1 to 12 lines of one
width.  Every reader is called with random options on it and must either

- refuse it with a ValueError whose message starts with the argument's
  name ("path: ", "folder: ", "valid_fraction: "), and only when the
  oracle below finds a reason (not UTF-8; no text; fewer than 2 training
  tokens; a seq2seq line without "_", or of another width); or
- return what the oracle says, token for token: the file's text is its
  bytes as UTF-8 less one leading byte-order mark, line ends as written;
  characters are every character of the text, in sorted ids, the first
  int(len * (1 - valid_fraction)) training; words are line.split() of
  each line (lines end at LF, CRLF or CR only; a final line end starts no
  line) each followed by "<eos>", a word outside the training part's
  vocabulary (or the max_vocab most frequent) read as "<unk>"; seq2seq
  rows are the lines' questions (reversed if asked) and answers (from
  the "_"), ids in order of first appearance, shuffled by
  RandomState(seed) and the last int(test_fraction * n) testing.

    python tests/fuzz_data.py [--cases N] [--minutes M] [--seed S]

prints one line a failing case, with the seed that replays it alone
(`--seed S --cases 1`), and exits 1 if any failed.  tests/
test_fuzz_data.py runs fixed seeds in the suite.
"""
import os
import sys
import tempfile

import numpy as np

from rnnfast.data import load_ptb, load_seq2seq, load_text

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fuzz_networks import fuzz_main  # noqa: E402

BOM = b"\xef\xbb\xbf"
PIECES = [b"a", b"b", b"Z", b"1", b"2", b"+", b"_", b" ", b"\t", b"\n", b"\r", b"\r\n",
          BOM, b"\x00", b"\x0c", "\u2028".encode(), "\u00e9".encode(), b"\xff",
          b"12+3_15\n", b"the cat sat\n", b"<unk>", b"<eos>"]
FRACTIONS = [0.0, 0.1, 0.5, 0.9]


# ------------------------------------------------------------------ cases
def draw_case(rng):
    if rng.random() < 0.25:         # a well-formed seq2seq file
        width_q, width_a = int(rng.integers(1, 5)), int(rng.integers(1, 4))
        alphabet = list("0123456789+ ")
        lines = ["".join(rng.choice(alphabet, width_q)) + "_" + "".join(
            rng.choice(alphabet, width_a - 1)) for _ in range(int(rng.integers(1, 13)))]
        end = str(rng.choice(["\n", "\r\n"]))
        data = (BOM if rng.random() < 0.3 else b"") + end.join(lines).encode() \
            + (end.encode() if rng.random() < 0.7 else b"")
    else:
        data = b"".join(PIECES[i] for i in rng.integers(0, len(PIECES),
                                                         int(rng.integers(0, 41))))
    return {"data": data,
            "char_fraction": float(rng.choice(FRACTIONS)),
            "word_fraction": float(rng.choice(FRACTIONS)),
            "max_vocab": [None, 1, 2, 5][int(rng.integers(4))],
            "reverse": bool(rng.integers(2)),
            "seed": [None, 0, 1984][int(rng.integers(3))],
            "test_fraction": float(rng.choice(FRACTIONS))}


def describe(case):
    return (f"data={case['data']!r} char_fraction={case['char_fraction']} "
            f"word_fraction={case['word_fraction']} max_vocab={case['max_vocab']} "
            f"reverse={case['reverse']} seed={case['seed']} "
            f"test_fraction={case['test_fraction']}")


# ----------------------------------------------------------------- oracle
class Refused(Exception):
    """The oracle's reason to expect a ValueError naming `arg`."""
    def __init__(self, arg):
        super().__init__(arg)
        self.arg = arg


def text_of(data, arg="path"):
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused(arg) from None
    return text[1:] if text.startswith("\ufeff") else text


def words_of(text):
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if lines[-1] == "":
        lines.pop()
    return [w for line in lines for w in line.split() + ["<eos>"]]


def expect_char(data, fraction):
    text = text_of(data)
    if not text:
        raise Refused("path")
    split = int(len(text) * (1 - fraction))
    if split < 2:
        raise Refused("path")
    return text[:split], text[split:], sorted(set(text))


def expect_word(data, fraction, arg="path"):
    text = text_of(data, arg)
    if not text:
        raise Refused(arg)
    tokens = words_of(text)
    split = int(len(tokens) * (1 - fraction))
    if split < 2:
        raise Refused(arg)
    return tokens[:split], tokens[split:]


def expect_seq2seq(data, reverse, seed, test_fraction):
    text = text_of(data)
    lines = [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]
    lines = [line for line in lines if line]
    if not lines or any("_" not in line for line in lines):
        raise Refused("path")
    questions = [line[:line.index("_")] for line in lines]
    answers = [line[line.index("_"):] for line in lines]
    if len({len(q) for q in questions}) > 1 or len({len(a) for a in answers}) > 1:
        raise Refused("path")
    order = np.arange(len(lines))
    if seed is not None:
        np.random.RandomState(seed).shuffle(order)
    n_test = int(test_fraction * len(lines))
    rows = [(questions[i][::-1] if reverse else questions[i], answers[i]) for i in order]
    return rows[:len(rows) - n_test], rows[len(rows) - n_test:]


# ------------------------------------------------------------------ checks
def call(fn, expect, failures, what):
    """(rnnfast's result, the oracle's) or None when both refused alike;
    a failure is recorded for any disagreement."""
    try:
        want = expect()
    except Refused as refused:
        want, arg = None, refused.arg
    try:
        got = fn()
    except ValueError as exc:
        if want is not None:
            failures.append(f"{what}: refused a good file: {exc}")
        elif not str(exc).startswith(f"{arg}: "):
            failures.append(f"{what}: the ValueError does not start with '{arg}: ': {exc}")
        return None
    except Exception as exc:                # anything else is a crash of the reader
        failures.append(f"{what}: raised {type(exc).__name__}: {exc}")
        return None
    if want is None:
        failures.append(f"{what}: accepted a file the oracle refuses")
        return None
    return got, want


def check_ids(what, ids, vocab, failures):
    ids = np.asarray(ids)
    if ids.size and (ids.min() < 0 or ids.max() >= len(vocab)):
        failures.append(f"{what}: ids outside [0, {len(vocab)})")
        return False
    return True


def decoded_words(vocab, ids):
    return [vocab.id_to_token[i] for i in np.asarray(ids).ravel()]


def as_unknown(tokens, known):
    return [t if t in known else "<unk>" for t in tokens]


def check_char(case, path, failures):
    out = call(lambda: load_text(path, "char", case["char_fraction"]),
               lambda: expect_char(case["data"], case["char_fraction"]), failures, "char")
    if out is None:
        return
    got, (train, valid, chars) = out
    if got.vocab.id_to_token != chars:
        failures.append(f"char: vocabulary {got.vocab.id_to_token!r}, expected {chars!r}")
    elif all(check_ids(f"char {n}", a, got.vocab, failures)
             for n, a in (("train", got.train), ("valid", got.valid))):
        for name, ids, want in (("train", got.train, train), ("valid", got.valid, valid)):
            if "".join(decoded_words(got.vocab, ids)) != want:
                failures.append(f"char: {name} decodes to "
                                f"{''.join(decoded_words(got.vocab, ids))!r}, expected {want!r}")


def check_word(case, path, failures):
    fraction, max_vocab = case["word_fraction"], case["max_vocab"]
    out = call(lambda: load_text(path, "word", fraction, max_vocab=max_vocab),
               lambda: expect_word(case["data"], fraction), failures, "word")
    if out is None:
        return
    got, (train, valid) = out
    known = set(got.vocab.id_to_token)
    if max_vocab is None and not set(train) <= known:
        failures.append(f"word: training words {sorted(set(train) - known)} missing from "
                        "the vocabulary")
    if max_vocab is not None and len(known - {"<unk>"}) > max_vocab:
        failures.append(f"word: {len(known - {'<unk>'})} words kept, max_vocab={max_vocab}")
    for name, ids, want in (("train", got.train, train), ("valid", got.valid, valid)):
        if check_ids(f"word {name}", ids, got.vocab, failures) and \
                decoded_words(got.vocab, ids) != as_unknown(want, known):
            failures.append(f"word: {name} decodes to {decoded_words(got.vocab, ids)!r}, "
                            f"expected {as_unknown(want, known)!r}")


def check_seq2seq(case, path, failures):
    out = call(lambda: load_seq2seq(path, case["reverse"], case["seed"],
                                    case["test_fraction"]),
               lambda: expect_seq2seq(case["data"], case["reverse"], case["seed"],
                                      case["test_fraction"]), failures, "seq2seq")
    if out is None:
        return
    got, (train, test) = out
    for name, x, t, rows in (("train", got.x_train, got.t_train, train),
                             ("test", got.x_test, got.t_test, test)):
        if len(x) != len(rows) or len(t) != len(rows):
            failures.append(f"seq2seq: {len(x)} {name} rows, expected {len(rows)}")
            continue
        if not (check_ids(f"seq2seq x_{name}", x, got.vocab, failures)
                and check_ids(f"seq2seq t_{name}", t, got.vocab, failures)):
            continue
        decoded = [("".join(decoded_words(got.vocab, xr)), "".join(decoded_words(got.vocab,
                                                                                  tr)))
                    for xr, tr in zip(x, t)]
        if decoded != rows:
            failures.append(f"seq2seq: {name} rows {decoded!r}, expected {rows!r}")
    if got.t_train.size and got.start_id != got.vocab.token_to_id["_"]:
        failures.append(f"seq2seq: start_id {got.start_id} is not the id of '_'")


def check_ptb(case, folder, failures):
    """The same file as train, valid and test: every split is the training
    text's words, none unknown."""
    out = call(lambda: load_ptb(folder, vocab_size=None),
               lambda: expect_word(case["data"], 0.0, "folder")[0], failures, "ptb")
    if out is None:
        return
    got, words = out
    for name in ("train", "valid", "test"):
        ids = getattr(got, name)
        if check_ids(f"ptb {name}", ids, got.vocab, failures) and \
                decoded_words(got.vocab, ids) != words:
            failures.append(f"ptb: {name} decodes to {decoded_words(got.vocab, ids)!r}, "
                            f"expected {words!r}")


def run_case(case, seed):
    failures = []
    with tempfile.TemporaryDirectory(prefix="rnnfast-fuzz-data-") as folder:
        path = os.path.join(folder, "text.txt")
        with open(path, "wb") as f:
            f.write(case["data"])
        for split in ("train", "valid", "test"):
            with open(os.path.join(folder, f"ptb.{split}.txt"), "wb") as f:
                f.write(case["data"])
        check_char(case, path, failures)
        check_word(case, path, failures)
        check_seq2seq(case, path, failures)
        check_ptb(case, folder, failures)
    return failures


def main(argv=None):
    return fuzz_main(argv, __doc__.split("\n\n")[0], lambda rng: draw_case(rng),
                     lambda case, seed: run_case(case, seed), lambda case: describe(case),
                     stream=6, cases=500)


if __name__ == "__main__":
    sys.exit(main())
