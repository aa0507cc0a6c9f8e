#!/usr/bin/env python3
"""Checks recorded HTTP exchanges against openapi.json, the service's own API description.

Reads a JSON array on stdin, one object per response:
    {"method": "POST", "path": "/execute", "status": 400,
     "headers": {"x-request-id": "...", ...}, "body": "<response body text>"}
and checks each the way the description says it must be:
  - the operation (path and method) exists and documents the status; a path the description
    does not list must be 404 (components.responses.NotFound), a listed path with another
    method 405 (components.responses.MethodNotAllowed);
  - every required response header is there, and every documented header that is there matches
    its schema;
  - the body is JSON of the documented media type and valid against the response's schema
    (JSON Schema 2020-12, as OpenAPI 3.1 says; `$ref`s resolved within the document).
Prints one line per problem and exits 1 if there was any, 0 otherwise.

Used by tests/api.rs; run with the tools venv (./scripts/prepare-tools.sh):
    .sandbox/tools/bin/python3 scripts/check_response.py [openapi.json] < exchanges.json
"""
import json
import pathlib
import sys

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

ROOT = pathlib.Path(__file__).resolve().parent.parent
BASE = "urn:python-executor:openapi"


def escape(segment):
    return str(segment).replace("~", "~0").replace("/", "~1")


class Spec:
    def __init__(self, document):
        self.document = document
        resource = Resource(contents=document, specification=DRAFT202012)
        self.registry = Registry().with_resource(BASE, resource)

    def at(self, pointer):
        node = self.document
        for segment in pointer.lstrip("#/").split("/") if pointer not in ("", "#") else []:
            node = node[segment.replace("~1", "/").replace("~0", "~")]
        return node

    def follow(self, node, pointer):
        """Follows a local $ref (Response, Header objects); returns (object, its pointer)."""
        while isinstance(node, dict) and "$ref" in node:
            pointer = node["$ref"]
            node = self.at(pointer)
        return node, pointer

    def validate(self, value, schema_pointer):
        validator = Draft202012Validator({"$ref": BASE + schema_pointer}, registry=self.registry)
        return [
            "%s: %s" % ("/".join(str(p) for p in error.absolute_path) or "(root)", error.message)
            for error in sorted(validator.iter_errors(value), key=lambda e: list(map(str, e.path)))
        ]


def coerce(text, schema):
    """A header's text as the type its schema names."""
    kind = schema.get("type")
    try:
        if kind == "integer":
            return int(text)
        if kind == "number":
            return float(text)
    except ValueError:
        return text
    return text


def response_for(spec, method, path, status):
    """The documented Response object for an exchange, with its pointer, or a problem."""
    paths = spec.document["paths"]
    if path not in paths:
        if status != 404:
            return None, None, "%s is not in the description, so it must answer 404, not %s" % (path, status)
        return spec.follow({"$ref": "#/components/responses/NotFound"}, None) + (None,)
    item = paths[path]
    operation_method = "get" if method.lower() == "head" else method.lower()
    if operation_method not in item:
        if status != 405:
            return None, None, "%s %s is not in the description, so it must answer 405, not %s" % (method, path, status)
        return spec.follow({"$ref": "#/components/responses/MethodNotAllowed"}, None) + (None,)
    responses = item[operation_method]["responses"]
    key = str(status) if str(status) in responses else ("default" if "default" in responses else None)
    if key is None:
        return None, None, "%s %s does not document status %s" % (method, path, status)
    pointer = "#/paths/%s/%s/responses/%s" % (escape(path), operation_method, key)
    return spec.follow(responses[key], pointer) + (None,)


def check(spec, exchange):
    method, path, status = exchange["method"], exchange["path"], exchange["status"]
    headers = {k.lower(): v for k, v in exchange.get("headers", {}).items()}
    response, pointer, problem = response_for(spec, method, path, status)
    if problem:
        return [problem]
    problems = []
    for name, header in (response.get("headers") or {}).items():
        header, _ = spec.follow(header, None)
        value = headers.get(name.lower())
        if value is None:
            if header.get("required"):
                problems.append("missing required header %s" % name)
            continue
        schema = header.get("schema", {})
        schema, _ = spec.follow(schema, None)
        for error in Draft202012Validator(schema).iter_errors(coerce(value, schema)):
            problems.append("header %s: %r: %s" % (name, value, error.message))
    content = response.get("content")
    if not content or method.upper() == "HEAD":
        return problems
    essence = headers.get("content-type", "").split(";")[0].strip().lower()
    if essence not in content:
        return problems + ["Content-Type %r is not documented (%s)" % (essence, ", ".join(content))]
    try:
        body = json.loads(exchange.get("body", ""))
    except ValueError as e:
        return problems + ["the body is not JSON: %s" % e]
    schema_pointer = "%s/content/%s/schema" % (pointer, escape(essence))
    problems += ["body %s" % p for p in spec.validate(body, schema_pointer)]
    return problems


def main(argv):
    spec_path = pathlib.Path(argv[0]) if argv else ROOT / "openapi.json"
    spec = Spec(json.loads(spec_path.read_text(encoding="utf-8")))
    exchanges = json.load(sys.stdin)
    failed = 0
    for exchange in exchanges:
        problems = check(spec, exchange)
        if problems:
            failed += 1
            body = exchange.get("body", "")
            print("%s %s -> %s: %s" % (exchange["method"], exchange["path"], exchange["status"], body[:500]))
            for problem in problems:
                print("    " + problem)
    print("%d exchanges checked against %s, %d not as described" % (len(exchanges), spec_path.name, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
