"""Static checks of the container image definition: it runs as a non-root user."""

from __future__ import annotations

import re
from pathlib import Path

DOCKERFILE = Path(__file__).resolve().parents[2] / "Dockerfile"


def final_stage() -> list[str]:
    lines: list[str] = []
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if re.match(r"(?i)^FROM\s", line):
            lines = []
        lines.append(line)
    return lines


def test_runtime_stage_sets_a_non_root_user() -> None:
    stage = final_stage()
    users = [line.split(None, 1)[1].strip() for line in stage if re.match(r"(?i)^USER\s", line)]
    assert users, "the runtime stage never sets USER: the gateway would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), user
    # The user is created in the image with a fixed non-zero uid.
    created = "\n".join(stage)
    assert re.search(rf"useradd[^\n]*--uid\s+(?!0\b)\d+[^\n]*\b{re.escape(user)}\b", created)


def test_user_is_set_before_the_entrypoint() -> None:
    stage = final_stage()
    user_at = max(i for i, line in enumerate(stage) if re.match(r"(?i)^USER\s", line))
    entry_at = max(i for i, line in enumerate(stage)
                   if re.match(r"(?i)^(ENTRYPOINT|CMD)\s", line))
    assert user_at < entry_at
    # Nothing after USER switches back to root.
    assert not any(re.match(r"(?i)^USER\s+(root|0)\b", line) for line in stage[user_at:])


def test_config_is_not_writable_by_the_service_user() -> None:
    # Config (and keyword/quiet-hour tables) are copied root-owned: no --chown to smsgw.
    stage = final_stage()
    copies = [line for line in stage if re.match(r"(?i)^COPY\s", line) and "config" in line]
    assert copies and not any("--chown" in line for line in copies)
