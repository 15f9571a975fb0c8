"""`make demo`: every recipe on its demo config, in the order the seeds chain them, then one report.

Each stage is the recipe's own make target (the same command a user runs by hand); its output, library
logs and progress bars included, goes to outputs/logs/<stage>.log, and the terminal gets one status line per
stage: k of n, what it does, how long it took and its headline figure. A stage whose output folder is
complete (all_results.json, which a recipe writes last) is reused unless its config changed since the tour
ran it or --force is given, so a rerun costs seconds and an interrupted tour resumes at the stage it
stopped in (the recipes' staging folders leave every finished folder whole). The tour ends by writing
outputs/REPORT.md from the stages' all_results.json.

    python -m demo.tour [--force]        # make demo [FORCE=1]
"""

import argparse
import os
import subprocess
import sys
import time

from demo import report
from demo.stages import STAGES, Stage, elapsed, headline
from recipe_utils.core.hardware import machine_description
from recipe_utils.core.outputs import read_json, write_json

OUTPUTS = "outputs"
LOGS = os.path.join(OUTPUTS, "logs")
# Per stage: the fingerprint of the configs it ran with, its wall time and the machine, as the report states them.
STAGE_RECORDS = os.path.join(OUTPUTS, "demo_stages.json")


def read_records() -> dict:
    return read_json(STAGE_RECORDS) or {}


def is_reusable(stage: Stage, records: dict) -> bool:
    """Complete, and (when the tour ran it) run from the configs as they are now, after the stages it reads."""
    if stage.results() is None:
        return False
    record = records.get(stage.name)
    if record is None:
        return True
    upstream = [records.get(name, {}).get("finished_at", 0) for name in stage.after]
    return record.get("fingerprint") == stage.fingerprint() and all(
        finished <= record.get("finished_at", 0) for finished in upstream
    )


def start_stage(stage: Stage, log_path: str, threads: int | None) -> subprocess.Popen:
    """The stage's make target, its output (library logs, progress bars) into its log file."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads)) if threads else None
    with open(log_path, "w", encoding="utf-8") as log:
        return subprocess.Popen(
            ["make", "--no-print-directory", stage.name], stdout=log, stderr=subprocess.STDOUT, env=env
        )


def tour(stages=STAGES, force: bool = False, workers: int = 2) -> int:
    """Run the stages that are not reusable, `workers` at a time (each as soon as the stages it reads are
    done), then write the report. Returns the exit code: 0, or the first failed stage's."""
    os.makedirs(LOGS, exist_ok=True)
    records = read_records()
    machine = machine_description()
    lanes = f"{workers} at a time, one thread each" if workers > 1 else "one at a time"
    print(f"make demo: {len(stages)} stages on {machine}; {lanes}; logs in {LOGS}/", flush=True)
    start = time.time()
    numbers = {stage.name: number for number, stage in enumerate(stages, start=1)}
    done, failed, running = set(), None, {}

    def status(stage: Stage, text: str) -> None:
        print(f"[{numbers[stage.name]}/{len(stages)}] {stage.name}: {stage.summary} ... {text}", flush=True)

    for stage in stages:
        if not force and is_reusable(stage, records):
            status(stage, f"reused ({stage.output_dir} is complete): {headline(stage)}")
            done.add(stage.name)
    waiting = [stage for stage in stages if stage.name not in done]
    # Two stages at once overlap one's process start-up, tokenizing, baselines and generation with the other's
    # training; one thread each keeps them from fighting over the cores. A stage that starts with nothing
    # beside it and nothing else ready (the end of the chain, a rerun of one stage) gets every thread.
    threads = 1 if workers > 1 else None
    while waiting or running:
        ready = [stage for stage in waiting if set(stage.after) <= done]
        while failed is None and ready and len(running) < workers:
            stage = ready.pop(0)
            waiting.remove(stage)
            log_path = os.path.join(LOGS, f"{stage.name}.log")
            # The configs as the stage starts with them: an edit while it runs makes it stale, not current.
            fingerprint = stage.fingerprint()
            alone = not running and not ready and len(waiting) == 0
            stage_threads = None if alone else threads
            process = start_stage(stage, log_path, stage_threads)
            running[stage.name] = (stage, process, time.time(), log_path, fingerprint, stage_threads)
        if not running:
            break  # a failure left stages waiting on it
        time.sleep(0.5)
        for name, (stage, process, stage_start, log_path, fingerprint, stage_threads) in list(running.items()):
            code = process.poll()
            if code is None:
                continue
            del running[name]
            seconds = time.time() - stage_start
            if code != 0 or stage.results() is None:
                status(stage, f"FAILED after {elapsed(seconds)} (exit {code}); its log: {log_path}")
                failed = failed or code or 1
                continue
            done.add(name)
            records[name] = {
                "fingerprint": fingerprint,
                "seconds": round(seconds, 1),
                "threads": stage_threads or "all",
                "machine": machine,
                "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
                "started_at": stage_start,
                "finished_at": time.time(),
            }
            write_json(STAGE_RECORDS, records)
            status(stage, f"{elapsed(seconds)}: {headline(stage)}")
    if failed is not None:
        return failed
    written = report.write_report(stages, records, OUTPUTS)
    print(
        f"\nAll stages done in {elapsed(time.time() - start)}. The report: {written.path}\n\n{written.headline_table}"
    )
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--force", action="store_true", help="rerun every stage, even complete ones")
    parser.add_argument("--workers", type=int, default=2, help="stages run at once (one thread each when > 1)")
    args = parser.parse_args(argv)
    try:
        return tour(STAGES, force=args.force, workers=args.workers)
    except KeyboardInterrupt:  # the stages got the same Ctrl-C; their staging folders keep finished ones whole
        print("\ninterrupted: `make demo` again resumes at the stages that did not finish", flush=True)
        return 130


if __name__ == "__main__":
    sys.exit(main())
