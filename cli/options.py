"""Click options built from TrainConfig's fields: one source for types, ranges, defaults and help.

A command declares which fields it offers::

    @click.command("train", cls=ConfigCommand)
    @config_options("epochs", "learning_rate")
    def train_command(**options): ...

Each field's check becomes the Click type (a Range becomes IntRange/FloatRange, a Choice a
click.Choice, a Flag a switch), its default the option's default and its help the option's help.
A ConfigError the library raises about a field (a rule across two fields) is shown as a usage
error naming that field's option.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Collection, Mapping
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

# Option names that are not simply --field-name, kept as they were before the options were
# built from TrainConfig.
OPTION_NAMES: dict[str, tuple[str, ...]] = {
    "model": ("--model", "-m"),
    "learning_rate": ("--lr",),
    "early_stopping_patience": ("--patience",),
}
# Click types of the sizes and counts that commands take besides TrainConfig's fields, with the
# ceilings of transfer.config (not imported here: it imports TensorFlow); a test keeps them equal.
IMAGE_SIZE = click.IntRange(8, 4096)
BATCH_SIZE = click.IntRange(1, 65536)
COUNT = click.IntRange(1, 1_000_000)  # steps, top-k, images, threads: far above any real use
SEED = click.IntRange(0, 2**32 - 1)

# Bool fields offered as a bare switch; the others get a --name/--no-name pair.
SWITCHES = frozenset({"drop_small_classes", "deterministic", "trust_model"})


def option_name(field: str) -> str:
    """The long option of TrainConfig field ``field``, e.g. ``--lr`` for ``learning_rate``."""
    return OPTION_NAMES.get(field, ("--" + field.replace("_", "-"),))[0]


@dataclasses.dataclass(frozen=True)
class _Pending:
    """Holds the place of TrainConfig options in a command's parameters until they are built."""

    names: tuple[str, ...]
    numbers_only: frozenset[str]
    help: dict[str, str]


def config_options(*names: str, numbers_only: Collection[str] = (),
                   help: Mapping[str, str] | None = None) -> Callable[[F], F]:
    """Add the options of these TrainConfig fields, in this order, to a ``ConfigCommand``.

    Args:
        *names: TrainConfig field names.
        numbers_only: fields whose words (``batch_size``'s ``'auto'``) this command does not
            offer.
        help: field -> help text to show instead of the field's own.
    """
    def decorate(f: F) -> F:
        # click.command reverses the collected parameters, so one entry keeps these in order.
        f.__click_params__ = [*getattr(f, "__click_params__", []),  # type: ignore[attr-defined]
                              _Pending(names, frozenset(numbers_only), dict(help or {}))]
        return f

    return decorate


class _NumberOrWord(click.ParamType):
    """A number in a range, or one of a few words (``--batch-size 32`` or ``auto``)."""

    def __init__(self, number: click.ParamType, words: tuple[str, ...], describe: str) -> None:
        kind = "integer" if isinstance(number, click.IntRange) else "float"
        self.name = "|".join((kind, *words))
        self.number, self.words, self.describe = number, words, describe

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None):
        if value in self.words:
            return value
        try:
            return self.number.convert(value, param, ctx)
        except click.BadParameter:
            self.fail(f"{value!r} is not {self.describe}.", param, ctx)


def _click_type(check: Any, numbers_only: bool) -> click.ParamType | None:
    from transfer.config import Choice, Range

    if isinstance(check, Choice):
        return click.Choice(check.choices)
    if isinstance(check, Range):
        kind = click.IntRange if check.integer else click.FloatRange
        number = kind(check.min, check.max, min_open=check.min_open, max_open=check.max_open)
        if check.words and not numbers_only:
            return _NumberOrWord(number, check.words, check.describe())
        return number
    return None  # Text: a plain string


def _build(pending: _Pending) -> list[click.Option]:
    from transfer.config import Augment, Flag, TrainConfig

    fields = {field.name: field for field in dataclasses.fields(TrainConfig)}
    options = []
    for name in pending.names:
        field = fields[name]
        check, default = field.metadata["check"], field.default
        if isinstance(default, enum.Enum):
            default = default.value
        settings: dict[str, Any] = {"default": default,
                                    "help": pending.help.get(name, field.metadata["help"]),
                                    "show_default": default is not None}
        decls = OPTION_NAMES.get(name, (option_name(name),))
        if isinstance(check, Augment):  # --augment alone: the default policy
            settings.update(is_flag=False, flag_value="default", metavar="[POLICY]",
                            show_default=False)
        elif isinstance(check, Flag) and name in SWITCHES:
            settings.update(is_flag=True, show_default=False)
        elif isinstance(check, Flag):
            decls = (f"{decls[0]}/--no-{decls[0][2:]}", *decls[1:])
        else:
            settings["type"] = _click_type(check, name in pending.numbers_only)
        options.append(click.Option([*decls, name], **settings))
    return options


class ConfigCommand(click.Command):
    """A command whose TrainConfig options are built on first use.

    Importing ``transfer.config`` imports TensorFlow (through the ``transfer`` and ``zoo``
    packages), so the options are built when this command parses or prints its help, not when
    the CLI is imported: ``zoo --help`` stays instant.
    """

    @property
    def params(self) -> list[click.Parameter]:
        if any(isinstance(p, _Pending) for p in self._params):
            self._params = [built for p in self._params
                            for built in (_build(p) if isinstance(p, _Pending) else [p])]
        return self._params

    @params.setter
    def params(self, value: list[click.Parameter]) -> None:
        self._params = list(value)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as exc:
            from transfer.errors import ConfigError  # TensorFlow is loaded by now

            param = next((p for p in self.params if isinstance(exc, ConfigError)
                          and exc.field is not None and p.name == exc.field), None)
            if param is None:
                raise
            raise click.BadParameter(str(exc), ctx=ctx, param=param) from None
