"""Flax NNX models (MLP, strided CNN, CIFAR ResNet-18) and the CPU-fast convolution.

:func:`~jaxunlearn.nn.models.functional` turns a model into a pure
``apply(params, state, x, *, train)`` over plain dicts, the view every jitted step uses.
"""

from jaxunlearn.nn.models import MODELS, FunctionalModel, create_model, functional, to_module

__all__ = ["MODELS", "FunctionalModel", "create_model", "functional", "to_module"]
