"""Every `modelarc` command pays for what the CLI imports up front; heavy libraries load only where used."""

import subprocess
import sys

HEAVY = ("jsonschema", "torch", "transformers", "fastapi", "uvicorn", "cyclonedx")


def test_the_cli_does_not_import_heavy_libraries_up_front() -> None:
    probe = (
        "import sys, modelarc.cli.main; "
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "", f"imported at CLI start-up: {loaded}"
