import numpy as np

from hashbench.methods._packed_rows import PackedRows


def test_packed_rows_read_back_bit_for_bit_in_any_order():
    rng = np.random.default_rng(0)
    rows = np.maximum(rng.standard_normal((70, 3, 4)), 0).astype(np.float32)  # about half zeros
    rows[0, 0, 0], rows[1, 2, 3], rows[2] = -0.0, np.nan, 0.0
    packed = PackedRows(rows[start : start + 16] for start in range(0, 70, 16))
    assert len(packed) == 70 and packed.values.nbytes < rows.nbytes / 1.8
    order = rng.permutation(70)
    np.testing.assert_array_equal(packed.rows(order).view(np.uint32), rows[order].view(np.uint32))
    assert packed.rows([]).shape == (0, 3, 4)
    assert PackedRows([rows[:0]]).rows([]).shape == (0, 3, 4)
