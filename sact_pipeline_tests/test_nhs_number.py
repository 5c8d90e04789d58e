"""NHS number validation against the `nhs-number` package as an oracle."""

import random

import nhs_number as oracle
import numpy as np
import pandas as pd
import pytest

from sact_pipeline.domain import nhs_number


def test_documented_examples():
    values = pd.Series(["9434765919", "4010232137", "3417284996", "8314495581", "9876543210",
                        "9434765918", "6101234565", "1234567890"])
    assert nhs_number.is_valid(values).tolist() == [True] * 5 + [False] * 3


def test_spaces_and_hyphens_are_normalised():
    values = nhs_number.normalise(pd.Series(["943 476 5919", "943-476-5919", " 9434765919 ", None]))
    assert values.tolist() == ["9434765919"] * 3 + [""]


@pytest.mark.parametrize("digit", "0123456789")
def test_repeated_digit_numbers_are_invalid_even_when_the_checksum_passes(digit):
    assert not nhs_number.is_valid(pd.Series([digit * 10])).iloc[0]


def _oracle_modulus_11(value: str) -> bool:
    """The oracle's Modulus 11 check (its is_valid also applies Scotland's CHI date rule, which the
    NHS Data Dictionary rule used for SACT does not)."""
    return (len(value) == 10 and value.isdigit() and len(set(value)) > 1
            and oracle.calculate_checksum(value[:9]) == int(value[9]))


def test_agrees_with_the_oracle_on_random_and_generated_numbers():
    rng = random.Random(20261123)
    values = oracle.generate(valid=True, quantity=500) + oracle.generate(valid=False, quantity=500)
    values += ["".join(rng.choice("0123456789") for _ in range(10)) for _ in range(2000)]
    values += ["123456789", "12345678901", "94347659I9", ""]
    ours = nhs_number.is_valid(pd.Series(values)).tolist()
    assert ours == [_oracle_modulus_11(v) for v in values]
    assert sum(ours) > 500  # the comparison covers plenty of valid numbers
    outside_scotland = [v for v in values if v.isdigit() and len(v) == 10 and len(set(v)) > 1
                        and not oracle.REGION_SCOTLAND.contains_number(v)]
    assert nhs_number.is_valid(pd.Series(outside_scotland)).tolist() == [oracle.is_valid(v) for v in outside_scotland]


def test_generated_numbers_are_valid_and_distinct():
    numbers = nhs_number.generate_valid(np.random.default_rng(7), 1000)
    assert len(set(numbers)) == 1000
    assert all(oracle.is_valid(n) for n in numbers)
