import sys
import time

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hashbench.codes import BinaryCodes, as_words, hamming_distances, hamming_knn
from hashbench.errors import InvalidInputError


def random_bits(rows, n_bits, seed=0):
    return np.random.default_rng(seed).integers(0, 2, (rows, n_bits)).astype(np.uint8)


def test_layout_is_lsb_first_like_faiss():
    bits = np.zeros((1, 12), np.uint8)
    bits[0, [0, 3, 9]] = 1  # byte 0: bits 0 and 3 -> 0b1001; byte 1: bit 1 -> 0b10
    codes = BinaryCodes.from_bits(bits)
    assert codes.packed.tolist() == [[0b1001, 0b10]]
    assert codes.n_bits == 12 and len(codes) == 1


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 3), st.integers(1, 130), st.integers(0, 2**32 - 1))
def test_bits_signs_and_real_round_trip(rows, n_bits, seed):
    bits = random_bits(rows, n_bits, seed)
    codes = BinaryCodes.from_bits(bits)
    np.testing.assert_array_equal(codes.unpack(), bits)
    np.testing.assert_array_equal(codes.to_signs(), 2 * bits.astype(int) - 1)
    assert BinaryCodes.from_signs(codes.to_signs()) == codes
    assert BinaryCodes.from_real(codes.to_signs() * 0.3) == codes
    assert BinaryCodes.coerce(bits.astype(bool)) == codes


def test_real_values_binarise_by_sign_with_zero_as_plus_one():
    values = np.array([[-2.0, 0.0, 3.5, -0.0]])
    assert BinaryCodes.from_real(values).unpack().tolist() == [[0, 1, 1, 1]]
    assert BinaryCodes.from_real(torch.tensor(values)).unpack().tolist() == [[0, 1, 1, 1]]


def test_slicing_keeps_codes_and_width():
    codes = BinaryCodes.from_bits(random_bits(5, 20))
    assert codes[1:3] == BinaryCodes.from_bits(codes.unpack()[1:3])
    assert len(codes[2]) == 1 and codes[2].n_bits == 20
    assert codes[np.array([4, 0])].unpack().tolist() == codes.unpack()[[4, 0]].tolist()


def test_save_and_load_round_trip(tmp_path):
    codes = BinaryCodes.from_bits(random_bits(7, 37))
    path = tmp_path / "run.codes.npz"
    codes.save(path)
    assert BinaryCodes.load(path) == codes
    assert not list(tmp_path.glob("*.tmp"))


def test_load_rejects_other_files(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, x=np.zeros(3))
    with pytest.raises(InvalidInputError, match="not a hashbench codes file"):
        BinaryCodes.load(path)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: BinaryCodes.from_bits([[0, 2]]), "bits must hold only 0 and 1"),
        (lambda: BinaryCodes.from_signs([[1, 0]]), "signs must hold only -1 and \\+1"),
        (lambda: BinaryCodes.from_real([[np.nan, 1.0]]), "values contains NaN"),
        (lambda: BinaryCodes.coerce([[0.5, 1]], "query_codes"), "query_codes must be BinaryCodes"),
        (lambda: BinaryCodes(np.zeros((2, 1), np.uint8), 0), "n_bits must be an integer >= 1"),
        (lambda: BinaryCodes(np.zeros((2, 2), np.uint8), 20), r"shape \(n, 3\)"),
        (lambda: BinaryCodes(np.full((1, 1), 0b1000, np.uint8), 3), "padding bits"),
    ],
)
def test_bad_input_names_the_problem(make, message):
    with pytest.raises(InvalidInputError, match=message):
        make()


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 4), st.integers(1, 6), st.integers(1, 200), st.integers(0, 2**32 - 1))
def test_hamming_distances_match_counting_differing_bits(n_query, n_db, n_bits, seed):
    q_bits, db_bits = random_bits(n_query, n_bits, seed), random_bits(n_db, n_bits, seed + 1)
    expected = (q_bits[:, None, :] != db_bits[None, :, :]).sum(axis=2)
    dist = hamming_distances(BinaryCodes.from_bits(q_bits), BinaryCodes.from_bits(db_bits))
    assert dist.dtype == np.uint16
    np.testing.assert_array_equal(dist, expected)
    np.testing.assert_array_equal(BinaryCodes.from_bits(q_bits).hamming(BinaryCodes.from_bits(db_bits)), expected)


def test_hamming_distances_reject_different_widths():
    with pytest.raises(InvalidInputError, match="16 bits but database codes have 17"):
        hamming_distances(BinaryCodes.from_bits(random_bits(1, 16)), BinaryCodes.from_bits(random_bits(1, 17)))


def test_words_pad_with_zeros():
    codes = BinaryCodes.from_bits(np.ones((2, 70), np.uint8))
    words = as_words(codes)
    assert words.shape == (2, 2) and words.dtype == np.uint64
    assert int(np.bitwise_count(words).sum()) == 140


def test_hamming_distances_beat_the_xor_broadcast():
    # 500 x 20,000 x 64 bits; the compiled loop should not be slower than one numpy XOR + popcount
    q, db = BinaryCodes.from_bits(random_bits(500, 64)), BinaryCodes.from_bits(random_bits(20000, 64, 1))
    hamming_distances(q[:1], db[:1])  # compile or load the cached kernel
    start = time.process_time()
    dist = hamming_distances(q, db)
    compiled = time.process_time() - start
    start = time.process_time()
    numpy_dist = np.bitwise_count(as_words(q)[:, None, 0] ^ as_words(db)[None, :, 0])
    broadcast = time.process_time() - start
    np.testing.assert_array_equal(dist, numpy_dist)
    assert compiled < 2 * broadcast + 0.05


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 5), st.integers(1, 40), st.integers(1, 140), st.integers(1, 50), st.integers(0, 2**32 - 1))
def test_knn_lists_the_nearest_items_with_ties_in_database_order(n_query, n_db, n_bits, k, seed):
    rng = np.random.default_rng(seed)
    # few distinct codes, so that many items tie
    db_bits = random_bits(3, n_bits, seed)[rng.integers(0, 3, n_db)] ^ (rng.random((n_db, n_bits)) < 0.05)
    query, database = BinaryCodes.from_bits(random_bits(n_query, n_bits, seed + 1)), BinaryCodes.from_bits(db_bits)
    distances, indices = hamming_knn(query, database, k)
    full = hamming_distances(query, database).astype(np.int64)
    expected = np.array([sorted(range(n_db), key=lambda j: (row[j], j)) for row in full])[:, :k]
    np.testing.assert_array_equal(indices, expected)
    np.testing.assert_array_equal(distances, np.take_along_axis(full, expected, axis=1))
    assert distances.dtype == np.int32 and indices.dtype == np.int64 and indices.shape == (n_query, min(k, n_db))


def test_knn_rejects_bad_k_and_different_widths():
    codes = BinaryCodes.from_bits(random_bits(3, 16))
    with pytest.raises(InvalidInputError, match="k must be an integer >= 1"):
        hamming_knn(codes, codes, 0)
    with pytest.raises(InvalidInputError, match="16 bits but database codes have 17"):
        hamming_knn(codes, BinaryCodes.from_bits(random_bits(3, 17)), 2)


@pytest.mark.parametrize("n_bits", [20, 64, 128])
def test_faiss_index_gives_the_same_nearest_distances(n_bits):
    faiss = pytest.importorskip("faiss")
    query, database = BinaryCodes.from_bits(random_bits(30, n_bits)), BinaryCodes.from_bits(random_bits(500, n_bits, 1))
    index = database.to_faiss()
    assert isinstance(index, faiss.IndexBinaryFlat) and index.ntotal == 500 and index.d == 8 * ((n_bits + 7) // 8)
    faiss_distances, faiss_indices = index.search(query.packed, 50)
    distances, _ = hamming_knn(query, database, 50)
    np.testing.assert_array_equal(faiss_distances, distances)
    # faiss may order ties differently; its items are at the distances it reports
    np.testing.assert_array_equal(np.take_along_axis(query.hamming(database), faiss_indices, axis=1), faiss_distances)


def test_to_faiss_without_faiss_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # makes "import faiss" fail
    with pytest.raises(InvalidInputError, match=r"pip install 'hashbench\[faiss\]'"):
        BinaryCodes.from_bits(random_bits(2, 8)).to_faiss()
