"""A small fake Zenodo: the REST API's record and file answers, from records a test builds.

It answers as zenodo.org does (InvenioRDM): ``GET /api/records/<id>`` gives the
record (``id``, ``doi``, ``metadata`` with title, creators, license, version,
``links.html``, and ``files[]`` with ``key``, ``size``, ``checksum``
``"md5:<hex>"`` and ``links.self`` -> the content), ``GET
/api/records/<id>/files/<key>/content`` the file's bytes; an unknown record
is a 404 with Zenodo's error body. A record can lie about a file's md5 (to test
the checksum check) and serve its files slowly (to test progress and cancel).
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, StreamingResponse

from tests.fakes.nomad import ThreadedServer


@dataclass
class Record:
    id: int
    title: str
    files: dict[str, bytes]
    creators: list[str] = field(default_factory=lambda: ["Doe, Jane", "Roe, Richard"])
    license: str = "cc-by-4.0"
    version: str = "1.0"
    #: files whose md5 the record states wrongly (key -> the md5 it claims)
    wrong_md5: dict[str, str] = field(default_factory=dict)
    #: files whose size the record states wrongly (key -> the size it claims)
    wrong_size: dict[str, int] = field(default_factory=dict)
    #: bytes per second its files are served at (0: as fast as possible)
    rate: int = 0
    access: str = "open"


class FakeZenodo:
    def __init__(self) -> None:
        self.records: dict[int, Record] = {}
        self.requests: list[str] = []
        self.url = ""  # set when served
        self.app = self._build()

    def add(self, record: Record) -> Record:
        self.records[record.id] = record
        return record

    def record_json(self, rec: Record) -> dict[str, Any]:
        base = self.url
        files = []
        if rec.access == "open":
            for key, content in rec.files.items():
                md5 = rec.wrong_md5.get(key) or hashlib.md5(content).hexdigest()
                files.append({
                    "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{rec.id}/{key}")),
                    "key": key,
                    "size": rec.wrong_size.get(key, len(content)),
                    "checksum": f"md5:{md5}",
                    "links": {"self": f"{base}/api/records/{rec.id}/files/{key}/content"},
                })
        doi = f"10.5281/zenodo.{rec.id}"
        return {
            "id": rec.id,
            "recid": str(rec.id),
            "conceptrecid": str(rec.id - 1),
            "doi": doi,
            "doi_url": f"https://doi.org/{doi}",
            "title": rec.title,
            "status": "published",
            "metadata": {
                "title": rec.title,
                "doi": doi,
                "publication_date": "2024-05-17",
                "description": f"<p>{rec.title}, for tests.</p>",
                "access_right": rec.access,
                "creators": [{"name": c, "affiliation": "Test Lab"} for c in rec.creators],
                "version": rec.version,
                "license": {"id": rec.license},
                "resource_type": {"title": "Dataset", "type": "dataset"},
            },
            "links": {"self": f"{base}/api/records/{rec.id}", "html": f"{base}/records/{rec.id}"},
            "files": files,
        }

    def _build(self) -> FastAPI:
        app = FastAPI()

        def missing() -> JSONResponse:
            return JSONResponse({"status": 404, "message": "The persistent identifier does not exist."}, 404)

        @app.get("/api/records/{record_id}")
        async def record(record_id: int) -> Any:
            self.requests.append(f"record {record_id}")
            rec = self.records.get(record_id)
            return self.record_json(rec) if rec else missing()

        @app.get("/api/records/{record_id}/files/{key}/content")
        async def content(record_id: int, key: str) -> Any:
            self.requests.append(f"content {record_id}/{key}")
            rec = self.records.get(record_id)
            if rec is None or key not in rec.files:
                return missing()
            data = rec.files[key]

            async def chunks() -> Any:
                step = max(1, rec.rate // 10) if rec.rate else len(data) or 1
                for i in range(0, len(data), step):
                    yield data[i : i + step]
                    if rec.rate:
                        await asyncio.sleep(0.1)

            return StreamingResponse(chunks(), media_type="application/octet-stream",
                                     headers={"Content-Length": str(len(data))})

        return app


class FakeZenodoServer(ThreadedServer):
    """Serves a :class:`FakeZenodo` on a free local port; ``url`` is what ``zenodo_url`` is set to."""

    def __init__(self, fake: FakeZenodo | None = None) -> None:
        self.fake = fake or FakeZenodo()
        super().__init__(self.fake.app)
        self.fake.url = self.address

    def __enter__(self) -> FakeZenodoServer:
        super().__enter__()
        return self

    @property
    def url(self) -> str:
        return self.address
