#!/usr/bin/python3
"""Validate qbench results files against the JSON Schema (draft 2020-12).

Usage: validate_schema.py [--expect-invalid] SCHEMA.json RESULTS.json [RESULTS.json ...]

Prints every violation as "FILE: /json/pointer: message" and exits 1 if any file is invalid (2 on a usage error or
an invalid schema), 0 when all are valid. General on purpose: CI can run it over every committed results/*.json.
With --expect-invalid the verdict is inverted per file: exit 0 only if every file is rejected (tests use this to
show that the schema is strict).
Needs the python3-jsonschema Debian package (/usr/bin/python3 has it).
"""
import json
import sys

import jsonschema


def pointer(path):
    """The JSON pointer (RFC 6901) of a jsonschema error path."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path) or "/"


def main(argv):
    expect_invalid = len(argv) > 1 and argv[1] == "--expect-invalid"
    if expect_invalid:
        argv = argv[:1] + argv[2:]
    if len(argv) < 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as f:
        schema = json.load(f)
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as e:
        print(f"{argv[1]}: invalid schema: {e.message}", file=sys.stderr)
        return 2
    validator = jsonschema.Draft202012Validator(schema)

    failed = 0
    for name in argv[2:]:
        try:
            with open(name, encoding="utf-8") as f:
                document = json.load(f)
        except (OSError, ValueError) as e:
            print(f"{name}: cannot read: {e}")
            failed += 1
            continue
        errors = sorted(validator.iter_errors(document), key=lambda e: [str(p) for p in e.absolute_path])
        for e in errors:
            message = e.message if len(e.message) <= 300 else e.message[:297] + "..."
            print(f"{name}: {pointer(e.absolute_path)}: {message}")
        if not errors:
            cells = document.get("cells", []) if isinstance(document, dict) else []
            print(f"{name}: valid ({len(cells)} cells)")
        if bool(errors) != expect_invalid:
            if expect_invalid:
                print(f"{name}: expected the schema to reject this file, but it is valid")
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
