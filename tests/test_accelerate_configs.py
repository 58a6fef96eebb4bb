"""The ready-made accelerate configs (multi-GPU DDP, FSDP, DeepSpeed ZeRO-3) are valid for the accelerate in the
lock: they cannot run on this machine, but every key, nested ones included, is one that this accelerate reads."""

from pathlib import Path

import pytest
from accelerate.commands.config.config_args import ClusterConfig
from accelerate.commands.launch import launch_command_parser
from accelerate.utils import DistributedType

CONFIGS = Path(__file__).parent.parent / "configs" / "accelerate"
EXPECTED = {
    "ddp.yaml": "MULTI_GPU",
    "fsdp.yaml": "FSDP",
    "deepspeed-zero3.yaml": "DEEPSPEED",
    "cpu-ddp.yaml": "MULTI_GPU",
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_config_loads_and_names_only_known_keys(name):
    config = ClusterConfig.from_yaml_file(CONFIGS / name)  # refuses unknown top-level keys
    assert config.distributed_type == DistributedType(EXPECTED[name])
    assert config.mixed_precision == ("no" if name == "cpu-ddp.yaml" else "bf16")
    launch_options = {action.dest for action in launch_command_parser()._actions}
    nested = {f"fsdp_{k}" if not k.startswith("fsdp") else k for k in config.fsdp_config}
    nested |= set(config.deepspeed_config)
    assert nested <= launch_options, f"keys accelerate launch does not know: {sorted(nested - launch_options)}"
    if name == "deepspeed-zero3.yaml":
        assert config.deepspeed_config["zero_stage"] == 3


def test_every_config_in_the_folder_is_checked():
    assert {path.name for path in CONFIGS.glob("*.yaml")} == set(EXPECTED)
