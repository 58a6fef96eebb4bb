"""Swap linear layers of a model for wrapped ones, and put the originals back."""

from collections.abc import Callable

from torch import nn


def swap_modules(
    model: nn.Module, names: list[str], make: Callable[[str, nn.Module], nn.Module]
) -> dict[str, nn.Module]:
    """Replace each module in ``names`` with ``make(name, original)``; returns the originals by name."""
    originals = {}
    for name in names:
        original = model.get_submodule(name)
        model.set_submodule(name, make(name, original))
        originals[name] = original
    return originals


def restore_modules(model: nn.Module, originals: dict[str, nn.Module]) -> None:
    """Undo :func:`swap_modules`."""
    for name, original in originals.items():
        model.set_submodule(name, original)
