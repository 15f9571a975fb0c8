"""QLoRA: LoRA on a base model loaded in 4 bits with bitsandbytes (nf4 or fp4, double quantization).

    python recipes/qlora.py --config recipes/configs/qlora/demo.yaml
    accelerate launch --config_file accelerate_configs/single_gpu.yaml recipes/qlora.py \
        --config recipes/configs/qlora/gpu.yaml

The base's linear layers are stored as 4-bit blocks plus quantization constants (all_results.json reports
their share of the fp32 size); the task head and pooler stay in full precision and train with the adapter.
bitsandbytes runs these layers on CPU as well as CUDA. Flags as in lora.py (--task sentiment|clm).
"""

import recipe_utils.quiet  # noqa: F401  (first: keeps library import noise off the screen)

# isort: split
from recipe_utils.training.task_launch import run_task

if __name__ == "__main__":
    run_task({"peft_method": "lora", "load_in_4bit": True})
