"""Parameter-efficient fine-tuning (LoRA, prompt tuning, IA3) of the sentiment or the causal-LM recipe.

The same recipes as sft_sentiment.py and clm_distilgpt2.py with an adapter instead of full fine-tuning,
so results compare on the same data and held-out split. --task picks which (default: sentiment).

    python recipes/lora.py --config recipes/configs/lora/demo.yaml
    python recipes/lora.py --config recipes/configs/lora/demo.yaml --peft_method ia3 --output_dir outputs/ia3
    python recipes/lora.py --task clm --config recipes/configs/clm_distilgpt2/demo.yaml \
        --model_name_or_path outputs/clm_pretrained --lora_target_modules c_attn --learning_rate 2e-3

Only the adapter (and, for classification, the task head and pooler) is saved; --merge_adapter true also
writes the merged full model to output_dir/merged. Every flag of the underlying recipe works here.
"""

import recipe_utils.quiet  # noqa: F401  (first: keeps library import noise off the screen)

# isort: split
import sys

import clm_distilgpt2
import sft_sentiment

TASKS = {"sentiment": sft_sentiment.cli, "clm": clm_distilgpt2.cli}


def split_task(argv: list[str]) -> tuple[str, list[str]]:
    """Take --task NAME (or --task=NAME) out of argv; the rest goes to the task's recipe."""
    task, rest, index = "sentiment", [], 0
    while index < len(argv):
        item = argv[index]
        if item == "--task" and index + 1 < len(argv):
            task, index = argv[index + 1], index + 2
            continue
        if item.startswith("--task="):
            task = item.split("=", 1)[1]
        else:
            rest.append(item)
        index += 1
    if task not in TASKS:
        print(f"error: unknown task '{task}'; choose one of {', '.join(TASKS)}", file=sys.stderr)
        sys.exit(2)
    return task, rest


def run(defaults: dict, argv: list[str] | None = None):
    task, rest = split_task(list(sys.argv[1:] if argv is None else argv))
    return TASKS[task](rest, defaults=defaults)


if __name__ == "__main__":
    run({"peft_method": "lora"})
