"""Override values that name more than a literal: factory calls (in lists too), ``@file`` and ``_factory_`` data."""

from __future__ import annotations

from typing import Any

from nemoflow.cli import factories
from nemoflow.cli.tokens import DOTTED, FactoryCall, LoadFile
from nemoflow.configs.core import Buildable
from nemoflow.errors import ConfigError, describe_value


def resolve_value(value: Any, annotation: Any, ov: Any, *, owner: Any = None, arg: str | None = None) -> Any:
    """A parsed value of override ``ov`` with its factory calls made and ``@file`` values loaded,
    lists item by item (``models=[my_model(1), my_model(2)]``)."""
    if isinstance(value, FactoryCall):
        target = factories.resolve(value.name, annotation, where=ov.token, owner=owner, arg=arg)
        return factories.call(target, value.args, value.kwargs, name=value.name, where=ov.token)
    if isinstance(value, LoadFile):
        return load_value(value.path, annotation, where=ov.token)
    if isinstance(value, dict) and "_factory_" in value:
        return from_factory_data(value, annotation, where=ov.token)
    if isinstance(value, (list, tuple)) and any(isinstance(v, FactoryCall) for v in value):
        item = factories.item_annotation(annotation)
        made = [resolve_value(_as_call(v, item), item, ov) for v in value]
        return made if isinstance(value, list) else tuple(made)
    return value


def _as_call(value: Any, annotation: Any) -> Any:
    """A bare factory name among factory calls (``[small, big(2)]``) is a call without arguments."""
    if isinstance(value, str) and DOTTED.fullmatch(value) and factories.find(value, annotation) is not None:
        return FactoryCall(value)
    return value


def load_value(path: str, annotation: Any, *, where: str) -> Any:
    """``key=@file.yaml``: the file's config, or its data (a mapping with ``_factory_`` calls that factory).

    The file is read as data (YAML through ``yaml.safe_load``), never run.
    """
    from nemoflow.configs.serialize import load

    return from_factory_data(load(path), annotation, where=where)


def from_factory_data(data: Any, annotation: Any, *, where: str) -> Any:
    """``{"_factory_": "my_model", "hidden_size": 5}`` (NeMo Run's YAML form) as the factory's config
    with those values set (each checked as it is set); any other value as it is."""
    if not (isinstance(data, dict) and "_factory_" in data):
        return data
    values = dict(data)
    name = str(values.pop("_factory_"))
    made = factories.call(factories.resolve(name, annotation, where=where), (), {}, name=name, where=where)
    if not isinstance(made, Buildable):
        raise ConfigError(f"factory {name} made {describe_value(made)}, not a config", path=where)
    for key, value in values.items():
        param = made.__signature__.param(str(key))
        try:
            setattr(made, str(key), from_factory_data(value, param.annotation, where=where))
        except ConfigError as exc:
            raise ConfigError(f"{name}.{key}: {exc.message}", path=where, hint=exc.hint) from None
    return made


def rehome(value: Any, module: str | None) -> Any:
    """A loaded config whose targets name ``__main__`` (as NeMo Run exports a script's config:
    ``_target_ = "__main__.train_model"``), with each such target taken from the script's module
    ``module`` instead, where it has one of that name, so a step process can import it."""
    import sys

    home = sys.modules.get(module) if module and module != "__main__" else None
    if home is None:
        return value
    if isinstance(value, Buildable):
        target = value.__fn_or_cls__
        if getattr(target, "__module__", None) == "__main__":
            target = _attribute(home, getattr(target, "__qualname__", "")) or target
        arguments = {k: rehome(v, module) for k, v in value.__arguments__.items()}
        return type(value)(target, **arguments)
    if isinstance(value, list | tuple):
        return type(value)(rehome(v, module) for v in value)
    if isinstance(value, dict):
        return {k: rehome(v, module) for k, v in value.items()}
    return value


def _attribute(module: Any, qualname: str) -> Any:
    target = module
    for part in qualname.split("."):
        target = getattr(target, part, None)
    return target
