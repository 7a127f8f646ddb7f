"""Configs: ``Config`` / ``Partial`` / ``Script``, their validation, references, data form and tree operations.

Lives here: core.py (the config types, ``build``), arguments.py (how a constructor reads its arguments,
NeMo Run style), script.py (``Script``), validation.py (signatures, pydantic checks), hints.py (string
annotations, incomplete pydantic models), refs.py (``File``, step references), serialize.py / decode.py
(data form, canonical JSON, YAML/TOML/JSON/Python; what a config file may import), paths.py
(``set_value``), compare.py (``cfg.diff(old)``), treeops.py, sweeps.py, autoconvert.py (``@autoconvert``),
checks.py (validation rules built at plan time).
Imports only ``nemoflow.errors``. Everything else may import it. One documented exception goes up:
``@nemoflow.partial(executor=...)`` makes a ``runs.launch.EngineFunction`` (inside the function).
Folder name: ``nemoflow.config`` is the public ``partial`` decorator's alias, so the package is ``configs``.
"""
