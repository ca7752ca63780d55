"""What ``POST /datasets`` accepts as a source, and the card's facts it reads from a Zenodo record."""

from __future__ import annotations

import hashlib

import pytest

from ai4lab.core.errors import PlatformError
from ai4lab.deploy.datasets import parse_source, resolve_zenodo
from tests.fakes.zenodo import FakeZenodoServer, Record

ZENODO = "https://zenodo.org"


@pytest.mark.parametrize("source, expected", [
    ("10.5281/zenodo.123", ("zenodo", 123)),
    ("  10.5281/ZENODO.123 ", ("zenodo", 123)),
    ("doi:10.5281/zenodo.123", ("zenodo", 123)),
    ("https://doi.org/10.5281/zenodo.123", ("zenodo", 123)),
    ("https://zenodo.org/records/123", ("zenodo", 123)),
    ("https://zenodo.org/record/123/", ("zenodo", 123)),
    ("https://zenodo.org/api/records/123", ("zenodo", 123)),
    ("https://example.org/data/x.csv?raw=1", ("url", "https://example.org/data/x.csv?raw=1")),
    ("https://zenodo.org/records/123/files/x.csv", ("url", "https://zenodo.org/records/123/files/x.csv")),
])
def test_accepted_sources(source: str, expected: tuple[str, object]) -> None:
    assert parse_source(source, ZENODO) == expected


def test_a_configured_zenodo_is_resolved_and_may_speak_http() -> None:
    local = "http://127.0.0.1:5000/zen"
    assert parse_source("http://127.0.0.1:5000/zen/records/9", local) == ("zenodo", 9)
    assert parse_source("https://zenodo.org/records/9", local) == ("zenodo", 9)  # zenodo.org: the configured one
    assert parse_source(f"{local}/api/records/9/files/a/content", local)[0] == "url"


@pytest.mark.parametrize("source, words", [
    ("10.1000/xyz", "only Zenodo DOIs"),
    ("zenodo 123", "neither a DOI nor a URL"),
    ("ftp://example.org/x", "neither a DOI nor a URL"),
    ("http://example.org/x.csv", "not HTTPS"),
    ("file:///etc/passwd", "neither a DOI nor a URL"),
])
def test_refused_sources_say_what_is_accepted(source: str, words: str) -> None:
    with pytest.raises(PlatformError) as e:
        parse_source(source, ZENODO)
    assert e.value.status == 400 and words in e.value.message


def test_a_record_from_the_fake_zenodo() -> None:
    with FakeZenodoServer() as server:
        server.fake.add(Record(id=5, title="Ocean Temperatures 2020", files={"t.csv": b"t\n1\n"}, version="2.1"))
        server.fake.add(Record(id=6, title="Closed", files={"x": b""}, access="restricted"))
        server.fake.add(Record(id=8, title="Clash", files={"dataset.json": b"{}"}))
        got = resolve_zenodo(5, server.url)
        assert got.default_name == "ocean-temperatures-2020" and got.record == 5
        assert got.files == [{"key": "t.csv", "url": f"{server.url}/api/records/5/files/t.csv/content", "size": 4,
                              "checksums": {"md5": hashlib.md5(b"t\n1\n").hexdigest()}}]
        assert got.card["doi"] == "10.5281/zenodo.5" and got.card["license"] == "cc-by-4.0"
        assert got.card["version"] == "2.1" and got.card["record_url"] == f"{server.url}/records/5"
        for record, status, words in [(7, 404, "no Zenodo record 7"), (6, 400, "no files open for download"),
                                      (8, 400, "overwritten by the dataset's card")]:
            with pytest.raises(PlatformError) as e:
                resolve_zenodo(record, server.url)
            assert e.value.status == status and words in e.value.message
    with pytest.raises(PlatformError) as e:
        resolve_zenodo(5, server.url, timeout=2)
    assert e.value.status == 502 and "cannot reach Zenodo" in e.value.message
