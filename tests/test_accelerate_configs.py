"""Every accelerate config loads and passes accelerate's own launch-time checks on this CPU machine.

GPU-only settings cannot run here, so each config goes through what `accelerate launch` does before
starting processes: parse the file, validate the launch arguments, build the launcher environment,
and, for FSDP, build the FSDP plugin from that environment (with a GPU device stubbed in).
"""

import glob
import os
from unittest import mock

import pytest
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.commands.launch import _validate_launch_command, launch_command_parser
from accelerate.utils import FullyShardedDataParallelPlugin, prepare_deepspeed_cmd_env, prepare_multi_gpu_env

from tests.conftest import ROOT

CONFIGS = sorted(glob.glob(os.path.join(ROOT, "accelerate_configs", "*.yaml")))
EXPECTED = {
    "cpu": ("NO", 1),
    "cpu_ddp": ("MULTI_GPU", 2),
    "single_gpu": ("NO", 1),
    "multi_gpu": ("MULTI_GPU", 8),
    "fsdp": ("FSDP", 8),
    "fsdp_qlora": ("FSDP", 2),
    "deepspeed_zero2": ("DEEPSPEED", 8),
    "deepspeed_zero3": ("DEEPSPEED", 8),
}


def test_the_documented_configs_are_all_there():
    assert {os.path.basename(path)[:-5] for path in CONFIGS} == set(EXPECTED)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda path: os.path.basename(path))
def test_config_passes_accelerate_launch_checks(path):
    name = os.path.basename(path)[:-5]
    config = load_config_from_file(path)
    assert (config.distributed_type.value, config.num_processes) == EXPECTED[name]
    args = launch_command_parser().parse_args(["--config_file", path, os.path.join(ROOT, "recipes/sft_sentiment.py")])
    args, defaults, _ = _validate_launch_command(args)
    if args.use_deepspeed:
        args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)
        _, env = prepare_deepspeed_cmd_env(args)
        assert env["ACCELERATE_DEEPSPEED_ZERO_STAGE"] == name[-1]
    elif args.use_fsdp or args.multi_gpu:
        env = prepare_multi_gpu_env(args)
        if args.use_fsdp:
            with (
                mock.patch.dict(os.environ, env),
                mock.patch("accelerate.utils.dataclasses.is_cuda_available", return_value=True),
                mock.patch("torch.cuda.current_device", return_value=0),
            ):
                plugin = FullyShardedDataParallelPlugin()
            assert plugin.fsdp_version == (2 if name == "fsdp" else 1)
            assert plugin.auto_wrap_policy is not None
