"""Task input to function arguments (by parameter name, guided by type hints) and return
values to task output.

Input: each parameter takes the input value of the same name, converted to its annotation:
``int``, ``float``, ``str``, ``bool``, ``Optional[...]``/``X | None``, ``list[...]``,
``dict[str, ...]``, ``tuple``, ``Literal``, enums, dataclasses (from a dict, recursively) and
pydantic models (when pydantic is installed). A parameter with a default may be missing from
the input (or null in it: Conductor maps workflow inputs that were not given to null);
``**kwargs`` receives the input keys no parameter took; input keys nobody takes are
ignored. A single parameter annotated ``Task`` receives the whole task instead.

Output: a dict as is, a dataclass as ``dataclasses.asdict``, a pydantic model as
``model_dump(mode="json")``, ``None`` as ``{}``, anything else as ``{"result": value}``.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import inspect
import sys
import typing
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Callable, Union

from conductor_worker._native import Task

_MISSING = inspect.Parameter.empty
_NONE_TYPE = type(None)
_UNION_TYPES: tuple[Any, ...] = (Union,)
if sys.version_info >= (3, 10):
    import types

    _UNION_TYPES = (Union, types.UnionType)


class InputMismatch(Exception):
    """The task's input does not fit the function; the message says what did not fit."""


Converter = Callable[[Any, str], Any]


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


def _is_pydantic_model(tp: Any) -> bool:
    return isinstance(tp, type) and hasattr(tp, "model_validate") and hasattr(tp, "model_fields")


def converter(tp: Any) -> Converter:
    """A function converting a JSON value to ``tp``; raises InputMismatch naming the path."""
    if tp is _MISSING or tp is Any or tp is object:
        return _unchecked
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in _UNION_TYPES:
        return _union_converter(tp, args)
    if origin is typing.Literal:
        return _literal_converter(args)
    if origin in (list, Sequence, set, frozenset) or tp in (list, set, frozenset):
        kind = origin or tp
        build = set if kind is set else frozenset if kind is frozenset else list
        return _sequence_converter(converter(args[0] if args else Any), build)
    if origin is tuple or tp is tuple:
        return _tuple_converter(args)
    if origin in (dict, Mapping) or tp is dict:
        return _dict_converter(converter(args[1] if len(args) == 2 else Any))
    for scalar, convert in _SCALARS:
        if tp is scalar:
            return convert
    return _class_converter(tp)


def _unchecked(v: Any, path: str) -> Any:
    return v


# -- containers ----------------------------------------------------------------------------------


def _union_converter(tp: Any, args: tuple[Any, ...]) -> Converter:
    options = [converter(a) for a in args if a is not _NONE_TYPE]
    nullable = _NONE_TYPE in args

    def union(v: Any, path: str) -> Any:
        if v is None and nullable:
            return None
        errors = []
        for option in options:
            try:
                return option(v, path)
            except InputMismatch as e:
                errors.append(str(e))
        raise InputMismatch(errors[0] if len(errors) == 1 else f"{path}: no type of {tp} fits {_describe(v)}")

    return union


def _literal_converter(allowed: tuple[Any, ...]) -> Converter:
    def literal(v: Any, path: str) -> Any:
        if v in allowed:
            return v
        raise InputMismatch(f"{path} should be one of {list(allowed)}, got {_describe(v)}")

    return literal


def _sequence_converter(item: Converter, build: Callable[[Any], Any]) -> Converter:
    """A JSON list, each item converted, collected by ``build`` (list, set, frozenset, tuple)."""

    def sequence(v: Any, path: str) -> Any:
        if not isinstance(v, list):
            raise InputMismatch(f"{path} should be a list, got {_describe(v)}")
        return build(item(x, f"{path}[{i}]") for i, x in enumerate(v))

    return sequence


def _tuple_converter(args: tuple[Any, ...]) -> Converter:
    if not args or (len(args) == 2 and args[1] is Ellipsis):  # tuple, tuple[X, ...]
        return _sequence_converter(converter(args[0] if args else Any), tuple)
    items = [converter(a) for a in args]

    def fixed_tuple(v: Any, path: str) -> Any:
        if not isinstance(v, list) or len(v) != len(items):
            raise InputMismatch(f"{path} should be a list of {len(items)} items, got {_describe(v)}")
        return tuple(c(x, f"{path}[{i}]") for i, (c, x) in enumerate(zip(items, v)))

    return fixed_tuple


def _dict_converter(value: Converter) -> Converter:
    def mapping(v: Any, path: str) -> Any:
        if not isinstance(v, dict):
            raise InputMismatch(f"{path} should be an object (dict), got {_describe(v)}")
        return {k: value(x, f"{path}[{k!r}]") for k, x in v.items()}

    return mapping


# -- scalars -------------------------------------------------------------------------------------


def _boolean(v: Any, path: str) -> Any:
    if isinstance(v, bool):
        return v
    raise InputMismatch(f"{path} should be a bool, got {_describe(v)}")


def _integer(v: Any, path: str) -> Any:
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    raise InputMismatch(f"{path} should be an int, got {_describe(v)}")


def _number(v: Any, path: str) -> Any:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    raise InputMismatch(f"{path} should be a number, got {_describe(v)}")


def _string(v: Any, path: str) -> Any:
    if isinstance(v, str):
        return v
    raise InputMismatch(f"{path} should be a str, got {_describe(v)}")


# Compared by identity, not looked up: an annotation can be any object, even an unhashable one.
_SCALARS: tuple[tuple[type, Converter], ...] = ((bool, _boolean), (int, _integer), (float, _number), (str, _string))


# -- classes -------------------------------------------------------------------------------------


def _class_converter(tp: Any) -> Converter:
    if not isinstance(tp, type):
        return _unchecked  # TypeVars, NewTypes, ...: not checked
    if issubclass(tp, enum.Enum):
        return _enum_converter(tp)
    if dataclasses.is_dataclass(tp):
        return _dataclass_converter(tp)
    if _is_pydantic_model(tp):
        return _model_converter(tp)
    if not _checkable(tp):
        return _unchecked  # a Protocol without @runtime_checkable: isinstance refuses it
    return _instance_converter(tp)


def _checkable(tp: type) -> bool:
    """Whether ``isinstance`` accepts ``tp`` (it raises for a Protocol not marked
    ``@runtime_checkable``, which would fail every task instead of checking its input)."""
    try:
        isinstance(None, tp)
    except TypeError:
        return False
    return True


def _enum_converter(tp: type[enum.Enum]) -> Converter:
    def enumeration(v: Any, path: str) -> Any:
        try:
            return tp(v)
        except ValueError:
            raise InputMismatch(f"{path} should be one of {[m.value for m in tp]}, got {_describe(v)}") from None

    return enumeration


def _model_converter(tp: Any) -> Converter:
    def model(v: Any, path: str) -> Any:
        try:
            return tp.model_validate(v)
        except Exception as e:  # pydantic.ValidationError, without importing pydantic
            raise InputMismatch(f"{path} does not fit {tp.__name__}: {e}") from None

    return model


def _instance_converter(tp: type) -> Converter:
    def instance(v: Any, path: str) -> Any:
        if isinstance(v, tp):
            return v
        raise InputMismatch(f"{path} should be a {tp.__name__}, got {_describe(v)}")

    return instance


def _hints(obj: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(obj)
    except Exception:  # unresolvable forward references: check nothing rather than fail
        return {}


def _dataclass_converter(cls: type) -> Converter:
    fields: list[tuple[str, Converter | None, bool]] = []
    resolved = False

    def resolve() -> None:
        nonlocal resolved
        hints = _hints(cls)
        for f in dataclasses.fields(cls):
            if not f.init:
                continue
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            fields.append((f.name, converter(hints.get(f.name, Any)), required))
        resolved = True

    def build(v: Any, path: str) -> Any:
        if not resolved:
            resolve()
        if isinstance(v, cls):
            return v
        if not isinstance(v, dict):
            raise InputMismatch(f"{path} should be an object for {cls.__name__}, got {_describe(v)}")
        kwargs = {}
        for name, conv, required in fields:
            if name in v:
                kwargs[name] = conv(v[name], f"{path}.{name}") if conv else v[name]
            elif required:
                raise InputMismatch(f"{path}.{name} is missing (required by {cls.__name__})")
        return cls(**kwargs)

    return build


class Binder:
    """How a function takes a task: built once per function, used for every task."""

    def __init__(self, func: Callable[..., Any]) -> None:
        self.func = func
        self._ready = False
        self.whole_task = False
        self.task_params: list[str] = []
        self.params: list[tuple[str, Converter, Any, bool]] = []  # name, conv, default, positional
        self.var_keyword = False
        self.takes_nothing = False

    def _resolve(self) -> None:
        signature = inspect.signature(self.func)
        hints = _hints(self.func)
        named = [
            p
            for p in signature.parameters.values()
            if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        ]
        self.var_keyword = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())
        for p in named:
            hint = hints.get(p.name, p.annotation if not isinstance(p.annotation, str) else _MISSING)
            if hint is Task:
                self.task_params.append(p.name)
                continue
            positional = p.kind is inspect.Parameter.POSITIONAL_ONLY
            self.params.append((p.name, converter(hint), p.default, positional))
        self.whole_task = len(named) == 1 and len(self.task_params) == 1
        # No parameters at all: the input is never converted to Python objects.
        self.takes_nothing = not named and not self.var_keyword
        self._ready = True

    def bind(self, task: Task) -> tuple[list[Any], dict[str, Any]]:
        if not self._ready:
            self._resolve()
        if self.whole_task:
            return [task], {}
        if self.takes_nothing:
            return [], {}
        data = task.input_data
        args: list[Any] = []
        kwargs: dict[str, Any] = dict.fromkeys(self.task_params, task) if self.task_params else {}
        for name, conv, default, positional in self.params:
            raw = data.get(name, _MISSING)
            if raw is not _MISSING and not (raw is None and default is not _MISSING):
                try:
                    value = conv(raw, f"input {name!r}")
                except InputMismatch:
                    if raw is None:
                        raise InputMismatch(f"input {name!r} is missing (null)") from None
                    raise
            elif default is not _MISSING:
                # Conductor maps a workflow input that was not given to null: a parameter
                # with a default takes its default then.
                if positional:
                    args.append(default)
                continue
            else:
                raise InputMismatch(f"input {name!r} is missing (the task input has {sorted(data)})")
            if positional:
                args.append(value)
            else:
                kwargs[name] = value
        if self.var_keyword:
            taken = {p[0] for p in self.params}
            for k, v in data.items():
                if k not in taken and k not in kwargs:
                    kwargs[k] = v
        return args, kwargs


def to_output(value: Any) -> Any:
    """The task output for a function's return value (JSON-checked later, in Rust)."""
    if value is None:
        return None
    if isinstance(value, dict):
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if hasattr(value, "model_dump") and not isinstance(value, type):
        return value.model_dump(mode="json")
    return {"result": value}


def jsonable(value: Any) -> Any:
    """A best-effort JSON-friendly copy, tried when an output does not serialise as is:
    nested dataclasses and models, enums, dates, UUIDs, decimals, tuples and sets."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, dict):
        return {k if isinstance(k, str) else str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    if hasattr(value, "model_dump") and not isinstance(value, type):
        return value.model_dump(mode="json")
    if isinstance(value, enum.Enum):
        return jsonable(value.value)
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, (uuid.UUID, decimal.Decimal)):
        return str(value)
    return value  # left as is: the Rust side names it in its error
