"""The landing-zone scan: what gets registered, what is rejected, and rejections checked again."""

from __future__ import annotations

import shutil
from dataclasses import replace
from datetime import date
from importlib import resources

from sact_pipeline.layers import Pipeline
from sact_pipeline.tables import rejected_files, submission_files
from sact_pipeline_tests.builders import write_submission

ODS = resources.files("sact_pipeline.data").joinpath("ods_etr.csv")


def test_every_file_is_registered_or_rejected_and_one_bad_file_stops_nothing(settings):
    landing = settings.landing_dir
    write_submission(landing / "a" / "SACT_RR8_202401_20240210093000.csv", [{}])
    shutil.copy(landing / "a" / "SACT_RR8_202401_20240210093000.csv", landing / "SACT_RR8_202401_20240210093000.csv")
    (landing / "SACT_RBV_202401_20240210093000.csv").write_text("Regimen," + "x" * 200_000 + "\n1,2\n")
    (landing / "notes.txt").write_text("not a submission")
    (landing / "SACT_RBV_202401_20240210093000.csv.part").write_text("still arriving")
    pipeline = Pipeline(settings, today=date(2024, 6, 1))
    discovery = pipeline.discover()
    assert sorted(discovery.accepted_new) == ["SACT_RR8_202401_20240210093000.csv",
                                              "a/SACT_RR8_202401_20240210093000.csv"]
    reasons = dict(discovery.rejected_new)
    assert reasons["notes.txt"].startswith("file name does not follow")
    assert "SACT_RBV_202401_20240210093000.csv" in reasons
    assert len(pipeline.status.accepted_files()) == 1  # two copies of one file are one version
    again = pipeline.discover()
    assert again.accepted_new == [] and again.rejected_new == []
    assert sorted(p for p, _ in again.rejected_known) == sorted(reasons)


def test_a_rejection_that_no_longer_applies_is_accepted_on_the_next_scan(settings, tmp_path):
    path = write_submission(settings.landing_dir / "SACT_RZZ_202401_20240210093000.csv", [{}])
    pipeline = Pipeline(settings, today=date(2024, 6, 1))
    assert pipeline.discover().rejected_new == [(path.name, "unknown organisation RZZ: not a trust or site "
                                                            "code in the ODS register")]
    newer_ods = tmp_path / "etr.csv"
    newer_ods.write_text(ODS.read_text() + '"RZZ","NEW TRUST","Y56","QKK","","","","","","SE1 8UG","20240101",'
                         '"","","","","","","","","","","1","","H","","",""\n')
    updated = Pipeline(replace(settings, ods_file=newer_ods), today=date(2024, 6, 1))
    discovery = updated.discover()
    assert discovery.accepted_new == [path.name] and discovery.rejected_known == []
    assert updated.warehouse.read(rejected_files).empty
    assert updated.warehouse.read(submission_files)["trust_code"].tolist() == ["RZZ"]
