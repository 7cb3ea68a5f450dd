"""The space-time U-Net (network.arch: stunet): the U-Net's input/output contract, each frame
kept apart by the spatial part and joined only by the time mixing (to its neighbours, one frame
per block), the static channels seen by every frame, and a tiny model trained, saved, loaded and
imputing through the CLI."""

from __future__ import annotations

import pytest
import torch
import yaml

from conftest import check_filled_output, open_any, run_cli
from impute_cli.checkpoint import load_model
from impute_cli.config import NetworkConfig
from impute_cli.model.denoiser import in_channels
from impute_cli.model.backbones import build_network
from impute_cli.model.unet import STUNet, TimeMix
from impute_cli.testing import tiny_cube_dataset, tiny_preset_yaml, write_cube

CPU = ("--device", "cpu", "--quiet")
TINY = {"arch": "stunet", "base_channels": 8, "channel_mult": [1, 2], "blocks_per_level": 1, "emb_dim": 16}


def tiny_stunet(frames: int = 4, channels: int = 2, prefill: bool = False, mix: bool = True) -> STUNet:
    torch.manual_seed(0)
    cfg = NetworkConfig(**TINY, prefill_input=prefill)
    net = build_network(in_channels(frames, channels, True, prefill), frames * channels, cfg, frames, channels)
    assert isinstance(net, STUNet)
    for m in net.modules():  # zero-initialised parts get weights, so that every path carries signal
        if isinstance(m, TimeMix):
            torch.nn.init.normal_(m.conv.weight, std=0.3 if mix else 0.0)
        elif isinstance(m, torch.nn.Conv2d):
            torch.nn.init.normal_(m.weight, std=0.3)
    return net.eval()


@pytest.mark.parametrize("h, w", [(13, 19), (1, 7), (16, 16)])
@pytest.mark.parametrize("prefill", [False, True])
def test_output_has_the_unet_contract(h, w, prefill):
    Fr, C = 3, 2
    net = tiny_stunet(Fr, C, prefill)
    y = net(torch.randn(2, in_channels(Fr, C, True, prefill), h, w), torch.randn(2))
    assert y.shape == (2, Fr * C, h, w) and torch.isfinite(y).all()


def _frame_influence(net: STUNet, frames: int, channels: int, src: int) -> torch.Tensor:
    """How much each output frame moves when input frame `src`'s values change."""
    x = torch.randn(1, in_channels(frames, channels, True), 8, 8)
    y0 = net(x, torch.zeros(1))
    x2 = x.clone()
    x2[:, src * channels:(src + 1) * channels] += 1.0
    dy = (net(x2, torch.zeros(1)) - y0).reshape(frames, channels, 8, 8)
    return dy.abs().flatten(1).sum(1)


def test_frames_are_joined_only_by_the_time_mixing():
    Fr, C = 6, 1
    apart = _frame_influence(tiny_stunet(Fr, C, mix=False), Fr, C, src=2)
    assert apart[2] > 0 and torch.all(apart[[0, 1, 3, 4, 5]] == 0)  # spatial part: per frame
    joined = _frame_influence(tiny_stunet(Fr, C, mix=True), Fr, C, src=2)
    assert torch.all(joined > 0)  # several blocks, each one frame either way: the whole window


def test_static_channels_reach_every_frame():
    Fr, C = 4, 1
    net = tiny_stunet(Fr, C, mix=False)
    x = torch.randn(1, in_channels(Fr, C, True), 8, 8)
    x2 = x.clone()
    x2[:, 2 * Fr * C] += 1.0  # the valid channel, static
    dy = (net(x2, torch.zeros(1)) - net(x, torch.zeros(1))).reshape(Fr, -1).abs().sum(1)
    assert torch.all(dy > 0)


def test_tiny_stunet_model_trains_saves_loads_and_imputes(tmp_path):
    preset = tiny_preset_yaml(tmp_path / "tiny-st.yaml", network=TINY, train={"steps": 6})
    ds = tiny_cube_dataset(10, 11, 13, "cloud", 0.6, seed=3)
    cube = write_cube(ds, tmp_path / "sst.nc")
    run_cli("train", cube, "--preset", preset, "--out", tmp_path / "m", *CPU)
    card = yaml.safe_load((tmp_path / "m" / "model.yaml").read_text())
    assert card["preset"]["network"]["arch"] == "stunet"
    _, den = load_model(tmp_path / "m")
    assert isinstance(den.net, STUNet)
    out = tmp_path / "filled.nc"
    run_cli("impute", cube, out, "--model", tmp_path / "m", "--samples", 2, "--sampler-steps", 2, *CPU)
    check_filled_output(ds, open_any(out), ["sst"])
