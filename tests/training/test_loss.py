"""The Min-SNR-γ loss weight (diffusion.min_snr_gamma): off by default ([CQ] Alg. 1's unweighted
loss), min(SNR_t, γ) / γ when set, recorded in the model card, and older cards still load."""

from __future__ import annotations

import torch
import yaml

from conftest import run_cli
from impute_cli.checkpoint import load_model
from impute_cli.config import DiffusionConfig, Preset
from impute_cli.model.denoiser import VPSchedule
from impute_cli.testing import tiny_cube_dataset, tiny_preset_yaml, write_cube
from impute_cli.training.loss import loss_weight


def test_the_weight_is_one_unless_asked_and_min_snr_over_gamma_when_asked():
    t = torch.tensor([1e-3, 0.05, 0.13, 0.3, 0.5, 1.0])
    schedule = VPSchedule(DiffusionConfig())
    a, s = schedule.alpha(t), schedule.sigma(t)
    assert torch.equal(loss_weight(a, s, Preset().diffusion.min_snr_gamma), torch.ones_like(t))
    w = loss_weight(a, s, DiffusionConfig(min_snr_gamma=5).min_snr_gamma)
    # hand-worked (alpha, sigma) pairs, alpha^2 + sigma^2 = 1: SNR = 9/16, 16/9, exactly 5, 99, 0
    alpha = torch.tensor([0.6, 0.8, (5 / 6) ** 0.5, 0.99498743710662, 0.0], dtype=torch.float64)
    sigma = torch.tensor([0.8, 0.6, (1 / 6) ** 0.5, 0.1, 1.0], dtype=torch.float64)
    expected = torch.tensor([9 / 80, 16 / 45, 1.0, 1.0, 0.0], dtype=torch.float64)  # min(SNR, 5) / 5
    assert torch.allclose(loss_weight(alpha, sigma, 5.0), expected, rtol=1e-12, atol=1e-12)
    assert torch.allclose(loss_weight(alpha, sigma, 1.0), torch.tensor([9 / 16, 1.0, 1.0, 1.0, 0.0], dtype=torch.float64))
    assert torch.equal(loss_weight(alpha[None].expand(3, -1), sigma[None].expand(3, -1), 5.0)[1], loss_weight(alpha, sigma, 5.0))
    assert w[0] == 1 and w[1] == 1  # the low-noise regime of the point estimate keeps its full weight
    assert (w[1:].diff() <= 0).all() and w[-1] < 1e-3  # pure noise teaches next to nothing


def test_a_weighted_model_records_gamma_and_a_card_without_the_key_loads(tmp_path):
    cube = write_cube(tiny_cube_dataset(12, 16, 16, "cloud", 0.6), tmp_path / "c.nc")
    preset = tiny_preset_yaml(tmp_path / "p.yaml", diffusion={"min_snr_gamma": 5})
    run_cli("train", cube, "--preset", preset, "--out", tmp_path / "m", "--steps", 3, "--device", "cpu", "--quiet")
    card, _ = load_model(tmp_path / "m")
    assert card.preset.diffusion.min_snr_gamma == 5.0
    card_path = tmp_path / "m" / "model.yaml"
    raw = yaml.safe_load(card_path.read_text())
    raw["preset"]["diffusion"].pop("min_snr_gamma")  # as written by impute-cli before the key existed
    card_path.write_text(yaml.safe_dump(raw))
    card, _ = load_model(tmp_path / "m")
    assert card.preset.diffusion.min_snr_gamma is None
    run_cli("impute", cube, tmp_path / "o.nc", "--model", tmp_path / "m", "--device", "cpu", "--quiet")
    assert (tmp_path / "o.nc").exists()
