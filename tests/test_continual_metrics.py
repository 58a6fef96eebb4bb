"""The accuracy-matrix metrics against values worked out by hand."""

import math

import pytest

from routelora.metrics.continual import (
    backward_transfer,
    forgetting_last,
    forgetting_max,
    forward_transfer,
    mean_average,
    mean_final,
    mean_finetune,
    normalise,
    retention_change,
    summarise,
)

# rows: zero-shot, after task 0, after task 1, after task 2; columns: tasks 0, 1, 2
R = [
    [10.0, 20.0, 30.0],
    [80.0, 25.0, 30.0],
    [60.0, 90.0, 40.0],
    [50.0, 70.0, 95.0],
]


def test_each_metric_by_hand():
    assert mean_finetune(R) == pytest.approx((80 + 90 + 95) / 3)
    assert mean_final(R) == pytest.approx((50 + 70 + 95) / 3)
    assert mean_average(R) == pytest.approx((80 + (60 + 90) / 2 + (50 + 70 + 95) / 3) / 3)
    assert backward_transfer(R) == pytest.approx(((50 - 80) + (70 - 90)) / 2)
    # task 0's best before the last step is 80 (after itself), task 1's is 90
    assert forgetting_max(R) == pytest.approx(((80 - 50) + (90 - 70)) / 2)
    assert forgetting_last(R) == pytest.approx(-backward_transfer(R))
    assert forward_transfer(R) == pytest.approx(((25 - 20) + (40 - 30)) / 2)


def test_max_forgetting_differs_from_last_minus_diagonal_when_a_task_improved_later():
    improved = [[0.0, 0.0, 0.0], [50.0, 0.0, 0.0], [70.0, 60.0, 0.0], [40.0, 60.0, 80.0]]
    assert forgetting_max(improved) == pytest.approx(((70 - 40) + (60 - 60)) / 2)
    assert forgetting_last(improved) == pytest.approx(((50 - 40) + (60 - 60)) / 2)


def test_a_matrix_without_forgetting_and_one_task():
    assert summarise([[0.0], [100.0]])["MFN"] == 100.0
    assert math.isnan(backward_transfer([[0.0], [100.0]]))
    flat = [[0.0, 0.0], [90.0, 0.0], [90.0, 80.0]]
    assert backward_transfer(flat) == 0 and forgetting_max(flat) == 0


def test_bad_shapes_and_references_are_refused():
    with pytest.raises(ValueError, match="T \\+ 1 rows"):
        mean_final([[1.0, 2.0], [3.0, 4.0]])
    with pytest.raises(ValueError, match="task caption"):
        normalise({"caption": 6.4}, {"caption": 0.0})


def test_normalising_by_the_rule_and_retention_change():
    assert normalise({"caption": 3.2, "meme": 0.8}, {"caption": 6.4, "meme": 1.0}) == {"caption": 50.0, "meme": 80.0}
    assert retention_change({"mcq": 1.0, "chart": 0.87}, {"mcq": 0.9, "chart": 0.87}) == pytest.approx(
        {"mcq": -0.1, "chart": 0.0}
    )


def test_forward_transfer_is_zero_where_an_unseen_task_scores_what_the_base_scores():
    # The demo's world in miniature: the base scores 0 on tasks whose answer format only their own training
    # teaches and chance (50) on a yes/no task (column 2); rows: zero-shot, after tasks 0, 1, 2, 3.
    base = [0.0, 0.0, 50.0, 0.0]
    routed = [base, [90.0, 0.0, 50.0, 0.0], [90.0, 70.0, 49.0, 0.0], [90.0, 70.0, 86.0, 0.0], [90.0, 70.0, 86.0, 66.0]]
    overwritten = [base, [90.0, 0.0, 0.0, 0.0], [0.0, 70.0, 0.0, 0.0], [0.0, 0.0, 100.0, 0.0], [0.0, 0.0, 0.0, 77.0]]
    taught = [base, [90.0, 30.0, 60.0, 0.0], [90.0, 70.0, 80.0, 20.0], [90.0, 70.0, 86.0, 40.0], [90.0] * 4]
    assert forward_transfer(routed) == pytest.approx((0 + (49 - 50) + 0) / 3)
    assert forward_transfer(overwritten) == pytest.approx((0 + (0 - 50) + 0) / 3)  # lost the base's chance score
    assert forward_transfer(taught) == pytest.approx((30 + (80 - 50) + 40) / 3)  # earlier tasks helped later ones
    assert math.isnan(forward_transfer([[0.0], [100.0]]))


def test_a_streams_forward_transfer_reads_the_row_before_each_task_is_learned():
    from routelora.stream.result import MethodResult, StreamResult

    rows = [{"a": 0.0, "b": 0.2}, {"a": 0.9, "b": 0.5}, {"a": 0.8, "b": 0.95}]  # zero-shot, after a, after b
    stream = StreamResult(
        {}, ["a", "b"], [], {"a": "accuracy", "b": "accuracy"}, rows[0], {}, {"m": MethodResult("m", rows)}
    )
    assert stream.summary("m")["forward transfer"] == pytest.approx(100 * (0.5 - 0.2))
