import pytest

from recipe_utils.evaluation.metrics import classification_metrics, confusion


def test_binary_metrics_match_hand_computed_values():
    # 3 true positives, 1 false positive, 2 false negatives, 4 true negatives.
    labels = [1, 1, 1, 1, 1, 0, 0, 0, 0, 0]
    predictions = [1, 1, 1, 0, 0, 1, 0, 0, 0, 0]
    metrics = classification_metrics(labels, predictions)
    assert metrics["accuracy"] == pytest.approx(0.7)
    assert metrics["precision"] == pytest.approx(3 / 4)
    assert metrics["recall"] == pytest.approx(3 / 5)
    assert metrics["f1"] == pytest.approx(2 / 3)  # 2PR / (P + R) = 2 * 0.75 * 0.6 / 1.35
    # Negative class: precision 4/6, recall 4/5, F1 8/11; the macro F1 is the mean of 2/3 and 8/11.
    assert metrics["f1_macro"] == pytest.approx((2 / 3 + 8 / 11) / 2)
    assert confusion(labels, predictions) == [[4, 1], [2, 3]]


def test_constant_predictions_give_zero_f1_not_an_error():
    metrics = classification_metrics([0, 1, 0, 1], [0, 0, 0, 0])
    assert metrics == {"accuracy": 0.5, "precision": 0.0, "recall": 0.0, "f1": 0.0, "f1_macro": pytest.approx(1 / 3)}


def test_multiclass_reports_macro_f1_only():
    metrics = classification_metrics([0, 1, 2, 2], [0, 1, 2, 1], num_labels=3)
    assert set(metrics) == {"accuracy", "f1_macro"} and metrics["accuracy"] == 0.75


def test_zero_shot_stars_collapse_onto_polarity():
    import numpy as np

    from recipe_utils.evaluation.baselines import map_zero_shot_probabilities

    stars = {0: "1 star", 1: "2 stars", 2: "3 stars", 3: "4 stars", 4: "5 stars"}
    label_map = {"1 star": 0, "2 stars": 0, "4 stars": 1, "5 stars": 1}
    probabilities = np.array(
        [
            [0.3, 0.3, 0.0, 0.2, 0.2],  # 0.6 negative
            [0.1, 0.1, 0.5, 0.2, 0.1],  # 3 stars ignored: 0.3 positive vs 0.2 negative
            [0.0, 0.1, 0.0, 0.0, 0.9],
        ]
    )
    assert map_zero_shot_probabilities(probabilities, stars, label_map).tolist() == [0, 1, 1]


def test_the_majority_baseline_predicts_the_most_frequent_training_class():
    from recipe_utils.evaluation.baselines import majority_predictions

    assert majority_predictions([1, 0, 1, 1], 3).tolist() == [1, 1, 1]
    assert majority_predictions([0, 2, 2, 1, 0, 2], 2).tolist() == [2, 2]
