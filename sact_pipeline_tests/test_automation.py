"""The landing-zone sensor and the monthly schedule, evaluated on a real instance; the requested runs are
executed as the daemon would, so the test follows a late resubmission from file to publication."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from dagster import (
    AssetKey,
    DagsterRunStatus,
    RunsFilter,
    build_schedule_context,
    partition_loading_context,
    build_sensor_context,
    instance_for_test,
)

from sact_pipeline.definitions import SactPipelineResource, build_definitions
from sact_pipeline.layers import Pipeline
from sact_pipeline.run_tags import (
    ASSET_PARTITION_RANGE_START_TAG,
    ONLY_TRUSTS_TAG,
    PARTITION_TAG,
    REFRESH_JOB,
    REFRESH_RUN_TAG,
)
from sact_pipeline.tables import trust_month_summary
from sact_pipeline_tests.builders import patients, write_submission


class Daemon:
    """Ticks the sensor and runs what it asks for, honouring run keys as Dagster does; reports the layer runs
    each refresh run made, in order, as (job, partition or "YYYY-MM-01|trusts")."""

    def __init__(self, settings, instance):
        self.defs = build_definitions(settings)
        self.sensor = self.defs.resolve_sensor_def("landing_zone_sensor")
        self.resource = SactPipelineResource.from_settings(settings)
        self.instance = instance
        self.cursor = None
        self.used_keys: set[str] = set()
        self.failed: list[tuple[str, str | None]] = []
        self.skip_reason: str | None = None
        self.refresh_runs: list = []

    def tick(self) -> list[tuple[str, str | None]]:
        with build_sensor_context(instance=self.instance, cursor=self.cursor, resources={"sact": self.resource},
                                  definitions=self.defs) as context:  # the resource is closed after the tick
            with partition_loading_context(dynamic_partitions_store=self.instance):  # as the daemon provides
                result = self.sensor.evaluate_tick(context)  # as the daemon does: targets and requests checked
        self.cursor = result.cursor or self.cursor
        self.skip_reason = result.skip_message
        launched = []
        for request in result.run_requests or []:
            if request.run_key in self.used_keys:
                continue
            self.used_keys.add(request.run_key)
            assert request.job_name == REFRESH_JOB, request  # the sensor asks for refresh runs only
            job = self.defs.resolve_job_def(request.job_name)
            refresh = job.execute_in_process(instance=self.instance, raise_on_error=False,
                                             run_config=request.run_config, tags=request.tags)
            self.refresh_runs.append(refresh)
            made = self.instance.get_runs(RunsFilter(tags={REFRESH_RUN_TAG: refresh.run_id}))[::-1]  # oldest first
            assert made and all(run.tags["sact/trigger"] == "landing-zone-sensor" for run in made)
            for run in made:
                launched.append((run.job_name, self.label(run.tags)))
                if run.status != DagsterRunStatus.SUCCESS:
                    self.failed.append(launched[-1])
            assert refresh.success == (not any(run.status != DagsterRunStatus.SUCCESS for run in made)), (
                "a refresh run fails exactly when a run it made failed")
        return launched

    @staticmethod
    def label(tags) -> str | None:
        """The partition, or for a run over a month's trusts "YYYY-MM-01|T1,T2" (the trusts it builds)."""
        if PARTITION_TAG in tags:
            return tags[PARTITION_TAG]
        if ONLY_TRUSTS_TAG in tags:
            month = tags[ASSET_PARTITION_RANGE_START_TAG].split("|")[0]
            return f"{month}|{','.join(sorted(tags[ONLY_TRUSTS_TAG].split(',')))}"
        return None

    def settle(self, ticks: int = 12) -> list[tuple[str, str | None]]:
        """Tick until two quiet ticks in a row; everything launched, in order."""
        launched, quiet = [], 0
        for _ in range(ticks):
            step = self.tick()
            launched += step
            quiet = 0 if step else quiet + 1
            if quiet == 2:
                return launched
        pytest.fail(f"the sensor did not settle: {launched}")


@pytest.fixture(autouse=True)
def two_ticks_only(monkeypatch):
    """A file is complete once unchanged for SACT_FILE_QUIET_SECONDS, or on two ticks: these tests tick at
    once after writing, so on a busy machine a file could pass the first rule; they test the second."""
    monkeypatch.setenv("SACT_FILE_QUIET_SECONDS", "3600")


def test_the_sensor_picks_up_submissions_and_a_late_resubmission_reruns_exactly_what_it_affects(settings):
    landing = settings.landing_dir
    for month, stamp in (("202401", "20240210"), ("202402", "20240310"), ("202403", "20240410")):
        write_submission(landing / f"SACT_RR8_{month}_{stamp}093000.csv", patients("A", 20))
        write_submission(landing / f"SACT_RBV_{month}_{stamp}093000.csv", patients("B", 30))
    (landing / "SACT_RAJ_202403_20240410093000.csv.part").write_text("still uploading")
    with instance_for_test() as instance:
        daemon = Daemon(settings, instance)
        assert daemon.tick() == []  # first look: nothing is known to be complete yet
        launched = daemon.settle()
        assert launched[0] == ("discover_submissions", None)
        trust_months = sorted(p for job, p in launched if job == "trust_month_refresh")
        assert trust_months == [f"2024-0{m}-01|RBV,RR8" for m in (1, 2, 3)]  # one run per month
        assert instance.get_materialized_partitions(AssetKey("clean_activity")) == {
            f"2024-0{m}-01|{t}" for m in (1, 2, 3) for t in ("RBV", "RR8")}
        assert daemon.failed == []
        assert [p for job, p in launched if job == "month_publication"] == ["2024-01-01", "2024-02-01",
                                                                              "2024-03-01"]
        pipeline = Pipeline(settings)
        published = {m: pipeline.output_paths(m)[0].read_bytes() for m in ("2024-01", "2024-02", "2024-03")}

        # A late correction for January: RR8 had 12 more patients.
        write_submission(landing / "late" / "SACT_RR8_202401_20240520093000.csv", patients("A", 32))
        launched = daemon.settle()
        assert launched == [("discover_submissions", None), ("trust_month_refresh", "2024-01-01|RR8"),
                            ("month_publication", "2024-01-01"), ("month_publication", "2024-02-01")]
        january = pd.read_csv(pipeline.output_paths("2024-01")[0], dtype=str).set_index("org_code")
        february = pd.read_csv(pipeline.output_paths("2024-02")[0], dtype=str).set_index("org_code")
        assert january.loc["RR8", "patients"] == "30"
        assert february.loc["RR8", "patients_change"] == "-10"  # 20 now against January's corrected 32
        assert pipeline.output_paths("2024-03")[0].read_bytes() == published["2024-03"]
        assert daemon.settle() == []  # nothing more to do
        assert daemon.failed == []
        assert daemon.skip_reason == "every layer is up to date"


def test_a_failing_trust_file_is_held_and_its_month_is_published_with_its_last_good_figures(settings):
    landing = settings.landing_dir
    for month, stamp in (("202401", "20240210"), ("202402", "20240310")):
        write_submission(landing / f"SACT_RR8_{month}_{stamp}093000.csv", patients("A", 20))
        write_submission(landing / f"SACT_RBV_{month}_{stamp}093000.csv", patients("B", 30))
    with instance_for_test() as instance:
        daemon = Daemon(settings, instance)
        daemon.settle()
        pipeline = Pipeline(settings)
        published = {m: pipeline.output_paths(m)[0].read_bytes() for m in ("2024-01", "2024-02")}

        # A February resubmission whose rows almost all lack a regimen: quarantine share over the limit.
        bad = [{**row, "regimen": ""} for row in patients("A", 18)] + patients("C", 2)
        write_submission(landing / "SACT_RR8_202402_20240315093000.csv", bad)
        launched = daemon.settle()
        assert launched == [("discover_submissions", None), ("trust_month_refresh", "2024-02-01|RR8"),
                            ("month_publication", "2024-02-01")]  # never held back by one trust's file
        assert daemon.failed == [("trust_month_refresh", "2024-02-01|RR8")]
        assert "2024-02 RR8" in daemon.skip_reason  # held: not retried
        february = pd.read_csv(pipeline.output_paths("2024-02")[0], dtype=str).set_index("org_code")
        assert february.loc["RR8", ["patients", "data_status"]].tolist() == ["20", "held"]  # its last good
        assert february.loc["RBV", ["patients", "data_status"]].tolist() == ["30", "ok"]
        assert pipeline.output_paths("2024-01")[0].read_bytes() == published["2024-01"]

        write_submission(landing / "SACT_RR8_202402_20240316093000.csv", patients("A", 25))  # corrected
        launched = daemon.settle()
        assert launched == [("discover_submissions", None), ("trust_month_refresh", "2024-02-01|RR8"),
                            ("month_publication", "2024-02-01")]
        february = pd.read_csv(pipeline.output_paths("2024-02")[0], dtype=str).set_index("org_code")
        assert february.loc["RR8", ["patients", "data_status"]].tolist() == ["25", "ok"]
        assert pipeline.output_paths("2024-01")[0].read_bytes() == published["2024-01"]


def test_an_optout_file_rederives_every_trust_month_holding_the_patient_and_republishes_their_months(settings):
    landing = settings.landing_dir
    opted = [{"nhs_number": "943 476 5919", "local_patient_identifier": ""}] * 2  # two administrations
    second = [{"nhs_number": "4010232137", "local_patient_identifier": ""}]  # opts out later, February only
    for month, stamp in (("202401", "20240210"), ("202402", "20240310"), ("202403", "20240410")):
        extra = second if month == "202402" else []
        write_submission(landing / f"SACT_RR8_{month}_{stamp}093000.csv", patients("A", 22 - len(extra)) + opted + extra)
    with instance_for_test() as instance:
        daemon = Daemon(settings, instance)
        daemon.settle()  # RR8 alone, each month its own run; then RBV, in runs of their own
        for month, stamp in (("202401", "20240211"), ("202402", "20240311"), ("202403", "20240411")):
            write_submission(landing / f"SACT_RBV_{month}_{stamp}093000.csv", patients("B", 30))
        write_submission(landing / "SACT_RBV_202404_20240510093000.csv", patients("B", 30))
        daemon.settle()
        pipeline = Pipeline(settings)
        months = ("2024-01", "2024-02", "2024-03", "2024-04")
        before = {m: pipeline.output_paths(m)[0].read_bytes() for m in months}
        assert pd.read_csv(pipeline.output_paths("2024-01")[0], dtype=str).set_index("org_code").loc["RR8", "patients"] == "25"

        settings.optout_dir.mkdir(parents=True)
        (settings.optout_dir / "optouts_20240520.csv").write_text("NHS_Number\n9434765919\n")
        launched = daemon.settle()
        assert launched == [("discover_submissions", None)] + [
            ("trust_month_refresh", f"2024-0{m}-01|RR8") for m in (1, 2, 3)] + [
            ("month_publication", f"2024-0{m}-01") for m in (1, 2, 3, 4)]  # April's changes read March
        assert daemon.failed == []
        for month in months[:3]:
            table = pd.read_csv(pipeline.output_paths(month)[0], dtype=str).set_index("org_code")
            assert table.loc["RR8", "patients"] == "20"  # 22 patients, rounded
        # April (RR8 did not submit) is re-published too: its ENGLAND change reads March's new total.
        april, march = (pd.read_csv(pipeline.output_paths(m)[0], dtype=str).set_index("org_code").loc["ENGLAND"]
                        for m in ("2024-04", "2024-03"))
        assert int(april["patients_change"]) == int(april["patients"]) - int(march["patients"])
        assert pipeline.output_paths("2024-04")[0].read_bytes() != before["2024-04"]

        # A second opt-out for a trust-month already re-derived once with the same files: a new run.
        (settings.optout_dir / "optouts_20240601.csv").write_text("NHS_Number\n401 023 2137\n")
        launched = daemon.settle()
        assert launched == [("discover_submissions", None), ("trust_month_refresh", "2024-02-01|RR8"),
                            ("month_publication", "2024-02-01"), ("month_publication", "2024-03-01")]
        summary = pipeline.warehouse.read(trust_month_summary).set_index(["reporting_month", "org_code"])
        assert summary.loc[("2024-02", "RR8"), "patients"] == 21 and summary.loc[("2024-01", "RR8"), "patients"] == 22
        assert daemon.settle() == [] and daemon.skip_reason == "every layer is up to date"


def test_a_file_still_growing_waits(settings):
    path = write_submission(settings.landing_dir / "SACT_RR8_202401_20240210093000.csv", patients("A", 5))
    with instance_for_test() as instance:
        daemon = Daemon(settings, instance)
        assert daemon.tick() == []
        with path.open("a") as stream:  # the upload goes on between two ticks
            stream.write(path.read_text().splitlines()[1] + "\n")
        assert daemon.tick() == []
        assert daemon.tick()[:2] == [("discover_submissions", None), ("trust_month_refresh", "2024-01-01|RR8")]


def test_a_file_left_alone_for_the_quiet_period_is_taken_at_the_first_look(settings, monkeypatch):
    """A late file need not wait for a second tick (30 s as shipped) once it has not been written for
    SACT_FILE_QUIET_SECONDS; a file with a fresh time alone waits for a second look. (Discovery then
    registers whatever lies in the landing zone: the file just written goes with the quiet one.)"""
    import os

    monkeypatch.setenv("SACT_FILE_QUIET_SECONDS", "10")
    with instance_for_test() as instance:
        daemon = Daemon(settings, instance)
        fresh = write_submission(settings.landing_dir / "SACT_RBV_202401_20240210093000.csv", patients("B", 5))
        assert daemon.tick() == [] and daemon.skip_reason == "every layer is up to date"  # fresh: wait
        os.utime(fresh, (fresh.stat().st_atime, fresh.stat().st_mtime + 1))  # still being written
        quiet = write_submission(settings.landing_dir / "SACT_RR8_202401_20240210093000.csv", patients("A", 5))
        os.utime(quiet, (quiet.stat().st_atime, quiet.stat().st_mtime - 60))  # last written a minute ago
        assert daemon.tick()[:2] == [("discover_submissions", None), ("trust_month_refresh", "2024-01-01|RBV,RR8")]


def test_a_touched_file_is_not_rediscovered_but_changed_bytes_are(settings):
    import os

    path = write_submission(settings.landing_dir / "SACT_RR8_202401_20240210093000.csv", patients("A", 5))
    with instance_for_test() as instance:
        daemon = Daemon(settings, instance)
        daemon.settle()
        os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))  # copied again, same bytes
        assert daemon.settle() == []
        data = path.read_bytes()
        path.write_bytes(data.replace(b"A0004", b"A0009"))  # same size, other content: a real correction
        assert daemon.settle()[0] == ("discover_submissions", None)


def test_the_monthly_schedule_requests_a_refresh_in_london_time(settings):
    schedule = build_definitions(settings).resolve_schedule_def("monthly_refresh")
    assert schedule.execution_timezone == "Europe/London"
    with instance_for_test() as instance:
        tick = build_schedule_context(instance=instance,
                                      scheduled_execution_time=datetime(2024, 6, 1, 6, tzinfo=ZoneInfo("Europe/London")))
        requests = schedule.evaluate_tick(tick).run_requests
    assert len(requests) == 1 and requests[0].tags["sact/trigger"] == "monthly-schedule"
    assert requests[0].run_key == "monthly-2024-06-01" and requests[0].job_name in (None, REFRESH_JOB)


def test_new_files_wait_for_a_run_in_flight_and_are_refreshed_once_it_ends(settings):
    """Two runs never build the same layers at once: while a layer run launched from the Launchpad is on its
    way, new files wait (and are not forgotten); once it ends, one refresh run takes them all the way."""
    from dagster._core.test_utils import create_run_for_test

    from sact_pipeline.run_tags import MONTH_TAG

    for trust in ("RR8", "RBV"):
        write_submission(settings.landing_dir / f"SACT_{trust}_202401_20240210093000.csv", patients(trust, 5))
    with instance_for_test() as instance:
        daemon = Daemon(settings, instance)
        assert daemon.tick() == []
        running = create_run_for_test(instance, job_name="trust_month_refresh", status=DagsterRunStatus.STARTED,
                                      tags={MONTH_TAG: "2024-01"})
        assert daemon.tick() == []
        assert daemon.skip_reason == "new files wait for the runs in progress (trust_month_refresh)"
        instance.report_run_failed(running)  # it died without building anything
        assert daemon.tick() == [("discover_submissions", None), ("trust_month_refresh", "2024-01-01|RBV,RR8"),
                                 ("month_publication", "2024-01-01")]
        assert daemon.settle() == [] and daemon.skip_reason == "every layer is up to date"


def test_a_run_whose_process_was_killed_is_marked_failed_and_the_sensor_goes_on(settings):
    """Dagster's default run launcher cannot see that a run worker died: its run would stay "started" for
    ever and the sensor wait for it. The sensor marks it failed when its process is gone (SIGKILLed)."""
    import signal
    import socket
    import subprocess

    from dagster._core.test_utils import create_run_for_test

    from sact_pipeline.run_tags import PROCESS_TAG

    for trust in ("RR8", "RBV"):
        write_submission(settings.landing_dir / f"SACT_{trust}_202401_20240210093000.csv", patients(trust, 5))
    worker = subprocess.Popen(["sleep", "60"])
    try:
        with instance_for_test() as instance:
            daemon = Daemon(settings, instance)
            assert daemon.tick() == []
            running = create_run_for_test(instance, job_name=REFRESH_JOB, status=DagsterRunStatus.STARTED,
                                          tags={PROCESS_TAG: f"{socket.gethostname()}:{worker.pid}"})
            assert daemon.tick() == [] and daemon.skip_reason.startswith("new files wait")  # alive: waited for
            worker.send_signal(signal.SIGKILL)
            worker.wait()
            assert daemon.tick()[:2] == [("discover_submissions", None), ("trust_month_refresh", "2024-01-01|RBV,RR8")]
            assert instance.get_run_by_id(running.run_id).status == DagsterRunStatus.FAILURE
    finally:
        worker.kill()
        worker.wait()
