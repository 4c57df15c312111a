"""What notebook 01 says of convolutions, as properties: translation equivariance, and pooling's
equivariance on its own coarser grid."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st


def shift(x: torch.Tensor, down: int, right: int) -> torch.Tensor:
    return torch.roll(x, shifts=(down, right), dims=(-2, -1))


@settings(max_examples=60, deadline=None)
@given(size=st.integers(1, 10), k=st.integers(1, 5), padding=st.integers(0, 2),
       down=st.integers(-3, 3), right=st.integers(-3, 3), seed=st.integers(0, 2**16))
def test_a_convolution_is_translation_equivariant(size: int, k: int, padding: int, down: int,
                                                  right: int, seed: int) -> None:
    """Shift the content of a zero-framed image: the convolution's output shifts the same way
    (bias included), as long as the frame keeps the content and the border windows at zero."""
    generator = torch.Generator().manual_seed(seed)
    frame = 3 + k  # wider than any shift plus a window
    x = F.pad(torch.randn(2, 3, size, size, generator=generator), (frame,) * 4)
    conv = torch.nn.Conv2d(3, 4, k, padding=padding)
    assert torch.allclose(conv(shift(x, down, right)), shift(conv(x), down, right), atol=1e-5)
    moved = shift(x, 1, 0)
    if x.abs().sum() > 0:  # a real shift of real content changes the output: the test can fail
        assert not torch.allclose(conv(moved), conv(x), atol=1e-5)


@settings(max_examples=40, deadline=None)
@given(size=st.integers(1, 8), pool=st.integers(1, 3), steps_down=st.integers(-2, 2),
       steps_right=st.integers(-2, 2), seed=st.integers(0, 2**16))
def test_pooling_is_equivariant_to_shifts_by_its_stride(size: int, pool: int, steps_down: int,
                                                        steps_right: int, seed: int) -> None:
    """A shift by a multiple of the pooling stride shifts the pooled map by that many cells; a
    1-pixel shift need not (notebook 01 measures how much it changes)."""
    generator = torch.Generator().manual_seed(seed)
    frame = 3 * pool
    x = F.pad(torch.randn(1, 1, size * pool, size * pool, generator=generator), (frame,) * 4)
    pooled = F.max_pool2d(x.abs(), pool)
    shifted = F.max_pool2d(shift(x, steps_down * pool, steps_right * pool).abs(), pool)
    assert torch.equal(shifted, shift(pooled, steps_down, steps_right))
