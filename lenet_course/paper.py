"""The numbers the course builds on and checks, as plain data (no torch), from LeCun, Bottou,
Bengio and Haffner, "Gradient-based learning applied to document recognition", Proc. IEEE
86(11):2278-2324, 1998: the training recipe of Section III-B, the layer counts of Section II-B,
the C3 connection table (Table I) and the published test errors."""

from typing import Any

#: Passes through the 60,000 training images in the paper's runs.
PAPER_PASSES = 20
#: (passes, global learning rate eta), then PAPER_FINAL_LR for the passes after them.
PAPER_SCHEDULE: tuple[tuple[int, float], ...] = ((2, 5e-4), (3, 2e-4), (3, 1e-4), (4, 5e-5))
PAPER_FINAL_LR = 1e-5
#: The constant mu of the SDLM step eps_k = eta / (mu + h_kk).
PAPER_MU = 0.02
#: The diagonal Hessian was re-estimated on 500 samples before each pass, then kept fixed.
PAPER_HESSIAN_SAMPLES = 500
#: Test error rates of LeNet-5 on MNIST, in percent (Section III-B; Fig. 9).
PAPER_TEST_ERROR = 0.95
PAPER_TEST_ERROR_DISTORTED = 0.8

#: Trainable parameters and connections per layer (Section II-B; C5 and F6 are fully connected,
#: so the paper prints one number for both).  Totals (Section II-A): 60,000 trainable
#: parameters, 340,908 connections (with the 840 of the fixed RBF output layer).
PAPER_LAYER_COUNTS: dict[str, tuple[int, int]] = {
    "C1": (156, 122_304),
    "S2": (12, 5_880),
    "C3": (1_516, 151_600),
    "S4": (32, 2_000),
    "C5": (48_120, 48_120),
    "F6": (10_164, 10_164),
}

#: Table I: which S2 maps (0-5) each C3 map (0-15) reads.
C3_TABLE: tuple[tuple[int, ...], ...] = (
    *(tuple((j + k) % 6 for k in range(3)) for j in range(6)),  # maps 0-5: 3 contiguous
    *(tuple((j + k) % 6 for k in range(4)) for j in range(6)),  # maps 6-11: 4 contiguous
    (0, 1, 3, 4),  # maps 12-14: 4 non-contiguous
    (1, 2, 4, 5),
    (0, 2, 3, 5),
    (0, 1, 2, 3, 4, 5),  # map 15: all 6
)

_PAPER = "LeCun et al. 1998, Sec. III-B and Fig. 9"
_D2L = "d2l.ai, 'Convolutional Neural Networks (LeNet)'"
#: The figures learners meet: source, network, data set, test error in percent (None where the
#: source's number is not on MNIST).
PUBLISHED: tuple[dict[str, Any], ...] = tuple(
    dict(zip(("source", "network", "dataset", "test_error_percent"), row, strict=True))
    for row in (
        (_PAPER, "LeNet-5 (SDLM, 20 passes)", "MNIST", PAPER_TEST_ERROR),
        (_PAPER, "LeNet-5, training set with distortions", "MNIST", PAPER_TEST_ERROR_DISTORTED),
        (_D2L, "classic LeNet (sigmoid, average pooling)", "Fashion-MNIST", None),
    )
)


def paper_learning_rate(epoch: int) -> float:
    """The paper's global learning rate eta for pass ``epoch`` (counted from 0)."""
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise ValueError(f"epoch={epoch!r}; expected a pass number 0, 1, 2, ...")
    start = 0
    for passes, lr in PAPER_SCHEDULE:
        start += passes
        if epoch < start:
            return lr
    return PAPER_FINAL_LR


def error_percent(accuracy: float) -> float:
    """Test error rate in percent from an accuracy in [0, 1], rounded to 0.01 (1 test image)."""
    if not 0.0 <= accuracy <= 1.0:  # NaN fails this too
        raise ValueError(f"accuracy={accuracy!r} must be in [0, 1]")
    return round(100.0 * (1.0 - accuracy), 2)
