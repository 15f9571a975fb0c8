"""What both multi-process test files check of a recipe run as two CPU processes: the same files as one
process, every write from the main process and each file written once, one commit on the Hub."""

import os
import shutil

from tests.conftest import HUB_TOKEN, audit_events, audited, hub_env, launch, relative_files, results_of


def one_and_two_processes(script: str, args: list[str], tmp_path, hub, repo: str) -> tuple[dict, dict, str]:
    """Run `script` once as one process, then as two over a copy of that finished run with
    --overwrite_output_dir --push_to_hub. Returns both results and the two-process folder."""
    one = str(tmp_path / "one")
    single = launch(script, *args, "--output_dir", one)
    results_one = results_of(single, one)

    two = str(tmp_path / "two")
    shutil.copytree(one, two)  # an older finished run the two processes must replace, not half-delete
    log = str(tmp_path / "writes.jsonl")
    env = audited(hub_env(hub, str(tmp_path / "hf")), str(tmp_path), log)
    flags = ["--output_dir", two, "--overwrite_output_dir", "--push_to_hub", "--hub_model_id", repo]
    double = launch(script, *args, *flags, processes=2, env=env)
    results_two = results_of(double, two)
    assert HUB_TOKEN not in double.stdout + double.stderr

    assert results_two["global_batch_size"] == 2 * results_one["global_batch_size"]
    assert relative_files(two) == relative_files(one)
    assert not os.path.exists(two + ".staging") and not os.path.exists(two + ".replaced")
    events = [event for event in audit_events(log) if event["path"].startswith(two)]
    assert events, "the write audit saw nothing"
    assert {event["rank"] for event in events} == {"0"}, [e for e in events if e["rank"] != "0"][:5]
    written = [event["path"] for event in events if event["kind"] == "write"]
    twice = sorted({path for path in written if written.count(path) > 1})
    assert not twice, twice
    # Printed once: the result line comes from the main process only.
    assert double.stdout.count(f"Saved to {two}") == 1
    repo_state = hub.repos[repo]
    assert len(repo_state.commits) == 1, repo_state.commits
    assert set(repo_state.files) >= {"README.md", "all_results.json"}
    return results_one, results_two, two
