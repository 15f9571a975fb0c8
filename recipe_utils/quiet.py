"""Silence what the stack prints on import about things a user did not ask for. Imported first by every recipe.

- torchao (imported by transformers and TRL) logs "Failed to load ... _C_mxfp8 / _C_cutlass_90a": CUDA-only
  extensions that a CPU build cannot load and nothing here uses.
- torch logs that torchao registers Enums as pytree constants the deprecated way (torchao's business).
- transformers 5.23 renamed gradient_checkpointing to activation_checkpointing; TRL 1.16's configs still set the
  old name, so every TRL config warns about a field the user never wrote.
Everything else (a user's own bad setting, real deprecations in this code) still warns.
"""

import logging
import warnings

import torch  # noqa: F401  (torch configures its loggers on import; the levels below must come after)

logging.getLogger("torchao").setLevel(logging.ERROR)
logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)
warnings.filterwarnings("ignore", message=r".*is_?gradient_checkpointing.* is deprecated", category=FutureWarning)
warnings.filterwarnings("ignore", message=r"`gradient_checkpointing` is deprecated", category=FutureWarning)
