import pytest
import torch

from hashbench.methods.bihalf import BiHalf, bi_half, bi_half_codes
from tests.methods.feature_deep_checks import feature_split


@pytest.mark.parametrize("n", [2, 7, 8, 33])
def test_every_bit_is_split_half_and_half_over_the_batch(n):
    values = torch.randn(n, 5, generator=torch.Generator().manual_seed(n))
    codes = bi_half_codes(values)
    assert set(codes.unique().tolist()) == {-1.0, 1.0}
    assert (codes == 1).sum(dim=0).tolist() == [n // 2] * 5  # an odd batch's extra item is -1
    # the +1 half of each bit holds its largest values
    for bit in range(5):
        assert values[codes[:, bit] == 1, bit].min() > values[codes[:, bit] == -1, bit].max()


def test_bi_half_ignores_the_sign_and_breaks_ties_by_row_order():
    codes = bi_half_codes(torch.tensor([[5.0], [4.0], [4.0], [4.0]]))
    assert codes[:, 0].tolist() == [1.0, 1.0, -1.0, -1.0]


def test_backward_is_straight_through_plus_gamma_times_the_distance_to_the_codes():
    values = torch.tensor([[0.3, -2.0], [0.9, 0.1], [-0.4, 0.5]], requires_grad=True)
    codes, distance = bi_half(values)
    upstream, gamma = torch.tensor([[1.0, 2.0], [-1.0, 0.5], [0.0, 3.0]]), 6.0
    ((codes * upstream).sum() + 0.5 * gamma * distance).backward()
    fixed = bi_half_codes(values)
    # the release's layer: g + gamma (U - B) / (n r)
    torch.testing.assert_close(values.grad, upstream + gamma * (values.detach() - fixed) / values.numel())
    torch.testing.assert_close(codes.detach(), fixed)


def test_learning_rate_is_divided_by_ten_every_step(one_thread):
    method = BiHalf(n_bits=8, epochs=5, batch_size=32, lr=1e-2, lr_step_epochs=2)
    seen = []

    def record(epoch, hasher):
        seen.append(hasher.updates_[0].optimiser.param_groups[0]["lr"])

    method.fit(feature_split(64, web=False), callback=record)
    assert seen == pytest.approx([1e-2, 1e-2, 1e-3, 1e-3, 1e-4])
