"""Strict preset loading: unknown keys, wrong types and out-of-range values are ImputeErrors
that name the key; shipped presets load and match their YAML."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from conftest import PROJECT_ROOT
from impute_cli.config import MaskConfig, Preset, from_dict, load_preset, preset_names
from impute_cli.errors import ImputeError
from impute_cli.testing import TINY_PRESET, tiny_preset_yaml


def write(tmp_path, text: str, name: str = "p.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_preset_names_are_the_yaml_files_of_presets_folder():
    names = preset_names()
    assert "quick" in names
    assert names == sorted(p.stem for p in (PROJECT_ROOT / "presets").glob("*.yaml"))


@pytest.mark.parametrize("name", preset_names())
def test_every_shipped_preset_loads_with_its_yaml_values(name):
    p = load_preset(name)
    assert isinstance(p, Preset) and p.name == name
    raw = yaml.safe_load((PROJECT_ROOT / "presets" / f"{name}.yaml").read_text())
    for section, values in raw.items():
        if isinstance(values, dict):
            for k, v in values.items():
                assert getattr(getattr(p, section), k) == v, f"{section}.{k}"
        else:
            assert getattr(p, section) == values


def test_quick_preset_values_and_defaults():
    """Every value written in presets/quick.yaml is what the loaded preset holds; what the file
    leaves out takes the dataclass default."""
    import dataclasses
    import yaml
    from impute_cli.config import _preset_dir
    raw = yaml.safe_load((_preset_dir() / "quick.yaml").read_text())
    p = load_preset("quick")
    for section, values in raw.items():
        if isinstance(values, dict):
            for key, value in values.items():
                assert getattr(getattr(p, section), key) == value, (section, key)
    for f in dataclasses.fields(p):
        if dataclasses.is_dataclass(getattr(p, f.name)) and f.name not in raw:
            assert getattr(p, f.name) == type(getattr(p, f.name))()
    assert p.mask.pattern == "auto" and not p.mask.is_missdiff


def test_preset_by_path_and_overrides_merge(tmp_path):
    path = tiny_preset_yaml(tmp_path / "mine.yaml", train={"steps": 7}, mask={"pattern": "pixel"})
    p = load_preset(str(path))
    assert p.name == "mine"
    assert p.train.steps == 7 and p.train.batch_size == TINY_PRESET["train"]["batch_size"]
    assert p.mask.pattern == "pixel" and p.mask.context_ratio == pytest.approx(0.7)
    assert p.network.base_channels == 8 and p.network.channel_mult == [1, 2]


def test_to_dict_round_trips():
    p = load_preset("quick")
    assert from_dict(Preset, p.to_dict()) == p


def test_int_is_accepted_for_a_float_field(tmp_path):
    p = load_preset(str(write(tmp_path, "train:\n  lr: 1\n")))
    assert p.train.lr == 1.0 and isinstance(p.train.lr, float)


@pytest.mark.parametrize("text, key", [
    ("trian:\n  steps: 3\n", "trian"),
    ("train:\n  stpes: 3\n", "stpes"),
    ("network:\n  channels: 8\n", "channels"),
    ("window:\n  frames: 2\n  depth: 3\n", "depth"),
])
def test_unknown_key_is_an_error_naming_it(tmp_path, text, key):
    with pytest.raises(ImputeError, match="unknown key") as e:
        load_preset(str(write(tmp_path, text)))
    assert key in str(e.value)
    assert "allowed" in str(e.value)


@pytest.mark.parametrize("text, where", [
    ("train:\n  steps: many\n", "train.steps"),
    ("train:\n  steps: 1.5\n", "train.steps"),
    ("train:\n  steps: true\n", "train.steps"),
    ("train:\n  lr: fast\n", "train.lr"),
    ("mask:\n  context_ratio: high\n", "mask.context_ratio"),
    ("network:\n  channel_mult: [1, two]\n", "network.channel_mult"),
    ("network:\n  channel_mult: 2\n", "network.channel_mult"),
    ("description: 5\n", "description"),
    ("network: 3\n", "network"),
    ("impute:\n  symmetric: maybe\n", "impute.symmetric"),
])
def test_wrong_type_is_an_error_naming_the_key(tmp_path, text, where):
    with pytest.raises(ImputeError) as e:
        load_preset(str(write(tmp_path, text)))
    assert where in str(e.value)


@pytest.mark.parametrize("text, word", [
    ("mask:\n  context_ratio: 1.5\n", "context_ratio"),
    ("mask:\n  context_ratio: 0\n", "context_ratio"),
    ("mask:\n  query_ratio: -0.1\n", "query_ratio"),
    ("mask:\n  pattern: clouds\n", "clouds"),
    ("mask:\n  query: rest\n  context_ratio: 1.0\n", "rest"),
    ("mask:\n  block_sizes: []\n", "block_sizes"),
    ("window:\n  overlap: 1.0\n", "overlap"),
    ("window:\n  height: 2\n", "height"),
    ("train:\n  steps: 0\n", "train.steps"),
    ("train:\n  ema: 1.0\n", "ema"),
    ("network:\n  base_channels: 2\n", "base_channels"),
    ("impute:\n  ensemble: 0\n", "ensemble"),
    ("impute:\n  sample_overlap: 1.5\n", "sample_overlap"),
    ("diffusion:\n  beta_min: 30\n", "beta_min"),
    ("diffusion:\n  t_min: 0.1\n", "t_min"),
    ("diffusion:\n  low_noise_fraction: 1.5\n", "low_noise_fraction"),
    ("diffusion:\n  min_snr_gamma: 0\n", "min_snr_gamma"),
    ("diffusion:\n  min_snr_gamma: true\n", "min_snr_gamma"),
    ("diffusion:\n  min_snr_gamma: five\n", "min_snr_gamma"),
    ("train:\n  augment: [rotate]\n", "train.augment"),
    ("train:\n  augment: flip\n", "train.augment"),
    ("impute:\n  context_ratio: 0\n", "impute.context_ratio"),
    ("impute:\n  context_ratio: 1.5\n", "impute.context_ratio"),
    ("impute:\n  context_ratio: true\n", "impute.context_ratio"),
])
def test_out_of_range_value_is_an_error(tmp_path, text, word):
    with pytest.raises(ImputeError) as e:
        load_preset(str(write(tmp_path, text)))
    assert word in str(e.value)
    assert "\n" not in str(e.value)


def test_invalid_yaml_is_an_error(tmp_path):
    with pytest.raises(ImputeError, match="not valid YAML"):
        load_preset(str(write(tmp_path, "train: [1, 2\n")))


def test_unknown_preset_name_lists_the_known_ones():
    with pytest.raises(ImputeError) as e:
        load_preset("no-such-preset")
    assert "no-such-preset" in str(e.value) and "quick" in str(e.value)


def test_mask_config_missdiff_flag():
    assert MaskConfig(context_ratio=1.0, query="observed", query_ratio=1.0).is_missdiff
    assert not MaskConfig(context_ratio=0.9).is_missdiff
    with pytest.raises(ImputeError):
        dataclasses.replace(MaskConfig(), context_ratio=2.0)


def test_preset_that_is_not_a_mapping_is_an_error(tmp_path):
    with pytest.raises(ImputeError, match="mapping"):
        load_preset(str(write(tmp_path, "- network\n- train\n")))


def test_boolean_in_an_integer_list_is_a_type_error(tmp_path):
    with pytest.raises(ImputeError, match="channel_mult"):
        load_preset(str(write(tmp_path, "network:\n  channel_mult: [true, 2]\n")))
