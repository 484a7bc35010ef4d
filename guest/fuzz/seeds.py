#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora from tests/vectors/*.json.

Usage: seeds.py VECTORS_DIR OUT_DIR

OUT_DIR/<target>/ gets one file per case (named after the vector file and
case, rewritten on every run, so this is idempotent):
  encoded_head    the case's head as JSON: [method, path, query, [[n, v], ...]]
  typed_evaluate  for each config selector 0..2: the selector byte, then
                  method 0xFF path 0xFF query (0xFF name 0xFF value)* in UTF-8
                  (selector 1 has path prefix /api/v1, so its paths get it)
  encoded_config  the case's effective config JSON (base-config.json updated
                  with the file's, then the case's `config`), 0xFF, the head
                  JSON; config-only cases give the config alone
"""

import json
import os
import re
import sys

SEP = b"\xff"


def dumps(value):
    """Compact JSON in UTF-8; ASCII escapes if a lone surrogate forbids raw."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value, separators=(",", ":")).encode("ascii")


def utf8(s):
    return s.encode("utf-8", "surrogatepass")


def write(out_dir, target, name, data):
    folder = os.path.join(out_dir, target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def main(vectors, out_dir):
    with open(os.path.join(vectors, "base-config.json"), encoding="utf-8") as f:
        base = json.load(f)
    counts = {}
    for file in sorted(os.listdir(vectors)):
        if not file.endswith(".json") or file == "base-config.json":
            continue
        with open(os.path.join(vectors, file), encoding="utf-8") as f:
            doc = json.load(f)
        stem = file[: -len(".json")]
        for case in doc.get("cases", []):
            name = stem + "-" + re.sub(r"[^A-Za-z0-9_.-]", "_", case["name"])
            config = dict(base)
            config.update(doc.get("config", {}))
            config.update(case.get("config", {}))
            config_json = dumps(config)
            req = case.get("request")
            if req is None:
                write(out_dir, "encoded_config", name, config_json)
                counts["encoded_config"] = counts.get("encoded_config", 0) + 1
                continue
            headers = [list(h) for h in req["headers"]]
            head = [req["method"], req["path"], req["query"], headers]
            head_json = dumps(head)
            write(out_dir, "encoded_head", name, head_json)
            write(out_dir, "encoded_config", name, config_json + SEP + head_json)
            for selector in range(3):
                path = req["path"]
                if selector == 1 and path.startswith("/"):
                    path = "/api/v1" + path
                fields = [req["method"], path, req["query"]]
                for n, v in headers:
                    fields += [n, v]
                data = bytes([selector]) + SEP.join(utf8(x) for x in fields)
                write(out_dir, "typed_evaluate", f"{name}-{selector:d}", data)
            for target in ("encoded_head", "encoded_config"):
                counts[target] = counts.get(target, 0) + 1
            counts["typed_evaluate"] = counts.get("typed_evaluate", 0) + 3
    for target, n in sorted(counts.items()):
        print(f"seeds: {target}: {n:d} files in {os.path.join(out_dir, target)}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
