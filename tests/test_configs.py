"""Every shipped recipe config parses with its recipe's arguments: no unknown key, no wrong type.

GPU configs cannot run here; parsing them is what catches a renamed or misspelt argument.
"""

import glob
import os
import sys
from unittest import mock

import pytest

from recipe_utils.core.args import parse_args
from tests.conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "recipes"))
import clm_distilgpt2  # noqa: E402
import compress  # noqa: E402
import dpo_bonus  # noqa: E402
import pretrain_mlm  # noqa: E402
import rlhf  # noqa: E402
import sft_sentiment  # noqa: E402
import transfer_study  # noqa: E402

PARSERS = {
    "sft_sentiment": sft_sentiment.make_parser_types,
    "lora": sft_sentiment.make_parser_types,
    "qlora": sft_sentiment.make_parser_types,
    "clm_distilgpt2": clm_distilgpt2.make_parser_types,
    "dpo_bonus": dpo_bonus.make_parser_types,
    "pretrain_mlm": pretrain_mlm.make_parser_types,
    "rlhf": rlhf.make_parser_types,
    "compress": compress.make_parser_types,
    "transfer_study": transfer_study.make_parser_types,
}
CONFIGS = sorted(glob.glob(os.path.join(ROOT, "recipes", "configs", "*", "*.yaml")))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda path: os.path.relpath(path, os.path.join(ROOT, "recipes")))
def test_config_parses_with_its_recipe(path):
    recipe = os.path.basename(os.path.dirname(path))
    # TrainingArguments refuses bf16 without a bf16-capable GPU; stand one in, as on the machine gpu.yaml is for.
    with mock.patch("transformers.training_args.is_torch_bf16_gpu_available", return_value=True):
        parsed = parse_args(PARSERS[recipe](), ["--config", path])
    training_args = parsed[-1]
    assert training_args.output_dir.startswith("outputs/")
    if os.path.basename(path).endswith("gpu.yaml"):
        assert training_args.bf16 and not training_args.use_cpu
    if recipe == "compress":
        for setting in parsed[0].settings:
            compress.parse_setting(setting)  # every setting a config names is one the recipe knows
