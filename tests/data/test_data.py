"""Text reading, the train/validation split, vocabularies, named corpora and the stream batcher."""

from __future__ import annotations

import hashlib
import unicodedata
from pathlib import Path

import numpy as np
import pytest

from rnnkit.data import corpora
from rnnkit.data.corpora import load_corpus, python_docs_text
from rnnkit.data.streams import Streams
from rnnkit.data.text import CorpusError, check_corpus, decode_text, read_text, split_text
from rnnkit.data.vocab import Vocab

SHAKESPEARE = Path(__file__).resolve().parents[3] / "shared" / "data" / "tinyshakespeare.txt"


# -- text -----------------------------------------------------------------------------------------


def test_decode_drops_bom_and_normalises_to_nfc():
    decomposed = "Cafe\u0301"  # "e" + combining acute accent
    text = decode_text(b"\xef\xbb\xbf" + decomposed.encode("utf-8"))
    assert text == "Caf\u00e9" == unicodedata.normalize("NFC", decomposed)
    assert len(text) == 4


def test_invalid_utf8_says_where(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"first line\nsecond \xff line\n")
    with pytest.raises(CorpusError, match=r"invalid UTF-8 at byte 18 \(line 2, column 8\)"):
        read_text(path)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(CorpusError, match="no such file"):
        read_text(tmp_path / "nope.txt")
    with pytest.raises(CorpusError, match="is a directory"):
        read_text(tmp_path)


def test_split_is_first_90_last_10():
    text = "".join(chr(65 + i % 26) for i in range(1000))
    train, val = split_text(text)
    assert (train, val) == (text[:900], text[900:])


@pytest.mark.skipif(not SHAKESPEARE.exists(), reason="needs ../shared/data/tinyshakespeare.txt")
def test_tinyshakespeare_split_sizes_and_vocabulary():
    text = read_text(SHAKESPEARE)
    train, val = split_text(text)
    assert (len(text), len(train), len(val)) == (1_115_394, 1_003_854, 111_540)
    assert len(Vocab.from_text(text)) == 65


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty"),
        ("aaaaaaaaaaaaaaaaaaaaaaa", "only one distinct character"),
        ("abcdefghij", r"fewer than seq_len \+ 1 = 11"),  # train split: 9 characters
    ],
)
def test_check_corpus_rejects(text, message):
    with pytest.raises(CorpusError, match=message):
        check_corpus(text, seq_len=10, batch_size=1)


def test_check_corpus_at_the_edge():
    # 13 characters -> training split of 11 = seq_len + 1: exactly enough for one window
    train, val = check_corpus("abcdefghijklm", seq_len=10, batch_size=1)
    assert len(train) == 11 and len(val) == 2
    with pytest.raises(CorpusError, match="fewer than seq_len"):
        check_corpus("abcdefghijkl", seq_len=11, batch_size=1)  # split of 10 < 12
    with pytest.raises(CorpusError, match="--batch-size 2"):
        check_corpus("abcdefghijklm", seq_len=10, batch_size=2)  # needs 21


def test_check_corpus_empty_validation_split():
    # 5 characters with seq_len 3: training split 4 (enough), validation split 1 (too few)
    with pytest.raises(CorpusError, match="validation split"):
        check_corpus("abcde", seq_len=3, batch_size=1)


# -- vocabulary ----------------------------------------------------------------------------------


def test_vocab_roundtrip_and_sorted_ids():
    text = "hello, wörld ✓\n"
    vocab = Vocab.from_text(text)
    assert list(vocab.chars) == sorted(set(text))
    ids = vocab.encode(text)
    assert ids.dtype == np.int64 and vocab.decode(ids) == text
    assert [vocab.chars.index(c) for c in text] == ids.tolist()  # the oracle: a plain lookup
    assert Vocab.from_json(vocab.to_json()) == vocab


def test_vocab_names_unknown_characters():
    vocab = Vocab.from_text("abc")
    with pytest.raises(CorpusError, match=r"2 character\(s\) outside the vocabulary of 3: 'x', 'é'"):
        vocab.encode("abxcé", "the prompt")
    with pytest.raises(CorpusError, match="not an rnnkit vocabulary"):
        Vocab.from_json("[1, 2]")


# -- named corpora ------------------------------------------------------------------------------


def test_python_docs_is_deterministic_and_builtin():
    from pydoc_data.topics import topics

    text = python_docs_text()
    assert text == python_docs_text()
    assert len(text) > 100_000 and len(set(text)) > 50
    first = sorted(topics)[0]
    assert text.startswith(topics[first].strip("\n"))
    assert load_corpus("python-docs").text == text


def test_load_corpus_unknown_name():
    with pytest.raises(CorpusError, match="named corpora: python-docs, tinyshakespeare"):
        load_corpus("no-such-corpus-or-file")


def test_tinyshakespeare_cache_hit(tmp_path, monkeypatch):
    text = "First Citizen:\nBefore we proceed any further, hear me speak.\n"
    raw = text.encode()
    monkeypatch.setenv("RNNKIT_CACHE", str(tmp_path))
    monkeypatch.setattr(corpora, "TINYSHAKESPEARE_SHA256", hashlib.sha256(raw).hexdigest())
    monkeypatch.setattr(corpora, "TINYSHAKESPEARE_URL", "http://127.0.0.1:9/unreachable")
    (tmp_path / "tinyshakespeare.txt").write_bytes(raw)
    assert load_corpus("tinyshakespeare").text == text  # no network touched


@pytest.mark.skipif(not SHAKESPEARE.exists(), reason="needs ../shared/data/tinyshakespeare.txt")
def test_tinyshakespeare_checksum_is_the_real_files(tmp_path, monkeypatch):
    monkeypatch.setenv("RNNKIT_CACHE", str(tmp_path))
    monkeypatch.setattr(corpora, "TINYSHAKESPEARE_URL", "http://127.0.0.1:9/unreachable")
    (tmp_path / "tinyshakespeare.txt").write_bytes(SHAKESPEARE.read_bytes())
    assert len(load_corpus("tinyshakespeare").text) == 1_115_394


def test_tinyshakespeare_offline_says_pass_a_file(tmp_path, monkeypatch):
    monkeypatch.setenv("RNNKIT_CACHE", str(tmp_path))
    monkeypatch.setattr(corpora, "TINYSHAKESPEARE_URL", "http://127.0.0.1:9/unreachable")
    (tmp_path / "tinyshakespeare.txt").write_bytes(b"corrupt cache entry")  # wrong checksum
    notes = []
    with pytest.raises(CorpusError, match="cannot download tinyshakespeare.*--data PATH"):
        load_corpus("tinyshakespeare", note=notes.append)
    assert notes == [f"downloading tinyshakespeare (1.1 MB) from http://127.0.0.1:9/unreachable "
                     f"into {tmp_path / 'tinyshakespeare.txt'}"]  # said before the wait


# -- streams -------------------------------------------------------------------------------------


def test_streams_windows_continue_and_targets_shift():
    ids = np.arange(1000)
    s = Streams(ids, batch_size=4, seq_len=10, seed=0)
    length = 999 // 4
    first, second = s.next(), s.next()
    assert first.reset and not second.reset
    assert first.x.shape == (10, 4)
    # stream b starts at b * L; window 2 continues window 1; y is x shifted by one
    np.testing.assert_array_equal(first.x[0], np.arange(4) * length)
    np.testing.assert_array_equal(second.x[0], first.x[-1] + 1)
    np.testing.assert_array_equal(first.y, first.x + 1)


def test_streams_epochs_shift_and_reset():
    ids = np.arange(1000)
    s = Streams(ids, batch_size=4, seq_len=10, seed=3)
    _, _, windows = s.layout(0)
    batches = [s.next() for _ in range(windows + 1)]
    assert s.epoch == 1 and batches[-1].reset
    offset = s.layout(1)[0]
    assert 0 <= offset < 10
    assert batches[-1].x[0, 0] == offset  # epoch 1, stream 0 starts at the offset
    assert Streams(ids, 4, 10, seed=3).layout(1) == s.layout(1)  # the offset is a function of the seed


def test_streams_position_restores_exactly():
    ids = np.random.default_rng(0).integers(0, 50, size=500)
    a = Streams(ids, 4, 7, seed=1)
    for _ in range(30):
        a.next()
    b = Streams(ids, 4, 7, seed=1)
    b.load_state_dict(a.state_dict())
    for _ in range(40):
        x, y = a.next(), b.next()
        np.testing.assert_array_equal(x.x, y.x)
        assert x.reset == y.reset


def test_streams_split_across_ranks():
    ids = np.arange(401)
    whole = Streams(ids, 4, 10).next()
    parts = [Streams(ids, 4, 10, rank=r, world_size=2).next() for r in range(2)]
    np.testing.assert_array_equal(np.concatenate([p.x for p in parts], axis=1), whole.x)
    with pytest.raises(ValueError, match="divisible"):
        Streams(ids, 3, 10, world_size=2)


def test_one_pass_scores_each_prediction_once():
    ids = np.arange(103)
    s = Streams(ids, 4, 6, shift=False)
    ys = np.concatenate([b.y.T for b in s.one_pass()], axis=1)  # (B, L)
    assert ys.size == (102 // 4) * 4
    assert len(np.unique(ys)) == ys.size  # no prediction twice
