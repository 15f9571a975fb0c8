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
from recipe_utils.training.task_launch import run_task

if __name__ == "__main__":
    run_task({"peft_method": "lora"})
