"""Text embeddings from a pretrained static model whose weights ship inside a registry package.

earshot's classifier heads (``meaning.py``) and per-query relevance read a mention through one
pretrained representation: WordLlama's ``l2_supercat`` token embeddings (a 32,000-token
vocabulary, 256 dimensions, float16, about 16 MB), distilled from a large language model's
token embeddings and shipped inside the ``wordllama`` wheel. A text's vector is the mean of
its tokens' vectors, scaled to unit length: one tokenizer call and one array mean, about
0.05 ms for a social post. The table is memory-mapped from the installed file, so only the
rows of tokens that occur become resident.

Nothing is downloaded, ever: the weights and the tokenizer are read from the installed
package's own folder, and ``wordllama``'s download code (which looks in the wrong folder for
its bundled tokenizer and then tries the network) is never imported.

    >>> vec = embed("the app keeps crashing since the update")
    >>> vec.shape, round(float((vec * vec).sum()), 3)
    ((256,), 1.0)
"""

from __future__ import annotations

import importlib.util
import json
import re
import threading
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DIM", "EmbeddingModel", "embed", "embed_many", "model", "model_files"]

#: Dimensions of the vectors ``embed`` returns.
DIM = 256
#: Tokens read per text (a long post's first ~1,500 words; the mean is stable long before).
MAX_TOKENS = 2048
#: Texts tokenized at once by ``embed_many`` (bounds the tokenizer's memory; speed is the same).
BATCH = 64

_WEIGHTS = "weights/l2_supercat_256.safetensors"
_TOKENIZER = "tokenizers/l2_supercat_tokenizer_config.json"


def model_files() -> tuple[Path, Path]:
    """The weights and tokenizer files inside the installed ``wordllama`` package.

    Raises ``FileNotFoundError`` naming what is missing (the package, or a file in it).
    The package is located without importing it, so none of its download code runs.
    """
    spec = importlib.util.find_spec("wordllama")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the wordllama package is not installed (pip install wordllama)")
    root = Path(next(iter(spec.submodule_search_locations)))
    weights, tokenizer = root / _WEIGHTS, root / _TOKENIZER
    for path in (weights, tokenizer):
        if not path.is_file():
            raise FileNotFoundError(f"wordllama is installed without {path.name} ({path})")
    return weights, tokenizer


class EmbeddingModel:
    """Mean-pooled static token embeddings, unit length. Thread-safe after construction."""

    def __init__(self, weights: Path | None = None, tokenizer: Path | None = None) -> None:
        from tokenizers import Tokenizer

        if weights is None or tokenizer is None:
            weights, tokenizer = model_files()
        table = _mapped_tensor(weights, "embedding.weight")
        if table.ndim != 2 or table.shape[1] != DIM:
            raise ValueError(f"{weights.name}: expected a (vocab, {DIM}) table, got {table.shape}")
        #: Memory-mapped from the installed file, read-only: only the rows of tokens that
        #: occur are ever resident, and processes on one machine share them.
        self.table: np.ndarray = table
        self._tokenizer: Any = Tokenizer.from_file(str(tokenizer))
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()
        # This tokenizer has no pre-tokenizer: a whole text is one "word" to BPE, so its
        # word cache would keep the last 10,000 texts (about 37 MB) for texts that never
        # come back. Off; the tokens are the same and as fast.
        resize = getattr(self._tokenizer.model, "_resize_cache", None)
        if resize is not None:
            resize(0)
        self.name = "wordllama-l2_supercat-256"

    def token_ids(self, text: str) -> list[int]:
        """The vocabulary ids of ``text`` (at most ``MAX_TOKENS``)."""
        try:
            ids: list[int] = self._tokenizer.encode(text, add_special_tokens=False).ids
        except TypeError:  # a lone surrogate ("\ud800" in JSON) is not valid text for it
            ids = self._tokenizer.encode(_valid(text), add_special_tokens=False).ids
        return ids[:MAX_TOKENS]

    def embed(self, text: str) -> np.ndarray:
        """The unit-length float32 vector of ``text``; the zero vector for an empty text."""
        return self._pool(self.token_ids(text))

    def embed_many(self, texts: list[str]) -> np.ndarray:
        """``embed`` for each text, as one ``(len(texts), DIM)`` float32 array."""
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        # In batches: the tokenizer's encodings (ids, offsets, token strings, masks) take
        # tens of bytes a token outside Python's heap, and a start-up batch of thousands of
        # long texts left the process 20 MB larger for good.
        for start in range(0, len(texts), BATCH):
            batch = texts[start : start + BATCH]
            try:
                encodings = self._tokenizer.encode_batch(batch, add_special_tokens=False)
            except TypeError:
                valid = [_valid(text) for text in batch]
                encodings = self._tokenizer.encode_batch(valid, add_special_tokens=False)
            for i, enc in enumerate(encodings, start):
                out[i] = self._pool(enc.ids[:MAX_TOKENS])
        return out

    def _pool(self, ids: list[int]) -> np.ndarray:
        if not ids:
            return np.zeros(DIM, dtype=np.float32)
        vec = self.table[ids].astype(np.float32).mean(axis=0)
        norm = float(np.linalg.norm(vec))
        return vec / norm if norm > 0 else vec


_DTYPES = {"F16": np.float16, "F32": np.float32}
_SURROGATE = re.compile("[\ud800-\udfff]")


def _valid(text: str) -> str:
    """``text`` with what is not valid Unicode (lone surrogates) replaced by U+FFFD."""
    return _SURROGATE.sub("\ufffd", text)


def _mapped_tensor(path: Path, name: str) -> np.ndarray:
    """One tensor of a safetensors file, memory-mapped (the format: an 8-byte little-endian
    header length, a JSON header naming each tensor's dtype, shape and byte offsets, then
    the raw data)."""
    with path.open("rb") as f:
        size = int.from_bytes(f.read(8), "little")
        if not 0 < size < 100_000_000:
            raise ValueError(f"{path.name}: not a safetensors file")
        header = json.loads(f.read(size))
    try:
        entry = header[name]
        dtype = _DTYPES[entry["dtype"]]
        start, end = entry["data_offsets"]
        shape = tuple(entry["shape"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path.name}: no usable tensor {name!r} ({exc})") from exc
    count = int(np.prod(shape))
    if end - start != count * np.dtype(dtype).itemsize:
        raise ValueError(f"{path.name}: tensor {name!r} has the wrong size")
    return np.memmap(path, dtype=dtype, mode="r", offset=8 + size + start, shape=shape)


_lock = threading.Lock()
_model: EmbeddingModel | None = None


def model() -> EmbeddingModel:
    """The process-wide model, loaded on first use (about 0.1 s, 16 MB)."""
    global _model
    if _model is None:
        with _lock:
            if _model is None:
                _model = EmbeddingModel()
    return _model


def embed(text: str) -> np.ndarray:
    """The unit-length vector of ``text`` from the process-wide model."""
    return model().embed(text)


def embed_many(texts: list[str]) -> np.ndarray:
    """``embed`` for several texts at once, one row each."""
    return model().embed_many(texts)
