"""Data for recurrent models: a truncated-BPTT stream batcher, word and
character vocabularies, padding, and readers for plain text, Penn Treebank
and the DLFS2 seq2seq files (addition, dates).

The package ships no data; the readers take a path.  Token ids are plain
int64 numpy arrays.

Stream batching (language models, truncated BPTT): a 1-D corpus of ids
gives inputs ``xs = corpus[:-1]`` and targets ``ts = corpus[1:]``
(``L = len(corpus) - 1`` pairs).  Row k of every batch reads the stream from
offset ``k * L // N`` on, and keeps its position from one batch to the next
and across epochs, wrapping around the end:

    xs[k, t] = corpus[(offset_k + pos + t) % L]      pos += T after each batch

as DLFS2's ``RnnlmTrainer.get_batch`` does, so a stateful network sees each
row as one continuous text.
"""
import collections
import dataclasses
import fractions
import os

import numpy as np

from ._validation import check_int

ID_DTYPE = np.int64


# ---------------------------------------------------------------- batching
def _as_ids(values, name):
    arr = np.asarray(values)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected integer token ids, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array of token ids of shape (L,), "
                         f"got shape {arr.shape}")
    if arr.size and arr.min() < 0:
        raise ValueError(f"{name}: token ids must be >= 0, got {arr.min()}")
    return np.ascontiguousarray(arr, dtype=ID_DTYPE)


class StreamBatcher:
    """Truncated-BPTT batches (xs, ts), each an int array (batch_size, time_size).

    Row k of a batch reads stream k, which starts at ``k * (L // N)`` (L =
    len(corpus) - 1 (input, target) pairs).  Iterating gives one epoch:
    ``len(self)`` batches, ``L // (N * T)``, as in DLFS2.  The read
    position is kept between epochs; ``state_dict()`` and
    ``load_state_dict()`` carry it through checkpoints.
    """

    def __init__(self, corpus, batch_size, time_size):
        corpus = _as_ids(corpus, "corpus")
        self.batch_size = check_int(batch_size, "batch_size")
        self.time_size = check_int(time_size, "time_size")
        self.data_size = corpus.shape[0] - 1
        if self.data_size < self.batch_size * self.time_size:
            raise ValueError(f"corpus: {corpus.shape[0]} ids give {max(self.data_size, 0)} "
                             f"(input, target) pairs, fewer than one batch of "
                             f"batch_size * time_size = {self.batch_size} * {self.time_size}")
        self.xs, self.ts = corpus[:-1], corpus[1:]
        N = self.batch_size
        # stream k starts at k * (L // N), as DLFS2's RnnlmTrainer (jump =
        # data_size // batch_size), Zaremba's main.lua and PyTorch's
        # word_language_model (rows of L // N tokens) have it
        self.offsets = np.arange(N, dtype=ID_DTYPE) * (self.data_size // N)
        self.position = 0
        self._steps = np.arange(self.time_size, dtype=ID_DTYPE)

    def __len__(self):
        return self.data_size // (self.batch_size * self.time_size)

    def next_batch(self):
        """The next (xs, ts), each int64 (N, T) and a new array: row k reads
        from offsets[k] + position (mod L); then position += T (mod L)."""
        idx = (self.offsets[:, None] + (self.position + self._steps)[None, :]) % self.data_size
        self.position = (self.position + self.time_size) % self.data_size
        return self.xs[idx], self.ts[idx]

    def __iter__(self):
        for _ in range(len(self)):
            yield self.next_batch()

    def reset(self):
        """Back to the start: position 0."""
        self.position = 0

    def state_dict(self):
        """{"position": int}, the read position (plain JSON)."""
        return {"position": int(self.position)}

    def load_state_dict(self, state):
        """Restore state_dict()'s position.  A missing key raises KeyError,
        a non-integer TypeError, a position outside 0..L-1 ValueError."""
        position = check_int(state["position"], "position", minimum=0)
        if position >= self.data_size:
            raise ValueError(f"position: expected 0..{self.data_size - 1}, got {position}")
        self.position = position


def pad_sequences(sequences, pad_value=0, dtype=None):
    """A list of arrays (T_i, ...) -> (padded (n, max T_i, ...), lengths (n,)).

    Padding goes after each sequence; trailing dimensions must agree."""
    seqs = [np.asarray(s) for s in sequences]
    if not seqs:
        raise ValueError("sequences: expected at least one sequence, got an empty list")
    tail = seqs[0].shape[1:]
    for i, s in enumerate(seqs):
        if s.ndim == 0 or s.shape[1:] != tail:
            want = "(T_i" + "".join(f", {d}" for d in tail) + ("," if not tail else "") + ")"
            raise ValueError(f"sequences[{i}]: expected shape {want} like sequences[0], "
                             f"got shape {s.shape}")
        if s.dtype.kind not in "fiub":
            raise TypeError(f"sequences[{i}]: expected numbers, got dtype {s.dtype}")
    lengths = np.array([s.shape[0] for s in seqs], dtype=ID_DTYPE)
    dtype = np.result_type(*seqs) if dtype is None else np.dtype(dtype)
    padded = np.full((len(seqs), int(lengths.max()), *tail), pad_value, dtype=dtype)
    for i, s in enumerate(seqs):
        padded[i, :s.shape[0]] = s
    return padded, lengths


# ------------------------------------------------------------- vocabularies
class Vocab:
    """Token <-> id maps for word- or character-level text.

    ``level="word"``: a text is tokenised per line as ``line.split() + [eos]``
    (``eos_token=None`` drops the end-of-line token), decoded with spaces.
    ``level="char"``: every character is a token, decoded with "".

    ``fit`` orders tokens by first appearance (``order="first"``, DLFS2's
    order), by decreasing count (``"frequency"``) or sorted (``"sorted"``,
    nanoGPT's character order).  The padding token, then the unknown token,
    take the first ids unless the data itself contains them (then they keep
    their place).  Encoding a token outside the vocabulary gives the unknown
    id, or a ValueError when there is no unknown token.
    """

    def __init__(self, level="word", unk_token="<unk>", pad_token=None, eos_token="<eos>"):
        if level not in ("word", "char"):
            raise ValueError(f"level: expected 'word' or 'char', got {level!r}")
        self.level = level
        self.unk_token, self.pad_token = unk_token, pad_token
        self.eos_token = eos_token if level == "word" else None
        self.id_to_token = []
        self.token_to_id = {}

    # ---------------------------------------------------------- tokens
    def tokenize(self, text):
        """A str -> a list of tokens.  "char": list(text), newlines
        included.  "word": line.split() for each line, each followed by
        eos_token (unless None), even an empty line; lines end at LF, CRLF
        or CR only (not at str.splitlines' other breaks), and a final
        newline starts no empty line."""
        if self.level == "char":
            return list(text)
        tokens = []
        # Lines end at "\n", "\r\n" or "\r" only, as a file read in text mode
        # has them: str.splitlines would also end one at a form feed, "\x1c"
        # or "\u2028" and add an end-of-line token there.
        lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        if lines[-1] == "":
            lines.pop()         # the text's final newline ends a line, starts none
        for line in lines:
            tokens.extend(line.split())
            if self.eos_token is not None:
                tokens.append(self.eos_token)
        return tokens

    def _tokens(self, data):
        return self.tokenize(data) if isinstance(data, str) else list(data)

    def fit(self, data, max_size=None, min_count=1, order="first"):
        """Build the vocabulary from a text (str) or a sequence of tokens."""
        if order not in ("first", "frequency", "sorted"):
            raise ValueError(f"order: expected 'first', 'frequency' or 'sorted', got {order!r}")
        counts = collections.Counter(self._tokens(data))   # insertion order = first seen
        specials = [t for t in (self.pad_token, self.unk_token) if t is not None]
        head = [t for t in specials if t not in counts]
        kept = [t for t, c in counts.items() if c >= min_count or t in specials]
        if max_size is not None:
            room = check_int(max_size, "max_size") - len(head)
            if room < len(specials) - len(head):
                raise ValueError(f"max_size: {max_size} leaves no room beside the special "
                                 f"tokens {specials}")
            rank = sorted(range(len(kept)),
                          key=lambda i: (kept[i] not in specials, -counts[kept[i]]))
            keep = set(rank[:room])
            kept = [t for i, t in enumerate(kept) if i in keep]
        if order == "frequency":
            kept.sort(key=lambda t: -counts[t])     # stable: ties keep first appearance
        elif order == "sorted":
            kept.sort()
        tokens = head + kept
        self._set(tokens)
        return self

    def _set(self, tokens):
        self.id_to_token = list(tokens)
        self.token_to_id = {t: i for i, t in enumerate(self.id_to_token)}
        if len(self.token_to_id) != len(self.id_to_token):
            raise ValueError("tokens: the vocabulary lists a token twice")

    def __len__(self):
        return len(self.id_to_token)

    def __contains__(self, token):
        return token in self.token_to_id

    @property
    def unk_id(self):
        """The id of unk_token; None when there is none or it is not in
        the vocabulary (e.g. before fit)."""
        return self.token_to_id.get(self.unk_token) if self.unk_token is not None else None

    @property
    def pad_id(self):
        """The id of pad_token; None when there is none or it is not in
        the vocabulary."""
        return self.token_to_id.get(self.pad_token) if self.pad_token is not None else None

    # ------------------------------------------------------ conversions
    def encode(self, data):
        """A text (str) or a sequence of tokens -> int64 ids (L,)."""
        if not self.id_to_token:
            raise RuntimeError("Vocab.encode called before fit (the vocabulary is empty)")
        tokens = self._tokens(data)
        get, unk = self.token_to_id.get, self.unk_id
        ids = [get(t, unk) for t in tokens]
        if unk is None and None in ids:
            bad = tokens[ids.index(None)]
            raise ValueError(f"data: token {bad!r} is not in the vocabulary of {len(self)} "
                             "tokens and the vocabulary has no unknown token")
        return np.array(ids, dtype=ID_DTYPE)

    def decode(self, ids, skip_pad=True):
        """ids -> text (words joined by spaces, characters by nothing)."""
        arr = np.asarray(ids)
        if arr.size == 0:
            return ""               # np.asarray([]) is float64: nothing to decode
        if arr.dtype.kind not in "iu":
            raise TypeError(f"ids: expected integers, got dtype {arr.dtype}")
        flat = arr.ravel()
        if flat.size and (flat.min() < 0 or flat.max() >= len(self)):
            raise ValueError(f"ids: expected ids in 0..{len(self) - 1}, got min {flat.min()} "
                             f"and max {flat.max()} (shape {arr.shape})")
        pad = self.pad_id if skip_pad else None
        tokens = [self.id_to_token[i] for i in flat.tolist() if i != pad]
        return ("" if self.level == "char" else " ").join(tokens)

    # --------------------------------------------------- serialisation
    def to_dict(self):
        """A JSON-able description (rnnfast.io stores it in model metadata)."""
        return {"level": self.level, "unk_token": self.unk_token,
                "pad_token": self.pad_token, "eos_token": self.eos_token,
                "tokens": list(self.id_to_token)}

    @classmethod
    def from_dict(cls, d):
        """The Vocab of a to_dict() dict, tokens in their ids' order.  A
        missing key means level "word" or a special token of None (not the
        constructor's defaults).  A malformed dict, an unknown level or a
        token listed twice raises ValueError."""
        if not isinstance(d, dict) or not isinstance(d.get("tokens"), list) or not all(
                isinstance(t, str) for t in d["tokens"]):
            raise ValueError("vocab: expected a dict with a list of string 'tokens'")
        for key in ("unk_token", "pad_token", "eos_token"):
            if d.get(key) is not None and not isinstance(d[key], str):
                raise ValueError(f"vocab: {key} must be a string or None, got {d[key]!r}")
        v = cls(d.get("level", "word"), d.get("unk_token"), d.get("pad_token"),
                d.get("eos_token"))
        v._set(d["tokens"])
        return v

    def __repr__(self):
        return f"Vocab(level={self.level!r}, size={len(self)})"


# ----------------------------------------------------------------- readers
@dataclasses.dataclass
class LMData:
    """Token-id streams for language modelling, and their vocabulary."""
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    vocab: Vocab


@dataclasses.dataclass
class Seq2seqData:
    """Question/answer character ids (fixed width) split into train and test.

    ``t_*`` start with the start symbol (``_`` in the DLFS2 files): the
    decoder reads ``t[:, :-1]`` and predicts ``t[:, 1:]``."""
    x_train: np.ndarray
    t_train: np.ndarray
    x_test: np.ndarray
    t_test: np.ndarray
    vocab: Vocab
    start_id: int


def _read_text(path, name="path"):
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(f"{name}: {path!r} is a directory, not a text file")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{name}: no such file: {path!r}")
    with open(path, "rb") as f:
        data = f.read()
    try:
        # as a file opened in text mode with newline="": line ends kept as
        # written; a leading UTF-8 byte-order mark (Windows editors write
        # one) is an encoding marker, not text, and is dropped, as "utf-8-sig"
        # does: kept, it would be a character of its own, glue itself to the
        # first word, or widen the first question of a seq2seq file
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        hint = ("; it starts with a UTF-16 byte-order mark" if data[:2] in (b"\xff\xfe",
                                                                              b"\xfe\xff")
                else "")
        raise ValueError(f"{name}: {path!r} is not UTF-8 text: byte "
                         f"{data[exc.start]:#04x} at offset {exc.start} ({exc.reason}){hint}; "
                         "save it as UTF-8") from None


def load_ptb(folder, vocab_size=10000):
    """Penn Treebank word-level LM (Mikolov's ptb.{train,valid,test}.txt).

    Tokenisation ``line.split() + ['<eos>']``; ids in order of first
    appearance in train (as DLFS2's cache); the vocabulary has 10,000 words.
    ``vocab_size``: the size the training file's vocabulary must have
    (ValueError otherwise, a check that the folder is Mikolov's PTB); None
    accepts any (``rnnfast train-lm`` passes None).
    Returns LMData(train, valid, test, vocab)."""
    folder = os.fspath(folder)
    texts = {}
    for split in ("train", "valid", "test"):
        texts[split] = _read_text(os.path.join(folder, f"ptb.{split}.txt"), "folder")
    vocab = Vocab("word", unk_token="<unk>", eos_token="<eos>").fit(texts["train"])
    if vocab_size is not None and len(vocab) != vocab_size:
        raise ValueError(f"folder: expected a vocabulary of {vocab_size} words in "
                         f"ptb.train.txt, got {len(vocab)}; is {folder!r} Mikolov's PTB?")
    data = LMData(vocab.encode(texts["train"]), vocab.encode(texts["valid"]),
                  vocab.encode(texts["test"]), vocab)
    if data.train.size < 2:
        raise ValueError(f"folder: ptb.train.txt in {folder!r} holds {data.train.size} "
                         "tokens, too few to train on")
    return data


def load_text(path, level="char", valid_fraction=0.1, max_vocab=None):
    """A plain text file for language modelling: the first ``1 - valid_fraction``
    of its tokens train, the rest validate (nanoGPT's split for Tiny
    Shakespeare).  Characters get sorted ids (nanoGPT); words keep the order of
    first appearance, ``line.split() + ['<eos>']``, with ``<unk>`` for words
    outside the training part (or outside the ``max_vocab`` most frequent).
    Returns LMData(train, valid, test=None, vocab)."""
    text = _read_text(path)
    if not 0 <= valid_fraction < 1:
        raise ValueError(f"valid_fraction: expected a value in [0, 1), got {valid_fraction!r}")
    if not text:
        raise ValueError(f"path: {os.fspath(path)!r} is empty: no text to train on")
    if level == "char":
        vocab = Vocab("char", unk_token=None)
        split = int(len(text) * (1 - valid_fraction))
        vocab.fit(text, order="sorted")      # every character of the file, as nanoGPT
        train, valid = vocab.encode(text[:split]), vocab.encode(text[split:])
    elif level == "word":
        vocab = Vocab("word")
        tokens = vocab.tokenize(text)
        split = int(len(tokens) * (1 - valid_fraction))
        vocab.fit(tokens[:split], max_size=max_vocab)
        train, valid = vocab.encode(tokens[:split]), vocab.encode(tokens[split:])
    else:
        raise ValueError(f"level: expected 'char' or 'word', got {level!r}")
    if train.size < 2:
        raise ValueError(f"path: {os.fspath(path)!r} holds {train.size} training tokens, "
                         "too few to train on")
    return LMData(train, valid, None, vocab)


def load_seq2seq(path, reverse_input=False, seed=1984, test_fraction=0.1):
    """A DLFS2 seq2seq file (addition.txt, date.txt), split exactly as DLFS2.

    Each line is split at its first ``_``: the question before, the answer
    from the ``_`` on (the decoder's start symbol).  Character ids follow the
    order of first appearance (question, then answer, line by line).  Rows are
    shuffled as ``numpy.random.seed(seed); numpy.random.shuffle(indices)``
    (with a private RandomState, not the global one; ``seed=None`` keeps the
    file's order) and the last ``int(test_fraction * len)`` rows (``len //
    10`` at the default 0.1) are the test set: 45,000 / 5,000 for 50,000
    lines.  ``reverse_input`` flips each question (Sutskever et al.'s trick)."""
    text = _read_text(path)
    questions, answers = [], []
    for lineno, line in enumerate(text.split("\n"), 1):
        line = line[:-1] if line.endswith("\r") else line
        if not line:
            continue
        cut = line.find("_")
        if cut < 0:
            raise ValueError(f"path: line {lineno} of {os.fspath(path)!r} has no '_' "
                             f"separating question and answer: {line[:60]!r}")
        questions.append(line[:cut])
        answers.append(line[cut:])
    if not questions:
        raise ValueError(f"path: {os.fspath(path)!r} holds no question_answer lines")
    for name, rows in (("question", questions), ("answer", answers)):
        width = len(rows[0])
        bad = next((i for i, r in enumerate(rows) if len(r) != width), None)
        if bad is not None:
            raise ValueError(f"path: every {name} must have the width of the first "
                             f"({width} characters); row {bad + 1} has {len(rows[bad])}")
    seen = {}
    for q, a in zip(questions, answers):
        for ch in q + a:
            seen.setdefault(ch, len(seen))
    vocab = Vocab("char", unk_token=None)
    vocab._set(list(seen))
    x = np.array([[seen[c] for c in q] for q in questions], dtype=ID_DTYPE)
    t = np.array([[seen[c] for c in a] for a in answers], dtype=ID_DTYPE)
    indices = np.arange(len(x))
    if seed is not None:
        np.random.RandomState(seed).shuffle(indices)
    x, t = x[indices], t[indices]
    if not 0 <= test_fraction < 1:
        raise ValueError(f"test_fraction: expected a value in [0, 1), got {test_fraction!r}")
    split = len(x) - int(fractions.Fraction(str(test_fraction)) * len(x))   # 0.1: len // 10
    if reverse_input:
        x = np.ascontiguousarray(x[:, ::-1])
    return Seq2seqData(x[:split], t[:split], x[split:], t[split:], vocab, seen["_"])
