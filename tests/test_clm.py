"""Causal-LM recipe: packing, pad token, generation and a tiny end-to-end run on real text."""

import json
import os
from types import SimpleNamespace

import datasets
import pytest

from recipe_utils.generation import GenerationArguments, generate, interactive_loop
from recipe_utils.lm import group_texts, tokenize_for_lm, train_bpe_tokenizer
from tests.conftest import assert_token_absent, push_and_pull, results_of, run_in_process, run_script
from tests.many_processes import two_processes_over

TINY_MODEL = [
    "--model_type",
    "gpt2",
    "--config_overrides",
    "n_layer=2,n_head=2,n_embd=64,n_positions=128",
    "--tokenizer_vocab_size",
    "2000",
    "--block_size",
    "64",
]


def test_packing_keeps_every_token_once_in_order():
    examples = {"input_ids": [[1, 2, 3], [4, 5], [6, 7, 8, 9, 10]], "attention_mask": [[1] * 3, [1] * 2, [1] * 5]}
    blocks = group_texts(examples, block_size=4)
    assert blocks["input_ids"] == [[1, 2, 3, 4], [5, 6, 7, 8]]  # the 2-token tail that fills no block is dropped
    assert all(len(mask) == 4 for mask in blocks["attention_mask"])


def test_packed_blocks_are_the_concatenated_texts_with_eos_between():
    tokenizer = train_bpe_tokenizer(["the film was great fun"] * 50 + ["a dull and boring plot"] * 50, 300)
    texts = datasets.Dataset.from_dict({"text": ["the film was great fun", "a dull and boring plot"] * 20})
    blocks = tokenize_for_lm(texts, tokenizer, block_size=8, packing=True, separator_id=tokenizer.eos_token_id)
    stream = sum((tokenizer(text)["input_ids"] + [tokenizer.eos_token_id] for text in texts["text"]), [])
    flat = sum(blocks["input_ids"], [])
    assert flat == stream[: len(flat)] and len(stream) - len(flat) < 8


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    output_dir = str(tmp_path_factory.mktemp("clm") / "run")
    result = run_in_process(
        "recipes/clm_distilgpt2.py",
        "--config",
        "recipes/configs/clm_distilgpt2/demo.yaml",
        *TINY_MODEL,
        "--max_train_samples",
        "300",
        "--max_eval_samples",
        "60",
        "--num_train_epochs",
        "1",
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
    assert results["leaked_eval_texts"] == 0


def test_saved_folder_works_with_the_text_generation_pipeline(tiny_run):
    from transformers import pipeline

    output_dir, _ = tiny_run
    generator = pipeline("text-generation", model=output_dir)
    assert generator.tokenizer.pad_token == generator.tokenizer.eos_token  # seed 002: pad with eos
    text = generator("This movie", max_new_tokens=5, do_sample=False)[0]["generated_text"]
    assert text.startswith("This movie") and len(text) > len("This movie")
    assert {"README.md", "samples.json", "model.safetensors"} <= set(os.listdir(output_dir))


def test_generation_is_reproducible_with_a_seed(tiny_run):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    output_dir, _ = tiny_run
    model, tokenizer = AutoModelForCausalLM.from_pretrained(output_dir), AutoTokenizer.from_pretrained(output_dir)
    args = GenerationArguments(max_new_tokens=15, generation_seed=7)
    assert generate(model, tokenizer, "The acting", args) == generate(model, tokenizer, "The acting", args)


def test_interactive_loop_reads_prompts_until_end_of_input(tiny_run):
    output_dir, _ = tiny_run
    result = run_script(
        "recipes/clm_distilgpt2.py",
        "--generate_only",
        "--model_name_or_path",
        output_dir,
        "--max_new_tokens",
        "5",
        stdin="The plot\nI loved\n",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("Enter a prompt for text generation:") == 3  # two answered, then EOF
    generated = [line for line in result.stdout.splitlines() if "Generated text:" in line]
    assert len(generated) == 2 and "The plot" in generated[0] and "I loved" in generated[1]


def test_interactive_loop_stops_on_an_empty_line(capsys):
    import io

    calls = interactive_loop(
        SimpleNamespace(), SimpleNamespace(), GenerationArguments(), stream=io.StringIO("\nnever\n")
    )
    assert calls == 0 and "Enter a prompt" in capsys.readouterr().out


def test_lora_on_the_causal_lm_saves_an_adapter_that_generates(tiny_run, tmp_path):
    base_dir, _ = tiny_run
    output_dir = str(tmp_path / "clm_lora")
    result = run_in_process(
        "recipes/lora.py",
        "--task",
        "clm",
        "--config",
        "recipes/configs/clm_distilgpt2/demo.yaml",
        "--model_name_or_path",
        base_dir,
        "--lora_target_modules",
        "c_attn",
        "--max_train_samples",
        "200",
        "--max_eval_samples",
        "40",
        "--block_size",
        "64",
        "--learning_rate",
        "5e-3",
        "--num_train_epochs",
        "3",
        "--max_new_tokens",
        "8",
        "--output_dir",
        output_dir,
    )
    results = results_of(result, output_dir)
    assert results["peft_method"] == "lora" and results["trainable_share"] < 0.1
    assert results["perplexity"] < results["before_perplexity"]
    assert "adapter_model.safetensors" in os.listdir(output_dir)
    generated = run_in_process(
        "recipes/clm_distilgpt2.py", "--generate_only", "--model_name_or_path", output_dir, "--prompt", "The film"
    )
    assert generated.returncode == 0, generated.stderr[-2000:]
    assert generated.stdout.strip().startswith("The film")


def test_push_to_the_local_hub_and_pull_back_gives_the_same_model(tiny_run, local_hub, tmp_path):
    output_dir, results = tiny_run
    report = push_and_pull(local_hub, output_dir, "tester/review-gpt2", "causal_lm", str(tmp_path))
    assert report["differing_files"] == [] and report["max_logit_difference"] == 0.0
    assert report["card_eval_results"]["perplexity"] == round(results["perplexity"], 2)
    assert {"model.safetensors", "tokenizer.json", "samples.json", "training_curves.png"} <= set(report["files"])
    assert_token_absent(output_dir, str(tmp_path))


def _losses(output_dir):
    with open(os.path.join(output_dir, "log_history.json")) as handle:
        return [entry["loss"] for entry in json.load(handle) if "loss" in entry]


def test_two_processes_train_as_one_at_the_same_global_batch_and_write_once(tmp_path, local_hub):
    from tests.test_resume_and_scale import TINY as TINY_GPT2

    one = str(tmp_path / "one")
    common = [*TINY_GPT2, "--max_steps", "8", "--logging_steps", "2", "--save_strategy", "no"]
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
    # Before training both score the same model on the same blocks: the gathered perplexity is the same.
    assert results["before_perplexity"] == pytest.approx(results_one["before_perplexity"], rel=1e-5)
    # Same samples per step, gradients averaged across processes. Before any update the losses agree to
    # float precision; afterwards within 1%: the all-reduce sums gradients in another order, and Adam turns
    # a rounding-level difference in a near-zero gradient into a full-size step for that weight.
    losses_one, losses_two = _losses(one), _losses(two)
    assert len(losses_two) == len(losses_one) == 4
    assert losses_two[0] == pytest.approx(losses_one[0], rel=1e-5)
    assert losses_two == pytest.approx(losses_one, rel=1e-2)
