"""Packed binary codes, Hamming distances and exhaustive Hamming k-NN search.

Layout: ``n_bits`` bits per item packed 8 per byte, bit ``j`` of an item stored in byte ``j // 8``
at bit position ``j % 8`` counted from the least significant bit. This is the layout of faiss'
``IndexBinaryFlat`` (and of ``numpy.packbits(..., bitorder="little")``), so ``codes.packed`` can be
added to a faiss binary index as it is (``BinaryCodes.to_faiss``). Padding bits of the last byte
are always 0, so XOR and popcount give exact Hamming distances for any ``n_bits``.

Sign convention: bit 1 <-> +1, bit 0 <-> -1. Real-valued outputs are binarised by their sign with
0 mapped to +1 (``x >= 0`` -> bit 1), so an all-zero output gives an all-ones code.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from hashbench._validation import check_matrix, check_positive_int
from hashbench.errors import InvalidInputError

SEARCH_CHUNK = 64  # queries per k-NN task


class BinaryCodes:
    """``n`` binary codes of ``n_bits`` bits each, packed into a ``(n, ceil(n_bits / 8))`` uint8 array."""

    __slots__ = ("n_bits", "packed")

    def __init__(self, packed: np.ndarray, n_bits: int):
        n_bits = check_positive_int(n_bits, "n_bits")
        packed = np.asarray(packed)
        n_bytes = (n_bits + 7) // 8
        if packed.dtype != np.uint8 or packed.ndim != 2 or packed.shape[1] != n_bytes:
            raise InvalidInputError(
                f"packed must be a uint8 array of shape (n, {n_bytes}) for n_bits={n_bits}, "
                f"got dtype {packed.dtype} and shape {packed.shape}"
            )
        if n_bits % 8 and (packed[:, -1] >> (n_bits % 8)).any():
            raise InvalidInputError("packed has non-zero padding bits beyond n_bits")
        self.packed = np.ascontiguousarray(packed)
        self.n_bits = n_bits

    # --- constructors -------------------------------------------------------------------------
    @classmethod
    def from_bits(cls, bits) -> BinaryCodes:
        """From a (n, n_bits) array of 0/1 values."""
        bits = check_matrix(bits, "bits", allow_empty=True)
        if not _holds_only(bits, 0, 1):
            raise InvalidInputError("bits must hold only 0 and 1")
        return cls(np.packbits(bits.astype(np.uint8), axis=1, bitorder="little"), bits.shape[1])

    @classmethod
    def from_signs(cls, signs) -> BinaryCodes:
        """From a (n, n_bits) array of -1/+1 values (+1 -> bit 1)."""
        signs = check_matrix(signs, "signs", allow_empty=True)
        if not _holds_only(signs, -1, 1):
            raise InvalidInputError("signs must hold only -1 and +1")
        return cls.from_bits(signs > 0)

    @classmethod
    def from_real(cls, values) -> BinaryCodes:
        """From real-valued outputs (n, n_bits) by sign; 0 maps to +1 (bit 1). Accepts torch tensors."""
        if hasattr(values, "detach"):
            values = values.detach().cpu().numpy()
        values = check_matrix(values, "values", allow_empty=True)
        return cls.from_bits(values >= 0)

    @classmethod
    def coerce(cls, codes, name: str = "codes") -> BinaryCodes:
        """Accept BinaryCodes, or a plain array of -1/+1 signs or 0/1 bits (a bool array counts as bits)."""
        if isinstance(codes, BinaryCodes):
            return codes
        array = check_matrix(codes, name, allow_empty=True)
        if array.dtype == np.bool_ or _holds_only(array, 0, 1):
            return cls.from_bits(array)
        if _holds_only(array, -1, 1):
            return cls.from_signs(array)
        raise InvalidInputError(f"{name} must be BinaryCodes or an array of -1/+1 or 0/1 values")

    # --- views --------------------------------------------------------------------------------
    def unpack(self) -> np.ndarray:
        """The (n, n_bits) uint8 array of 0/1 bits."""
        return np.unpackbits(self.packed, axis=1, count=self.n_bits, bitorder="little")

    def to_signs(self) -> np.ndarray:
        """The (n, n_bits) int8 array of -1/+1 values."""
        return self.unpack().astype(np.int8) * 2 - 1

    def __len__(self) -> int:
        return self.packed.shape[0]

    def __getitem__(self, index) -> BinaryCodes:
        rows = self.packed[index]
        if rows.ndim == 1:  # an integer index keeps a 1-row code set
            rows = rows[None, :]
        return BinaryCodes(rows, self.n_bits)

    def __eq__(self, other) -> bool:
        return (
            isinstance(other, BinaryCodes) and other.n_bits == self.n_bits and np.array_equal(other.packed, self.packed)
        )

    __hash__ = None  # mutable array inside

    def __repr__(self) -> str:
        return f"BinaryCodes(n={len(self)}, n_bits={self.n_bits})"

    # --- persistence ---------------------------------------------------------------------------
    def save(self, path) -> None:
        """Save atomically as an uncompressed NumPy archive holding ``packed`` and ``n_bits``.

        The file is written under ``path`` exactly (no extension is added); ``.codes.npz`` is the
        suffix the runner uses.
        """
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            np.savez(f, packed=self.packed, n_bits=np.int64(self.n_bits))
        tmp.replace(path)

    @classmethod
    def load(cls, path) -> BinaryCodes:
        path = Path(path)
        with np.load(path, allow_pickle=False) as data:
            if "packed" not in data or "n_bits" not in data:
                raise InvalidInputError(f"{path} is not a hashbench codes file (keys: {sorted(data)})")
            return cls(data["packed"], int(data["n_bits"]))

    # --- distances and search -------------------------------------------------------------------
    def hamming(self, other: BinaryCodes) -> np.ndarray:
        """(len(self), len(other)) Hamming distances as uint16."""
        return hamming_distances(self, other)

    def to_faiss(self):
        """A ``faiss.IndexBinaryFlat`` holding these codes (needs the extra ``hashbench[faiss]``).

        faiss counts whole bytes, so the index has d = 8 * ceil(n_bits / 8) bits; the padding bits
        are 0 in every code, so its distances are the Hamming distances over ``n_bits``.
        """
        try:
            import faiss
        except ImportError:
            raise InvalidInputError("BinaryCodes.to_faiss needs faiss: pip install 'hashbench[faiss]'") from None
        index = faiss.IndexBinaryFlat(8 * self.packed.shape[1])
        index.add(self.packed)
        return index


def _holds_only(array: np.ndarray, low, high) -> bool:
    """Whether every entry equals ``low`` or ``high`` (a fast two-value ``np.isin``)."""
    return bool(((array == low) | (array == high)).all())


def check_compatible(query: BinaryCodes, database: BinaryCodes) -> None:
    if query.n_bits != database.n_bits:
        raise InvalidInputError(f"query codes have {query.n_bits} bits but database codes have {database.n_bits}")


def as_words(codes: BinaryCodes) -> np.ndarray:
    """The packed codes zero-padded to whole uint64 words: (n, ceil(n_bits / 64)) uint64."""
    n_words = (codes.packed.shape[1] + 7) // 8
    padded = np.zeros((len(codes), n_words * 8), np.uint8)
    padded[:, : codes.packed.shape[1]] = codes.packed
    return padded.view(np.uint64)


def hamming_knn(query: BinaryCodes, database: BinaryCodes, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exhaustive k-nearest-neighbour search by Hamming distance, ties in database order.

    Returns ``(distances, indices)``, each (len(query), k), nearest first, as faiss' ``search``
    does (int32 distances, int64 indices); ``k`` is clamped to the database size. Memory grows
    with the database, not with queries x database; queries are spread over torch's threads.
    """
    import torch

    from hashbench._bitkernels import nearest_k

    check_compatible(query, database)
    k = min(check_positive_int(k, "k"), len(database))
    q_words, db_words_t = as_words(query), np.ascontiguousarray(as_words(database).T)
    distances = np.empty((len(query), k), np.int32)
    indices = np.empty((len(query), k), np.int64)

    def search(start):
        rows = slice(start, start + SEARCH_CHUNK)
        nearest_k(q_words[rows], db_words_t, k, distances[rows], indices[rows])

    with ThreadPoolExecutor(max(1, torch.get_num_threads())) as pool:
        list(pool.map(search, range(0, len(query), SEARCH_CHUNK)))
    return distances, indices


def hamming_distances(query: BinaryCodes, database: BinaryCodes) -> np.ndarray:
    """Exact Hamming distances (len(query), len(database)) as uint16, by XOR and popcount.

    The result holds len(query) * len(database) * 2 bytes: for large sets, pass query slices.
    """
    from hashbench._bitkernels import hamming_matrix  # numba compiles on first use only

    check_compatible(query, database)
    dist = np.empty((len(query), len(database)), np.uint16)
    hamming_matrix(as_words(query), as_words(database), dist)
    return dist
