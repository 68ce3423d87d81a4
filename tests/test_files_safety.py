"""Never lose a model: rnnfast.io under hostile files and killed writers.

- a table of truncated, corrupted, foreign, wrong-version and hostile files
  (pickles, object arrays, Python in a .npy header, absurd shapes in the
  headers and in the metadata, nested JSON, compressed bombs): each load
  runs in a forked child, must raise ValueError naming the path, and must
  never run code (a marker file that the payload would create stays absent);
- every single-byte corruption of a saved file is refused or harmless;
- a process killed with SIGKILL in the middle of a large save leaves the
  previous file intact and loadable, bit for bit;
- a saved file gets the mode ``open(path, 'wb')`` gives (the umask's), an
  overwritten file keeps its mode, and a symlink stays a link to the new model;
- round trips are bit-exact in float32 and float64, over arbitrary bit
  patterns (subnormals, -0.0, the extremes).
"""
import io as _io
import json
import os
import pickle
import signal
import stat
import subprocess
import sys
import textwrap
import time
import zipfile

import numpy as np
import pytest

import rnnfast
import rnnfast.io as rio
from rnnfast import models

from test_bad_input import _run

MARKER = "rnnfast-pwned-marker"


# ------------------------------------------------------------------ helpers
def npy(array, allow_pickle=False):
    buf = _io.BytesIO()
    np.lib.format.write_array(buf, array, allow_pickle=allow_pickle)
    return buf.getvalue()


def members_of(path):
    with zipfile.ZipFile(path) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist()}


def write_zip(path, members, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def meta_of(members):
    data = members[rio.META_KEY + ".npy"]
    arr = np.lib.format.read_array(_io.BytesIO(data))
    return json.loads(arr.tobytes())


def with_meta(members, meta):
    members = dict(members)
    blob = json.dumps(meta).encode()
    members[rio.META_KEY + ".npy"] = npy(np.frombuffer(blob, np.uint8))
    return members


def raw_header(header_text, payload=b""):
    """A .npy member whose header dict is `header_text`, verbatim."""
    text = header_text.encode("latin1")
    pad = 64 - (10 + len(text) + 1) % 64
    text = text + b" " * pad + b"\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text + payload


class Evil:
    """Unpickling it creates the marker file."""
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def same_bits(a, b):
    return len(a.params) == len(b.params) and all(
        p.dtype == q.dtype and p.shape == q.shape and p.tobytes() == q.tobytes()
        for p, q in zip(a.params, b.params))


@pytest.fixture
def saved(tmp_path):
    net = rnnfast.LSTM(3, 4, num_layers=2, bidirectional=True, random_state=0)
    path = tmp_path / "good.npz"
    rio.save(net, path)
    return net, path


# ---------------------------------------------------------- hostile files
def _hostile(kind, good, tmp, marker):
    """Write the hostile variant `kind` of the good file; returns its path."""
    m = members_of(good)
    meta = meta_of(m)
    p = tmp / f"{kind}.npz"
    if kind == "empty-file":
        p.write_bytes(b"")
    elif kind == "pickle":
        p.write_bytes(pickle.dumps(Evil(marker)))
    elif kind == "npy-not-npz":
        p.write_bytes(npy(np.zeros(3)))
    elif kind == "text":
        p.write_text("rnnfast model, honest\n")
    elif kind == "truncated-half":
        p.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif kind == "truncated-tail":
        p.write_bytes(good.read_bytes()[:-10])
    elif kind == "object-array-param":
        obj = np.empty(m["param.000.npy"].__len__(), dtype=object)
        obj[0] = Evil(marker)
        m["param.000.npy"] = npy(obj, allow_pickle=True)
        write_zip(p, m)
    elif kind == "pickled-metadata":
        obj = np.array([Evil(marker)], dtype=object)
        m[rio.META_KEY + ".npy"] = npy(obj, allow_pickle=True)
        write_zip(p, m)
    elif kind == "python-in-npy-header":
        m["param.000.npy"] = raw_header(
            "{'descr': __import__('os').system('touch %s'), 'fortran_order': False, "
            "'shape': (3,), }" % marker, b"\0" * 12)
        write_zip(p, m)
    elif kind == "absurd-shape-in-header":
        m["param.001.npy"] = raw_header(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2**62, 2**62), }", b"\0" * 64)
        write_zip(p, m)
    elif kind == "negative-shape-in-header":
        m["param.001.npy"] = raw_header(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (-1, 16), }", b"\0" * 64)
        write_zip(p, m)
    elif kind == "big-endian-param":
        arr = np.lib.format.read_array(_io.BytesIO(m["param.000.npy"]))
        m["param.000.npy"] = npy(arr.astype(">f4"))
        meta["arrays"][1]["dtype"] = ">f4"
        write_zip(p, with_meta(m, meta))
    elif kind == "absurd-config-size":
        meta["config"]["hidden_size"] = 10 ** 12
        write_zip(p, with_meta(m, meta))
    elif kind == "absurd-num-layers":
        meta["config"]["num_layers"] = 10 ** 9
        write_zip(p, with_meta(m, meta))
    elif kind == "absurd-shapes-in-metadata":
        for a in meta["arrays"]:
            a["shape"] = [2 ** 40, 2 ** 40]
        write_zip(p, with_meta(m, meta))
    elif kind == "config-wrong-type":
        meta["config"]["hidden_size"] = "4; import os"
        write_zip(p, with_meta(m, meta))
    elif kind == "unknown-class":
        meta["class"] = "os.system"
        meta["config"] = {"command": f"touch {marker}"}
        write_zip(p, with_meta(m, meta))
    elif kind == "newer-format-version":
        meta["format_version"] = 99
        write_zip(p, with_meta(m, meta))
    elif kind == "no-format-version":
        del meta["format_version"]
        write_zip(p, with_meta(m, meta))
    elif kind == "deeply-nested-json":
        blob = b'{"format": "rnnfast", "x": ' + b"[" * 100000 + b"]" * 100000 + b"}"
        m[rio.META_KEY + ".npy"] = npy(np.frombuffer(blob, np.uint8))
        write_zip(p, m)
    elif kind == "nan-param":
        arr = np.lib.format.read_array(_io.BytesIO(m["param.002.npy"]))
        arr[0] = np.nan
        m["param.002.npy"] = npy(arr)
        write_zip(p, m)
    elif kind == "missing-param":
        del m["param.003.npy"]
        write_zip(p, m)
    elif kind == "extra-member":
        m["../../etc/evil.npy"] = npy(np.zeros(3))
        write_zip(p, m)
    elif kind == "deflate-bomb":
        # a small compressed member inflating to 200 MB of zeros
        m["param.000.npy"] = raw_header(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (50000000,), }",
            b"\0" * 200_000_000)
        write_zip(p, m, compression=zipfile.ZIP_DEFLATED)
    else:
        raise AssertionError(kind)
    return p


HOSTILE = ["empty-file", "pickle", "npy-not-npz", "text", "truncated-half", "truncated-tail",
           "object-array-param", "pickled-metadata", "python-in-npy-header",
           "absurd-shape-in-header", "negative-shape-in-header", "big-endian-param",
           "absurd-config-size", "absurd-num-layers", "absurd-shapes-in-metadata",
           "config-wrong-type", "unknown-class", "newer-format-version", "no-format-version",
           "deeply-nested-json", "nan-param", "missing-param", "extra-member", "deflate-bomb"]


# files whose metadata is well formed: only building the object must fail
BUILD_TIME = {"nan-param", "absurd-config-size", "absurd-num-layers", "config-wrong-type",
              "unknown-class"}


@pytest.mark.parametrize("kind", HOSTILE)
def test_hostile_file_is_refused_and_runs_nothing(kind, saved, tmp_path):
    _, good = saved
    marker = str(tmp_path / MARKER)
    path = _hostile(kind, good, tmp_path, marker)
    for reader in (rio.load, rio.read_metadata):
        started = time.perf_counter()
        result, exc, tb, sig = _run(lambda: reader(path))
        elapsed = time.perf_counter() - started
        assert result != "crashed", f"{reader.__name__} crashed ({sig})"
        if kind in BUILD_TIME and reader is rio.read_metadata:
            continue                  # the metadata alone is readable; load refuses
        assert result == "raised", f"{reader.__name__} accepted a {kind} file"
        assert isinstance(exc, ValueError), f"{type(exc).__name__}: {exc}\n{tb}"
        assert os.fspath(path) in str(exc), str(exc)
        assert elapsed < 20, f"{reader.__name__} took {elapsed:.1f} s"
    assert not os.path.exists(marker), "loading the file ran code"


def test_every_single_byte_corruption_is_refused_or_harmless(saved, tmp_path):
    net, good = saved
    data = bytearray(good.read_bytes())
    rng = np.random.default_rng(0)
    positions = np.unique(np.concatenate([rng.integers(0, len(data), 60),
                                          np.arange(0, len(data), max(1, len(data) // 60))]))
    refused = harmless = 0
    bad = tmp_path / "flipped.npz"
    for pos in positions:
        flipped = bytearray(data)
        flipped[pos] ^= 0xFF
        bad.write_bytes(bytes(flipped))
        result, exc, tb, sig = _run(lambda: rio.load(bad))
        assert result != "crashed", f"byte {pos}: crashed ({sig})"
        if result == "raised":
            assert isinstance(exc, ValueError), f"byte {pos}: {type(exc).__name__}: {exc}"
            refused += 1
        else:
            # a byte no reader looks at (zip timestamps, padding): the model
            # must then be exactly the saved one
            assert same_bits(rio.load(bad), net), f"byte {pos}: loaded different weights"
            harmless += 1
    assert refused > 0.8 * len(positions), (refused, harmless)


def test_every_truncation_is_refused(saved, tmp_path):
    _, good = saved
    data = good.read_bytes()
    bad = tmp_path / "cut.npz"
    for n in sorted(set(np.linspace(0, len(data) - 1, 60).astype(int))):
        bad.write_bytes(data[:n])
        result, exc, tb, sig = _run(lambda: rio.load(bad))
        assert result == "raised" and isinstance(exc, ValueError), \
            f"cut at {n} of {len(data)}: {result} {exc!r}"


# ----------------------------------------------------- killed in mid-save
CHILD = textwrap.dedent("""
    import sys, time
    import numpy as np
    import rnnfast, rnnfast.io as rio
    path, mode = sys.argv[1], sys.argv[2]
    net = rnnfast.LSTM(256, 512, num_layers=2, random_state=2)   # ~15 MB of float32
    if mode == "stall":
        write = rio._write_member
        def stalling(zf, name, array):
            write(zf, name, array)
            if name == "param.002":            # some members written, others not
                print("mid-save", flush=True)
                time.sleep(60)
        rio._write_member = stalling
    print("saving", flush=True)
    rio.save(net, path)
    print("saved", flush=True)
""")


def _old_file(tmp_path):
    old = rnnfast.LSTM(256, 512, num_layers=2, random_state=1)
    path = tmp_path / "model.npz"
    rio.save(old, path)
    return old, path


def _spawn(path, mode):
    return subprocess.Popen([sys.executable, "-c", CHILD, str(path), mode],
                            stdout=subprocess.PIPE, text=True)


def test_sigkill_in_the_middle_of_a_save_keeps_the_old_file(tmp_path):
    old, path = _old_file(tmp_path)
    before = path.read_bytes()
    child = _spawn(path, "stall")
    assert child.stdout.readline().strip() == "saving"
    assert child.stdout.readline().strip() == "mid-save"
    leftovers = [p for p in tmp_path.iterdir() if p.name != path.name]
    assert leftovers and leftovers[0].stat().st_size > 0, "the save had not started writing"
    child.send_signal(signal.SIGKILL)
    assert child.wait(timeout=30) == -signal.SIGKILL
    assert path.read_bytes() == before, "the previous file changed"
    assert same_bits(rio.load(path), old)


def test_sigkill_at_random_moments_leaves_old_or_new_file(tmp_path):
    """Kills at moments spread over a real save: the target is always a
    complete file, the old model or the new one, never a mixture."""
    old, path = _old_file(tmp_path)
    new = rnnfast.LSTM(256, 512, num_layers=2, random_state=2)
    t0 = time.perf_counter()
    child = _spawn(path, "plain")
    assert child.stdout.readline().strip() == "saving"
    t_start = time.perf_counter()
    assert child.stdout.readline().strip() == "saved"
    child.wait(timeout=60)
    duration = time.perf_counter() - t_start
    seen = {"old": 0, "new": 0}
    for frac in (0.0, 0.3, 0.7):
        rio.save(old, path)
        child = _spawn(path, "plain")
        assert child.stdout.readline().strip() == "saving"
        time.sleep(frac * duration)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        loaded = rio.load(path)
        if same_bits(loaded, old):
            seen["old"] += 1
        else:
            assert same_bits(loaded, new), "the target holds neither model"
            seen["new"] += 1
    print(f"save of ~15 MB took {duration:.2f} s (child start {t_start - t0:.2f} s); "
          f"after kills: {seen}")


# ---------------------------------------------------- modes and symlinks
posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX modes and symlinks")


def _mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def _saves(net):
    """Both writers, as (name, function of a path)."""
    return [("save", lambda p: rio.save(net, p)),
            ("save_checkpoint", lambda p: rio.save_checkpoint(p, net, state={"epoch": 1}))]


@posix_only
def test_a_new_file_gets_the_mode_open_would_give_it(tmp_path):
    net = rnnfast.GRU(2, 3, random_state=0)
    for mask in (0o022, 0o027, 0o002):
        old = os.umask(mask)
        try:
            with open(tmp_path / f"plain-{mask:o}", "wb"):
                pass
            for name, write in _saves(net):
                write(tmp_path / f"{name}-{mask:o}.npz")
        finally:
            os.umask(old)
        want = _mode(tmp_path / f"plain-{mask:o}")
        assert want == 0o666 & ~mask
        for name, _ in _saves(net):
            assert _mode(tmp_path / f"{name}-{mask:o}.npz") == want, (name, oct(mask))


@posix_only
def test_overwriting_a_file_keeps_its_mode(tmp_path):
    net = rnnfast.GRU(2, 3, random_state=0)
    old = os.umask(0o077)                 # a new file would be 0600
    try:
        for mode in (0o644, 0o664, 0o640, 0o604):
            for name, write in _saves(net):
                path = tmp_path / f"{name}.npz"
                write(path)
                os.chmod(path, mode)
                write(path)
                assert _mode(path) == mode, (name, oct(mode))
                assert same_bits(rio.load(path), net)
    finally:
        os.umask(old)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                    reason="only root can give a file to another owner")
def test_root_overwriting_a_users_file_keeps_its_owner(tmp_path):
    """A save replaces the file with a new one; run as root (a container, a
    cron job) on a user's model it must not leave the user a root-owned file."""
    net = rnnfast.GRU(2, 3, random_state=0)
    for (name, write), owner in zip(_saves(net), [(12345, 23456), (4321, 0)]):
        path = tmp_path / f"{name}.npz"
        write(path)
        os.chown(path, *owner)
        os.chmod(path, 0o600)
        write(path)
        st = os.stat(path)
        assert (st.st_uid, st.st_gid) == owner, name
        assert _mode(path) == 0o600
        assert same_bits(rio.load(path), net)


@posix_only
def test_a_symlink_is_written_through_and_stays_a_link(tmp_path, monkeypatch):
    store, links = tmp_path / "store", tmp_path / "links"
    store.mkdir()
    links.mkdir()
    old = rnnfast.LSTM(3, 4, random_state=1)
    new = rnnfast.LSTM(3, 4, random_state=2)
    real = store / "v1.npz"
    rio.save(old, real)
    os.chmod(real, 0o640)
    link = links / "latest.npz"
    relative = os.path.relpath(real, links)         # ../store/v1.npz
    os.symlink(relative, link)
    during = []
    write_member = rio._write_member

    def watching(zf, name, array):                  # where is the temporary file?
        if not during:
            during.append((sorted(os.listdir(store)), sorted(os.listdir(links))))
        write_member(zf, name, array)
    monkeypatch.setattr(rio, "_write_member", watching)
    for name, write in _saves(new):
        during.clear()
        rio.save(old, real)
        write(link)
        assert os.path.islink(link) and os.readlink(link) == relative, name
        assert same_bits(rio.load(real), new), f"{name}: the link's target was not updated"
        assert _mode(real) == 0o640
        # the temporary file sat beside the target, so os.replace was a rename there
        in_store, in_links = during[0]
        assert len(in_store) == 2 and in_store[0].startswith(".v1.npz."), in_store
        assert in_links == ["latest.npz"]
        assert os.listdir(store) == ["v1.npz"] and os.listdir(links) == ["latest.npz"]
    # a dangling link: the save creates the file it points to, as open() would
    os.symlink(store / "v2.npz", links / "next.npz")
    rio.save(new, links / "next.npz")
    assert os.path.islink(links / "next.npz") and same_bits(rio.load(store / "v2.npz"), new)


# ------------------------------------------------------------- round trips
def _random_bits(shape, dtype, rng):
    """Finite values with arbitrary bit patterns: subnormals, -0.0, extremes."""
    uint = np.uint32 if dtype == np.float32 else np.uint64
    info = np.finfo(dtype)
    a = rng.integers(0, np.iinfo(uint).max, shape, dtype=uint, endpoint=True).view(dtype).copy()
    a[~np.isfinite(a)] = info.max
    flat = a.reshape(-1)
    specials = [-0.0, info.tiny, info.smallest_subnormal, -info.smallest_subnormal,
                info.max, -info.max, info.eps]
    flat[:len(specials)] = np.array(specials, dtype)[:flat.size]
    return a


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("make", [
    lambda dt: rnnfast.GRU(3, 5, num_layers=2, bidirectional=True, dtype=dt, random_state=0),
    lambda dt: rnnfast.RNN(2, 3, nonlinearity="relu", dtype=dt, random_state=0),
    lambda dt: models.RnnLM(20, hidden_size=6, num_layers=2, tie_weights=True, dtype=dt,
                            random_state=0),
    lambda dt: models.SequenceClassifier(3, input_size=4, hidden_size=5, bidirectional=True,
                                         dtype=dt, random_state=0),
], ids=["gru-bi", "rnn-relu", "rnnlm-tied", "classifier"])
def test_round_trip_is_bit_exact(make, dtype, tmp_path):
    rng = np.random.default_rng(0)
    obj = make(dtype)
    for p in obj.params:
        p[...] = _random_bits(p.shape, dtype, rng)
    rio.save(obj, tmp_path / "m.npz")
    back = rio.load(tmp_path / "m.npz")
    assert type(back) is type(obj)
    assert same_bits(back, obj)
    rio.save(back, tmp_path / "m2.npz")             # and again: a fixed point
    assert same_bits(rio.load(tmp_path / "m2.npz"), obj)
