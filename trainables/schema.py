"""Plain dataclasses as the configuration schema.

``from_dict`` builds a (nested) dataclass from plain data the way nanoGPT's configurator and
PEFT's configs behave: unknown keys are an error (with a "did you mean"), values are coerced to
the annotated type (so ``--set train.lr=1e-4`` works from a string), and each dataclass's
``__post_init__`` checks its own values. Every error names the full dotted field path.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import types
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from trainables.errors import UserError, did_you_mean, one_of

T = TypeVar("T")


def _describe(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + one_of(str(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        parts = [_describe(a) for a in get_args(tp) if a is not type(None)]
        suffix = " or null" if type(None) in get_args(tp) else ""
        return " or ".join(parts) + suffix
    if origin in (list, tuple):
        return "a list"
    if origin is dict:
        return "a mapping"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def coerce(value: Any, tp: Any, field: str) -> Any:
    """Convert ``value`` to the annotated type ``tp`` or raise a UserError naming ``field``."""
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise UserError(field, f"expected a mapping of {tp.__name__} fields, got {value!r}")
        return from_dict(tp, value, path=field)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None or (isinstance(value, str) and value.lower() in ("null", "none")):
            if type(None) in args:
                return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, field)
            except UserError as e:
                errors.append(e)
        raise UserError(field, f"expected {_describe(tp)}, got {value!r}")
    if origin is Literal:
        allowed = get_args(tp)
        if value in allowed:
            return value
        raise UserError(field, f"expected one of {one_of(map(str, allowed))}, got {value!r}"
                        + (did_you_mean(str(value), map(str, allowed))))
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise UserError(field, f"expected a list, got {value!r}")
        (item_tp, *_rest) = get_args(tp) or (Any,)
        items = [coerce(v, item_tp, f"{field}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise UserError(field, f"expected a mapping, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    return _coerce_scalar(value, tp, field)


def _coerce_scalar(value: Any, tp: Any, field: str) -> Any:
    """``coerce`` for bool, int, float and str (other types pass through)."""
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
            return value.lower() in ("true", "yes", "1")
        raise UserError(field, f"expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise UserError(field, f"expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                as_float = float(value)
            except ValueError:
                pass
            else:
                if as_float.is_integer():
                    return int(as_float)
        raise UserError(field, f"expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise UserError(field, f"expected a number, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise UserError(field, f"expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise UserError(field, f"expected a string, got {value!r}")
    return value


def from_dict(cls: type[T], data: dict[str, Any] | None, *, path: str = "") -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys and bad values raise UserError."""
    data = dict(data or {})
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    kwargs = {}
    for key, value in data.items():
        where = f"{path}.{key}" if path else key
        if key not in names:
            raise UserError(where, f"unknown setting{did_you_mean(key, names)}; "
                                   f"{cls.__name__} accepts {one_of(names)}")
        kwargs[key] = coerce(value, hints[key], where)
    try:
        return cls(**kwargs)
    except UserError as e:
        where = f"{path}.{e.field}" if path and e.field else (e.field or path)
        raise UserError(where, e.message) from None


def to_dict(obj: Any) -> Any:
    """Plain, JSON/YAML-serialisable data of a (nested) dataclass."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``data['a']['b'] = value`` for ``dotted='a.b'``, creating mappings on the way."""
    *parents, leaf = dotted.split(".")
    node = data
    for p in parents:
        nxt = node.get(p)
        if not isinstance(nxt, dict):
            nxt = {}
            node[p] = nxt
        node = nxt
    node[leaf] = value


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``{**base, **override}`` applied recursively to nested mappings (new dict, inputs kept)."""
    out = dict(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def field_paths(cls: type, prefix: str = "") -> dict[str, Any]:
    """Every leaf setting of a nested dataclass as ``{'train.lr': float, ...}``."""
    out: dict[str, Any] = {}
    for name, tp in get_type_hints(cls).items():
        if name not in {f.name for f in dataclasses.fields(cls)}:
            continue
        dotted = f"{prefix}{name}"
        if dataclasses.is_dataclass(tp):
            out.update(field_paths(tp, dotted + "."))
        else:
            out[dotted] = tp
    return out


__all__ = ["coerce", "from_dict", "to_dict", "set_path", "deep_merge", "field_paths", "apply_hyperparameters",
           "clear_other_alpha"]


#: Alpha given one way (fixed, or as a multiple of r) and the other way.
OTHER_ALPHA = {"adapter.alpha": "adapter.alpha_over_r", "adapter.alpha_over_r": "adapter.alpha"}


def clear_other_alpha(cfg: dict[str, Any], key: str) -> None:
    """Alpha given one way clears the other, so they never clash."""
    if key in OTHER_ALPHA:
        set_path(cfg, OTHER_ALPHA[key], None)


def apply_hyperparameters(base: dict[str, Any], hp: dict[str, Any]) -> dict[str, Any]:
    """One trial's config: the base plus its hyperparameters (a new dict; base is kept)."""
    out = copy.deepcopy(base)
    for key, value in hp.items():
        if "+" in key and isinstance(value, str):
            value = json.loads(value)  # a coupled parameter's values travel as JSON text
        pairs = zip(key.split("+"), value) if "+" in key else [(key, value)]
        for k, v in pairs:
            clear_other_alpha(out, k)
            set_path(out, k, v)
    return out


def load_yaml(text: str) -> Any:
    """``yaml.safe_load``, but a key given twice in one mapping is an error (yaml.YAMLError,
    with its line) instead of the last one silently winning."""
    import yaml

    class UniqueKeys(yaml.SafeLoader):
        pass

    def mapping(loader: Any, node: Any, deep: bool = False) -> Any:
        seen = set()
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"{key!r} is given twice", key_node.start_mark)
            seen.add(key)
        return loader.construct_mapping(node, deep)

    UniqueKeys.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    return yaml.load(text, Loader=UniqueKeys)  # noqa: S506 - a SafeLoader subclass
