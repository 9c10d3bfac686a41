"""Corpora, character vocabularies and batching for the character language model (NumPy only).

    corpus = load_corpus("python-docs")          # or "tinyshakespeare", or a path to a UTF-8 file
    train, val = check_corpus(corpus.text, seq_len=100, batch_size=32)
    vocab = Vocab.from_text(corpus.text)
    streams = Streams(vocab.encode(train), batch_size=32, seq_len=100)
    batch = streams.next()                       # batch.x, batch.y: (T, B) ids; batch.reset
"""

from rnnkit.data.atomic import atomic_write, atomic_write_bytes, atomic_write_text
from rnnkit.data.corpora import BUILTIN, NAMED, Corpus, cache_dir, load_corpus, python_docs_text
from rnnkit.data.streams import Batch, Streams
from rnnkit.data.text import CorpusError, check_corpus, decode_text, read_text, split_text
from rnnkit.data.vocab import Vocab

__all__ = [
    "BUILTIN", "NAMED", "Batch", "Corpus", "CorpusError", "Streams", "Vocab", "atomic_write",
    "atomic_write_bytes", "atomic_write_text", "cache_dir", "check_corpus", "decode_text",
    "load_corpus", "python_docs_text", "read_text", "split_text",
]
