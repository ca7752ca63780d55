"""Batch inference: a module's ``predict`` over every file of a folder, inside the module's environment.

``batch_runner.py REQUEST.json`` reads ``{"model", "input", "output", "fields", "file_field", "result"}``;
writes one ``<file name>.json`` per input file into ``output`` (the prediction, or the reason it
failed), prints ``progress i/n`` lines, and ``summary.json`` at the end. Exit 0 when every file was
predicted, 1 when some failed (their reasons are in their JSON files), 2 for bad arguments.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from oneshot import _load, file_fields, prepare


def main():
    with open(sys.argv[1]) as f:
        request = json.load(f)
    api = _load(request["model"])
    names = file_fields(api)
    field = request.get("file_field") or (names[0] if len(names) == 1 else None)
    if field not in names:
        print("bad arguments: say which file field to fill (%s)" % ", ".join(names), file=sys.stderr)
        return 2
    inputs = sorted(
        os.path.join(root, f) for root, _, files in os.walk(request["input"]) for f in files if not f.startswith(".")
    )
    os.makedirs(request["output"], exist_ok=True)
    if hasattr(api, "warm"):
        api.warm()
    failed = 0
    for i, path in enumerate(inputs, 1):
        rel = os.path.relpath(path, request["input"])
        kwargs, error = prepare(api, request.get("fields", {}), {field: {"path": path, "filename": rel}})
        if error:
            print("bad arguments: " + error, file=sys.stderr)
            return 2
        try:
            answer = {"file": rel, "predictions": api.predict(**kwargs)}
        except Exception as e:  # noqa: BLE001 - one bad file does not stop the batch
            failed += 1
            answer = {"file": rel, "error": getattr(e, "reason", None) or str(e) or type(e).__name__}
        target = os.path.join(request["output"], rel.replace(os.sep, "__") + ".json")
        with open(target, "w") as f:
            json.dump(answer, f, default=str)
        print("progress %d/%d" % (i, len(inputs)), flush=True)
    summary = {"files": len(inputs), "failed": failed, "output": request["output"]}
    with open(os.path.join(request["output"], "summary.json"), "w") as f:
        json.dump(summary, f)
    with open(request["result"], "w") as f:
        json.dump({"output": summary}, f)
    print("batch done", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
