import numpy as np
import pytest
import torch

from noisetrace.residuals import SRM_KERNELS, SRMFilter, srm_residual

# Fig. 2 of xception-lstm-srm-generalization.md, as printed.
K1 = (
    np.array(
        [[0, 0, 0, 0, 0], [0, -1, 2, -1, 0], [0, 2, -4, 2, 0], [0, -1, 2, -1, 0], [0, 0, 0, 0, 0]]
    )
    / 4
)
K2 = (
    np.array(
        [
            [-1, 2, -2, 2, -1],
            [2, -6, 8, -6, 2],
            [-2, 8, -12, 8, -2],
            [2, -6, 8, -6, 2],
            [-1, 2, -2, 2, -1],
        ]
    )
    / 12
)
K3 = (
    np.array([[0, 0, 0, 0, 0], [0, 0, 0, 0, 0], [0, 1, -2, 1, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]])
    / 2
)


def test_kernel_values_match_the_paper():
    np.testing.assert_array_equal(SRM_KERNELS.numpy(), np.stack([K1, K2, K3]))


def test_kernels_sum_to_zero():
    assert torch.allclose(SRM_KERNELS.sum(dim=(1, 2)), torch.zeros(3, dtype=torch.float64))


@pytest.mark.parametrize("mode", ["per_channel", "sum"])
def test_constant_image_has_zero_residual(mode):
    x = torch.full((2, 3, 17, 23), 0.37)
    r = srm_residual(x, mode)
    assert r.abs().max() < 1e-6


def test_shapes():
    x = torch.rand(2, 3, 20, 30)
    assert srm_residual(x, "per_channel").shape == (2, 9, 20, 30)
    assert srm_residual(x, "sum").shape == (2, 3, 20, 30)
    assert SRMFilter(3, "sum")(x).shape == (2, 3, 20, 30)


@pytest.mark.parametrize("mode", ["per_channel", "sum"])
def test_linearity(mode):
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(1, 3, 16, 16, generator=g), torch.rand(1, 3, 16, 16, generator=g)
    lhs = srm_residual(2.5 * a - 0.5 * b, mode)
    rhs = 2.5 * srm_residual(a, mode) - 0.5 * srm_residual(b, mode)
    assert torch.allclose(lhs, rhs, atol=1e-5)


def test_per_channel_applies_each_kernel_to_each_colour():
    # A single bright pixel in the green channel: the response of kernel k on colour c is the
    # kernel itself (flipped, which is the same for these symmetric kernels), centred there.
    x = torch.zeros(1, 3, 11, 11)
    x[0, 1, 5, 5] = 1.0
    r = srm_residual(x, "per_channel")
    for k in range(3):
        np.testing.assert_allclose(r[0, 3 + k, 3:8, 3:8].numpy(), SRM_KERNELS[k].numpy(), atol=1e-6)
        assert r[0, k].abs().max() == 0 and r[0, 6 + k].abs().max() == 0


def test_sum_mode_sums_colours():
    x = torch.rand(1, 3, 12, 12)
    per = srm_residual(x, "per_channel").view(1, 3, 3, 12, 12).sum(dim=1)
    assert torch.allclose(srm_residual(x, "sum"), per, atol=1e-5)


def test_module_matches_function_and_has_no_parameters():
    m = SRMFilter(3)
    x = torch.rand(1, 3, 9, 9)
    assert torch.allclose(m(x), srm_residual(x))
    assert list(m.parameters()) == []


def test_tiny_images_do_not_crash():
    assert srm_residual(torch.rand(1, 3, 1, 1)).shape == (1, 9, 1, 1)
    assert srm_residual(torch.rand(1, 3, 2, 7)).shape == (1, 9, 2, 7)
