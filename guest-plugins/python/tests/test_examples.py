"""The Python examples pass the Rust examples' case files, read from where those live."""

import importlib.util
import pathlib

import pytest

from plexus_policy import testing

PYTHON = pathlib.Path(__file__).resolve().parent.parent
RUST_EXAMPLES = PYTHON.parent / "examples"
EXAMPLES = ["by-namespace", "vm-networks", "primary-routes"]


def load_app(example):
    spec = importlib.util.spec_from_file_location(f"app_{example.replace('-', '_')}", PYTHON / "examples" / example / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CASES = [(example, case) for example in EXAMPLES for case in testing.load_cases(RUST_EXAMPLES / example / "cases")]


@pytest.mark.parametrize("example,case", CASES, ids=[f"{example}: {case}" for example, case in CASES])
def test_example_passes_the_shared_case(example, case):
    case.check(load_app(example).WitWorld)
