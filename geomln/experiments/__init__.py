"""Reproductions of the paper's experiments on CPU (optional: needs ``pip install 'geomln[torch]'``).

:mod:`geomln.experiments.majority`
    The majority task: LayerNorm's projection lets queries align with ``1`` (Figures 1a/1b, 2, 3).
:mod:`geomln.experiments.lm`
    A tiny GPT-2-style language model with and without scaling; unselectable keys (Tables 1, 2, Figure 4).
:mod:`geomln.experiments.short`
    Unselectable keys of single short sentences, the w/o scaling LM on held-out verses (Table 3).
:mod:`geomln.experiments.bert`
    A small BERT with every LayerNorm removed, trained to tell Old from New Testament verses (Table 4).
:mod:`geomln.experiments._models`
    The PyTorch modules, including :class:`~geomln.experiments._models.FactorizedLayerNorm`, the twin of
    :func:`geomln.factorized_layer_norm`.

Importing these modules does not need torch; training does.
"""
