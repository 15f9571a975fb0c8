"""Encoder or LLM, per label budget: MiniLM and SmolLM2-135M-Instruct, each with LoRA and a new classification
head, trained on the same 100, 400 and 1,600 labelled reviews and scored on the same 1,000 held-out reviews.

    python recipes/encoder_or_llm.py                                  # make encoder_or_llm
    python recipes/encoder_or_llm.py --budgets 100 400 --study_dir outputs/encoder_or_llm_small

Each pair is compared on the same reviews (SmolLM2 minus MiniLM: points, 95% paired interval, McNemar), with
what each answer costs: training time, held-out reviews scored per second, peak memory and size on disk.
Writes study_dir/comparison.{md,json,png} and every run's folder under study_dir. The SmolLM2 cells are the
heavy ones (on a 2-core AVX2 CPU, about an hour at 1,600 labels), so this is its own target, not make demo's.
"""

import recipe_utils.quiet  # noqa: F401  (first: keeps library import noise off the screen)

# isort: split
import argparse
import os

from recipe_utils.core.errors import exit_on_recipe_error
from recipe_utils.core.outputs import read_json
from recipe_utils.training.study import Variant, classifier_row, paired_columns, run_variant, write_study

# Each model at the learning rate of its own demo config (MiniLM's LoRA at 2e-3, SmolLM2's at 5e-4).
MODELS = {
    "minilm": ["--config", "recipes/configs/lora/demo.yaml"],
    # Without the prompted baselines of make llm_classifier: the same held-out reviews at every budget.
    "smollm2": ["--config", "recipes/configs/lora/smollm2_classifier.yaml", "--prompted_llm", ""],
}


@exit_on_recipe_error
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study_dir", default="outputs/encoder_or_llm")
    parser.add_argument("--budgets", nargs="+", type=int, default=[100, 400, 1600], help="Labelled reviews.")
    parser.add_argument("--encoder", help="Another encoder in MiniLM's place (its config stays).")
    parser.add_argument("--llm", help="Another causal LM in SmolLM2's place (its config stays).")
    args, extra = parser.parse_known_args(argv)
    os.makedirs(args.study_dir, exist_ok=True)
    rows = []
    for budget in args.budgets:
        folders = {}
        for model, arguments in MODELS.items():
            name, other = f"{model}_{budget}", args.encoder if model == "minilm" else args.llm
            arguments = [*arguments, "--max_train_samples", str(budget)]
            variant = Variant(
                name, "recipes/lora.py", [*arguments, *(["--model_name_or_path", other] if other else [])]
            )
            results = run_variant(variant, args.study_dir, extra)
            folders[model] = os.path.join(args.study_dir, name)
            seed = read_json(os.path.join(folders[model], "run_config.json"))["seed"]
            rows.append(
                {
                    "variant": name,
                    "labels": results["train_samples"],
                    **classifier_row(results, folders[model], seed),
                    "tfidf_tuned_same_reviews": results["baseline_tfidf_tuned_accuracy"],
                }
            )
        rows[-1].update(paired_columns(folders["smollm2"], folders["minilm"], "minilm", seed))
    table = write_study(args.study_dir, rows, "Encoder or LLM, per label budget", ("accuracy", "reviews_per_s"))
    print(f"\n{table}\n\nWritten to {args.study_dir}/comparison.md", flush=True)


if __name__ == "__main__":
    main()
