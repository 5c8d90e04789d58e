"""NHS organisations from the ODS 'etr' extract: which codes are trusts, and which are English.

Only English organisations are published; Welsh trusts and health boards are processed but never
published without advance permission (NDRS publication rules).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

ENGLISH_REGION_LETTERS = frozenset("ABCDEFGHIJK")

# Welsh local health boards are not in the ODS trust extract (see shared/reference/README.md).
WELSH_HEALTH_BOARDS: dict[str, str] = {
    "7A1": "BETSI CADWALADR UNIVERSITY LOCAL HEALTH BOARD",
    "7A2": "HYWEL DDA UNIVERSITY LOCAL HEALTH BOARD",
    "7A3": "SWANSEA BAY UNIVERSITY LOCAL HEALTH BOARD",
    "7A4": "CARDIFF AND VALE UNIVERSITY LOCAL HEALTH BOARD",
    "7A5": "CWM TAF MORGANNWG UNIVERSITY LOCAL HEALTH BOARD",
    "7A6": "ANEURIN BEVAN UNIVERSITY LOCAL HEALTH BOARD",
    "7A7": "POWYS TEACHING LOCAL HEALTH BOARD",
}


@dataclass(frozen=True)
class Organisation:
    code: str
    name: str
    country: str  # "England", "Wales" or "Other"
    open_date: str
    close_date: str

    @property
    def is_english(self) -> bool:
        return self.country == "England"


class OrganisationRegister:
    """Known trust-level organisations, keyed by ODS code."""

    def __init__(self, organisations: list[Organisation]):
        self._by_code = {o.code: o for o in organisations}

    @classmethod
    def from_ods_etr(cls, path: Path | None = None) -> "OrganisationRegister":
        """Load an ODS etr extract (no header row); the packaged copy unless a newer file is given."""
        if path is None:
            text = resources.files("sact_pipeline.data").joinpath("ods_etr.csv").read_text(encoding="utf-8")
        else:
            text = Path(path).read_text(encoding="utf-8-sig")
        organisations = []
        for row in csv.reader(text.splitlines()):
            if len(row) < 24 or not row[0].strip():
                continue
            letter = row[23].strip().upper()
            country = "England" if letter in ENGLISH_REGION_LETTERS else "Wales" if letter == "W" else "Other"
            organisations.append(Organisation(row[0].strip().upper(), row[1].strip(), country,
                                              row[10].strip(), row[11].strip()))
        organisations += [Organisation(code, name, "Wales", "", "") for code, name in WELSH_HEALTH_BOARDS.items()]
        return cls(organisations)

    def __contains__(self, code: str) -> bool:
        return code in self._by_code

    def get(self, code: str) -> Organisation | None:
        return self._by_code.get(code)

    def __iter__(self):
        return iter(self._by_code.values())

    def resolve_trust(self, provider_code: str) -> Organisation | None:
        """Trust of a provider or site code: the code itself if a trust, else its first 3 characters if those are.

        NDRS analyst SQL takes the first 3 characters, which breaks for 5-character trusts (G6V2S, K0N6A).
        """
        code = provider_code.strip().upper()
        return self._by_code.get(code) or (self._by_code.get(code[:3]) if len(code) > 3 else None)

    def english_codes(self) -> frozenset[str]:
        return frozenset(code for code, o in self._by_code.items() if o.is_english)
