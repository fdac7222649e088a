"""The real-time recommendations notebook runs top to bottom on a tiny synthetic lakehouse: the
streaming scorer re-ranks the two users the new events touched, and a brand-new visitor's list
follows their first likes."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = [pytest.mark.notebook, pytest.mark.spark, pytest.mark.integration]

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "realtime_recommendations.ipynb"
PARAMS = """N_USERS = 150
N_ITEMS = 120
N_EVENTS = 6_000
SEED = 42
QUICK = True
N_LIKES = 8
N_NEW_LIKES = 3
END_MS = 1_793_534_400_000
OUT_DIR = None"""
TOP_N = 10


def _text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream")


def test_realtime_notebook_rescores_the_users_the_new_events_touched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    params = nb.cells[1]
    assert params.source.startswith("# Parameters")
    params.source = PARAMS
    monkeypatch.setenv("RECSYS_HOME", str(tmp_path / "home"))
    for var in ("RECSYS_CONFIG", "MLFLOW_TRACKING_URI", "RECSYS_KAFKA_BOOTSTRAP", "RECSYS_SPARK_MASTER"):
        monkeypatch.delenv(var, raising=False)
    try:
        NotebookClient(
            nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
        ).execute()
    finally:
        nbformat.write(nb, tmp_path / "executed.ipynb")  # to read the outputs when this fails

    outputs = "\n".join(_text(c) for c in nb.cells if c.cell_type == "code")
    assert f"lakehouse: {tmp_path / 'home' / '_notebooks' / 'realtime'}" in outputs
    assert "models: ['als:v1+ranker:v1']" in outputs
    assert "2 user(s) re-scored" in outputs
    result = json.loads(next(line for line in outputs.splitlines() if line.startswith("RESULT "))[7:])

    # The existing user: a full list before and after, re-ranked, nothing they liked served back.
    assert len(result["before"]) == len(result["after"]) == TOP_N
    assert result["before"] != result["after"]
    assert result["liked_recommended_back"] == 0
    for reasons in (result["reasons_before"], result["reasons_after"]):
        assert all(isinstance(r, str) and r for r in reasons)

    # The new visitor: no list before, then one built from their first likes: every row that is
    # explained by history names one of the items they liked, and some rows are.
    assert result["visitor_before"] == []
    assert len(result["visitor_after"]) == TOP_N
    assert result["visitor_liked_recommended_back"] == 0
    reasons = result["visitor_reasons_after"]
    assert all(isinstance(r, str) and r for r in reasons)
    because = [
        r.removeprefix("because you watched ") for r in reasons if r.startswith("because you watched ")
    ]
    assert because and set(because) <= set(result["visitor_liked_titles"])
    assert result["visitor_share_after"] > 0
