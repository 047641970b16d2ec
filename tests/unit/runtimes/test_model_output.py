"""``ModelOutput.concat``: the one way several batches' outputs are joined back into one."""

from __future__ import annotations

import numpy as np

from rtserve.runtimes.base import ModelOutput


def test_outputs_are_joined_row_wise_in_order():
    first = ModelOutput(label=np.array(["a"]), probabilities=np.array([[0.9, 0.1]]))
    second = ModelOutput(label=np.array(["b", "a"]), probabilities=np.array([[0.2, 0.8], [1, 0]]))
    joined = ModelOutput.concat([first, second])
    assert joined.label.tolist() == ["a", "b", "a"]
    assert joined.probabilities.tolist() == [[0.9, 0.1], [0.2, 0.8], [1, 0]]
    assert joined.value is None
    assert len(joined) == 3


def test_an_array_missing_from_any_part_is_missing_from_the_join():
    with_probabilities = ModelOutput(label=np.array([1]), probabilities=np.array([[0.4, 0.6]]))
    labels_only = ModelOutput(label=np.array([0]))
    joined = ModelOutput.concat([with_probabilities, labels_only])
    assert joined.label.tolist() == [1, 0]
    assert joined.probabilities is None


def test_a_single_output_comes_back_as_it_is():
    only = ModelOutput(value=np.array([1.5, 2.5]))
    assert ModelOutput.concat([only]) is only
