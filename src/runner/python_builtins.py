"""Python's builtins for the runner's own steps, whatever the script did to them. A part of the
runner: see the docstring of src/runner.py."""

import builtins

# What a script does to builtins (`builtins.len = None`, `builtins.isinstance = ...`) is its
# own: main and what ends the program see it. The runner's steps in between (reading main's
# signature, awaiting what it returns, wording an error, serialising the result) and the
# libraries they call (inspect, traceback, json, the import system) run on Python's.
_BUILTINS = builtins.__dict__
_ABSENT = object()


def set_aside(originals):
    """Puts back every builtin in `originals` the script rebound or deleted; returns the
    script's own, for `bring_back`. Dict methods and `is` only: nothing the script can replace."""
    own = {}
    for name, value in originals.items():
        now = _BUILTINS.get(name, _ABSENT)
        if now is not value:
            own[name] = now
            _BUILTINS[name] = value
    return own


def bring_back(own):
    for name, value in own.items():
        if value is _ABSENT:
            _BUILTINS.pop(name, None)
        else:
            _BUILTINS[name] = value


class PythonBuiltins:
    """`with PythonBuiltins(originals):` a runner step between two parts of the script."""

    def __init__(self, originals):
        self.originals = originals

    def __enter__(self):
        self.own = set_aside(self.originals)

    def __exit__(self, *exc_info):
        bring_back(self.own)


