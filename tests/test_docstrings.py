"""Every docstring example of the public API runs (the examples are code, not decoration).

The examples are executed statement by statement, as doctest would, without comparing
printed reprs (tensor reprs vary between TensorFlow versions); an example that raises fails.
"""

import doctest
import inspect

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_contrastive as kc

SUBPACKAGES = (
    "callbacks",
    "datasets",
    "distribute",
    "encoders",
    "evaluation",
    "export",
    "layers",
    "lora",
    "losses",
    "methods",
    "metrics",
    "models",
    "ops",
)


def public_objects():
    """`(qualified name, object)` of the package, its subpackages and their public names."""
    yield "keras_contrastive", kc
    for package_name in SUBPACKAGES:
        package = getattr(kc, package_name)
        yield f"kc.{package_name}", package
        for name, value in vars(package).items():
            if name.startswith("_") or inspect.ismodule(value):
                continue
            if getattr(value, "__module__", "").startswith("keras_contrastive"):
                yield f"kc.{package_name}.{name}", value


def examples():
    parser = doctest.DocTestParser()
    seen = set()
    for name, value in public_objects():
        if id(value) in seen:
            continue
        seen.add(id(value))
        docstring = inspect.getdoc(value) or ""
        code = [
            example.source
            for example in parser.get_examples(docstring)
            if not example.options.get(doctest.SKIP)  # needs the user's data on disk
        ]
        if code:
            yield pytest.param(inspect.getmodule(value), code, id=name)


EXAMPLES = list(examples())


def test_every_public_class_and_function_has_an_example():
    parser = doctest.DocTestParser()
    api = {
        name: value
        for name, value in public_objects()
        if inspect.isclass(value) or inspect.isfunction(value)
    }
    for required in (
        "kc.losses.NTXentLoss",
        "kc.models.ContrastiveModel",
        "kc.export.export_encoder",
    ):
        assert required in api, required
    missing = [
        name for name, value in api.items() if not parser.get_examples(inspect.getdoc(value) or "")
    ]
    assert not missing, f"public classes and functions without a `>>>` example: {missing}"


@pytest.mark.parametrize(("module", "code"), EXAMPLES)
def test_docstring_example_runs(module, code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # As doctest: the globals of the module that defines the object.
    namespace = {**vars(module), "kc": kc, "keras": keras, "np": np, "tf": tf}
    for statement in code:
        exec(compile(statement, "<docstring example>", "single"), namespace)
