"""The model evaluation notebook runs top to bottom on a small slice of MovieLens 100k."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = [pytest.mark.notebook, pytest.mark.spark, pytest.mark.integration]

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "model_evaluation.ipynb"


def test_model_evaluation_notebook_executes(tmp_path: Path, movielens_dir: Path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    params = nb.cells[1]
    assert params.source.startswith("# Parameters")
    params.source = f"MAX_USERS = 80\nQUICK = True\nSEED = 42\nK = 10\nOUT_DIR = {str(tmp_path)!r}"
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    assert (tmp_path / "ndcg_at_k.png").is_file()
    table_cell = nb.cells[6]
    html = "".join(o.get("data", {}).get("text/plain", "") for o in table_cell.outputs)
    assert "hybrid" in html and "popularity" in html
