"""Compressing a fine-tuned classifier: what each technique does to the weights, the encoding each one stores,
and the one loader that turns a compressed folder back into a model.

A setting is a chain of steps joined by "+", read left to right, e.g. `ffn-50+recover+int8-dynamic`:
- pruning: `prune-50` (global magnitude pruning of the dense layers, torch.nn.utils.prune), `heads-50` (the
  attention heads that matter least to the loss, per layer), `ffn-50` (the feed-forward neurons that matter
  least); the two structured ones cut the matrices down, so they are smaller and faster;
- `recover`: a short fine-tune of what is left on training reviews (pruned weights stay zero);
- at most one encoding, last: `uniform-<bits>-<tensor|channel>-<sym|asym>` (torchao's affine quantization),
  `kmeans-<bits>` (a k-means codebook of 2^bits values per matrix, non-uniform), `cluster-<n>` (weight
  clustering: n shared values per matrix, centroids initialised evenly over the range as TF-MOT does),
  `nf4` / `fp4` (bitsandbytes 4-bit), `int8-dynamic` (int8 weights stored; torchao int8 x int8 matmuls with
  activations quantized on the fly, under torch.compile).
No encoding: fp32, with magnitude-pruned matrices stored sparse (a bitmask and the kept values).

What is written by hand here, because no library stores it: packing k-bit codes into bytes, the sparse
bitmask format, and slicing heads and neurons out of a model (transformers 5 dropped `prune_heads`).
The quantization arithmetic is torchao's, the clustering scikit-learn's, the pruning mask torch's.
"""

import json
import os
import re
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from recipe_utils.core.errors import RecipeError

COMPRESSION_FILE = "compression.json"
WEIGHTS_FILE = "compressed.safetensors"
# Matrices of this many weights or fewer stay fp32 (none in MiniLM's layers; keeps tiny test models sane).
MIN_ENCODED = 256
KMEANS_SAMPLE = 200_000  # k-means is fitted on a sample of a matrix's weights, then every weight is assigned


@dataclass
class Setting:
    name: str
    prune: float = 0.0  # global magnitude sparsity
    heads: float = 0.0  # share of attention heads cut per layer
    ffn: float = 0.0  # share of feed-forward neurons cut per layer
    recover: bool = False
    encoding: str = "fp32"  # fp32 | uniform | kmeans | cluster | nf4 | fp4 | int8_dynamic
    bits: int = 32
    per_channel: bool = False
    symmetric: bool = True
    clusters: int = 0
    steps: list[str] = field(default_factory=list)

    @property
    def structured(self) -> bool:
        return self.heads > 0 or self.ffn > 0


def parse_setting(text: str) -> Setting:
    setting = Setting(name=text, steps=text.split("+"))
    for position, step in enumerate(setting.steps):
        last = position == len(setting.steps) - 1
        if match := re.fullmatch(r"(prune|heads|ffn)-(\d+)", step):
            share = int(match.group(2)) / 100
            if not 0 < share < 1:
                raise RecipeError(f"setting '{text}': {step} needs a share between 1 and 99 percent")
            setattr(setting, match.group(1), share)
        elif step == "recover":
            setting.recover = True
        elif step == "fp32":
            pass
        elif not last:
            raise RecipeError(f"setting '{text}': the encoding '{step}' must be its last step")
        elif match := re.fullmatch(r"uniform-(\d)-(tensor|channel)-(sym|asym)", step):
            setting.encoding, setting.bits = "uniform", int(match.group(1))
            setting.per_channel, setting.symmetric = match.group(2) == "channel", match.group(3) == "sym"
            if not 2 <= setting.bits <= 8:
                raise RecipeError(f"setting '{text}': uniform quantization takes 2 to 8 bits")
        elif match := re.fullmatch(r"kmeans-(\d)", step):
            setting.encoding, setting.bits = "kmeans", int(match.group(1))
            setting.clusters = 2**setting.bits
            if not 1 <= setting.bits <= 8:
                raise RecipeError(f"setting '{text}': kmeans takes 1 to 8 bits")
        elif match := re.fullmatch(r"cluster-(\d+)", step):
            setting.encoding, setting.clusters = "cluster", int(match.group(1))
            if not 2 <= setting.clusters <= 256:
                raise RecipeError(f"setting '{text}': cluster takes 2 to 256 clusters")
            setting.bits = int(np.ceil(np.log2(setting.clusters)))
        elif step in ("nf4", "fp4"):
            setting.encoding, setting.bits = step, 4
        elif step == "int8-dynamic":
            setting.encoding, setting.bits, setting.per_channel, setting.symmetric = "int8_dynamic", 8, True, True
        else:
            raise RecipeError(
                f"setting '{text}': unknown step '{step}' (prune-N, heads-N, ffn-N, recover, uniform-B-tensor|"
                "channel-sym|asym, kmeans-B, cluster-N, nf4, fp4, int8-dynamic)"
            )
    if setting.prune and setting.encoding != "fp32" and setting.encoding != "int8_dynamic":
        raise RecipeError(
            f"setting '{text}': magnitude-pruned weights are stored sparse in fp32 or run as int8-dynamic; "
            "combine quantization with heads-N or ffn-N instead"
        )
    if setting.encoding in ("nf4", "fp4") and (setting.prune or setting.structured):
        raise RecipeError(f"setting '{text}': nf4 and fp4 load through bitsandbytes from an unpruned model")
    return setting


# --- structured pruning: slicing heads and neurons out of the layers --------------------------------------


def _layer_parts(layer: nn.Module) -> dict:
    """The attention and feed-forward modules of one BERT or DistilBERT block."""
    if hasattr(layer, "attention") and hasattr(layer.attention, "self"):  # BERT family
        return {
            "self": layer.attention.self,
            "q": "query",
            "k": "key",
            "v": "value",
            "out": layer.attention.output.dense,
            "out_owner": (layer.attention.output, "dense"),
            "up_owner": (layer.intermediate, "dense"),
            "down_owner": (layer.output, "dense"),
        }
    if hasattr(layer, "attention") and hasattr(layer.attention, "q_lin"):  # DistilBERT
        return {
            "self": layer.attention,
            "q": "q_lin",
            "k": "k_lin",
            "v": "v_lin",
            "out": layer.attention.out_lin,
            "out_owner": (layer.attention, "out_lin"),
            "up_owner": (layer.ffn, "lin1"),
            "down_owner": (layer.ffn, "lin2"),
        }
    raise RecipeError(f"structured pruning knows BERT and DistilBERT blocks, not {type(layer).__name__}")


def _sliced(linear: nn.Linear, keep: torch.Tensor, dim: int) -> nn.Linear:
    """A smaller copy of `linear` keeping rows (dim 0: outputs) or columns (dim 1: inputs) `keep`."""
    weight = linear.weight.detach().index_select(dim, keep).clone()
    bias = linear.bias.detach().clone() if linear.bias is not None else None
    if dim == 0 and bias is not None:
        bias = bias.index_select(0, keep).clone()
    new = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, dtype=weight.dtype)
    new.weight = nn.Parameter(weight)
    if bias is not None:
        new.bias = nn.Parameter(bias)
    return new


def head_size(model) -> int:
    return model.config.hidden_size // model.config.num_attention_heads


def keep_heads(model, layer: nn.Module, heads: list[int]) -> None:
    """Cut one block's attention down to `heads`: rows of query/key/value, columns of the output projection.
    BERT's attention reshapes by head size, so the block runs with fewer heads unchanged."""
    parts, size = _layer_parts(layer), head_size(model)
    index = torch.tensor([head * size + offset for head in heads for offset in range(size)], dtype=torch.long)
    attention = parts["self"]
    for name in (parts["q"], parts["k"], parts["v"]):
        setattr(attention, name, _sliced(getattr(attention, name), index, 0))
    owner, name = parts["out_owner"]
    setattr(owner, name, _sliced(parts["out"], index, 1))
    for attribute in ("num_attention_heads", "n_heads"):
        if hasattr(attention, attribute):
            setattr(attention, attribute, len(heads))
    if hasattr(attention, "all_head_size"):
        attention.all_head_size = len(heads) * size


def keep_neurons(layer: nn.Module, neurons: list[int]) -> None:
    """Cut one block's feed-forward network down to `neurons` (rows of the up projection, columns of the down)."""
    parts = _layer_parts(layer)
    index = torch.tensor(neurons, dtype=torch.long)
    owner, name = parts["up_owner"]
    setattr(owner, name, _sliced(getattr(owner, name), index, 0))
    owner, name = parts["down_owner"]
    setattr(owner, name, _sliced(getattr(owner, name), index, 1))


def choose_structure(model, heads_share: float, ffn_share: float, batches) -> dict:
    """Which heads and neurons each block keeps: those whose removal would cost the loss most, by the
    first-order Taylor estimate |sum of weight x gradient| over everything that reads or writes them (Michel et
    al. 2019 for heads, Molchanov et al. 2019 for neurons), on a few batches of training reviews. The same
    number in every block, at least one of each."""
    from recipe_utils.models.loading import encoder_layers

    model.zero_grad()
    for batch in batches:
        model(**batch).loss.backward()
    structure = {"heads": [], "neurons": []}
    size = head_size(model)

    def saliency(linear: nn.Linear, dim: int) -> torch.Tensor:  # per output row (dim 1) or input column (dim 0)
        return (linear.weight.detach() * linear.weight.grad).sum(dim)

    for layer in encoder_layers(model):
        parts = _layer_parts(layer)
        attention = parts["self"]
        per_row = sum(saliency(getattr(attention, name), 1) for name in (parts["q"], parts["k"], parts["v"]))
        head_scores = (per_row.view(-1, size).sum(1) + saliency(parts["out"], 0).view(-1, size).sum(1)).abs()
        count = len(head_scores)
        kept = max(1, count - int(round(heads_share * count)))
        structure["heads"].append(sorted(torch.topk(head_scores, kept).indices.tolist()))
        up, down = getattr(*parts["up_owner"]), getattr(*parts["down_owner"])
        neuron_scores = (saliency(up, 1) + saliency(down, 0)).abs()
        count = len(neuron_scores)
        kept = max(1, count - int(round(ffn_share * count)))
        structure["neurons"].append(sorted(torch.topk(neuron_scores, kept).indices.tolist()))
    model.zero_grad(set_to_none=True)
    return structure


def apply_structure(model, structure: dict) -> None:
    from recipe_utils.models.loading import encoder_layers

    for layer, heads, neurons in zip(encoder_layers(model), structure["heads"], structure["neurons"], strict=True):
        keep_heads(model, layer, heads)
        keep_neurons(layer, neurons)


# --- magnitude pruning ------------------------------------------------------------------------------------


def prunable_linears(model) -> list[tuple[str, nn.Linear]]:
    """The dense layers of the transformer blocks (the classifier head keeps every weight)."""
    from recipe_utils.models.loading import encoder_layers

    layers = encoder_layers(model)
    return [
        (name, module)
        for index, layer in enumerate(layers)
        for name, module in layer.named_modules(prefix=f"layer{index}")
        if isinstance(module, nn.Linear)
    ]


def magnitude_prune(model, sparsity: float) -> None:
    """Global magnitude pruning (torch.nn.utils.prune): the smallest `sparsity` of all block weights, ranked
    together, are masked to zero. The mask stays attached (weight = weight_orig * mask) until `make_permanent`,
    so a recovery fine-tune cannot revive them."""
    from torch.nn.utils import prune

    prune.global_unstructured(
        [(module, "weight") for _, module in prunable_linears(model)],
        pruning_method=prune.L1Unstructured,
        amount=sparsity,
    )


def make_permanent(model) -> None:
    from torch.nn.utils import prune

    for module in model.modules():
        if prune.is_pruned(module) and hasattr(module, "weight_orig"):
            prune.remove(module, "weight")


# --- encodings --------------------------------------------------------------------------------------------


def pack_bits(codes: np.ndarray, bits: int) -> np.ndarray:
    """Unsigned codes below 2**bits, `bits` bits each, packed into bytes (no library packs 3 or 5 bits)."""
    planes = np.unpackbits(codes.astype(np.uint8).reshape(-1, 1), axis=1)[:, 8 - bits :]
    return np.packbits(planes.reshape(-1))


def unpack_bits(packed: np.ndarray, bits: int, count: int) -> np.ndarray:
    planes = np.unpackbits(packed)[: count * bits].reshape(count, bits)
    return np.packbits(np.pad(planes, ((0, 0), (8 - bits, 0))), axis=1).reshape(-1)


def encoded_matrices(model) -> list[str]:
    """State-dict names of the 2-D weights an encoding compresses: every Linear and Embedding matrix."""
    names = []
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Embedding)) and module.weight.numel() > MIN_ENCODED:
            names.append(f"{name}.weight")
    return names


def uniform_quantize(weight: torch.Tensor, bits: int, per_channel: bool, symmetric: bool) -> tuple:
    """torchao's affine quantization of a matrix: codes (unsigned), scale and zero point, one per row or one in
    all. Symmetric maps [-max|w|, max|w|] onto [-2^(b-1), 2^(b-1)-1] with zero at 0; asymmetric maps [min, max]
    onto [0, 2^b-1]."""
    from torchao.quantization.quant_primitives import MappingType, choose_qparams_affine, quantize_affine

    block = (1, weight.shape[1]) if per_channel else tuple(weight.shape)
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if symmetric else (0, 2**bits - 1)
    mapping = MappingType.SYMMETRIC if symmetric else MappingType.ASYMMETRIC
    scale, zero_point = choose_qparams_affine(weight, mapping, block, torch.int32, low, high)
    codes = quantize_affine(weight, block, scale, zero_point, torch.int32, low, high)
    return (codes - low).to(torch.uint8), scale.float(), zero_point.to(torch.int32), low, block


def uniform_dequantize(codes, scale, zero_point, low: int, high: int, block) -> torch.Tensor:
    from torchao.quantization.quant_primitives import dequantize_affine

    return dequantize_affine(codes.to(torch.int32) + low, block, scale, zero_point, torch.int32, low, high)


def codebook_quantize(weight: torch.Tensor, clusters: int, linear_init: bool, seed: int) -> tuple:
    """Share `clusters` values across a matrix (scikit-learn's KMeans on its weights): codes and the codebook.
    linear_init starts the centroids evenly over [min, max] (weight clustering as TF-MOT does); otherwise
    k-means++ places them where the weights are dense (non-uniform quantization)."""
    from sklearn.cluster import KMeans

    values = weight.detach().double().numpy().reshape(-1)
    rng = np.random.default_rng(seed)
    sample = values if len(values) <= KMEANS_SAMPLE else rng.choice(values, KMEANS_SAMPLE, replace=False)
    clusters = min(clusters, len(np.unique(sample)))
    init = np.linspace(sample.min(), sample.max(), clusters).reshape(-1, 1) if linear_init else "k-means++"
    kmeans = KMeans(n_clusters=clusters, init=init, n_init=1, random_state=seed, max_iter=100).fit(sample[:, None])
    codebook = np.sort(kmeans.cluster_centers_.reshape(-1))
    # Nearest centroid of every weight: the midpoints between sorted centroids are the decision boundaries.
    codes = np.searchsorted((codebook[1:] + codebook[:-1]) / 2, values).astype(np.uint8)
    return codes, codebook.astype(np.float32)


def encode_state(model, setting: Setting, seed: int) -> tuple[dict, dict]:
    """The tensors a compressed folder stores, and for each encoded matrix how to decode it."""
    state = {name: tensor.detach().contiguous() for name, tensor in model.state_dict().items()}
    stored, recipe = {}, {}
    encoded = (
        set(encoded_matrices(model)) if setting.encoding in ("uniform", "kmeans", "cluster", "int8_dynamic") else set()
    )
    for name, tensor in state.items():
        if name in encoded:
            stored_tensors, how = _encode_matrix(tensor, setting, seed)
        elif tensor.dim() == 2 and tensor.numel() > MIN_ENCODED and float((tensor == 0).float().mean()) > 1 / 32:
            # Sparse: one bit per weight says whether it is kept, and only the kept values are stored.
            # Smaller than dense fp32 once more than 1 in 32 weights is zero.
            mask = (tensor != 0).numpy().reshape(-1)
            stored_tensors = {
                "mask": torch.from_numpy(np.packbits(mask)),
                "values": tensor.reshape(-1)[tensor.reshape(-1) != 0],
            }
            how = {"format": "sparse", "shape": list(tensor.shape)}
        else:
            stored_tensors, how = {"dense": tensor}, {"format": "dense"}
        for part, value in stored_tensors.items():
            stored[f"{name}::{part}"] = value.contiguous()
        recipe[name] = how
    return stored, recipe


def _encode_matrix(weight: torch.Tensor, setting: Setting, seed: int) -> tuple[dict, dict]:
    shape = list(weight.shape)
    if setting.encoding in ("uniform", "int8_dynamic"):
        codes, scale, zero_point, low, block = uniform_quantize(
            weight, setting.bits, setting.per_channel, setting.symmetric
        )
        high = low + 2**setting.bits - 1
        packed = pack_bits(codes.numpy().reshape(-1), setting.bits)
        tensors = {"codes": torch.from_numpy(packed), "scale": scale}
        if not setting.symmetric:
            tensors["zero_point"] = zero_point
        how = {
            "format": "uniform",
            "bits": setting.bits,
            "low": low,
            "high": high,
            "block": list(block),
            "shape": shape,
        }
        return tensors, how
    codes, codebook = codebook_quantize(weight, setting.clusters, setting.encoding == "cluster", seed)
    bits = max(1, int(np.ceil(np.log2(len(codebook)))))
    tensors = {"codes": torch.from_numpy(pack_bits(codes, bits)), "codebook": torch.from_numpy(codebook)}
    return tensors, {"format": "codebook", "bits": bits, "shape": shape}


def decode_state(stored: dict, recipe: dict) -> dict:
    state = {}
    for name, how in recipe.items():

        def part(key: str, name: str = name) -> torch.Tensor:
            return stored[f"{name}::{key}"]

        if how["format"] == "dense":
            state[name] = part("dense")
            continue
        count = int(np.prod(how["shape"]))
        if how["format"] == "sparse":
            mask = torch.from_numpy(np.unpackbits(part("mask").numpy())[:count].astype(bool))
            values = torch.zeros(count, dtype=part("values").dtype)
            values[mask] = part("values")
            state[name] = values.view(how["shape"])
        elif how["format"] == "uniform":
            codes = torch.from_numpy(unpack_bits(part("codes").numpy(), how["bits"], count)).view(how["shape"])
            zero_point = stored.get(f"{name}::zero_point")
            state[name] = uniform_dequantize(
                codes, part("scale"), zero_point, how["low"], how["high"], tuple(how["block"])
            )
        elif how["format"] == "codebook":
            codes = unpack_bits(part("codes").numpy(), how["bits"], count)
            state[name] = torch.from_numpy(part("codebook").numpy()[codes]).view(how["shape"])
        else:
            raise RecipeError(f"unknown stored format '{how['format']}' for {name}")
    return state


# --- folders ----------------------------------------------------------------------------------------------


def save_compressed(model, folder: str, setting: Setting, structure: dict | None, seed: int) -> None:
    """config.json and compression.json (what was done, and how each tensor is stored) beside the tensors."""
    from safetensors.torch import save_file

    os.makedirs(folder, exist_ok=True)
    model.config.save_pretrained(folder)
    stored, recipe = encode_state(model, setting, seed)
    save_file(stored, os.path.join(folder, WEIGHTS_FILE))
    description = {
        "setting": setting.name,
        "encoding": setting.encoding,
        "runtime": "torchao_int8_dynamic" if setting.encoding == "int8_dynamic" else "fp32",
        "structure": structure,
        "tensors": recipe,
    }
    with open(os.path.join(folder, COMPRESSION_FILE), "w", encoding="utf-8") as handle:
        json.dump(description, handle, indent=1)


def save_bitsandbytes(source: str, folder: str, quant_type: str) -> None:
    """nf4 / fp4 through transformers' bitsandbytes integration: the 4-bit layers are saved packed, as loaded."""
    from transformers import AutoModelForSequenceClassification, BitsAndBytesConfig

    # The classifier head stays fp32: bitsandbytes' CPU kernels need outputs in multiples of 32 (it has 2).
    config = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=quant_type,
        bnb_4bit_compute_dtype=torch.float32,
        llm_int8_skip_modules=["classifier", "score"],
    )
    model = AutoModelForSequenceClassification.from_pretrained(source, quantization_config=config)
    model.save_pretrained(folder)
    with open(os.path.join(folder, COMPRESSION_FILE), "w", encoding="utf-8") as handle:
        json.dump({"setting": quant_type, "encoding": quant_type, "runtime": "bitsandbytes"}, handle, indent=1)


def load_compressed(folder: str, compile_int8: bool = True, device: str = "cpu"):
    """A compressed folder as a model ready to score, on the path its card shows:

    from recipe_utils.compression.weights import load_compressed
    model = load_compressed("outputs/compress/uniform-4-channel-asym")
    """
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForSequenceClassification

    path = os.path.join(folder, COMPRESSION_FILE)
    if not os.path.isfile(path):
        raise RecipeError(f"{folder} is not a compressed model folder (no {COMPRESSION_FILE})")
    with open(path, encoding="utf-8") as handle:
        description = json.load(handle)
    if description["runtime"] == "bitsandbytes":
        return AutoModelForSequenceClassification.from_pretrained(folder, device_map={"": device}).eval()
    config = AutoConfig.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_config(config)
    if description["structure"]:
        apply_structure(model, description["structure"])
    state = decode_state(load_file(os.path.join(folder, WEIGHTS_FILE)), description["tensors"])
    model.load_state_dict(state, strict=True)
    model.to(device).eval()
    if description["runtime"] == "torchao_int8_dynamic":
        model = int8_dynamic(model, compile_int8)
    return model


def int8_dynamic(model, compile_model: bool = True):
    """torchao int8 weights x int8 activations (quantized per token at run time) in every Linear layer.
    Eager, torchao's int8 path is slower than fp32 on CPU; torch.compile fuses it into int8 matmuls."""
    import logging

    logging.getLogger("torchao").setLevel(logging.ERROR)  # it warns about its CUDA-only extensions
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_
    from torchao.utils import should_reduce_range

    # CPUs without VNNI (the AVX2-only kind) add int8 products in 16 bits, which overflow at full range:
    # torchao then quantizes to 7 bits, as its own helper advises.
    device = next(model.parameters()).device
    quantize_(model, Int8DynamicActivationInt8WeightConfig(reduce_range=should_reduce_range(device)))
    if compile_model:
        # Not with inductor's freezing: interleaved in one process it scored no faster (docs/results.md) and
        # compiled 20-50 s longer.
        model.forward = torch.compile(model.forward, dynamic=True)
    return model


def weights_in_ram(model) -> int:
    """Bytes the loaded model's parameters and buffers hold (inner tensors of quantized tensor subclasses)."""

    def size(tensor) -> int:
        if hasattr(tensor, "__tensor_flatten__"):
            names, _ = tensor.__tensor_flatten__()
            return sum(size(getattr(tensor, name)) for name in names)
        total = tensor.numel() * tensor.element_size()
        state = getattr(tensor, "quant_state", None)  # bitsandbytes 4-bit: the packed data plus its absmax
        if state is not None and getattr(state, "absmax", None) is not None:
            total += state.absmax.numel() * state.absmax.element_size()
        return total

    seen = {}
    for tensor in list(model.parameters()) + list(model.buffers()):
        seen.setdefault(id(tensor), size(tensor))
    return sum(seen.values())


def describe_step(step: str) -> str:
    """One step of a setting (a part of "heads-25+recover+int8-dynamic") in words, for its model card."""
    setting = parse_setting(step)
    if setting.prune:
        return (
            f"global magnitude pruning: the {setting.prune:.0%} smallest weights of the transformer blocks set to zero"
        )
    if setting.heads:
        return (
            f"structured pruning: {setting.heads:.0%} of the attention heads of every block removed (those that "
            "matter least to the loss, by first-order Taylor saliency on training reviews)"
        )
    if setting.ffn:
        return (
            f"structured pruning: {setting.ffn:.0%} of the feed-forward neurons of every block removed (those that "
            "matter least to the loss, by first-order Taylor saliency on training reviews)"
        )
    if setting.recover:
        return "recovery fine-tune on training reviews (what was pruned stays pruned)"
    return {
        "fp32": "none: the fine-tuned classifier as saved (fp32)",
        "uniform": f"uniform {setting.bits}-bit quantization of every weight matrix, "
        f"{'per output channel' if setting.per_channel else 'one scale per matrix'}, "
        f"{'symmetric' if setting.symmetric else 'asymmetric (with a zero point)'} (torchao affine primitives)",
        "kmeans": f"non-uniform quantization: a {setting.clusters}-value k-means codebook per matrix "
        f"({setting.bits}-bit codes)",
        "cluster": f"weight clustering: {setting.clusters} shared values per matrix, centroids started evenly "
        "over its range",
        "nf4": "bitsandbytes 4-bit NormalFloat (nf4) dense layers",
        "fp4": "bitsandbytes 4-bit float (fp4) dense layers",
        "int8_dynamic": "int8 weights per output channel; at run time torchao int8 x int8 matmuls with activations "
        "quantized per token, under torch.compile",
    }[setting.encoding]
