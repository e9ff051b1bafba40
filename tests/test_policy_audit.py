"""The audit log: every change to its file is found and located, and the gateway writes to it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from click.testing import CliRunner

from podium.cli import main
from podium.policy.audit import AuditLog, AuditTrail, Head, verify
from podium.testing.openai_fake import FakeOpenAI
from tests.conftest import worker


def written(tmp_path: Path, count: int = 5) -> AuditLog:
    log = AuditLog(tmp_path / "audit.jsonl")
    for index in range(count):
        log.append("cli:alice", "keys.create", f"key:{index:010x}", {"owner": f"team-{index}"})
    return log


def lines(log: AuditLog) -> list[bytes]:
    return log.path.read_bytes().splitlines(keepends=True)


def rewrite(log: AuditLog, new: list[bytes]) -> None:
    log.path.write_bytes(b"".join(new))


def problems(log: AuditLog, **options: Any) -> list[str]:
    return [str(problem) for problem in verify(log.path, **options).problems]


def test_an_untouched_log_verifies(tmp_path: Path) -> None:
    log = written(tmp_path)
    report = verify(log.path)
    assert report.ok and report.entries == 5
    assert report.head == log.head()
    first = orjson.loads(lines(log)[0])
    assert first["seq"] == 1 and first["prev_hash"] == "0" * 64
    second = orjson.loads(lines(log)[1])
    assert second["prev_hash"] == first["hash"]


def test_an_edited_field_is_found(tmp_path: Path) -> None:
    log = written(tmp_path)
    content = lines(log)
    content[2] = content[2].replace(b"team-2", b"team-X")
    rewrite(log, content)
    found = problems(log)
    assert found == ["line 3 (entry 3): contents changed: the hash does not match the entry"]


def test_an_edit_with_a_recomputed_hash_breaks_the_chain(tmp_path: Path) -> None:
    from podium.policy.audit import entry_hash

    log = written(tmp_path)
    content = lines(log)
    entry = orjson.loads(content[1])
    entry["actor"] = "cli:mallory"
    entry["hash"] = entry_hash(entry)
    content[1] = orjson.dumps(entry) + b"\n"
    rewrite(log, content)
    found = problems(log)
    assert any(p.startswith("line 3 (entry 3): does not chain") for p in found), found


def test_a_deleted_line_is_found(tmp_path: Path) -> None:
    log = written(tmp_path)
    content = lines(log)
    del content[1]
    rewrite(log, content)
    found = problems(log)
    assert found[0] == "line 2 (entry 3): entry 2 missing before it (deleted or reordered)"


def test_swapped_lines_are_found(tmp_path: Path) -> None:
    log = written(tmp_path)
    content = lines(log)
    content[1], content[2] = content[2], content[1]
    rewrite(log, content)
    found = problems(log)
    assert found[0].startswith("line 2 (entry 3)")
    assert any("line 3 (entry 2): out of order" in p for p in found), found


def test_an_inserted_entry_is_found(tmp_path: Path) -> None:
    log = written(tmp_path)
    content = lines(log)
    content.insert(2, content[1])  # a replayed entry
    rewrite(log, content)
    found = problems(log)
    assert any(p.startswith("line 3 (entry 2): out of order") for p in found), found


def test_a_truncated_line_and_garbage_are_found(tmp_path: Path) -> None:
    log = written(tmp_path)
    content = lines(log)
    content[-1] = content[-1][:40]  # a write cut short
    rewrite(log, content)
    found = problems(log)
    assert "line 5: the last line has no newline: cut short while writing?" in found
    assert "line 5: not a JSON entry (garbage, or a line cut short)" in found
    garbage = written(tmp_path / "g")
    content = lines(garbage)
    content.insert(3, b"\x00\xff\xfe binary junk \x9c\n")
    rewrite(garbage, content)
    assert problems(garbage)[0] == "line 4: not a JSON entry (garbage, or a line cut short)"


def test_entries_cut_from_the_end_are_found_by_the_head(tmp_path: Path) -> None:
    log = written(tmp_path)
    noted = log.head()
    rewrite(log, lines(log)[:3])
    found = problems(log)
    assert "entries were removed from the end" in found[0]
    # Even with the head file gone, a head noted elsewhere still catches it.
    log.head_path.unlink()
    assert "entries were removed from the end" in problems(log, expect=noted)[0]
    assert not problems(log)  # without any anchor, a cut log is indistinguishable


def test_a_rewritten_history_fails_an_earlier_noted_head(tmp_path: Path) -> None:
    log = written(tmp_path, 3)
    noted = log.head()
    log.path.unlink()
    log.head_path.unlink()
    written(tmp_path, 4)  # a whole new, self-consistent log
    found = problems(log, expect=noted)
    assert found and "the log was rewritten" in found[0]
    assert not problems(log, expect=Head(seq=0))


def test_verify_command_exit_codes(tmp_path: Path) -> None:
    log = written(tmp_path)
    runner = CliRunner()
    ok = runner.invoke(main, ["audit", "verify", "--file", str(log.path)])
    assert ok.exit_code == 0 and "5 entries, chain intact" in ok.output
    content = lines(log)
    content[0] = content[0].replace(b"alice", b"mallo")
    rewrite(log, content)
    bad = runner.invoke(main, ["audit", "verify", "--file", str(log.path)])
    assert bad.exit_code == 1
    assert "TAMPERED" in bad.output and "line 1 (entry 1): contents changed" in bad.output
    as_json = runner.invoke(main, ["audit", "verify", "--file", str(log.path), "--json"])
    assert as_json.exit_code == 1
    assert orjson.loads(as_json.stdout)["problems"][0]["line"] == 1
    head = runner.invoke(main, ["audit", "head", "--file", str(log.path)])
    assert head.output.startswith("5:")
    missing = runner.invoke(main, ["audit", "verify", "--file", str(tmp_path / "none.jsonl")])
    assert missing.exit_code == 1
    assert (
        missing.output.startswith("MISSING: no audit log at") and "TAMPERED" not in missing.output
    )


async def test_the_trail_writes_off_the_event_loop_in_order(tmp_path: Path) -> None:
    trail = AuditTrail(tmp_path / "audit.jsonl")
    for index in range(200):
        trail.record("gateway", "request.refused", f"trace-{index}", {"status": 401})
    await trail.aclose()
    report = verify(trail.path)
    assert report.ok and report.entries == 200
    targets = [orjson.loads(line)["target"] for line in trail.path.read_bytes().splitlines()]
    assert targets == [f"trace-{index}" for index in range(200)]


async def test_gateway_audits_admin_actions_and_refusals(
    gateway: Any, fake_openai: FakeOpenAI, make_config: Callable[..., Any]
) -> None:
    async with gateway([worker("alpha", "openai", fake_openai.base_url)]) as running:
        podium = running.podium
        async with httpx.AsyncClient(base_url=running.url) as http:
            created = await http.post("/admin/keys", json={"owner": "team-a", "rpm": 1})
            key_id, key = created.json()["key_id"], created.json()["key"]
            podium.extras["keys"].invalidate()
            chat = {"model": "alpha", "messages": [{"role": "user", "content": "hi"}]}
            forged = await http.post(
                "/v1/chat/completions", json=chat, headers={"authorization": "Bearer pk-forged"}
            )
            assert forged.status_code == 401
            auth = {"authorization": f"Bearer {key}"}
            assert (
                await http.post("/v1/chat/completions", json=chat, headers=auth)
            ).status_code == 200
            assert (
                await http.post("/v1/chat/completions", json=chat, headers=auth)
            ).status_code == 429
            await http.post(f"/admin/keys/{key_id}/revoke")
            assert (await http.post("/admin/workers/alpha/drain")).status_code == 200
        assert podium.audit is not None
        await podium.gateway.drain_background()
        await podium.audit.flush()
        path = podium.audit.path
    entries = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    actions = [(e["action"], e["details"].get("status")) for e in entries]
    assert actions == [
        ("keys.create", None),
        ("request.refused", 401),
        ("request.refused", 429),
        ("keys.revoke", None),
        ("workers.drain", None),
    ]
    assert entries[-1]["target"] == "workers:alpha"
    assert entries[0]["actor"] == "admin:bootstrap"
    assert entries[2]["actor"] == f"key:{key_id}"
    assert key.encode() not in path.read_bytes()
    assert verify(path).ok


@pytest.mark.parametrize("refusals", [False])
async def test_refusals_can_be_left_out(
    gateway: Any, fake_openai: FakeOpenAI, refusals: bool
) -> None:
    access = {"audit": {"refusals": refusals}, "auth": {"required": True}}
    async with gateway([worker("alpha", "openai", fake_openai.base_url)], access=access) as running:
        async with httpx.AsyncClient(base_url=running.url) as http:
            chat = {"model": "alpha", "messages": [{"role": "user", "content": "hi"}]}
            assert (await http.post("/v1/chat/completions", json=chat)).status_code == 401
        assert running.podium.audit is not None
        await running.podium.audit.flush()
        assert not running.podium.audit.path.exists()
