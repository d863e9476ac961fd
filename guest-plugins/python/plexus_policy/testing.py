"""Running the case files `plexus policy test` reads against a policy natively, for pytest:

    import app
    from plexus_policy import testing

    @pytest.mark.parametrize("case", testing.load_cases("cases"), ids=str)
    def test_case(case):
        case.check(app.WitWorld)

A case file is `{"cases": [...]}` or one case; a case has `input` (the request as JSON, as
`plexus policy run --input` reads it), `name`, and either `output` (compared `exact`ly or,
with `"match": "subset"`, only on the keys the case names) or `error` (a text the error must
contain). Read as strictly as the CLI reads it. Natively the host's checks of an answer (for
example of interface names and network files) do not run; `plexus policy test` on the
component runs them.
"""

import json
import pathlib

from . import types
from .export import Err
from .store import MemoryStore

_CASE_KEYS = {"name", "input", "output", "match", "error"}


class Case:
    def __init__(self, name, input, output, match, error):
        self.name = name
        self.input = input
        self.output = output
        self.match = match
        self.error = error

    def __str__(self):
        return self.name

    def answer(self, world_class):
        """What the policy exported as `world_class` answers this case's input: JSON data,
        as `plexus policy run` prints it. Raises `Err` with the policy's error."""
        if hasattr(world_class, "select_networks"):
            request = types.from_json(types.SelectRequest, self.input)
            return types.to_json(world_class().select_networks(request))
        if hasattr(world_class, "merge"):
            request = types.from_json(types.MergeRequest, self.input)
            return types.to_json(world_class().merge(request))
        return self._ipam_answer(world_class)

    def _ipam_answer(self, world_class):
        unknown = set(self.input) - {"call", "request", "store"}
        if unknown or "request" not in self.input:
            raise ValueError(f"case {self.name}: an IPAM input is {{call, request, store}}, with a request")
        # The CLI's default call.
        call = self.input.get("call", "allocate")
        if call not in ("allocate", "release", "check", "gc"):
            raise ValueError(f"case {self.name}: input `call` must be allocate, release, check or gc")
        record = types.GcRequest if call == "gc" else types.IpamRequest
        request = types.from_json(record, self.input["request"])
        memory = MemoryStore(self.input.get("store") or {})
        world = world_class(memory)
        result = getattr(world, call)(request)
        return {"result": types.to_json(result), "store": memory.contents()}

    def check(self, world_class):
        """Asserts that the policy answers as the case says."""
        try:
            actual = self.answer(world_class)
        except Err as err:
            assert self.error is not None, f"expected output, got error: {err.value}"
            assert self.error in err.value, f"error {err.value!r} does not contain {self.error!r}"
            return
        assert self.error is None, f"expected an error containing {self.error!r}, got output {json.dumps(actual)}"
        same = is_subset(self.output, actual) if self.match == "subset" else is_same(self.output, actual)
        assert same, f"output differs\n  expected: {json.dumps(self.output)}\n  actual:   {json.dumps(actual)}"


def is_same(expected, actual):
    """Equal, a key missing on one side counting as `null` (as `plexus policy test` does)."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        return _covers(expected, actual, is_same) and _covers(actual, expected, is_same)
    if isinstance(expected, list) and isinstance(actual, list):
        return len(expected) == len(actual) and all(map(is_same, expected, actual))
    return _scalar_equal(expected, actual)


def is_subset(expected, actual):
    """`actual` has every key `expected` names, with matching values (lists pairwise)."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        return _covers(expected, actual, is_subset)
    if isinstance(expected, list) and isinstance(actual, list):
        return len(expected) == len(actual) and all(map(is_subset, expected, actual))
    return _scalar_equal(expected, actual)


def _scalar_equal(expected, actual):
    # JSON `true` is not `1`, though Python's `True == 1`.
    return type(expected) is type(actual) and expected == actual


def _covers(wanted, found, matches):
    return all(matches(value, found.get(key)) for key, value in wanted.items())


def load_cases(path):
    """The cases of a case file, or of every `.json` file under a directory (sorted), as
    `Case`s named like the CLI names them."""
    path = pathlib.Path(path)
    files = sorted(path.glob("*.json")) if path.is_dir() else [path]
    if not files:
        raise ValueError(f"no case files in {path}")
    cases = []
    for file in files:
        data = json.loads(file.read_text())
        raw_cases = data["cases"] if isinstance(data, dict) and "cases" in data else [data]
        if isinstance(data, dict) and "cases" in data and set(data) != {"cases"}:
            raise ValueError(f"case file {file}: unknown key {sorted(set(data) - {'cases'})[0]!r}")
        for index, raw in enumerate(raw_cases):
            unknown = set(raw) - _CASE_KEYS
            if unknown:
                raise ValueError(f"case file {file}: case {index + 1}: unknown key {sorted(unknown)[0]!r}")
            if ("output" in raw) == ("error" in raw):
                raise ValueError(f"case file {file}: case {index + 1}: a case needs exactly one of `output` and `error`")
            if raw.get("match", "exact") not in ("exact", "subset"):
                raise ValueError(f"case file {file}: case {index + 1}: `match` is exact or subset")
            name = raw.get("name") or f"{file}#{index + 1}"
            cases.append(Case(name, raw["input"], raw.get("output"), raw.get("match", "exact"), raw.get("error")))
    return cases
