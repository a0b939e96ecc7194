"""Keys from real models.

Key files and their readers, PyTorch capture, the per layer x head analysis, causal attention
and the largest attention weight a key can reach.
"""

from .analysis import (
    KeyReport,
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

__all__ = [
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
]
