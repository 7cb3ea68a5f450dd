"""The shared layers: the U-Nets' GroupNorm normalises as nn.GroupNorm does on every path, keeps
the channels-last layout the convolutions need, and leaves training on torch's own path."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from impute_cli.model.layers import GroupNorm


def _norm(channels: int) -> GroupNorm:
    torch.manual_seed(0)
    gn = GroupNorm(8, channels)
    torch.nn.init.normal_(gn.weight)
    torch.nn.init.normal_(gn.bias)
    return gn


def _channels_last(shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    torch.manual_seed(1)
    return (3 * torch.randn(shape) + 1).to(dtype).contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(6, 32, 9, 13), (4, 16, 18, 26), (3, 64, 1, 40)])
def test_small_maps_without_gradients_normalise_as_torch_and_stay_channels_last(shape, dtype):
    gn, x = _norm(shape[1]), _channels_last(shape, dtype)
    with torch.no_grad():
        y = gn(x)
        ref = F.group_norm(x, 8, gn.weight, gn.bias, gn.eps)  # torch's channels-last kernel
        contiguous = F.group_norm(x.contiguous(), 8, gn.weight, gn.bias, gn.eps)
    assert y.dtype == dtype and y.shape == x.shape
    assert y.is_contiguous(memory_format=torch.channels_last) and not y.is_contiguous()
    assert torch.equal(y, contiguous)  # the contiguous copy's path...
    tol = 1e-5 if dtype == torch.float32 else 4e-2  # ...equal to torch's up to rounding
    torch.testing.assert_close(y.float(), ref.float(), atol=tol, rtol=tol)


@pytest.mark.parametrize("shape", [(2, 16, 32, 32), (2, 16, 36, 52), (2, 128, 9, 13), (2, 256, 8, 8)])
def test_large_maps_and_groups_of_16_channels_take_torchs_own_path(shape):
    gn, x = _norm(shape[1]), _channels_last(shape)
    with torch.no_grad():
        assert torch.equal(gn(x), F.group_norm(x, 8, gn.weight, gn.bias, gn.eps))


def test_contiguous_inputs_take_torchs_own_path():
    gn = _norm(16)
    x = _channels_last((4, 16, 9, 13)).contiguous()
    with torch.no_grad():
        y = gn(x)
    assert torch.equal(y, F.group_norm(x, 8, gn.weight, gn.bias, gn.eps)) and y.is_contiguous()


def test_training_takes_torchs_own_path_and_its_gradients():
    gn, x = _norm(16), _channels_last((4, 16, 9, 13)).requires_grad_(True)
    ref_gn, ref_x = _norm(16), x.detach().clone().requires_grad_(True)
    plain = torch.nn.GroupNorm(8, 16)
    plain.load_state_dict(ref_gn.state_dict())
    y, ref = gn(x), plain(ref_x)
    assert torch.equal(y, ref)
    y.square().sum().backward()
    ref.square().sum().backward()
    assert torch.equal(x.grad, ref_x.grad) and torch.equal(gn.weight.grad, plain.weight.grad)


def test_state_dict_is_nn_groupnorms():
    """Model folders saved before keep loading: the parameters' names are nn.GroupNorm's."""
    gn, plain = _norm(16), torch.nn.GroupNorm(8, 16)
    plain.load_state_dict(gn.state_dict())
    assert set(gn.state_dict()) == {"weight", "bias"}
