"""``train.eval_steps``: a value in (0, 1) is a share of training (HF's fractional eval_steps, which
upstream sft.py sets to 0.05), rounded up; whole numbers are step counts; 0 per epoch; < 0 never."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from sidcore.train.loop import Trainer


@pytest.mark.parametrize("value,steps,expected", [(0.05, 350, 18), (0.05, 20, 1), (0.05, 1000, 50), (0.5, 3, 2),
                                                  (40, 350, 40), (40.0, 350, 40), (0, 350, 7), (-1, 350, None)])
def test_eval_every(value, steps, expected):
    fake = SimpleNamespace(train=SimpleNamespace(eval_steps=value), examples=[0] * 100)
    assert Trainer._eval_every(fake, steps, SimpleNamespace(effective=16)) == expected
