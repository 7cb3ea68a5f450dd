"""The diffusion-transformer backbone (network.arch: dit): the U-Net's input/output contract on
odd and 1-D grids, patches put back where they were cut, gradients reaching every weight, strict
config checks, and a tiny DiT model trained, saved, loaded and imputing through the CLI."""

from __future__ import annotations

import pytest
import torch
import yaml

from conftest import check_filled_output, open_any, run_cli
from impute_cli.checkpoint import load_model
from impute_cli.config import NetworkConfig, load_preset
from impute_cli.model.denoiser import in_channels
from impute_cli.model.dit import DiT
from impute_cli.errors import ImputeError
from impute_cli.model.backbones import build_network
from impute_cli.testing import tiny_cube_dataset, tiny_preset_yaml, write_cube

CPU = ("--device", "cpu", "--quiet")
TINY_DIT = {"arch": "dit", "patch_size": 4, "patch_frames": 2, "depth": 1, "heads": 2, "hidden": 16, "emb_dim": 16}


def tiny_dit(frames: int = 3, channels: int = 2, climatology: bool = True, **over: int) -> DiT:
    cfg = NetworkConfig(**{**TINY_DIT, "climatology_input": climatology, **over})
    net = build_network(in_channels(frames, channels, climatology), frames * channels, cfg, frames, channels)
    assert isinstance(net, DiT)
    return net


@pytest.mark.parametrize("h, w", [(13, 19), (1, 19), (1, 1), (3, 4), (16, 16)])
@pytest.mark.parametrize("climatology", [True, False])
def test_output_has_the_unet_contract_on_any_grid(h, w, climatology):
    torch.manual_seed(0)
    Fr, C = 3, 2
    net = tiny_dit(Fr, C, climatology)
    x = torch.randn(2, in_channels(Fr, C, climatology), h, w)
    y = net(x, torch.randn(2))
    assert y.shape == (2, Fr * C, h, w)
    assert torch.isfinite(y).all()


def test_one_dimensional_grid_is_not_padded_patch_fold():
    """h = 1 gets patches one row high: as many tokens as a 4-row grid, not 4x the work."""
    net = tiny_dit(4, 1)
    seen: list[int] = []
    net.blocks[0].register_forward_hook(lambda m, i, o: seen.append(i[0].shape[1]))
    net(torch.randn(1, in_channels(4, 1, True), 1, 32), torch.zeros(1))
    assert seen == [(4 // 2) * 1 * (32 // 4)]


@pytest.mark.parametrize("h, w", [(9, 10), (1, 7)])
def test_each_output_pixel_comes_from_its_own_patch(h, w):
    """At init the adaLN-Zero blocks are the identity, so output pixels depend only on the
    inputs of their own patch: a change to one input pixel shows only inside that patch
    (checks that patchify and unpatchify agree, crops and short patches included)."""
    torch.manual_seed(0)
    Fr, C = 3, 1
    net = tiny_dit(Fr, C)
    torch.nn.init.normal_(net.head.weight)
    x = torch.randn(1, in_channels(Fr, C, True), h, w)
    f, y0, x0 = 2, h - 1, w - 1  # the last frame and pixel: inside the padded patches
    x2 = x.clone()
    x2[0, f * C, y0, x0] += 1.0  # frame f's value channel
    with torch.no_grad():
        d = (net(x2, torch.zeros(1)) - net(x, torch.zeros(1))).abs().reshape(Fr, C, h, w).sum(1)
    ph, pw, pt = min(4, h), min(4, w), 2
    inside = torch.zeros(Fr, h, w, dtype=torch.bool)
    inside[f // pt * pt: f // pt * pt + pt, y0 // ph * ph: y0 // ph * ph + ph, x0 // pw * pw: x0 // pw * pw + pw] = True
    assert d[inside].sum() > 0
    assert d[~inside].max() == 0


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    net = tiny_dit(3, 2)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    x = torch.randn(2, in_channels(3, 2, True), 13, 19)
    target = torch.randn(2, 6, 13, 19)
    for _ in range(3):  # adaLN-Zero: the blocks receive gradient once head and gates leave zero
        opt.zero_grad()
        (net(x, torch.randn(2)) - target).square().mean().backward()
        opt.step()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"no gradient reaches {name}"


@pytest.mark.parametrize("over, fragment", [
    ({"arch": "vit"}, "network.arch 'vit' is not known; use one of unet, stunet, series, dit"),
    ({"hidden": 30, "heads": 4}, "network.hidden (30) must be a multiple of network.heads (4)"),
    ({"patch_size": 0}, "network.patch_size must be at least 1"),
    ({"patch_frames": 0}, "network.patch_frames must be at least 1"),
    ({"depth": 0}, "network.depth must be at least 1"),
])
def test_bad_dit_settings_are_one_line_errors(over, fragment):
    with pytest.raises(ImputeError) as e:
        NetworkConfig(**{**TINY_DIT, **over})
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_dit_preset_trains_by_name(tmp_path):
    p = load_preset("dit")
    assert p.network.arch == "dit"
    ds = tiny_cube_dataset(8, 12, 12, "cloud", 0.6, seed=4)
    cube = write_cube(ds, tmp_path / "c.nc")
    run_cli("train", cube, "--preset", "dit", "--out", tmp_path / "m", "--steps", 2, *CPU)
    card, den = load_model(tmp_path / "m")
    assert card.preset.network.arch == "dit" and isinstance(den.net, DiT)


def test_tiny_dit_model_trains_saves_loads_and_imputes(tmp_path):
    preset = tiny_preset_yaml(tmp_path / "tiny-dit.yaml", network=TINY_DIT, train={"steps": 8})
    ds = tiny_cube_dataset(10, 11, 13, "cloud", 0.6, seed=3)  # odd grid: padded patches
    cube = write_cube(ds, tmp_path / "sst.nc")
    run_cli("train", cube, "--preset", preset, "--out", tmp_path / "m", *CPU)
    card = yaml.safe_load((tmp_path / "m" / "model.yaml").read_text())
    assert card["preset"]["network"]["arch"] == "dit" and card["preset"]["network"]["hidden"] == 16
    _, den = load_model(tmp_path / "m")
    assert isinstance(den.net, DiT)
    out = tmp_path / "filled.nc"
    run_cli("impute", cube, out, "--model", tmp_path / "m", *CPU)
    check_filled_output(ds, open_any(out), ["sst"])
