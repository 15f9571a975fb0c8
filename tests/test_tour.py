"""make demo's tour: complete stages are reused, changed or forced ones rerun, a failed stage stops the tour
with its log's path, and the report is written at the end."""

import json
import os
import types

import pytest

from demo import tour


@pytest.fixture
def tiny_tour(tmp_path, monkeypatch):
    """Two stages whose 'make target' writes a complete folder, counted per stage; the report is stubbed,
    as its own tests run it on real stage output."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tour, "LOGS", str(tmp_path / "outputs" / "logs"))
    monkeypatch.setattr(tour, "STAGE_RECORDS", str(tmp_path / "outputs" / "demo_stages.json"))
    runs = []
    for name in ("first", "second"):
        (tmp_path / f"{name}.yaml").write_text("learning_rate: 1e-4\n")

    def fake_start_stage(stage, log_path, threads):
        runs.append(stage.name)
        with open(log_path, "w") as log:
            log.write("library noise\n")
        code = 3 if stage.name == "second" and os.environ.get("FAIL_SECOND") else 0
        if not code:
            assert set(stage.after) <= set(runs[:-1]) | completed(), f"{stage.name} started before its inputs"
            os.makedirs(stage.output_dir, exist_ok=True)
            with open(os.path.join(stage.output_dir, "all_results.json"), "w") as handle:
                json.dump({"eval_accuracy": 0.9}, handle)
        return types.SimpleNamespace(poll=lambda: code)

    def completed():
        return {name for name in ("first", "second") if os.path.isfile(f"outputs/{name}/all_results.json")}

    monkeypatch.setattr(tour, "start_stage", fake_start_stage)
    written = []
    monkeypatch.setattr(
        "demo.report.write_report",
        lambda stages, records, outputs: written.append(records) or tour_report(outputs),
    )
    stages = [
        tour.Stage(
            name, f"{name} stage", f"outputs/{name}", (f"{name}.yaml",), lambda r: f"acc {r['eval_accuracy']}", after
        )
        for name, after in (("first", ()), ("second", ("first",)))
    ]
    return stages, runs, written


def tour_report(outputs):
    from demo.report import Report

    return Report(path=os.path.join(outputs, "REPORT.md"), headline_table="| table |")


def test_a_rerun_reuses_complete_stages_and_reruns_a_changed_or_forced_one(tiny_tour, tmp_path, capsys):
    stages, runs, written = tiny_tour
    assert tour.tour(stages) == 0
    assert runs == ["first", "second"]
    first_output = capsys.readouterr().out
    assert "[1/2] first: first stage ... " in first_output and "acc 0.9" in first_output
    records = json.loads((tmp_path / "outputs" / "demo_stages.json").read_text())
    assert set(records) == {"first", "second"} and records["first"]["seconds"] >= 0

    assert tour.tour(stages) == 0
    assert runs == ["first", "second"], "a rerun with nothing changed ran a stage again"
    assert "reused" in capsys.readouterr().out
    assert len(written) == 2, "the report is rewritten on every tour"

    (tmp_path / "second.yaml").write_text("learning_rate: 2e-4\n")
    assert tour.tour(stages) == 0
    assert runs == ["first", "second", "second"], "a stage whose config changed was reused"

    assert tour.tour(stages, force=True) == 0
    assert runs[3:] == ["first", "second"]


def test_a_failed_stage_stops_the_tour_with_its_log_and_a_rerun_resumes_there(tiny_tour, tmp_path, capsys, monkeypatch):
    stages, runs, written = tiny_tour
    monkeypatch.setenv("FAIL_SECOND", "1")
    assert tour.tour(stages) == 3
    out = capsys.readouterr().out
    assert "FAILED" in out and os.path.join("outputs", "logs", "second.log") in out
    assert "library noise" not in out, "a stage's own output reached the terminal"
    assert not written, "a report was written for a tour that did not finish"

    monkeypatch.delenv("FAIL_SECOND")
    assert tour.tour(stages) == 0
    assert runs == ["first", "second", "second"], "the rerun did not resume at the stage that failed"


def test_transfer_headline_says_when_runs_failed_and_is_quiet_when_none_did():
    stage = next(stage for stage in tour.STAGES if stage.name == "transfer_study_demo")
    results = {"general_minus_random_at_400_points": 0.0, "failed_runs": 1}
    assert stage.headline(results).endswith("(1 of the runs ended predicting one class)")
    assert "ended predicting one class" not in stage.headline({**results, "failed_runs": 0})
