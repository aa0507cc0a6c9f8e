#!/usr/bin/env python3
"""Writes openapi.json from openapi.yaml (the source of the API description).

The service embeds openapi.json at compile time and serves it at GET /openapi.json, so the
binary needs no YAML parser. tests/api.rs runs this with --stdout and fails when the committed
openapi.json differs.

    .sandbox/tools/bin/python3 scripts/openapi-json.py            # rewrite openapi.json
    .sandbox/tools/bin/python3 scripts/openapi-json.py --stdout   # print it instead
    .sandbox/tools/bin/python3 scripts/openapi-json.py --check    # exit 1 if openapi.json is stale

Needs PyYAML (sandbox/tools-requirements.txt; ./scripts/prepare-tools.sh installs it).
"""
import json
import pathlib
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent


def convert(text):
    # safe_load: plain data only. A value YAML would read as a date must be quoted in the
    # source; json.dumps refuses it loudly otherwise.
    document = yaml.safe_load(text)
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def main(argv):
    wanted = convert((ROOT / "openapi.yaml").read_text(encoding="utf-8"))
    target = ROOT / "openapi.json"
    if "--stdout" in argv:
        sys.stdout.write(wanted)
    elif "--check" in argv:
        current = target.read_text(encoding="utf-8") if target.exists() else ""
        if current != wanted:
            print("openapi.json is stale: run scripts/openapi-json.py", file=sys.stderr)
            return 1
    else:
        target.write_text(wanted, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
