"""Shared fixtures. Tests run offline on data and weights that registry packages ship."""

import json
import os
import subprocess
import sys

import pytest

# Shared checks in a helper module still show what differed when they fail.
pytest.register_assert_rewrite("tests.many_processes")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


# The longest files first: `--dist loadfile` hands files to the two workers in collection order, so they then
# finish together instead of one worker running a long file alone at the end.
LONGEST_FIRST = [
    "test_sft_variants.py",
    "test_sft_sentiment.py",
    "test_lora.py",
    "test_pretrain_mlm.py",
    "test_rlhf.py",
    "test_dpo.py",
    "test_llm_classifier.py",
]


def pytest_collection_modifyitems(items):
    def rank(item):
        name = os.path.basename(str(item.fspath))
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)


def run_script(
    script: str, *args: str, stdin: str | None = None, timeout: int = 900, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Run a recipe the way a user does, as a separate process from the repository root."""
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, script), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        input=stdin,
        timeout=timeout,
        env=env or {**os.environ, "PYTHONPATH": ROOT},
    )


def run_in_process(script: str, *args: str) -> subprocess.CompletedProcess:
    """Run a recipe's command line inside the test process: the same script, parser and main as
    `python recipes/X.py ...`, without the ~10 s a new interpreter spends importing torch and transformers.

    For runs whose outputs the tests then examine. What only a real process shows (its exit code and last
    stderr line, stdin, SIGKILL, several processes, environment read at import such as HF_ENDPOINT) goes
    through run_script or launch.
    """
    import contextlib
    import io
    import runpy

    stdout, stderr, returncode = io.StringIO(), io.StringIO(), 0
    command = [os.path.join(ROOT, script), *args]
    saved_argv, saved_cwd, saved_path = sys.argv, os.getcwd(), list(sys.path)
    sys.argv = list(command)
    sys.path.insert(0, os.path.dirname(sys.argv[0]))  # as python does for a script: its folder first
    os.chdir(ROOT)
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            runpy.run_path(sys.argv[0], run_name="__main__")
    except SystemExit as exit:
        returncode = 0 if exit.code is None else exit.code if isinstance(exit.code, int) else 1
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path
        os.chdir(saved_cwd)
    return subprocess.CompletedProcess(command, returncode, stdout.getvalue(), stderr.getvalue())


def results_of(result: subprocess.CompletedProcess, output_dir: str) -> dict:
    """all_results.json of a recipe run that must have succeeded (its stderr's tail is the failure message)."""
    assert result.returncode == 0, result.stderr[-3000:]
    with open(os.path.join(output_dir, "all_results.json")) as handle:
        return json.load(handle)


def folder_snapshot(path: str) -> dict:
    """Every file under `path` with its size and modification time, to show nothing changed."""
    snapshot = {}
    for folder, _, files in os.walk(path):
        for name in files:
            full = os.path.join(folder, name)
            stat = os.stat(full)
            snapshot[os.path.relpath(full, path)] = (stat.st_size, stat.st_mtime_ns)
    return snapshot


@pytest.fixture
def write_file(tmp_path):
    def write(name: str, content: str | bytes) -> str:
        path = tmp_path / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
        return str(path)

    return write


# A token the local Hub accepts; tests check it never reaches a file or a log line.
HUB_TOKEN = "hf_localtestSECRET0123456789abcdef"


@pytest.fixture(scope="session")
def local_hub():
    from tests.hub_server import LocalHub

    with LocalHub(HUB_TOKEN) as hub:
        yield hub


def hub_env(hub, home: str, token: str | None = HUB_TOKEN) -> dict:
    """Environment for a subprocess that talks to the local Hub with a fresh cache and login state."""
    env = {key: value for key, value in os.environ.items() if key not in ("HF_TOKEN", "HF_HUB_OFFLINE")}
    env.update(HF_ENDPOINT=hub.endpoint, HF_HOME=home, HF_HUB_DISABLE_XET="1", HF_HUB_OFFLINE="0", PYTHONPATH=ROOT)
    env.update(HF_HUB_DISABLE_TELEMETRY="1", NO_PROXY="127.0.0.1", no_proxy="127.0.0.1")
    if token:
        env["HF_TOKEN"] = token
    return env


def push_and_pull(hub, run_dir: str, repo_id: str, kind: str, home: str) -> dict:
    """Publish a finished run folder with recipes/push.py, pull it back in a fresh process, compare."""
    import json

    env = hub_env(hub, home)
    pushed = run_script("recipes/push.py", "--output_dir", run_dir, "--hub_model_id", repo_id, env=env)
    assert pushed.returncode == 0, pushed.stderr[-3000:]
    pulled = run_script("tests/pull_check.py", "--repo", repo_id, "--local", run_dir, "--kind", kind, env=env)
    assert pulled.returncode == 0, pulled.stderr[-3000:]
    for output in (pushed.stdout, pushed.stderr, pulled.stdout, pulled.stderr):
        assert HUB_TOKEN not in output
    return json.loads(pulled.stdout.strip().splitlines()[-1])


def assert_token_absent(*folders: str) -> None:
    """No file under these folders holds the test token."""
    for folder in folders:
        for root, _, files in os.walk(folder):
            for name in files:
                with open(os.path.join(root, name), "rb") as handle:
                    assert HUB_TOKEN.encode() not in handle.read(), os.path.join(root, name)


WRITE_AUDIT = os.path.join(ROOT, "tests", "write_audit")


def launch(script: str, *args: str, processes: int, env: dict | None = None) -> subprocess.CompletedProcess:
    """A recipe as several CPU processes (accelerate launch, DDP over gloo)."""
    command = [
        os.path.join(os.path.dirname(sys.executable), "accelerate"),
        "launch",
        "--config_file",
        os.path.join(ROOT, "accelerate_configs", "cpu_ddp.yaml"),
        "--num_processes",
        str(processes),
        "--num_cpu_threads_per_process",
        "1",
        os.path.join(ROOT, script),
        *args,
        "--use_cpu",
        "true",
    ]
    env = {**(env or {**os.environ, "PYTHONPATH": ROOT}), "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


def audited(env: dict, root: str, log: str) -> dict:
    """`env` plus the write audit (tests/write_audit): every write under `root` is logged with its RANK."""
    return {**env, "PYTHONPATH": f"{WRITE_AUDIT}{os.pathsep}{env.get('PYTHONPATH', ROOT)}"} | {
        "WRITE_AUDIT_ROOT": root,
        "WRITE_AUDIT_LOG": log,
    }


def audit_events(log: str) -> list[dict]:
    with open(log) as handle:
        return [json.loads(line) for line in handle]


def relative_files(folder: str) -> set[str]:
    return {os.path.relpath(os.path.join(root, name), folder) for root, _, names in os.walk(folder) for name in names}


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> str:
    """A 2-layer, 64-wide Llama with random weights and SmolLM2's tokenizer and chat template, saved as a folder:
    the generation recipes' code paths (chat template, LoRA on all linear layers, completion-only loss) in
    seconds. Its tokenizer comes from the converted SmolLM2 folder (converted once per machine)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from recipe_utils.models.loading import SMOLLM2, resolve_model_path

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(SMOLLM2))
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    folder = str(tmp_path_factory.mktemp("tiny_llama"))
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
