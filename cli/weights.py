"""``--weights`` and the model argument, shared by every command that builds registry models.

``zoo predict``, ``evaluate`` and ``export`` (pretrained classifiers, ``imagenet`` by default) and
the ``zoo viz`` tools and ``zoo embed`` (random by default, so they work offline) take the same
option, spelt as ``zoo train``'s: a weight-set name, ``none`` or a weights file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

# The words that mean "random initialisation", as TrainConfig's ``weights`` field reads them.
NONE_WORDS = ("none", "None", "")
WEIGHTS_HELP = ("Registry models only: 'imagenet', 'none' (random init) or a weights file "
                "(.h5, .weights.h5, .keras; e.g. one copied from another machine's Keras cache).")


def weights_option(default: str) -> Callable[[F], F]:
    """``--weights``; unset it reaches the command as ``None`` and means ``default``, so that a
    command can tell "not given" from ``none`` (see :func:`resolve_weights`)."""
    # Click would show a string show_default in parentheses; written out as it writes others.
    return click.option("--weights", default=None, metavar="imagenet|none|PATH",
                        help=f"{WEIGHTS_HELP}  [default: {default}]")


def parse_weights(value: str | None, default: str = "none") -> str | None:
    """The ``weights`` argument of the Python API: ``None`` for random initialisation."""
    value = default if value is None else value
    return None if value in NONE_WORDS else value


def resolve_weights(source: str, value: str | None) -> str | None:
    """``--weights`` for predict/evaluate/export: ``imagenet`` unless given, for registry names;
    a trained model keeps its own weights, so there the option is a usage error."""
    from transfer.predict import is_model_name

    if is_model_name(source):
        return parse_weights(value, "imagenet")
    if value is not None:
        raise click.UsageError(f"--weights applies to registry model names only; {source!r} "
                               f"keeps the weights it was trained with")
    return None


class ModelSource(click.ParamType):
    """A run directory, a ``.keras`` file, a SavedModel folder or a registry model name.

    Something that looks like a path (a separator, a ``.keras`` suffix) must exist; a bare name
    is looked up in the registry by the command (an unknown one suggests close names).
    """

    name = "model"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None):
        from transfer.predict import is_model_name

        text = str(value)
        if not Path(text).exists() and not is_model_name(text):
            self.fail(f"Path {text!r} does not exist.", param, ctx)
        return text


TRUST_MODEL_HELP = ("Load a .keras file with Keras safe_mode=False: arbitrary code in the file "
                    "(a Lambda layer) runs. Only for files you trust.")


def trust_model_option() -> Callable[[F], F]:
    """``--trust-model`` for commands that load a ``.keras`` file outside ``TrainConfig``."""
    return click.option("--trust-model", is_flag=True, help=TRUST_MODEL_HELP)


def custom_objects_option() -> Callable[[F], F]:
    """``--custom-objects MODULE``, repeatable or comma-separated: imported before the model
    loads, so the custom layers it registers are found."""
    return click.option("--custom-objects", "custom_objects", multiple=True, metavar="MODULE",
                        help="Import this module (dotted name; repeat or comma-separate) "
                             "before loading, so the custom layers it registers with "
                             "keras.saving.register_keras_serializable load.")


def import_custom_objects(modules: tuple[str, ...]) -> None:
    """Import ``--custom-objects`` (after TensorFlow, which their layers need)."""
    if modules:
        from transfer.rundir import import_custom_objects as import_modules

        import_modules(modules)
