"""Parameter groups with layer-wise learning rates (Sun et al. 2019, "How to Fine-Tune BERT for Text Classification?").

The new task head starts from random weights and has the most to learn; the lower layers hold the
general features pretraining paid for. Giving the head a larger step and each layer below the top a
smaller one (lr x decay^depth) lets a short CPU budget move the head far without washing out the
pretrained bottom of the network.
"""

from torch import nn
from transformers import Trainer

from recipe_utils.models.loading import encoder_layers, head_parameter_names


def layerwise_parameter_groups(
    model: nn.Module, learning_rate: float, weight_decay: float, layer_decay: float = 1.0, head_lr_scale: float = 1.0
) -> list[dict]:
    """AdamW parameter groups: head at lr x head_lr_scale, top layer at lr, layer i below it at lr x decay^i,
    embeddings (and anything else below the first layer) at lr x decay^layer_count.

    Weight decay skips biases and norms, as the Trainer's default optimizer does.
    """
    layers = encoder_layers(model)
    layer_of = {id(p): index for index, layer in enumerate(layers) for p in layer.parameters()}
    head = set(head_parameter_names(model))
    decayed = set(Trainer.get_decay_parameter_names(None, model))
    groups: dict[tuple[float, float], list] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        if name in head:
            rate = learning_rate * head_lr_scale
        elif id(parameter) in layer_of:
            rate = learning_rate * layer_decay ** (len(layers) - 1 - layer_of[id(parameter)])
        else:
            rate = learning_rate * layer_decay ** len(layers)
        key = (rate, weight_decay if name in decayed else 0.0)
        groups.setdefault(key, []).append(parameter)
    return [{"params": params, "lr": rate, "weight_decay": decay} for (rate, decay), params in groups.items()]


def uses_layerwise_rates(layer_decay: float, head_lr_scale: float) -> bool:
    return layer_decay != 1.0 or head_lr_scale != 1.0
