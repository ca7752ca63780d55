"""One prediction of a DEEPaaS module without a server ("try me"), run inside the module's environment.

This file is executed by the module environment's Python, so it imports
nothing from ai4lab. It reads a JSON request on stdin
(``{"model", "fields": {name: value}, "files": {name: {"path", "filename", "content_type"}}}``),
checks the fields against the module's ``get_predict_args`` like DEEPaaS does
(marshmallow deserialisation), calls ``warm`` and ``predict``, and writes one
JSON line: ``{"status": "OK", "predictions": ...}`` or ``{"status": "error",
"code": 400|500, "reason": ...}``.

A module whose predict arguments have an ``accept`` field (DEEPaaS v2: the
content types it can answer in, the first being the default) may answer
with bytes, a file object or a ``ReturnedFile`` for a type other than JSON,
as DEEPaaS passes it through: then the answer is written to the request's
``output`` path and the line says ``{"status": "OK", "file": path,
"content_type": ...}``.
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
                kwargs[name] = UploadedFile(
                    name=name,
                    filename=f["path"],
                    content_type=f.get("content_type"),
                    original_filename=f.get("filename"),
                )
            elif name in fields:
                if is_file:
                    raise ValidationError("%s must be an uploaded file" % name)
                value = fields[name]
                if name == "accept" and value == "*/*":  # DEEPaaS adds */* (JSON) to the choices
                    kwargs[name] = value
                    continue
                if _is_list(field):
                    value = _as_list(value)
                elif isinstance(value, list):  # a repeated form field: the last one, as webargs takes it
                    value = value[-1]
                kwargs[name] = field.deserialize(value)
            elif name == "accept" and accept_choices(api):
                kwargs[name] = accept_choices(api)[0]  # as DEEPaaS: the first content type is the default
            elif field.required:
                raise ValidationError("missing required field %s" % name)
            elif (
                field.load_default is not missing
                and field.load_default is not None
                and not callable(field.load_default)
            ):
                kwargs[name] = field.load_default
    except ValidationError as e:
        return None, str(e.messages if hasattr(e, "messages") else e)
    return kwargs, None


def _is_list(field):
    return getattr(field, "inner", None) is not None


def _as_list(value):
    """A list argument from a form: repeated fields, or one field holding a JSON list, or one value."""
    if isinstance(value, list):
        return value
    if isinstance(value, str) and value.strip().startswith("["):
        try:
            parsed = json.loads(value)
            if isinstance(parsed, list):
                return parsed
        except ValueError:
            pass
    return [value]


def save(result, path):
    """Write a non-JSON answer (bytes, str, a file object or a DEEPaaS ReturnedFile) to ``path``, as DEEPaaS
    sends it."""
    from deepaas.model.v2.wrapper import ReturnedFile

    if isinstance(result, ReturnedFile):
        result = open(result.filename, "rb")  # noqa: SIM115 - read below like any file object the module returns
    if hasattr(result, "read"):
        data = result.read()
        result.close() if hasattr(result, "close") else None
    else:
        data = result
    if isinstance(data, str):
        data = data.encode()
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError("predict answered %s, not bytes or a file, for a non-JSON content type" % type(data).__name__)
    with open(path, "wb") as f:
        f.write(data)
    return path


def accept_choices(api):
    """The content types the module can answer in (its ``accept`` argument), the default first; [] without one."""
    field = api.get_predict_args().get("accept")
    choices = getattr(getattr(field, "validate", None), "choices", None) if field is not None else None
    return list(choices or [])


def file_fields(api):
    return [n for n, f in api.get_predict_args().items() if (f.metadata or {}).get("type") == "file"]


def describe(api):
    """The predict arguments as JSON: name, file?, required, description, a plain default, type."""
    out = []
    for name, f in api.get_predict_args().items():
        meta = dict(f.metadata or {})
        default = getattr(f, "load_default", None)
        entry = {
            "name": name,
            "file": meta.get("type") == "file",
            "required": bool(f.required),
            "description": str(meta.get("description", "")),
            "default": default if _plain(default) else None,
            "type": type(f).__name__,
        }
        if isinstance(meta.get("enum"), (list, tuple)):  # the AI4OS demo app's way: fields.Str(enum=[...])
            entry["choices"] = [c for c in meta["enum"] if isinstance(c, (str, int, float, bool))]
        for v in _validators(f):
            if hasattr(v, "choices"):
                entry["choices"] = [c for c in v.choices if isinstance(c, (str, int, float, bool))]
            if getattr(v, "min", None) is not None or getattr(v, "max", None) is not None:
                entry["range"] = [getattr(v, "min", None), getattr(v, "max", None)]
        inner = getattr(f, "inner", None) or getattr(f, "container", None)
        if inner is not None:  # fields.List(...): several values (files, when the inner field is a file)
            entry["many"] = True
            entry["file"] = entry["file"] or (inner.metadata or {}).get("type") == "file"
            entry["item_type"] = type(inner).__name__
        out.append(entry)
    return out


def _plain(value):
    if isinstance(value, (list, tuple)):
        return all(isinstance(v, (str, int, float, bool)) for v in value)
    return isinstance(value, (str, int, float, bool))


def _validators(field):
    v = getattr(field, "validate", None)
    if v is None:
        return list(getattr(field, "validators", []) or [])
    return list(v) if isinstance(v, (list, tuple)) else [v]


def check(model):
    """The module's side of a compatibility report: each DEEPaaS call a platform makes, in order.

    Steps: load the entry point, ``get_metadata``, ``warm`` (when defined),
    read the predict arguments, and ``predict`` with the arguments' defaults
    (skipped, with the reason, when a required argument has none). A step
    that fails stops the rest.
    """
    steps = []

    def step(name, fn):
        try:
            detail = fn()
        except BaseException as e:  # noqa: BLE001 - the report says what broke, whatever it is
            steps.append(
                {
                    "step": name,
                    "status": "failed",
                    "detail": "%s: %s" % (type(e).__name__, e),
                    "log": traceback.format_exc(limit=8),
                }
            )
            return None, False
        steps.append({"step": name, "status": "ok", "detail": detail if isinstance(detail, str) else ""})
        return detail, True

    api, ok = step("load the deepaas.v2.model entry point", lambda: _load(model))
    if not ok:
        return steps
    _meta, ok = step("get_metadata", lambda: api.get_metadata() if hasattr(api, "get_metadata") else None)
    if not ok:
        return steps
    if hasattr(api, "warm"):
        _, ok = step("warm", lambda: api.warm() and "")
        if not ok:
            return steps
    else:
        steps.append({"step": "warm", "status": "skipped", "detail": "the module defines no warm()"})
    if not hasattr(api, "predict"):
        steps.append({"step": "predict", "status": "skipped", "detail": "the module defines no predict()"})
        return steps
    _args, ok = step("get_predict_args", lambda: "%d argument(s)" % len(describe(api)))
    if not ok:
        return steps
    kwargs, error = prepare(api, {}, {})
    if error:
        steps.append(
            {
                "step": "predict",
                "status": "skipped",
                "detail": "needs input without a default (%s): try it with your own input" % error,
            }
        )
        return steps
    step("predict with the arguments' defaults", lambda: _short(api.predict(**kwargs)))
    return steps


def _short(result):
    text = json.dumps(result, default=str) if not isinstance(result, (bytes, bytearray)) else "%d bytes" % len(result)
    return text[:300]


def main():
    if sys.argv[1:2] == ["--describe"]:
        _answer(describe(_load(sys.argv[2])))
        return
    if sys.argv[1:2] == ["--check"]:
        _answer(check(sys.argv[2]))
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
        accept = kwargs.get("accept") or "application/json"
        if accept not in ("application/json", "*/*"):
            _answer({"status": "OK", "file": save(result, request["output"]), "content_type": accept})
            return
    except Exception as e:  # noqa: BLE001
        bad = getattr(e, "status_code", None) == 400 or isinstance(e, ValueError)
        _answer(
            {
                "status": "error",
                "code": 400 if bad else 500,
                "reason": getattr(e, "reason", None) or str(e) or type(e).__name__,
                "trace": "" if bad else traceback.format_exc(limit=5),
            }
        )
        return
    _answer({"status": "OK", "predictions": result})


if __name__ == "__main__":
    main()
