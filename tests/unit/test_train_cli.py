"""``recsys train --exit-on-kept``: the "champion changed" signal the retrain DAG branches on."""

from __future__ import annotations

import pytest

from spark_jobs.cli.main import build_parser
from spark_jobs.cli.train import exit_code
from spark_jobs.common.errors import UsageError
from spark_jobs.registry.gate import GateDecision

pytestmark = pytest.mark.unit

PROMOTED = GateDecision(True, ("no champion to compare with",))
KEPT = GateDecision(False, ("ndcg 0.1000 < champion 0.2000 - 2%",))


@pytest.mark.parametrize(
    ("decision", "exit_on_kept", "expected"),
    [(PROMOTED, 99, 0), (KEPT, 99, 99), (KEPT, None, 0), (PROMOTED, None, 0)],
)
def test_exit_code_says_whether_the_champion_changed(decision, exit_on_kept, expected) -> None:
    assert exit_code(decision, exit_on_kept) == expected


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--exit-on-kept", "99"],  # a loop never exits: nothing to signal
        ["train", "--once", "--no-register", "--exit-on-kept", "99"],  # no gate without a registry
        ["train", "--once", "--exit-on-kept", "300"],
    ],
)
def test_exit_on_kept_is_refused_where_it_cannot_mean_anything(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    with pytest.raises(UsageError, match="--exit-on-kept"):
        args.handler(args)
