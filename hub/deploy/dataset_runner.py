"""Downloads a dataset's files into the user's storage, as the user, checking every checksum.

Executed by the user Python (``settings.user_python``) as the owner's system
account, so it imports only the standard library and nothing from ai4lab.
``dataset_runner.py REQUEST.json`` reads ``{"files": [{"key", "url", "size",
"checksums": {"md5": ..., "sha256": ...}}], "tmp", "target", "replace",
"card", "result"}``:

- every file goes to ``tmp`` (a hidden folder beside ``target``, in the
  user's storage), its md5 and sha256 computed while it streams; a size or a
  checksum that differs from the record's ends the job (exit 1) with a
  result naming the file and both values;
- ``progress files i/n bytes b/t`` lines tell how far it is (at most twice a
  second, and after each file);
- the card (``DATASET.md`` and ``dataset.json``) is written last into
  ``tmp``, which is then renamed to ``target``: the dataset appears whole or
  not at all. With ``replace`` an existing ``target`` is swapped out first
  and removed after;
- ``result`` is written last: ``{"output": {...}}`` or ``{"error": "..."}``;
  the platform reads how the job ended from it, not from the exit code.
"""

import datetime
import hashlib
import json
import os
import shutil
import sys
import time
import urllib.error
import urllib.request

CHUNK = 1 << 16
#: Seconds between two progress lines while a file streams.
EVERY = 0.5


class Failed(Exception):
    """The import cannot finish; the message says why, to the dataset's owner."""


def human(n):
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return ("%d %s" % (n, unit)) if unit == "B" else ("%.1f %s" % (n, unit))
        n /= 1024.0
    return "%d B" % n


class Progress:
    def __init__(self, files, total):
        self.files, self.total = files, total
        self.files_done = self.bytes_done = 0
        self.said = 0.0

    def say(self, force=False):
        now = time.monotonic()
        if force or now - self.said >= EVERY:
            self.said = now
            print(
                "progress files %d/%d bytes %d/%d" % (self.files_done, self.files, self.bytes_done, self.total),
                flush=True,
            )


def fetch(entry, folder, progress, timeout):
    """One file into ``folder``; its md5 and sha256 as they came."""
    path = os.path.join(folder, entry["key"])
    sums = {"md5": hashlib.md5(), "sha256": hashlib.sha256()}
    size = 0
    request = urllib.request.Request(entry["url"], headers={"User-Agent": "ai4lab-dataset-import"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer, open(path, "wb") as out:
            while True:
                chunk = answer.read(CHUNK)
                if not chunk:
                    break
                out.write(chunk)
                for h in sums.values():
                    h.update(chunk)
                size += len(chunk)
                progress.bytes_done += len(chunk)
                progress.say()
    except urllib.error.HTTPError as e:
        raise Failed("%s: the server answered %d %s (%s)" % (entry["key"], e.code, e.reason, entry["url"])) from None
    except (urllib.error.URLError, OSError) as e:
        raise Failed("%s: download failed: %s (%s)" % (entry["key"], getattr(e, "reason", e), entry["url"])) from None
    got = {name: h.hexdigest() for name, h in sums.items()}
    if entry.get("size") is not None and size != entry["size"]:
        raise Failed(
            "%s: size mismatch: the record says %d bytes, %d were downloaded" % (entry["key"], entry["size"], size)
        )
    for name, expected in sorted((entry.get("checksums") or {}).items()):
        if got[name] != expected.lower():
            raise Failed("%s: %s checksum mismatch: expected %s, got %s" % (entry["key"], name, expected, got[name]))
    progress.files_done += 1
    progress.say(force=True)
    print("%s: %s, md5 %s, sha256 %s" % (entry["key"], human(size), got["md5"], got["sha256"]), flush=True)
    return {"key": entry["key"], "size": size, "md5": got["md5"], "sha256": got["sha256"], "url": entry["url"]}


def card_markdown(card, files):
    """``DATASET.md``: where the dataset came from, for people."""
    lines = ["# %s" % (card.get("title") or card["name"]), ""]
    rows = [
        ("Source", card.get("source")),
        ("DOI", ("https://doi.org/%s" % card["doi"]) if card.get("doi") else None),
        ("Record", card.get("record_url")),
        ("Creators", "; ".join(card.get("creators") or []) or None),
        ("License", card.get("license")),
        ("Version", card.get("version")),
        ("Published", card.get("publication_date")),
        ("Imported", card.get("imported_at")),
        ("Imported by", card.get("imported_by")),
    ]
    lines += ["- **%s**: %s" % (k, v) for k, v in rows if v]
    if card.get("description"):
        lines += ["", card["description"]]
    lines += ["", "## Files", "", "| file | size | md5 | sha256 |", "|---|---|---|---|"]
    lines += ["| %s | %d | `%s` | `%s` |" % (f["key"], f["size"], f["md5"], f["sha256"]) for f in files]
    lines += ["", "Checksums verified against the source when imported by ai4lab.", ""]
    return "\n".join(lines)


def run(request):
    files, tmp, target = request["files"], request["tmp"], request["target"]
    progress = Progress(len(files), sum(f.get("size") or 0 for f in files))
    if os.path.lexists(tmp):  # left by an earlier attempt of this very job
        shutil.rmtree(tmp)
    os.makedirs(tmp, mode=0o700)
    print("importing %d file(s), %s, into %s" % (len(files), human(progress.total), target), flush=True)
    progress.say(force=True)
    got = [fetch(entry, tmp, progress, request.get("timeout", 60)) for entry in files]
    card = dict(request["card"])
    card["imported_at"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    card["files"] = got
    with open(os.path.join(tmp, "dataset.json"), "w") as f:
        json.dump(card, f, indent=1)
    with open(os.path.join(tmp, "DATASET.md"), "w") as f:
        f.write(card_markdown(card, got))
    old = None
    if os.path.lexists(target):
        if not request.get("replace"):
            raise Failed("%s exists now: import again with replace, or under another name" % card["name"])
        old = tmp + ".old"
        os.rename(target, old)
    os.rename(tmp, target)
    if old:
        shutil.rmtree(old, ignore_errors=True)
    print("dataset %s ready: %d file(s), %s" % (card["name"], len(got), human(progress.bytes_done)), flush=True)
    return {"path": card["path"], "files": len(got), "bytes": progress.bytes_done}


def main():
    with open(sys.argv[1]) as f:
        request = json.load(f)
    try:
        output = run(request)
    except Failed as e:
        shutil.rmtree(request["tmp"], ignore_errors=True)
        print("import failed: %s" % e, file=sys.stderr, flush=True)
        with open(request["result"], "w") as f:
            json.dump({"error": str(e)}, f)
        return 1
    with open(request["result"], "w") as f:
        json.dump({"output": output}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
