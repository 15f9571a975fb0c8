"""Loading base models (Hub ids, embedded packages, GGUF files), freezing, and PEFT adapters."""
