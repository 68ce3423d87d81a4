"""rnnfast.data: stream batcher, vocabularies, padding, readers."""
import os

import numpy as np
import pytest

from rnnfast.data import (StreamBatcher, Vocab, load_ptb, load_seq2seq, load_text,
                          pad_sequences)

SHARED = os.environ.get("RNNFAST_DATA", os.path.join(
    os.path.dirname(__file__), os.pardir, os.pardir, "shared", "data"))


def shared(*parts):
    path = os.path.join(SHARED, *parts)
    if not os.path.exists(path):
        pytest.skip(f"reference data not present: {path}")
    return path


# ------------------------------------------------------------------ batcher
def dlfs2_get_batch(x, t, batch_size, time_size, time_idx):
    """DLFS2 RnnlmTrainer.get_batch (common/trainer.py), element by element
    (the oracle)."""
    bx = np.empty((batch_size, time_size), int)
    bt = np.empty((batch_size, time_size), int)
    data_size = len(x)
    jump = data_size // batch_size
    offsets = [i * jump for i in range(batch_size)]
    for time in range(time_size):
        for i, offset in enumerate(offsets):
            bx[i, time] = x[(offset + time_idx) % data_size]
            bt[i, time] = t[(offset + time_idx) % data_size]
        time_idx += 1
    return bx, bt, time_idx


@pytest.mark.parametrize("L,N,T", [(101, 4, 5), (57, 3, 7), (40, 1, 39)])
def test_batcher_matches_the_element_by_element_oracle_across_epochs(L, N, T):
    corpus = np.random.default_rng(0).integers(0, 50, L)
    b = StreamBatcher(corpus, N, T)
    assert len(b) == (L - 1) // (N * T)
    time_idx = 0
    for epoch in range(3):                 # the position carries across epochs
        n = 0
        for xs, ts in b:
            ex, et, time_idx = dlfs2_get_batch(corpus[:-1], corpus[1:], N, T, time_idx)
            np.testing.assert_array_equal(xs, ex)
            np.testing.assert_array_equal(ts, et)
            n += 1
        assert n == len(b)


def test_batcher_rows_are_continuous_streams():
    corpus = np.arange(1000)
    b = StreamBatcher(corpus, 4, 10)
    x1, t1 = b.next_batch()
    x2, _ = b.next_batch()
    np.testing.assert_array_equal(x1[:, 0], [0, 249, 498, 747])     # k * (999 // 4)
    np.testing.assert_array_equal(t1, x1 + 1)
    np.testing.assert_array_equal(x2[:, 0], x1[:, -1] + 1)


def test_batcher_wraps_and_restores_position():
    corpus = np.arange(23)
    b = StreamBatcher(corpus, 2, 5)        # 22 pairs, offsets 0 and 11
    for _ in range(2):
        b.next_batch()
    state = b.state_dict()
    x3, _ = b.next_batch()
    np.testing.assert_array_equal(x3[1], [21, 0, 1, 2, 3])   # wraps at 22
    b2 = StreamBatcher(corpus, 2, 5)
    b2.load_state_dict(state)
    np.testing.assert_array_equal(b2.next_batch()[0], x3)


def test_batcher_rejects_bad_input():
    with pytest.raises(ValueError, match="batch_size \\* time_size"):
        StreamBatcher(np.arange(10), 3, 4)
    with pytest.raises(ValueError, match=r"shape \(2, 5\)"):
        StreamBatcher(np.zeros((2, 5), int), 1, 1)
    with pytest.raises(TypeError, match="float"):
        StreamBatcher(np.zeros(50), 1, 1)
    with pytest.raises(ValueError, match="batch_size"):
        StreamBatcher(np.arange(50), 0, 1)


# ------------------------------------------------------------------- vocab
def test_word_vocab_round_trip_and_unknown():
    text = " the cat sat \n the dog <unk> \n"
    v = Vocab("word").fit(text)
    assert v.id_to_token == ["the", "cat", "sat", "<eos>", "dog", "<unk>"]
    ids = v.encode(text)
    assert v.decode(ids) == "the cat sat <eos> the dog <unk> <eos>"
    assert v.encode("the bird")[1] == v.unk_id == 5
    v2 = Vocab.from_dict(v.to_dict())
    np.testing.assert_array_equal(v2.encode("cat dog bird"), v.encode("cat dog bird"))


def test_word_lines_end_at_newlines_only():
    """As DLFS2's PTB loader (and a file read in text mode): a form feed,
    "\x85" or "\u2028" inside a line is whitespace, not an end of line."""
    v = Vocab("word")
    for text in ("a b\x0cc\n", "a\x85b c\n", "a\u2028b c\n", "a b c"):
        assert v.tokenize(text) == ["a", "b", "c", "<eos>"], repr(text)
    assert v.tokenize("a\r\nb\rc\n\n") == ["a", "<eos>", "b", "<eos>", "c", "<eos>",
                                           "<eos>"]
    assert Vocab("word").fit("a b").decode([]) == ""       # [] is float64 to numpy


def test_specials_come_first_when_absent_and_max_size_keeps_frequent():
    v = Vocab("word", pad_token="<pad>", eos_token=None).fit("a b b c c c", max_size=4)
    assert v.id_to_token == ["<pad>", "<unk>", "b", "c"]
    assert v.pad_id == 0 and v.decode([2, 0, 3]) == "b c"
    v = Vocab("word", eos_token=None).fit("a b b c c c", order="frequency")
    assert v.id_to_token == ["<unk>", "c", "b", "a"]


def test_char_vocab_round_trip_and_refusals():
    text = "hello, world\n"
    v = Vocab("char", unk_token=None).fit(text, order="sorted")
    assert v.id_to_token == sorted(set(text))
    assert v.decode(v.encode(text)) == text
    with pytest.raises(ValueError, match="'Z'"):
        v.encode("Zed")
    assert len(v) == 10
    with pytest.raises(ValueError, match="ids in 0..9"):
        v.decode([0, 10])


def test_pad_sequences():
    padded, lengths = pad_sequences([np.array([1, 2, 3]), np.array([4])], pad_value=-1)
    np.testing.assert_array_equal(padded, [[1, 2, 3], [4, -1, -1]])
    np.testing.assert_array_equal(lengths, [3, 1])
    padded, lengths = pad_sequences([np.ones((2, 3)), np.ones((4, 3))])
    assert padded.shape == (2, 4, 3) and padded[0, 2:].sum() == 0
    with pytest.raises(ValueError, match=r"sequences\[1\]"):
        pad_sequences([np.ones((2, 3)), np.ones((2, 4))])


# ----------------------------------------------------------------- readers
def test_seq2seq_reader_split_on_a_synthetic_file(tmp_path):
    rng = np.random.default_rng(3)
    lines = []
    for _ in range(40):
        a, b = rng.integers(0, 100, 2)
        lines.append(f"{a}+{b}".ljust(5) + "_" + str(a + b).ljust(3))
    path = tmp_path / "add.txt"
    path.write_text("\n".join(lines) + "\n")
    d = load_seq2seq(path)
    assert d.x_train.shape == (36, 5) and d.t_test.shape == (4, 4)
    order = np.arange(40)
    np.random.RandomState(1984).shuffle(order)        # the DLFS2 recipe
    for row, i in enumerate(order):
        q, a = lines[i].split("_", 1)
        x = d.x_train if row < 36 else d.x_test
        t = d.t_train if row < 36 else d.t_test
        assert d.vocab.decode(x[row % 36 if row < 36 else row - 36]) == q
        assert d.vocab.decode(t[row % 36 if row < 36 else row - 36]) == "_" + a
    first_seen = list(dict.fromkeys("".join(lines).replace("\n", "")))
    assert d.vocab.id_to_token == first_seen
    assert d.vocab.id_to_token[d.start_id] == "_"
    r = load_seq2seq(path, reverse_input=True)
    np.testing.assert_array_equal(r.x_train, d.x_train[:, ::-1])


def test_seq2seq_reader_refuses_malformed_lines(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("1+1_2\n2+2 4\n")
    with pytest.raises(ValueError, match="line 2"):
        load_seq2seq(path)
    path.write_text("1+1_2\n12+2_14\n")
    with pytest.raises(ValueError, match="width"):
        load_seq2seq(path)


def test_text_reader_char_split(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("abcdefghij" * 10)
    d = load_text(path, level="char")
    assert d.train.size == 90 and d.valid.size == 10
    assert d.vocab.decode(d.valid) == "abcdefghij"
    w = load_text(path, level="word", valid_fraction=0.0)
    assert w.vocab.decode(w.train) == "abcdefghij" * 10 + " <eos>"


@pytest.mark.parametrize("content, where", [
    (b"hello\nw\xe9rld\n", r"byte 0xe9 at offset 7 \(invalid continuation byte\); save"),
    ("hi_1\n".encode("utf-16"), r"byte 0xff at offset 0 .*a UTF-16 byte-order mark"),
])
def test_a_file_that_is_not_utf8_is_refused_naming_it_and_the_byte(tmp_path, content, where):
    for name in ("ptb.train.txt", "ptb.valid.txt", "ptb.test.txt"):
        (tmp_path / name).write_bytes(content)
    path = tmp_path / "ptb.train.txt"
    for load, arg, argname in ((load_text, path, "path"), (load_seq2seq, path, "path"),
                               (load_ptb, tmp_path, "folder")):
        with pytest.raises(ValueError, match=f"^{argname}: '{path}' is not UTF-8 text: {where}"):
            load(arg)


def test_line_ends_are_kept_as_written_and_a_byte_order_mark_is_dropped(tmp_path):
    """Text is read as written (text mode with newline=""): a char model of
    a CRLF file learns its CRs.  A leading UTF-8 byte-order mark is an
    encoding marker, not text: dropped, as pandas and "utf-8-sig" drop it,
    by every reader (it would be a character, part of the first word, or a
    first question one wider than the others)."""
    path = tmp_path / "t.txt"
    path.write_bytes("\ufeffab\r\ncd\r\n".encode())
    d = load_text(path, level="char", valid_fraction=0.0)
    assert d.vocab.decode(d.train) == "ab\r\ncd\r\n" and "\ufeff" not in d.vocab
    w = load_text(path, level="word", valid_fraction=0.0)
    assert w.vocab.decode(w.train) == "ab <eos> cd <eos>"
    lines = "12+3_15\n4+56_60\n"
    path.write_bytes(lines.encode())
    plain = load_seq2seq(path, seed=None, test_fraction=0.0)
    path.write_bytes(b"\xef\xbb\xbf" + lines.encode())
    marked = load_seq2seq(path, seed=None, test_fraction=0.0)
    np.testing.assert_array_equal(marked.x_train, plain.x_train)
    assert marked.vocab.id_to_token == plain.vocab.id_to_token
    # only a leading mark is dropped: one inside the text is a character
    path.write_bytes("a\ufeffb".encode())
    assert load_text(path, valid_fraction=0.0).vocab.decode(
        load_text(path, valid_fraction=0.0).train) == "a\ufeffb"


def test_real_seq2seq_split():
    d = load_seq2seq(shared("seq2seq", "addition.txt"))
    assert d.x_train.shape == (45000, 7) and d.x_test.shape == (5000, 7)
    assert d.t_train.shape == (45000, 5) and len(d.vocab) == 13
    d = load_seq2seq(shared("seq2seq", "date.txt"))
    assert d.x_train.shape == (45000, 29) and d.t_test.shape == (5000, 11)
    train = {r.tobytes() for r in d.x_train}
    # the published property of DLFS2's exact split: 1,405 test dates leak into train
    assert sum(r.tobytes() in train for r in d.x_test) == 1405


def test_real_ptb():
    d = load_ptb(shared("ptb"))
    assert (d.train.size, d.valid.size, d.test.size) == (929589, 73760, 82430)
    assert len(d.vocab) == 10000
    assert d.vocab.id_to_token[0] == "aer"          # DLFS2's first id
    assert (d.train == d.vocab.unk_id).sum() == 45020


# ------------------------------------------------- vocabulary properties
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

# Texts from a small alphabet (repeated tokens, ties in counts), with the
# special tokens' spellings and every kind of line break among them.
_WORDS = st.sampled_from(["a", "b", "cc", "dd", "<unk>", "<pad>", "<eos>", "é"])
_TEXTS = st.lists(st.one_of(_WORDS, st.sampled_from([" ", "  ", "\t", "\n", "\r\n", "\r"])),
                  max_size=40).map("".join)


def _word_tokens(text):
    """The documented tokenisation: per line (LF, CRLF or CR), split() and
    <eos>; a final newline starts no line."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if lines[-1] == "":
        lines.pop()
    return [t for line in lines for t in line.split() + ["<eos>"]]


@settings(max_examples=150, deadline=None)
@given(text=_TEXTS, level=st.sampled_from(["word", "char"]),
       order=st.sampled_from(["first", "frequency", "sorted"]),
       min_count=st.integers(1, 3), max_size=st.one_of(st.none(), st.integers(2, 8)),
       pad=st.sampled_from([None, "<pad>"]))
def test_vocab_properties(text, level, order, min_count, max_size, pad):
    import collections
    import json
    vocab = Vocab(level, pad_token=pad)
    tokens = _word_tokens(text) if level == "word" else list(text)
    assert vocab.tokenize(text) == tokens
    vocab.fit(text, max_size=max_size, min_count=min_count, order=order)
    counts = collections.Counter(tokens)
    specials = [t for t in (pad, "<unk>") if t is not None]
    ids = vocab.token_to_id
    # every special is in, each token once, ids 0..len-1
    assert all(t in vocab for t in specials)
    assert sorted(ids.values()) == list(range(len(vocab)))
    assert [vocab.id_to_token[i] for i in range(len(vocab))] == list(ids)
    if max_size is not None:
        assert len(vocab) <= max_size
    kept = [t for t in vocab.id_to_token if t not in specials]
    # kept tokens are frequent enough, and no dropped one is more frequent
    assert all(counts[t] >= min_count for t in kept)
    frequent_dropped = [counts[t] for t in counts
                        if t not in vocab and t not in specials and counts[t] >= min_count]
    if kept and frequent_dropped:
        assert max(frequent_dropped) <= min(counts[t] for t in kept)
    if max_size is None:
        assert set(kept) == {t for t in counts if counts[t] >= min_count} - set(specials)
    # specials absent from the text come first (pad, then unk)
    absent = [t for t in specials if t not in counts]
    assert vocab.id_to_token[:len(absent)] == absent
    body = vocab.id_to_token[len(absent):]
    if order == "first":
        first = {t: i for i, t in reversed(list(enumerate(tokens)))}
        assert [first[t] for t in body] == sorted(first[t] for t in body)
    elif order == "frequency":
        assert [counts[t] for t in body] == sorted((counts[t] for t in body), reverse=True)
    else:
        assert body == sorted(body)
    # encode: the ids of the tokens, the unknown id for the dropped ones;
    # decode joins the tokens back (the dropped ones as <unk>)
    encoded = vocab.encode(text)
    assert encoded.tolist() == [ids.get(t, vocab.unk_id) for t in tokens]
    shown = [t if t in vocab else "<unk>" for t in tokens]
    if pad is not None:
        shown = [t for t in shown if t != pad]
    assert vocab.decode(encoded) == ("" if level == "char" else " ").join(shown)
    # through JSON and back: the same vocabulary
    again = Vocab.from_dict(json.loads(json.dumps(vocab.to_dict())))
    assert again.id_to_token == vocab.id_to_token and again.level == level
    assert again.encode(text).tolist() == encoded.tolist()


def test_a_file_with_no_text_is_refused_naming_it(tmp_path):
    """An empty file (or one holding only a byte-order mark) is refused by
    name; load_text gave a RuntimeError of Vocab.encode in char mode, and
    load_ptb returned empty arrays that failed later, in training."""
    path = tmp_path / "empty.txt"
    for content in (b"", b"\xef\xbb\xbf"):
        path.write_bytes(content)
        for level in ("char", "word"):
            with pytest.raises(ValueError, match=f"^path: '{path}' (is empty: no text "
                                                 f"to train on|holds 0 training tokens)"):
                load_text(path, level=level)
    for name in ("ptb.train.txt", "ptb.valid.txt", "ptb.test.txt"):
        (tmp_path / name).write_text("")
    with pytest.raises(ValueError, match=f"^folder: ptb.train.txt in '{tmp_path}' holds 0 "
                                         "tokens, too few to train on"):
        load_ptb(tmp_path, vocab_size=None)
