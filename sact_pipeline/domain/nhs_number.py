"""NHS number normalisation and Modulus 11 validation, vectorised over pandas Series."""

from __future__ import annotations

import numpy as np
import pandas as pd

WEIGHTS = np.arange(10, 1, -1)  # digits 1-9 are weighted 10..2


def normalise(numbers: pd.Series) -> pd.Series:
    """Strip spaces and hyphens, as the NHS Data Dictionary allows in presentation."""
    return numbers.astype("string").str.replace(r"[\s-]", "", regex=True).fillna("")


def is_valid(numbers: pd.Series) -> pd.Series:
    """True where a normalised value is a valid NHS number.

    Modulus 11: check = 11 - (weighted sum mod 11), 11 -> 0, 10 -> invalid. Numbers of one repeated
    digit pass the checksum but are treated as invalid (project decision, sact-submissions.md).
    """
    values = numbers.astype("string").fillna("")
    shaped = values.str.fullmatch(r"\d{10}").fillna(False).to_numpy(dtype=bool)
    result = np.zeros(len(values), dtype=bool)
    if shaped.any():
        digits = (
            np.frombuffer("".join(values[shaped].tolist()).encode("ascii"), dtype=np.uint8).reshape(-1, 10)
            - ord("0")
        ).astype(np.int64)
        check = 11 - (digits[:, :9] @ WEIGHTS) % 11
        check = np.where(check == 11, 0, check)
        repeated = (digits == digits[:, :1]).all(axis=1)
        result[shaped] = (check != 10) & (check == digits[:, 9]) & ~repeated
    return pd.Series(result, index=numbers.index)


def check_digit(first_nine: np.ndarray) -> np.ndarray:
    """Modulus 11 check digit for rows of nine digits; 10 marks a prefix that has no valid number."""
    check = 11 - (np.asarray(first_nine, dtype=np.int64) @ WEIGHTS) % 11
    return np.where(check == 11, 0, check)


def generate_valid(rng: np.random.Generator, count: int) -> list[str]:
    """Distinct valid NHS numbers for synthetic data (never a repeated-digit number)."""
    found: list[str] = []
    seen: set[str] = set()
    while len(found) < count:
        prefixes = rng.integers(0, 10, size=(max(count * 2, 16), 9))
        prefixes[:, 0] = rng.integers(4, 10, size=len(prefixes))  # avoid leading zeros for realism
        checks = check_digit(prefixes)
        keep = checks != 10
        for row, check in zip(prefixes[keep], checks[keep]):
            number = "".join(map(str, row)) + str(check)
            if number not in seen and len(set(number)) > 1:
                seen.add(number)
                found.append(number)
                if len(found) == count:
                    break
    return found
