"""``podium eval offline``: RouterBench-format files in, the exact report and a plot out."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from podium.cli import main
from podium.eval.data import DataError, read_csv, read_many
from podium.eval.metrics import Point, aiq, cost_to_reach, frontier, value_at
from podium.eval.offline import RouterSpec, evaluate
from podium.routing.learned import TrainOptions
from tests.learned_helpers import write_csv

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("PODIUM_SHARED_DATA", ROOT.parent / "shared" / "data"))


def test_the_frontier_is_the_rising_upper_hull() -> None:
    points = [Point(0.5, 1.0), Point(0.6, 2.0), Point(0.9, 4.0), Point(0.55, 3.0), Point(0.7, 5.0)]
    hull = frontier(points)
    assert hull == [(1.0, 0.5), (4.0, 0.9)]  # (2, 0.6) lies under the chord; the rest are worse
    assert value_at(hull, 0.5) == 0.0  # nothing is reachable below the cheapest point
    assert value_at(hull, 2.5) == pytest.approx(0.7)
    assert value_at(hull, 10.0) == 0.9
    assert cost_to_reach(hull, 0.7) == pytest.approx(2.5)
    assert cost_to_reach(hull, 0.95) is None
    # area over [1, 5]: the ramp from 1 to 4 (mean 0.7 x 3) plus the flat 0.9 x 1, over 4
    assert aiq(hull, 1.0, 5.0) == pytest.approx((0.7 * 3 + 0.9) / 4)


def test_the_report_has_exactly_the_documented_shape(tmp_path: Path) -> None:
    train = read_csv(write_csv(tmp_path / "train.csv", rows=200, seed=1, list_prompts=True))
    test = read_csv(write_csv(tmp_path / "test.csv", rows=80, seed=2))
    report = evaluate(train, test, routers=[RouterSpec("learned", TrainOptions(steps=120))])
    assert set(report) == {"n", "single", "best_single", "oracle", "routers"}
    assert report["n"] == 80
    assert set(report["single"]) == {"cheap", "strong", "middling"}
    assert set(report["best_single"]) == {"model", "quality", "cost"}
    assert report["best_single"]["model"] == "strong"
    assert report["oracle"]["quality"] >= report["best_single"]["quality"]
    assert set(report["routers"]) == {"random", "learned"}
    learned = report["routers"]["learned"]
    assert set(learned) == {"curve", "aiq", "quality_at_cost_fraction", "cost_to_match_best"}
    assert set(learned["quality_at_cost_fraction"]) == {"0.1", "0.25", "0.5"}
    assert all(set(p) == {"quality", "cost", "param"} for p in learned["curve"])
    # the learned router sends easy prompts to the cheap model: far better than random
    assert learned["aiq"] > report["routers"]["random"]["aiq"]
    assert learned["quality_at_cost_fraction"]["0.25"] > report["single"]["cheap"]["quality"]
    json.dumps(report)  # plain JSON all the way down


def test_the_command_writes_json_and_a_plot(tmp_path: Path) -> None:
    train = write_csv(tmp_path / "train.csv", rows=160, seed=3)
    test = write_csv(tmp_path / "test.csv", rows=60, seed=4)
    out, plot = tmp_path / "out" / "report.json", tmp_path / "out" / "plot.png"
    result = CliRunner().invoke(
        main,
        [
            "eval",
            "offline",
            "--train",
            str(train),
            "--test",
            str(test),
            "--json",
            str(out),
            "--plot",
            str(plot),
            "--router",
            "learned",
            "--by-category",
            str(tmp_path / "cat.json"),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert set(report["routers"]) == {"random", "learned"}
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    categories = json.loads((tmp_path / "cat.json").read_text())
    assert set(categories) == {"easy", "hard"}
    assert "AIQ" in result.output


def test_bad_files_get_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("sample_id,prompt,eval_name,m1\n1,hi,x,1\n")
    with pytest.raises(DataError, match="no cost column for m1"):
        read_csv(bad)
    bad.write_text("sample_id,prompt,eval_name,m1,m1|total_cost\n1,hi,x,yes,0.1\n")
    with pytest.raises(DataError, match="not a number"):
        read_csv(bad)
    result = CliRunner().invoke(main, ["eval", "offline", "--train", str(bad), "--test", str(bad)])
    assert result.exit_code != 0 and "not a number" in result.output
    assert "Traceback" not in result.output


@pytest.mark.skipif(not (SHARED / "routing").is_dir(), reason="shared routing data not present")
@pytest.mark.parametrize("name", ["routerbench", "mmlu_pro", "routellm_gsm8k"])
def test_the_shared_data_files_parse(name: str) -> None:
    data = read_many([SHARED / "routing" / name / "dev.csv"])
    assert len(data) > 100 and len(data.models) >= 2
    assert data.quality.shape == data.cost.shape == (len(data), len(data.models))
    assert (data.quality[~(data.quality != data.quality)] >= 0).all()
    assert not any(p.startswith("['") for p in data.prompts)  # turn lists were unpacked
