import numpy as np

from rtserve.bundle.policy import OutputPolicy
from rtserve.guard.hardening import harden
from rtserve.runtimes.base import ModelOutput

OUTPUT = ModelOutput(
    label=np.array(["b", "a"]),
    probabilities=np.array([[0.123456, 0.654321, 0.222223], [0.5, 0.3, 0.2]]),
)


def test_no_policy_leaves_outputs_untouched():
    assert harden(OUTPUT, None) is OUTPUT
    assert harden(OUTPUT, OutputPolicy()) is OUTPUT


def test_probabilities_are_rounded():
    hardened = harden(OUTPUT, OutputPolicy(round_probabilities=2))
    assert hardened.probabilities.tolist() == [[0.12, 0.65, 0.22], [0.5, 0.3, 0.2]]
    assert hardened.label is OUTPUT.label


def test_top_k_keeps_the_k_most_likely_classes_per_row():
    hardened = harden(OUTPUT, OutputPolicy(top_k=1, round_probabilities=1))
    assert hardened.probabilities.tolist() == [[0.0, 0.7, 0.0], [0.5, 0.0, 0.0]]
    assert OUTPUT.probabilities[0, 0] == 0.123456  # the original is not modified


def test_regression_values_are_left_alone():
    output = ModelOutput(value=np.array([1.23456]))
    assert harden(output, OutputPolicy(round_probabilities=1)) is output
