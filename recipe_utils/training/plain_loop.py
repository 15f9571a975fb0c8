"""Seed 003's plain PyTorch loop (Dataset, DataLoader, optimizer, scheduler) for the sentiment classifier, with its
layer-wise parameter groups, and the trainer_state.json the Trainer would have written for it."""

import time

import numpy as np
import torch
from transformers import TrainingArguments, get_scheduler

from recipe_utils.core.distributed import say
from recipe_utils.data.reviews import ReviewCollator, ReviewDataset
from recipe_utils.models.parameter_groups import layerwise_parameter_groups


def parameter_groups(model, training_args, freeze_args) -> list[dict]:
    return layerwise_parameter_groups(
        model,
        training_args.learning_rate,
        training_args.weight_decay,
        freeze_args.layer_lr_decay,
        freeze_args.head_lr_scale,
    )


def train_plain(
    model, reviews, tokenizer, data_args, args: TrainingArguments, param_groups: list[dict], collate_fn=None
) -> list[dict]:
    """Seed 003's loop: what Trainer.train does, written out. Returns a Trainer-style log history.

    The reviews go in as text: a Dataset of (text, label) items, and a collate function that tokenizes each
    shuffled batch as it is drawn, truncated as the Trainer path truncates and padded to its longest review
    (`collate_fn` replaces it: the benchmark pads every batch to 512 tokens, as seed 003 did)."""
    generator = torch.Generator().manual_seed(args.seed)
    loader = torch.utils.data.DataLoader(
        ReviewDataset(reviews["text"], reviews["label"]),
        batch_size=args.per_device_train_batch_size,
        shuffle=True,
        collate_fn=collate_fn or ReviewCollator(tokenizer, data_args),
        generator=generator,
    )
    optimizer = torch.optim.AdamW(param_groups, lr=args.learning_rate)
    total_steps = int(len(loader) * args.num_train_epochs)
    scheduler = get_scheduler(
        args.lr_scheduler_type,
        optimizer,
        num_warmup_steps=args.get_warmup_steps(total_steps),
        num_training_steps=total_steps,
    )
    history, step, start = [], 0, time.time()
    model.train()
    while step < total_steps:
        for batch in loader:
            loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            step += 1
            if step % args.logging_steps == 0 or step == total_steps:
                history.append(
                    {
                        "step": step,
                        "epoch": step / len(loader),
                        "loss": loss.item(),
                        "learning_rate": scheduler.get_last_lr()[0],
                    }
                )
                say(f"step {step}/{total_steps} loss {loss.item():.4f}")
            if step == total_steps:
                break
    history.append(
        {"step": step, "train_runtime": time.time() - start, "train_loss": float(np.mean([h["loss"] for h in history]))}
    )
    return history


def trainer_state(log_history: list[dict], training_args):
    """The Trainer's trainer_state.json for a run of the plain loop, so tools that read it work the same."""
    from transformers import TrainerState

    final = log_history[-1]
    return TrainerState(
        global_step=final.get("step", 0),
        max_steps=final.get("step", 0),
        num_train_epochs=training_args.num_train_epochs,
        logging_steps=training_args.logging_steps,
        train_batch_size=training_args.per_device_train_batch_size,
        log_history=log_history,
    )
