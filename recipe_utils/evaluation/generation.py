"""Sampling text from a causal LM: one prompt, a list of prompts, or an interactive prompt loop that streams
the answer token by token. A model with a chat template (an instruct LLM) gets the prompt as a user turn and
answers it; a model without one (GPT-2) continues the prompt."""

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


def render_prompt(tokenizer, text: str) -> str:
    """`text` as a user turn awaiting the assistant's answer when the tokenizer has a chat template, else as is."""
    if not getattr(tokenizer, "chat_template", None):
        return text
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
    )


@torch.inference_mode()
def generate(model, tokenizer, prompt: str, args: GenerationArguments, streamer=None) -> str:
    """The answer to `prompt` (chat models) or the prompt and its continuation (plain LMs), reproducible for a
    given generation_seed; `streamer` (transformers' TextStreamer) also prints the new tokens as they come."""
    torch.manual_seed(args.generation_seed)
    model.eval()
    rendered = render_prompt(tokenizer, prompt)
    inputs = tokenizer(rendered, return_tensors="pt", add_special_tokens=rendered == prompt).to(model.device)
    output = model.generate(
        **inputs, **sampling_options(args), pad_token_id=tokenizer.pad_token_id, streamer=streamer
    ).cpu()
    answer = tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    return answer.strip() if rendered != prompt else prompt + answer


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
    """Ask for prompts until an empty line or end of input (seed 002), streaming each answer as it is sampled;
    returns how many were answered."""
    from transformers import TextStreamer

    stream = stream or sys.stdin
    answered = 0
    while True:
        print("Enter a prompt for text generation: ", end="", flush=True)
        line = stream.readline()
        if not line or not line.strip():
            print()
            return answered
        prompt = line.strip()
        chat = render_prompt(tokenizer, prompt) != prompt
        print(f"Generated text: {'' if chat else prompt}", end="", flush=True)
        generate(
            model, tokenizer, prompt, args, streamer=TextStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        )
        answered += 1
