"""``smsgw run`` itself refuses an invalid or unsafe config: exit 2, the field path, and
nothing started (no listener, no store directory).

tests/gateway/test_config.py covers the validation table through ``load_config_bytes``
and test_cli.py the exit code with a stubbed app; this runs the real console script as an
operator would, on the cases that matter for security.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def smsgw() -> list[str]:
    script = Path(sys.executable).parent / "smsgw"
    return [str(script)] if script.exists() else [sys.executable, "-m", "gateway.cli"]


CASES = [
    # An unauthenticated API beyond loopback.
    ("exposed_api_without_tokens", '[api]\nlisten = "0.0.0.0:0"\n', "api.tokens"),
    # A token variable that is not set: refused, not "no auth".
    ("token_env_unset", '[api]\nlisten = "0.0.0.0:0"\ntoken_env = "SMSGW_SEC_UNSET"\n',
     "api.token_env"),
    ("empty_token", '[api]\ntokens = [""]\n', "api.tokens[0]"),
    ("password_env_unset", '[[carriers]]\nname = "c"\nhost = "h"\nsystem_id = "s"\n'
     'password_env = "SMSGW_SEC_UNSET"\n', "carriers[0].password_env"),
    ("ca_file_missing", '[[carriers]]\nname = "c"\nhost = "h"\nsystem_id = "s"\n'
     'tls = true\ntls_ca_file = "nope.pem"\n', "carriers[0].tls_ca_file"),
    ("typo", '[api]\nlisten = "127.0.0.1:0"\ntoken = ["x"]\n', "api.token"),
]


@pytest.mark.parametrize(("name", "toml", "path"), CASES, ids=[c[0] for c in CASES])
def test_smsgw_run_refuses_with_the_field_path(tmp_path: Path, name: str, toml: str,
                                               path: str) -> None:
    store = tmp_path / "data"
    config = tmp_path / "gw.toml"
    config.write_text(f'[store]\npath = "{store}"\n[metrics]\nlisten = "127.0.0.1:0"\n'
                      + toml)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMSGW_")}
    proc = subprocess.run([*smsgw(), "run", "-c", str(config)], env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert f"{path}:" in proc.stderr, proc.stderr
    assert not store.exists()  # refused before anything was opened
