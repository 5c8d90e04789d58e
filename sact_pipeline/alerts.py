"""Alerts for failed runs: always to the log, and to a Teams/Slack-style webhook when one is set.

The message names the run, the job, the trust-month or month, and the failing step with its error (for a
gate, the failed expectations). It carries no row data: step errors are built from counts and names.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from dataclasses import dataclass

logger = logging.getLogger("sact_pipeline.alerts")
WEBHOOK_VARIABLE = "SACT_ALERT_WEBHOOK_URL"


@dataclass(frozen=True)
class RunFailureAlert:
    run_id: str
    job_name: str
    partition: str
    failures: tuple[str, ...]  # "step: error" lines

    def text(self) -> str:
        where = f" for {self.partition}" if self.partition else ""
        lines = [f"sact-pipeline: run {self.run_id} of {self.job_name}{where} FAILED"]
        lines += [f"- {failure}" for failure in self.failures or ("no step failure recorded",)]
        return "\n".join(lines)


def run_scope(tags: dict[str, str]) -> str:
    """What a run covered, from its tags: its partition, or the month and trusts of a run over a month's
    trusts (sensor, CLI), or the partition range of a single-run backfill from the UI."""
    from sact_pipeline.run_tags import (
        ASSET_PARTITION_RANGE_END_TAG,
        ASSET_PARTITION_RANGE_START_TAG,
        MONTH_TAG,
        ONLY_TRUSTS_TAG,
        PARTITION_TAG,
    )

    if tags.get(PARTITION_TAG):
        return tags[PARTITION_TAG]
    if tags.get(MONTH_TAG) and tags.get(ONLY_TRUSTS_TAG):
        return f"{tags[MONTH_TAG]} trusts {tags[ONLY_TRUSTS_TAG].replace(',', ', ')}"
    start, end = tags.get(ASSET_PARTITION_RANGE_START_TAG), tags.get(ASSET_PARTITION_RANGE_END_TAG)
    return f"{start} to {end}" if start and end else tags.get(MONTH_TAG, "")


def error_line(message: str) -> str:
    """The first line of a step error without the exception's class path (a Failure's is noise)."""
    line = message.strip().splitlines()[0] if message.strip() else "no message"
    head, _, rest = line.partition(": ")
    return rest if rest and "." in head and " " not in head else line


def send_webhook(url: str, alert: RunFailureAlert, timeout: float = 10.0) -> None:
    """POST {"text": ...}: the payload both Slack and Teams incoming webhooks accept."""
    request = urllib.request.Request(url, data=json.dumps({"text": alert.text()}).encode("utf-8"),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - configured by the operator
        response.read()


def raise_alert(alert: RunFailureAlert, webhook_url: str | None) -> bool:
    """Log the alert, then deliver it; a webhook that fails is logged too, never raised (the run failed
    already; the alert must not hide that). Returns whether the webhook took it."""
    logger.error(alert.text())
    if not webhook_url:
        return False
    try:
        send_webhook(webhook_url, alert)
    except Exception as error:  # network, HTTP status, bad URL
        logger.error("could not deliver the alert to %s: %s", WEBHOOK_VARIABLE, error)
        return False
    return True
