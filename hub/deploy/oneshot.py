"""One prediction of a DEEPaaS module without a server ("try me"), run inside the module's environment.

This file is executed by the module environment's Python, so it imports
nothing from ai4lab. It reads a JSON request on stdin
(``{"model", "fields": {name: value}, "files": {name: {"path", "filename", "content_type"}}}``),
checks the fields against the module's ``get_predict_args`` like DEEPaaS does
(marshmallow deserialisation), calls ``warm`` and ``predict``, and writes one
JSON line: ``{"status": "OK", "predictions": ...}`` or ``{"status": "error",
"code": 400|500, "reason": ...}``.
"""

import json
import sys
import traceback
from importlib.metadata import entry_points


def _load(model):
    eps = [ep for ep in entry_points(group="deepaas.v2.model") if ep.name == model]
    if not eps:
        raise LookupError("no deepaas.v2.model entry point named %r in this environment" % model)
    return eps[0].load()


def _answer(payload):
    sys.stdout.write("\nAI4LAB-RESULT " + json.dumps(payload, default=str) + "\n")
    sys.stdout.flush()


def prepare(api, fields, files):
    """Predict arguments from form fields and uploaded files, checked like DEEPaaS does: (kwargs, error)."""
    from deepaas.model.v2.wrapper import UploadedFile
    from marshmallow import ValidationError, missing

    args = api.get_predict_args()
    unknown = sorted((set(fields) | set(files)) - set(args))
    if unknown:
        return None, "unknown field(s) %s: this module takes %s" % (", ".join(unknown), ", ".join(sorted(args)))
    kwargs = {}
    try:
        for name, field in args.items():
            is_file = (field.metadata or {}).get("type") == "file"
            if name in files:
                if not is_file:
                    raise ValidationError("%s is not a file field" % name)
                f = files[name]
                kwargs[name] = UploadedFile(name=name, filename=f["path"], content_type=f.get("content_type"),
                                            original_filename=f.get("filename"))
            elif name in fields:
                if is_file:
                    raise ValidationError("%s must be an uploaded file" % name)
                kwargs[name] = field.deserialize(fields[name])
            elif field.required:
                raise ValidationError("missing required field %s" % name)
            elif field.load_default is not missing and field.load_default is not None \
                    and not callable(field.load_default):
                kwargs[name] = field.load_default
    except ValidationError as e:
        return None, str(e.messages if hasattr(e, "messages") else e)
    return kwargs, None


def file_fields(api):
    return [n for n, f in api.get_predict_args().items() if (f.metadata or {}).get("type") == "file"]


def describe(api):
    """The predict arguments as JSON: name, file?, required, description, a plain default, type."""
    out = []
    for name, f in api.get_predict_args().items():
        meta = dict(f.metadata or {})
        default = getattr(f, "load_default", None)
        out.append({"name": name, "file": meta.get("type") == "file", "required": bool(f.required),
                    "description": str(meta.get("description", "")),
                    "default": default if isinstance(default, (str, int, float, bool)) else None,
                    "type": type(f).__name__})
    return out


def main():
    if sys.argv[1:2] == ["--describe"]:
        _answer(describe(_load(sys.argv[2])))
        return
    request = json.loads(sys.stdin.read())
    try:
        api = _load(request["model"])
    except Exception as e:  # noqa: BLE001
        _answer({"status": "error", "code": 500, "reason": "cannot load the module: %s" % e})
        return
    kwargs, error = prepare(api, request.get("fields", {}), request.get("files", {}))
    if error:
        _answer({"status": "error", "code": 400, "reason": error})
        return
    try:
        if hasattr(api, "warm"):
            api.warm()
        result = api.predict(**kwargs)
    except Exception as e:  # noqa: BLE001
        bad = getattr(e, "status_code", None) == 400 or isinstance(e, ValueError)
        _answer({"status": "error", "code": 400 if bad else 500,
                 "reason": getattr(e, "reason", None) or str(e) or type(e).__name__,
                 "trace": "" if bad else traceback.format_exc(limit=5)})
        return
    _answer({"status": "OK", "predictions": result})


if __name__ == "__main__":
    main()
