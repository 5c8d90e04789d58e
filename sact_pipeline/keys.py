"""Where the pseudonymisation key comes from: SACT_PSEUDONYMISATION_KEY, a key file, or an explicit demo key."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from sact_pipeline.domain.pseudonymise import PseudonymisationKeyError, Pseudonymiser

DEMO_KEY_NAME = "demo-pseudonymisation.key"


def load_pseudonymiser(home: Path, env: dict[str, str] | None = None) -> Pseudonymiser:
    """Build the pseudonymiser, refusing to run without a proper key unless demo mode was asked for.

    Demo mode (SACT_DEMO_MODE=1, set by `make run` and `make ui`) creates a random local key under
    SACT_HOME once and reuses it, so pseudonyms stay stable between demo runs.
    """
    env = os.environ if env is None else env
    if env.get("SACT_PSEUDONYMISATION_KEY"):
        return Pseudonymiser(env["SACT_PSEUDONYMISATION_KEY"].encode("utf-8"))
    key_file = env.get("SACT_PSEUDONYMISATION_KEY_FILE")
    if not key_file and env.get("SACT_DEMO_MODE") == "1":
        key_path = Path(home) / DEMO_KEY_NAME
        if not key_path.exists():
            key_path.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never world-readable
            with os.fdopen(descriptor, "w", encoding="ascii") as stream:
                stream.write(secrets.token_hex(32) + "\n")
        key_file = str(key_path)
    if not key_file:
        raise PseudonymisationKeyError(
            "no pseudonymisation key: set SACT_PSEUDONYMISATION_KEY (at least 32 bytes) or "
            "SACT_PSEUDONYMISATION_KEY_FILE, or SACT_DEMO_MODE=1 for a local demo key"
        )
    try:
        key = Path(key_file).read_bytes().strip()
    except OSError as error:
        raise PseudonymisationKeyError(f"cannot read the pseudonymisation key file {key_file}: {error.strerror}") from None
    return Pseudonymiser(key)


def is_demo_key(home: Path, env: dict[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    return not env.get("SACT_PSEUDONYMISATION_KEY") and not env.get("SACT_PSEUDONYMISATION_KEY_FILE") \
        and env.get("SACT_DEMO_MODE") == "1"
