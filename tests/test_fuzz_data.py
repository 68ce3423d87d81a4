"""Fixed seeds of the text readers' property fuzzer (tests/fuzz_data.py),
and that its oracle is live: each deliberate bug below, patched into
rnnfast.data, fails cases that pass.  Longer runs:
`python tests/fuzz_data.py --minutes 10`."""
import numpy as np
import pytest

import fuzz_data as fuzz
import rnnfast.data

SEEDS = range(400)          # ~0.5 s: a case reads four tiny files


def case_of(seed):
    return fuzz.draw_case(np.random.default_rng([seed, 6]))


def failing_seeds(seeds=SEEDS):
    return [s for s in seeds if fuzz.run_case(case_of(s), s)]


def test_the_readers_agree_with_the_oracle():
    failures = {s: fuzz.run_case(case_of(s), s) for s in SEEDS}
    failures = {s: f for s, f in failures.items() if f}
    assert not failures, "\n".join(f"seed {s}: {fuzz.describe(case_of(s))}\n  " + "\n  ".join(f)
                                   for s, f in list(failures.items())[:5])


def test_the_seeds_draw_what_the_oracle_tells_apart():
    """Accepted and refused files for every reader, byte-order marks,
    line ends of every kind, invalid UTF-8 and well-formed seq2seq files."""
    cases = [case_of(s) for s in SEEDS]
    data = [c["data"] for c in cases]
    assert sum(d.startswith(fuzz.BOM) for d in data) >= 20
    assert all(sum(piece in d for d in data) >= 20
               for piece in (b"\r\n", b"\r", b"\x0c", "\u2028".encode(), b"\xff"))
    outcomes = {}
    for s, c in zip(SEEDS, cases):
        for what, expect in (("char", lambda: fuzz.expect_char(c["data"], c["char_fraction"])),
                             ("seq2seq", lambda: fuzz.expect_seq2seq(
                                 c["data"], c["reverse"], c["seed"], c["test_fraction"]))):
            try:
                expect()
                outcomes.setdefault(what, set()).add("accepted")
            except fuzz.Refused:
                outcomes.setdefault(what, set()).add("refused")
    assert outcomes == {"char": {"accepted", "refused"}, "seq2seq": {"accepted", "refused"}}


def keeping_the_bom(path, name="path"):
    text = ORIGINAL_READ(path, name)        # its refusals of what is not UTF-8
    with open(path, "rb") as f:
        return "\ufeff" + text if f.read(3) == fuzz.BOM else text


def splitting_at_every_line_break(self, text):
    if self.level == "char":
        return list(text)
    return [w for line in text.splitlines() for w in line.split() + [self.eos_token]]


def unsorted_chars(self, data, max_size=None, min_count=1, order="first"):
    return ORIGINAL_FIT(self, data, max_size, min_count, "first")


ORIGINAL_FIT = rnnfast.data.Vocab.fit
ORIGINAL_READ = rnnfast.data._read_text


@pytest.mark.parametrize("target, bug, message", [
    ("_read_text", keeping_the_bom, "decodes to|vocabulary|rows"),
    ("Vocab.tokenize", splitting_at_every_line_break, "word: (train|valid) decodes to|ptb"),
    ("Vocab.fit", unsorted_chars, r"char: vocabulary"),
])
def test_each_deliberate_bug_fails_cases(monkeypatch, target, bug, message):
    owner = rnnfast.data
    if "." in target:
        cls, target = target.split(".")
        owner = getattr(rnnfast.data, cls)
    monkeypatch.setattr(owner, target, bug)
    failing = failing_seeds()
    assert len(failing) >= 5, f"only {len(failing)} of {len(SEEDS)} cases failed"
    assert any(__import__("re").search(message, f)
               for s in failing[:5] for f in fuzz.run_case(case_of(s), s))


def test_a_reader_that_crashes_or_refuses_without_a_name_fails_its_case(monkeypatch):
    """The refusals' contract: a ValueError naming the argument (not a
    RuntimeError of a later step, as load_text gave on an empty file)."""
    empty = next(s for s in SEEDS if case_of(s)["data"] == b"")
    assert not fuzz.run_case(case_of(empty), empty)

    def encode_before_fit(path, level="char", valid_fraction=0.1, max_vocab=None):
        raise RuntimeError("Vocab.encode called before fit (the vocabulary is empty)")
    monkeypatch.setattr(fuzz, "load_text", encode_before_fit)
    assert any("char: raised RuntimeError" in f for f in fuzz.run_case(case_of(empty), empty))

    def unnamed(path, level="char", valid_fraction=0.1, max_vocab=None):
        raise ValueError("no text")
    monkeypatch.setattr(fuzz, "load_text", unnamed)
    assert any("does not start with 'path: '" in f
               for f in fuzz.run_case(case_of(empty), empty))


def test_the_command_line_replays_a_seed(capsys):
    assert fuzz.main(["--cases", "3", "--seed", "7"]) == 0
    assert "3 cases from seed 7, 0 failed" in capsys.readouterr().out
