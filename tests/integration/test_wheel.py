"""The wheel a Databricks job installs carries the Great Expectations suites and finds them
without a source tree."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
UV = Path(sys.executable).parent / "uv"

PROBE = """
import json
from spark_jobs.quality.suites import expectations_dir, load_suites
print(json.dumps({"dir": str(expectations_dir()), "suites": [s.name for s in load_suites()]}))
"""


def test_an_installed_wheel_loads_every_suite_from_outside_the_repository(tmp_path: Path) -> None:
    def run(*argv: str, cwd: Path = tmp_path) -> str:
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=600, check=False)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    run(str(UV), "build", "--wheel", "-q", "-o", str(tmp_path / "dist"), str(ROOT))
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    venv = tmp_path / "venv"
    run(str(UV), "venv", "-q", "--python", sys.executable, str(venv))
    python = venv / "bin" / "python"
    # The suites need nothing but the package: no Spark, no GX to find and parse them.
    run(str(UV), "pip", "install", "-q", "--python", str(python), "--no-deps", str(wheel))
    outside = tmp_path / "job"
    outside.mkdir()

    found = json.loads(run(str(python), "-c", PROBE, cwd=outside).strip().splitlines()[-1])

    assert found["dir"] == str(venv / "share" / "recsys-lakehouse" / "expectations")
    assert sorted(found["suites"]) == sorted(p.stem for p in (ROOT / "expectations").glob("*.json"))
