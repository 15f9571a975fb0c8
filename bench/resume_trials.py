"""Kill-and-resume trials: SIGKILL the tiny causal-LM run at random points, resume from latest, and
compare the final weights and perplexity with an uninterrupted run of the same seed.

    python bench/resume_trials.py --trials 10     # make resume_trials
"""

import argparse
import os
import random
import shutil
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.conftest import run_script  # noqa: E402
from tests.test_resume_and_scale import CHECKPOINTED, _final_state, kill_after_checkpoint  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0, help="Seed of the random kill points.")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as work:
        straight = os.path.join(work, "straight")
        result = run_script("recipes/clm_distilgpt2.py", *CHECKPOINTED, "--output_dir", straight)
        if result.returncode != 0:
            raise SystemExit(f"error: uninterrupted run failed: {result.stderr.strip().splitlines()[-1]}")
        expected_weights, expected_results = _final_state(straight)
        passed = 0
        for trial in range(args.trials):
            output_dir = os.path.join(work, f"trial-{trial}")
            while True:
                step, delay = rng.choice((3, 6, 9)), rng.uniform(0.0, 1.5)
                try:
                    reached = kill_after_checkpoint(output_dir, step, delay)
                    break
                except AssertionError:  # the run finished inside the delay: no kill happened, draw again
                    shutil.rmtree(output_dir)
            resumed = run_script(
                "recipes/clm_distilgpt2.py",
                *CHECKPOINTED,
                "--output_dir",
                output_dir,
                "--resume_from_checkpoint",
                "latest",
            )
            resumed_from = next((line for line in resumed.stdout.splitlines() if "resuming from" in line), "")
            equal = resumed.returncode == 0
            if equal:
                weights, results = _final_state(output_dir)
                equal = weights.keys() == expected_weights.keys() and all(
                    (weights[name] == expected_weights[name]).all() for name in weights
                )
                equal = equal and results["perplexity"] == expected_results["perplexity"]
            passed += equal
            print(
                f"trial {trial}: killed {delay:.2f} s after checkpoint-{step} (newest folder checkpoint-{reached}); "
                f"{resumed_from.strip() or 'no resume'}; final state equal: {equal}",
                flush=True,
            )
    print(f"{passed}/{args.trials} kill-and-resume trials ended equal to the uninterrupted run", flush=True)
    return 0 if passed == args.trials else 1


if __name__ == "__main__":
    sys.exit(main())
