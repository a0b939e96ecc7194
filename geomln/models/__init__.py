"""Keys from real models.

Key files and their readers, adapters for caches held in memory (TransformerLens, Hugging Face, nnsight),
PyTorch capture (in memory or streamed to shard files), the per layer x head analysis and its tidy outputs,
causal attention and the largest attention weight a key can reach.
"""

from .adapters import (
    as_key_array,
)
from .analysis import (
    analyze_keys,
    causal_last_positions,
)
from .attention import (
    MaxAttention,
    max_attention,
)
from .capture import (
    CapturedKeys,
    capture_keys,
    load_model,
    minilm_path,
)
from .io import (
    load_array,
)
from .keyfile import (
    KeyArray,
    KeySlice,
    load_keys,
    save_keys,
)
from .report import (
    KeyReport,
)
from .shards import (
    KeyShards,
    capture_to_shards,
    open_shards,
)

__all__ = [
    "as_key_array",
    "KeyReport",
    "analyze_keys",
    "causal_last_positions",
    "MaxAttention",
    "max_attention",
    "capture_keys",
    "CapturedKeys",
    "load_model",
    "minilm_path",
    "load_array",
    "KeyArray",
    "KeySlice",
    "load_keys",
    "save_keys",
    "KeyShards",
    "capture_to_shards",
    "open_shards",
]
