"""backbones: a preset's `network` section -> the network it names (2-D U-Net, space-time U-Net,
series U-Net or DiT). Every backbone maps the stacked image the denoiser builds, (B, in_channels, h, w), to
the x0 estimate (B, out_channels, h, w)."""

from __future__ import annotations

from torch import nn

from impute_cli.config import NetworkConfig
from impute_cli.model.dit import DiT
from impute_cli.model.unet import SeriesUNet, STUNet, UNet


def build_network(in_channels: int, out_channels: int, cfg: NetworkConfig, frames: int, channels: int) -> nn.Module:
    """The backbone named by cfg.arch. All map the stacked (B, in_channels, h, w) image to
    (B, out_channels, h, w); the DiT and the space-time U-Net also need the layout (frames x
    channels) to unstack it."""
    if cfg.arch == "dit":
        return DiT(in_channels, out_channels, cfg, frames, channels)
    if cfg.arch == "stunet":
        return STUNet(in_channels, out_channels, cfg, frames, channels)
    if cfg.arch == "series":
        return SeriesUNet(in_channels, out_channels, cfg, frames, channels)
    return UNet(in_channels, out_channels, cfg)
