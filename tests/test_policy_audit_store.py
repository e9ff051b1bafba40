"""The audit log in the store: one chain per writer on SQLite and PostgreSQL, every edit found
(by the chain, or by heads kept outside the database), nothing lost while the store is down,
and the CLI's exit codes."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml
from click.testing import CliRunner

from podium.cli import main
from podium.policy.audit import AuditTrail, Head, Pending, chained, entry_hash, verify
from podium.policy.audit_store import (
    StoreAuditSink,
    dump_heads,
    load_heads,
    read_heads,
    verify_store,
)
from podium.store.postgres import PostgresStore
from podium.store.sqlite import SQLiteStore
from podium.testing.openai_fake import FakeOpenAI
from tests.conftest import worker
from tests.shared_servers import (
    PG_HOST,
    PG_PORT,
    PG_URL,
    Forwarder,
    Replica,
    drop_schema,
    needs_postgres,
    unique,
)

Store = SQLiteStore | PostgresStore


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=needs_postgres)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        opened: Store = SQLiteStore(tmp_path / "podium.db")
        await opened.open()
        yield opened
        await opened.close()
        return
    schema = unique("podium_audit")
    opened = PostgresStore(PG_URL, schema=schema, max_size=4)
    await opened.open()
    yield opened
    await opened.close()
    await drop_schema(schema)


async def written(store: Store, tmp_path: Path, chain: str = "alpha", count: int = 5) -> None:
    trail = AuditTrail(tmp_path / "audit.jsonl", StoreAuditSink(store, chain))
    for index in range(count):
        trail.record("cli:alice", "keys.create", f"key:{index:04x}", {"owner": f"team-{index}"})
    await trail.aclose()


async def problems(store: Store, expect: dict[str, Head] | None = None) -> list[str]:
    result = await verify_store(store, expect=expect)
    found = [f"{chain}: {p}" for chain, report in result.chains.items() for p in report.problems]
    return found + [f"{chain}: missing" for chain in result.missing]


async def test_a_chain_in_the_store_verifies_like_a_file(store: Store, tmp_path: Path) -> None:
    await written(store, tmp_path, count=250)  # more than one batch
    result = await verify_store(store)
    assert result.ok and result.entries == 250 and list(result.chains) == ["alpha"]
    rows = await store.execute(
        "SELECT seq, created_at, actor, action, target, details, prev_hash, hash "
        "FROM podium_audit ORDER BY seq"
    )
    # The rows, as file lines, pass the file's own verifier: one hashing for both.
    lines = b"".join(
        orjson.dumps(
            {
                "seq": row[0],
                "time": row[1],
                "actor": row[2],
                "action": row[3],
                "target": row[4],
                "details": orjson.loads(row[5]),
                "prev_hash": row[6],
                "hash": row[7],
            }
        )
        + b"\n"
        for row in rows
    )
    (tmp_path / "exported.jsonl").write_bytes(lines)
    assert verify(tmp_path / "exported.jsonl").ok
    assert not (tmp_path / "audit.jsonl").exists()  # the file only takes entries in an outage


async def test_two_writers_append_to_chains_of_their_own(store: Store, tmp_path: Path) -> None:
    first = AuditTrail(tmp_path / "a.jsonl", StoreAuditSink(store))
    second = AuditTrail(tmp_path / "b.jsonl", StoreAuditSink(store, "replica-b"))
    for index in range(300):
        first.record("gateway", "request.refused", f"trace-a{index}", {"status": 401})
        second.record("gateway", "request.refused", f"trace-b{index}", {"status": 429})
        if index % 50 == 0:
            await asyncio.sleep(0)
    await asyncio.gather(first.aclose(), second.aclose())
    result = await verify_store(store)
    assert result.ok and result.entries == 600
    assert len(result.chains) == 2 and "replica-b" in result.chains
    assert all(report.head.seq == 300 for report in result.chains.values())


async def test_writers_sharing_a_chain_name_never_fork_it(store: Store, tmp_path: Path) -> None:
    trails = [
        AuditTrail(tmp_path / f"{n}.jsonl", StoreAuditSink(store, "shared"), retry_initial=0.001)
        for n in range(3)
    ]
    for index in range(100):
        for number, trail in enumerate(trails):
            trail.record("gateway", "request.refused", f"trace-{number}-{index}", {})
    await asyncio.gather(*(trail.aclose() for trail in trails))
    result = await verify_store(store)
    assert result.ok and list(result.chains) == ["shared"] and result.entries == 300
    assert sum(trail.fallen_back for trail in trails) == 0


async def test_an_edited_row_is_found(store: Store, tmp_path: Path) -> None:
    await written(store, tmp_path)
    await store.execute(
        "UPDATE podium_audit SET details = ? WHERE seq = 3", ('{"owner": "team-X"}',)
    )
    assert await problems(store) == [
        "alpha: row 3 (entry 3): contents changed: the hash does not match the entry"
    ]


async def test_a_rewrite_with_recomputed_hashes_is_found_by_the_heads(
    store: Store, tmp_path: Path
) -> None:
    await written(store, tmp_path)
    heads = load_heads(dump_heads(await read_heads(store)))
    # Someone with database access re-chains entries 3..5 with different contents: every hash
    # in the table agrees, so only the head noted outside the database can tell.
    rows = await store.execute("SELECT seq, hash FROM podium_audit WHERE seq = 2")
    head = Head(seq=rows[0][0], hash=rows[0][1])
    forged = chained(head, [Pending("cli:mallory", "keys.create", "key:x", {}, 1.0)] * 3)
    for entry in forged:
        await store.execute(
            "UPDATE podium_audit SET actor = ?, target = ?, details = ?, created_at = ?, "
            "prev_hash = ?, hash = ? WHERE chain = 'alpha' AND seq = ?",
            (
                entry["actor"],
                entry["target"],
                "{}",
                entry["time"],
                entry["prev_hash"],
                entry["hash"],
                entry["seq"],
            ),
        )
    assert await problems(store) == []
    found = await problems(store, heads)
    assert len(found) == 1 and "the log was rewritten" in found[0], found


async def test_a_deleted_last_row_and_a_deleted_chain_are_found_by_the_heads(
    store: Store, tmp_path: Path
) -> None:
    await written(store, tmp_path, "alpha")
    await written(store, tmp_path, "beta", count=2)
    heads = await read_heads(store)
    assert heads["alpha"].seq == 5 and heads["beta"].seq == 2
    await store.execute("DELETE FROM podium_audit WHERE chain = 'alpha' AND seq = 5")
    await store.execute("DELETE FROM podium_audit WHERE chain = 'beta'")
    assert await problems(store) == []
    found = await problems(store, heads)
    assert found[0].startswith("alpha: row 4 (entry 4): the log ends at entry 4 but its head")
    assert found[1:] == ["beta: missing"]


async def test_details_that_are_not_json_are_found(store: Store, tmp_path: Path) -> None:
    await written(store, tmp_path, count=2)
    await store.execute("UPDATE podium_audit SET details = 'nope' WHERE seq = 1")
    found = await problems(store)
    assert found[0] == "alpha: row 1: details are not JSON"


async def test_a_deleted_middle_row_is_found(store: Store, tmp_path: Path) -> None:
    await written(store, tmp_path)
    await store.execute("DELETE FROM podium_audit WHERE seq = 2")
    found = await problems(store)
    assert found[0] == "alpha: row 2 (entry 3): entry 2 missing before it (deleted or reordered)"


async def test_the_table_refuses_a_second_row_at_a_position(store: Store, tmp_path: Path) -> None:
    await written(store, tmp_path, count=2)
    with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
        await store.execute(
            "INSERT INTO podium_audit (chain, seq, created_at, actor, action, target, details, "
            "prev_hash, hash) VALUES ('alpha', 2, 0, 'x', 'x', 'x', '{}', 'x', 'x')"
        )


async def test_the_store_being_down_loses_nothing(tmp_path: Path) -> None:
    broken = SQLiteStore(tmp_path / "broken.db")  # never opened: every statement fails
    sink = StoreAuditSink(broken, "alpha")
    trail = AuditTrail(tmp_path / "audit.jsonl", sink, retry_initial=0.01, retry_max=0.05)
    for index in range(150):
        trail.record("gateway", "request.refused", f"trace-{index}", {})  # returns at once
    await asyncio.sleep(0.1)
    assert trail.queued == 150
    store = SQLiteStore(tmp_path / "podium.db")
    await store.open()
    try:
        sink.store = store  # the store answers again
        await trail.flush()
        result = await verify_store(store)
        assert result.ok and result.entries == 150
        assert trail.queued == 0 and not trail.path.exists()
    finally:
        await trail.aclose()
        await store.close()
        await broken.close()


async def test_entries_still_queued_at_shutdown_go_to_the_file(tmp_path: Path) -> None:
    broken = SQLiteStore(tmp_path / "broken.db")
    trail = AuditTrail(
        tmp_path / "audit.jsonl",
        StoreAuditSink(broken, "alpha"),
        retry_initial=5.0,
        close_timeout=0.5,
    )
    for index in range(10):
        trail.record("gateway", "keys.revoke", f"key:{index}", {})
    await asyncio.sleep(0.05)
    await trail.aclose()  # the store still says no when close_timeout is up
    await broken.close()
    report = verify(trail.path)
    assert report.ok and report.entries == 10 and trail.fallen_back == 10


class LostReply:
    """A store whose first INSERT commits but reports failure, as when the connection drops
    between the commit and its acknowledgement."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.dropped = False

    async def execute(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        rows = await self.store.execute(sql, params)
        if sql.startswith("INSERT") and not self.dropped:
            self.dropped = True
            raise ConnectionError("server closed the connection unexpectedly")
        return rows


async def test_a_write_that_committed_but_reported_failure_is_not_repeated(
    store: Store, tmp_path: Path
) -> None:
    flaky = LostReply(store)
    trail = AuditTrail(tmp_path / "audit.jsonl", StoreAuditSink(flaky, "alpha"), retry_initial=0.01)
    for index in range(5):
        trail.record("gateway", "request.refused", f"trace-{index}", {})
    await trail.flush()
    trail.record("gateway", "request.refused", "trace-5", {})
    await trail.aclose()
    assert flaky.dropped
    rows = await store.execute("SELECT target FROM podium_audit ORDER BY seq")
    assert [row[0] for row in rows] == [f"trace-{index}" for index in range(6)]
    assert (await verify_store(store)).ok


@needs_postgres
async def test_a_postgres_outage_loses_nothing(tmp_path: Path) -> None:
    schema = unique("podium_audit")
    relay = await Forwarder(PG_HOST, PG_PORT).start()
    url = f"postgresql://{PG_URL.split('://', 1)[1].split('@')[0]}@127.0.0.1:{relay.port}/test"
    store = PostgresStore(url, schema=schema, max_size=2, timeout=1.0)
    await store.open()
    trail = AuditTrail(
        tmp_path / "audit.jsonl", StoreAuditSink(store, "alpha"), retry_initial=0.05, retry_max=0.2
    )
    try:
        trail.record("gateway", "request.refused", "before", {})
        await trail.flush()
        await relay.cut()
        loop = asyncio.get_running_loop()
        started = loop.time()
        for index in range(50):
            trail.record("gateway", "request.refused", f"during-{index}", {})
        assert loop.time() - started < 0.05  # the request path never waits on the store
        await asyncio.sleep(1.5)
        assert trail.queued > 0
        await relay.restore()
        await asyncio.wait_for(trail.flush(), 30)
        result = await verify_store(store)
        assert result.ok and result.entries == 51 and trail.fallen_back == 0
        targets = [row[0] for row in await store.execute("SELECT target FROM podium_audit")]
        assert sorted(targets) == sorted(["before"] + [f"during-{i}" for i in range(50)])
    finally:
        await trail.aclose()
        await store.close()
        await relay.aclose()
        await drop_schema(schema)


_WRITER = """
import asyncio, sys
from pathlib import Path
from podium.policy.audit import AuditTrail
from podium.policy.audit_store import StoreAuditSink
from podium.store.postgres import PostgresStore

async def main() -> None:
    store = PostgresStore(sys.argv[1], schema=sys.argv[2], max_size=2)
    await store.open()
    trail = AuditTrail(Path(sys.argv[3]), StoreAuditSink(store))
    for index in range(400):
        trail.record("gateway", "request.refused", f"trace-{index}", {"status": 401})
        if index % 20 == 0:
            await asyncio.sleep(0)
    await trail.aclose()
    await store.close()

asyncio.run(main())
"""


@needs_postgres
async def test_two_processes_append_to_one_postgres_store(tmp_path: Path) -> None:
    schema = unique("podium_audit")
    store = PostgresStore(PG_URL, schema=schema, max_size=2)
    await store.open()  # the migrations, once, before the writers start
    try:
        writers = [
            await asyncio.create_subprocess_exec(
                sys.executable, "-c", _WRITER, PG_URL, schema, str(tmp_path / f"{n}.jsonl")
            )
            for n in range(2)
        ]
        codes = await asyncio.wait_for(asyncio.gather(*(w.wait() for w in writers)), 60)
        assert codes == [0, 0]
        result = await verify_store(store)
        assert result.ok and len(result.chains) == 2 and result.entries == 800
    finally:
        await store.close()
        await drop_schema(schema)


@needs_postgres
async def test_replicas_each_append_chains_of_their_own(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    schema = unique("podium_audit")
    store = PostgresStore(PG_URL, schema=schema, max_size=2)
    await store.open()  # migrate once before the replicas start
    config = {
        "workers": [worker("alpha", "openai", fake_openai.base_url)],
        "store": {"kind": "postgres", "url": PG_URL, "pg_schema": schema},
        "access": {"auth": {"required": True}, "audit": {"backend": "store"}},
    }
    replicas = [
        Replica(
            {**config, "data_dir": str(tmp_path / f"r{n}")}, tmp_path / f"r{n}", processes=n + 1
        )
        for n in range(2)
    ]
    try:
        await asyncio.gather(*(replica.start() for replica in replicas))
        chat = {"model": "alpha", "messages": [{"role": "user", "content": "hi"}]}
        async with httpx.AsyncClient() as http:
            for replica in replicas:
                for _ in range(10):
                    refused = await http.post(
                        f"{replica.url}/v1/chat/completions",
                        json=chat,
                        headers={"authorization": "Bearer pk-forged"},
                    )
                    assert refused.status_code == 401
        await asyncio.gather(*(replica.stop() for replica in replicas))  # shutdown flushes
        result = await verify_store(store)
        assert result.ok and result.entries == 20, result
        assert len(result.chains) >= 2  # one per server process that took a request
        for replica in replicas:
            assert not (Path(replica.workdir) / "audit.jsonl").exists()
    finally:
        await asyncio.gather(*(replica.stop() for replica in replicas))
        await store.close()
        await drop_schema(schema)


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "podium.yaml"
    path.write_text(
        yaml.safe_dump(
            {"data_dir": str(tmp_path / "data"), "access": {"audit": {"backend": "store"}}}
        )
    )
    return path


def test_cli_heads_and_verify_exit_codes(tmp_path: Path) -> None:
    config = str(_config(tmp_path))
    runner = CliRunner()
    created = runner.invoke(main, ["keys", "create", "--config", config, "--owner", "team-a"])
    assert created.exit_code == 0, created.output
    shown = runner.invoke(main, ["audit", "show", "--config", config])
    (entry,) = [json.loads(line) for line in shown.output.splitlines()]
    assert entry["action"] == "keys.create" and entry["chain"].startswith("cli:")
    heads = runner.invoke(main, ["audit", "heads", "--config", config])
    assert heads.exit_code == 0, heads.output
    noted = load_heads(heads.output)
    (chain,) = noted
    assert chain.startswith("cli:") and noted[chain].seq == 1
    assert runner.invoke(main, ["audit", "head", "--config", config]).exit_code == 1
    heads_file = tmp_path / "heads.json"
    heads_file.write_text(heads.output)

    ok = runner.invoke(main, ["audit", "verify", "--config", config, "--expect", str(heads_file)])
    assert ok.exit_code == 0 and "1 chains, 1 entries, all intact" in ok.output, ok.output

    async def tamper() -> None:
        store = SQLiteStore(tmp_path / "data" / "podium.db")
        await store.open()
        rows = await store.execute(
            "SELECT seq, created_at, actor, action, target, details, prev_hash FROM podium_audit"
        )
        entry = dict(
            zip(
                ("seq", "time", "actor", "action", "target", "details", "prev_hash"),
                rows[0],
                strict=True,
            )
        )
        entry["details"] = {"owner": "team-b"}
        await store.execute(
            "UPDATE podium_audit SET details = ?, hash = ?",
            (orjson.dumps(entry["details"]).decode(), entry_hash(entry)),
        )
        await store.close()

    asyncio.run(tamper())
    # The chain alone cannot tell (the hash was recomputed); the noted head can.
    alone = runner.invoke(main, ["audit", "verify", "--config", config, "--store"])
    assert alone.exit_code == 0, alone.output
    caught = runner.invoke(
        main, ["audit", "verify", "--config", config, "--store", "--expect", str(heads_file)]
    )
    assert caught.exit_code == 1 and "the log was rewritten" in caught.output
    as_json = runner.invoke(
        main, ["audit", "verify", "--config", config, "--json", "--expect", str(heads_file)]
    )
    body = json.loads(as_json.stdout)
    assert as_json.exit_code == 1 and body["ok"] is False and body["entries"] == 1
    bad = runner.invoke(main, ["audit", "verify", "--config", config, "--expect", "nowhere"])
    assert bad.exit_code == 2


async def test_gateway_writes_its_audit_to_the_store(gateway: Any, fake_openai: FakeOpenAI) -> None:
    access = {"audit": {"backend": "store", "chain": "replica-1"}, "auth": {"required": True}}
    async with gateway([worker("alpha", "openai", fake_openai.base_url)], access=access) as running:
        async with httpx.AsyncClient(base_url=running.url) as http:
            chat = {"model": "alpha", "messages": [{"role": "user", "content": "hi"}]}
            assert (await http.post("/v1/chat/completions", json=chat)).status_code == 401
        podium = running.podium
        assert podium.audit is not None
        await podium.audit.flush()
        result = await verify_store(podium.store)
        rows = await podium.store.execute("SELECT chain, action FROM podium_audit")
    assert result.ok and [tuple(row) for row in rows] == [("replica-1", "request.refused")]
    assert not podium.audit.path.exists()
