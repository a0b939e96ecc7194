"""PyTorch building blocks shared by the experiments: a factorized LayerNorm and the two small models.

Importing this module does not fail without torch; instantiating a model does, with an
:class:`ImportError` that says how to install the optional extra.
"""

import math

try:  # optional dependency: the core package never needs it
    import torch
    from torch import nn
    from torch.nn import functional as F  # noqa: N812
except ImportError:  # pragma: no cover - exercised only where torch is absent
    torch = nn = F = None

__all__ = [
    "require_torch",
    "FactorizedLayerNorm",
    "MajorityModel",
    "TinyGPT",
    "MAJORITY_VARIANTS",
    "NO_PROJECTION_NORMS",
]

_Module = nn.Module if nn is not None else object

#: majority-task variant -> (projection, scaling) of the LayerNorm before attention
MAJORITY_VARIANTS = {"projection": (True, True), "no-projection": (False, True), "none": (False, False)}

#: norms of the ``no-projection`` keys, see :class:`MajorityModel`
NO_PROJECTION_NORMS = ("paper", "sqrt-d")


def require_torch():
    """Return the ``torch`` module, or raise :class:`ImportError` with the install hint."""
    if torch is None:
        raise ImportError(
            "the experiments need PyTorch: pip install 'geomln[torch]' (torch==2.13.0, CPU build)"
        )
    return torch


class FactorizedLayerNorm(_Module):
    """LayerNorm split into projection (subtract the mean) and scaling (to norm ``sqrt(d)``).

    The PyTorch twin of :func:`geomln.factorized_layer_norm`, with the same formula:
    ``x -> x - mean(x)`` if `projection`, then ``x -> x / sqrt(mean(x**2) + eps)`` if `scaling`,
    then ``x * weight + bias`` if `elementwise_affine`.

    Parameters
    ----------
    d : int
        Size of the last axis.
    projection, scaling : bool, default True
        Which parts to apply.
    elementwise_affine : bool, default False
        Learnable ``weight`` (ones) and ``bias`` (zeros) applied last.
    eps : float, default 0.0
        Added to the mean of squares. With ``eps = 0`` the output of scaling lies exactly on the
        sphere of radius ``sqrt(d)`` (a zero vector stays zero instead of becoming NaN).

    Examples
    --------
    >>> import pytest; torch = pytest.importorskip("torch")
    >>> from geomln.experiments._models import FactorizedLayerNorm
    >>> y = FactorizedLayerNorm(3)(torch.tensor([[1.0, 2.0, 6.0]], dtype=torch.float64))
    >>> round(float(y.sum()), 12), round(float((y ** 2).sum()), 12)
    (0.0, 3.0)
    """

    def __init__(self, d, *, projection=True, scaling=True, elementwise_affine=False, eps=0.0):
        require_torch()
        super().__init__()
        self.d, self.projection, self.scaling, self.eps = int(d), bool(projection), bool(scaling), float(eps)
        if elementwise_affine:
            self.weight = nn.Parameter(torch.ones(self.d))
            self.bias = nn.Parameter(torch.zeros(self.d))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def forward(self, x):  # noqa: D102
        if self.projection:
            x = x - x.mean(dim=-1, keepdim=True)
        if self.scaling:
            mean_square = (x * x).mean(dim=-1, keepdim=True)
            if self.eps > 0:
                x = x * torch.rsqrt(mean_square + self.eps)
            else:
                x = x * torch.rsqrt(mean_square.clamp_min(torch.finfo(x.dtype).tiny))
        if self.weight is not None:
            x = x * self.weight + self.bias
        return x

    def extra_repr(self):  # noqa: D102
        return f"{self.d}, projection={self.projection}, scaling={self.scaling}, eps={self.eps}"


class MajorityModel(_Module):
    """One pre-LN Transformer encoder layer for the majority task (no positions: order is irrelevant).

    Token embedding (width `hidden`), ``norm1`` (the variant's factorized LayerNorm, no affine,
    ``eps = 0``), one attention head whose input projection has no bias, a residual ReLU
    feed-forward of width `ff` behind ``norm2`` (a LayerNorm with ``eps = 0``), and logits through
    the tied embedding. Initialised like PyTorch's ``TransformerEncoderLayer``, as in the paper's
    code: the stacked ``(3 hidden, hidden)`` input projection is Xavier-uniform, the attention
    output bias is zero, the embedding is standard normal.

    Parameters
    ----------
    n_classes, hidden, ff : int
        Vocabulary size, model width, feed-forward width.
    variant : {"projection", "no-projection", "none"}
        ``projection``: projection and scaling (LayerNorm without affine); ``no-projection``:
        scaling only; ``none``: identity.
    no_projection_norm : {"paper", "sqrt-d"}, default "paper"
        Norm of the ``no-projection`` keys: ``1 / sqrt(hidden)`` as in the paper's code
        (``F.normalize(x) / sqrt(hidden)``), or ``sqrt(hidden)``, the norm LayerNorm gives the
        ``projection`` keys. Ignored by the other variants.
    """

    def __init__(self, n_classes, *, hidden=8, ff=8, variant="projection", no_projection_norm="paper"):
        require_torch()
        super().__init__()
        projection, scaling = MAJORITY_VARIANTS[variant]
        self.hidden = hidden
        paper_norm = variant == "no-projection" and no_projection_norm == "paper"
        self.key_scale = 1.0 / hidden if paper_norm else 1.0  # sqrt(d) * (1 / d) = 1 / sqrt(d)
        self.embedding = nn.Embedding(n_classes, hidden)
        self.norm1 = FactorizedLayerNorm(hidden, projection=projection, scaling=scaling)
        self.w_q = nn.Linear(hidden, hidden, bias=False)
        self.w_k = nn.Linear(hidden, hidden, bias=False)
        self.w_v = nn.Linear(hidden, hidden, bias=False)
        bound = math.sqrt(6.0 / (hidden + 3 * hidden))  # Xavier-uniform of the stacked (3h, h) matrix
        for w in (self.w_q, self.w_k, self.w_v):
            nn.init.uniform_(w.weight, -bound, bound)
        self.out = nn.Linear(hidden, hidden)
        nn.init.zeros_(self.out.bias)
        self.norm2 = nn.LayerNorm(hidden, eps=0.0)
        self.ff = nn.Sequential(nn.Linear(hidden, ff), nn.ReLU(), nn.Linear(ff, hidden))

    def attention_input(self, x):
        """``norm1(x)``, rescaled for the paper's ``no-projection`` norm: the keys of the embeddings `x`."""
        return self.norm1(x) * self.key_scale

    def forward(self, tokens):
        """Logits of shape ``(batch, seq, n_classes)`` for integer `tokens` of shape ``(batch, seq)``."""
        x = self.embedding(tokens)
        h = self.attention_input(x)
        scores = self.w_q(h) @ self.w_k(h).transpose(-1, -2) / math.sqrt(self.hidden)
        x = x + self.out(torch.softmax(scores, dim=-1) @ self.w_v(h))
        x = x + self.ff(self.norm2(x))
        return x @ self.embedding.weight.T

    def forward_counts(self, counts):
        """Logits of shape ``(batch, classes, classes)`` of each class's tokens, from class `counts`.

        The model has no positions, so all tokens of one class in a sequence get the same output,
        and attending to ``n_c`` equal keys is attending to one key with ``log(n_c)`` added to its
        score. This computes :meth:`forward` exactly (up to rounding) in ``O(classes^2)`` instead
        of ``O(seq^2)`` per sequence; row ``c`` of a sequence is the output of its class-``c``
        tokens (defined, but without tokens, when ``counts[:, c] == 0``).

        Parameters
        ----------
        counts : Tensor, shape (batch, classes)
            Number of tokens of each class in each sequence; every row has a positive entry.
        """
        e = self.embedding.weight
        h = self.attention_input(e)
        scores = self.w_q(h) @ self.w_k(h).T / math.sqrt(self.hidden)
        weights = torch.softmax(scores + torch.log(counts.to(e.dtype))[:, None, :], dim=-1)
        x = e + self.out(weights @ self.w_v(h))
        x = x + self.ff(self.norm2(x))
        return x @ e.T

    def keys_and_queries(self):
        """Return keys ``attention_input(E)`` and effective queries ``keys W_Q^T W_K``, each ``(classes, hidden)``.

        The effective query lives in key space: its dot product with a key is the attention score
        (times ``sqrt(hidden)``).
        """
        with torch.no_grad():
            keys = self.attention_input(self.embedding.weight)
            return keys, keys @ self.w_q.weight.T @ self.w_k.weight


class _Block(_Module):
    def __init__(self, d, n_heads, scaling, dropout):
        super().__init__()
        self.n_heads, self.dropout = n_heads, dropout
        self.ln_1 = FactorizedLayerNorm(d, projection=True, scaling=scaling)
        self.c_attn = nn.Linear(d, 3 * d, bias=False)
        self.c_proj = nn.Linear(d, d)
        self.ln_2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(approximate="tanh"), nn.Linear(4 * d, d))
        self.drop = nn.Dropout(dropout)

    def forward(self, x, record=None):
        b, t, d = x.shape
        h = self.ln_1(x)
        if record is not None:
            record.append((x, h))
        q, k, v = (
            z.view(b, t, self.n_heads, d // self.n_heads).transpose(1, 2) for z in self.c_attn(h).split(d, -1)
        )
        a = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0
        )
        x = x + self.drop(self.c_proj(a.transpose(1, 2).reshape(b, t, d)))
        return x + self.drop(self.mlp(self.ln_2(x)))


class TinyGPT(_Module):
    """A GPT-2-style decoder (paper's config: width 8, 4 layers, 4 heads, learned positions).

    The LayerNorm before attention (``ln_1``) is a :class:`FactorizedLayerNorm` without affine map
    (the paper freezes it at weight 1, bias 0) and with projection always on; `scaling` switches
    its scaling part. The attention input projection has no bias; ``ln_2``, ``ln_f`` are standard.

    Parameters
    ----------
    vocab_size : int
    d, n_layers, n_heads, n_positions : int
    scaling : bool
        Whether ``ln_1`` scales to norm ``sqrt(d)`` (the "w/ scaling" model) or only projects.
    dropout : float
        Residual and attention dropout (GPT-2 config: 0.1).
    """

    def __init__(
        self, vocab_size, *, d=8, n_layers=4, n_heads=4, n_positions=1024, scaling=True, dropout=0.1
    ):
        require_torch()
        super().__init__()
        self.n_positions = n_positions
        self.wte = nn.Embedding(vocab_size, d)
        self.wpe = nn.Embedding(n_positions, d)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(_Block(d, n_heads, scaling, dropout) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d)
        for name, p in self.named_parameters():  # GPT-2 initialisation
            if name.endswith("c_proj.weight") or name.endswith("mlp.2.weight"):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * n_layers))
            elif p.dim() == 2:
                nn.init.normal_(p, std=0.02)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def forward(self, tokens, record=None, offset=0):
        """Return logits ``(batch, seq, vocab)``; a list `record` gets ``(ln_1 in, ln_1 out)`` per layer.

        Positions are ``offset, offset + 1, ...`` (training with random offsets teaches every
        learned position while using short windows).
        """
        positions = torch.arange(offset, offset + tokens.shape[1], device=tokens.device)
        x = self.drop(self.wte(tokens) + self.wpe(positions))
        for block in self.blocks:
            x = block(x, record)
        return self.ln_f(x) @ self.wte.weight.T
