"""What a tuned generator's samples say beyond the judge's verdict: diversity, collapse onto stock phrases
(reward hacking) and distance from the starting model."""

from collections import Counter

import numpy as np
import torch

from recipe_utils.core.distributed import gather_rows, shard


def _ngrams(text: str, n: int) -> list[tuple[str, ...]]:
    words = text.lower().split()
    return [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]


def distinct_n(texts: list[str], n: int = 2) -> float:
    """Distinct-n (Li et al. 2016): different word n-grams over all n-grams of the samples; 1 = no repeats."""
    grams = [gram for text in texts for gram in _ngrams(text, n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def stock_phrase_share(texts: list[str], top: int = 20, n: int = 2, share: float = 0.3) -> float:
    """Share of samples made largely of stock phrases: at least `share` of their word n-grams are among the
    `top` n-grams found in the most samples. The demo's starting generator scores 0 on 200 samples; a policy
    that learned to string the judge's favourite phrases together ("the best", "very good") scores high."""
    counts = Counter(gram for text in texts for gram in set(_ngrams(text, n)))
    stock = {gram for gram, _ in counts.most_common(top)}
    collapsed = [
        text for text in texts if (grams := _ngrams(text, n)) and sum(g in stock for g in grams) >= share * len(grams)
    ]
    return len(collapsed) / len(texts) if texts else 0.0


@torch.inference_mode()
def kl_to_reference(policy, reference, tokenizer, prompts: list[str], continuations: list[str], batch: int = 16):
    """Mean over samples of sum_t [log p_policy(y_t) - log p_ref(y_t)] on the policy's own continuations:
    the Monte-Carlo estimate of KL(policy || reference) per continuation, in nats, as RLHF's penalty counts it.
    Every process gets the full mean (batches shared out and gathered)."""
    policy.eval()
    reference.eval()
    starts = range(0, len(prompts), batch)
    per_batch = []
    for index in shard(len(starts)):
        rows = range(starts[index], min(starts[index] + batch, len(prompts)))
        prompt_ids = [tokenizer(prompts[row])["input_ids"] for row in rows]
        full_ids = [ids + tokenizer(continuations[row])["input_ids"] for row, ids in zip(rows, prompt_ids, strict=True)]
        width = max(len(ids) for ids in full_ids)
        input_ids = torch.full((len(full_ids), width), tokenizer.pad_token_id)
        scored = torch.zeros((len(full_ids), width), dtype=torch.bool)  # continuation tokens only
        for i, (ids, prompt) in enumerate(zip(full_ids, prompt_ids, strict=True)):
            input_ids[i, : len(ids)] = torch.tensor(ids)
            scored[i, len(prompt) : len(ids)] = True
        attention = (torch.arange(width)[None, :] < torch.tensor([len(ids) for ids in full_ids])[:, None]).long()
        device = next(policy.parameters()).device
        input_ids, attention = input_ids.to(device), attention.to(device)
        gaps = []
        for model in (policy, reference):
            logits = model(input_ids=input_ids, attention_mask=attention).logits[:, :-1].float()
            gaps.append(torch.log_softmax(logits, -1).gather(-1, input_ids[:, 1:, None]).squeeze(-1))
        mask = scored[:, 1:].to(device)
        per_batch.append(((gaps[0] - gaps[1]) * mask).sum(dim=1).cpu().numpy())
    values = np.concatenate(gather_rows(per_batch, len(starts))) if len(starts) else np.zeros(0)
    return float(values.mean()) if len(values) else 0.0
