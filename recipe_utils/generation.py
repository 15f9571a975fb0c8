"""Sampling text from a causal LM: one prompt, a list of prompts, or an interactive prompt loop."""

import sys
from dataclasses import dataclass, field

import torch


@dataclass
class GenerationArguments:
    """How to sample continuations."""

    prompt: str | None = field(default=None, metadata={"help": "Print a continuation of this text."})
    max_new_tokens: int = field(default=60, metadata={"help": "Tokens to generate per prompt."})
    temperature: float = field(default=0.8, metadata={"help": "Sampling temperature (0: greedy)."})
    top_k: int = field(default=50, metadata={"help": "Sample from the k most likely tokens (0: no limit)."})
    top_p: float = field(default=0.95, metadata={"help": "Nucleus sampling mass."})
    repetition_penalty: float = field(default=1.2, metadata={"help": "Above 1 discourages repeating tokens."})
    generation_seed: int = field(default=0, metadata={"help": "Seed for sampling: same seed, same text."})
    sample_prompts: list[str] = field(
        default_factory=lambda: ["This movie was", "The acting", "I would recommend", "The plot of the film"],
        metadata={"help": "Prompts whose continuations before and after training go into the model card."},
    )


@torch.inference_mode()
def generate(model, tokenizer, prompt: str, args: GenerationArguments) -> str:
    """The prompt and its sampled continuation, reproducible for a given generation_seed."""
    torch.manual_seed(args.generation_seed)
    model.eval()
    inputs = tokenizer(prompt, return_tensors="pt").to(model.device)
    output = model.generate(**inputs, **sampling_options(args), pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(output[0], skip_special_tokens=True)


def sampling_options(args: GenerationArguments) -> dict:
    """generate() keyword arguments for these settings (temperature 0: greedy, no sampling knobs)."""
    sampling = args.temperature > 0
    return {
        "max_new_tokens": args.max_new_tokens,
        "do_sample": sampling,
        "temperature": args.temperature if sampling else None,
        "top_k": args.top_k if sampling else None,
        "top_p": args.top_p if sampling else None,
        "repetition_penalty": args.repetition_penalty,
    }


def interactive_loop(model, tokenizer, args: GenerationArguments, stream=None) -> int:
    """Ask for prompts until an empty line or end of input (seed 002); returns how many were answered."""
    stream = stream or sys.stdin
    answered = 0
    while True:
        print("Enter a prompt for text generation: ", end="", flush=True)
        line = stream.readline()
        if not line or not line.strip():
            print()
            return answered
        print(f"Generated text: {generate(model, tokenizer, line.strip(), args)}", flush=True)
        answered += 1
