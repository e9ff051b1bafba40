"""Stored responses through the OpenAI SDK's Responses client: ``store``, ``previous_response_id``,
``retrieve``, ``delete`` and ``input_items``, kept per owner, expired on time, and every bad id
or page answered with the error a client can act on."""

from __future__ import annotations

import itertools
import json
from typing import Any

import httpx
import openai
import pytest

from podium.policy.keys import KeyStore, NewKey
from podium.responses.store import ResponseStore
from podium.testing.fakes import Behaviour
from podium.testing.openai_fake import FakeOpenAI
from tests.conftest import worker
from tests.test_bad_input import corpus
from tests.test_responses_ingress import TOOLS, WEATHER, client_for


def sent_messages(fake: FakeOpenAI, index: int = -1) -> list[tuple[str, str]]:
    """(role, text) of each message one upstream request carried."""
    return [
        (message["role"], message.get("content") or "")
        for message in fake.received[index].body["messages"]
    ]


async def clients_of_two_owners(served: Any) -> tuple[openai.AsyncOpenAI, openai.AsyncOpenAI]:
    """SDK clients with keys of two owners, "team-a" and "team-b" (close them after)."""
    keys = KeyStore(served.podium.store)
    clients = []
    for owner in ("team-a", "team-b"):
        _, key = await keys.create(NewKey(owner=owner))
        clients.append(openai.AsyncOpenAI(base_url=f"{served.url}/v1", api_key=key, max_retries=0))
    return clients[0], clients[1]


def kept(served: Any) -> ResponseStore:
    store = served.podium.extras["responses"]
    assert isinstance(store, ResponseStore)
    return store


async def test_a_conversation_continues_by_previous_response_id(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as served,
        client_for(served.url) as client,
    ):
        first = await client.responses.create(
            model="alpha", instructions="Be brief.", input="I like green tea."
        )
        second = await client.responses.create(
            model="alpha",
            instructions="Answer in French.",
            input="What do I like?",
            previous_response_id=first.id,
        )
        third = await client.responses.create(
            model="alpha", input="Thanks.", previous_response_id=second.id
        )
        async with httpx.AsyncClient(base_url=served.url) as http:
            metrics = (await http.get("/metrics")).text
    assert "podium_responses_kept_total 3" in metrics
    assert "podium_responses_continued_total 2" in metrics
    assert first.store is True and second.previous_response_id == first.id
    # Every earlier turn's input and output, then the new input; only the request's own
    # instructions (OpenAI's rule: they are not carried over).
    assert sent_messages(fake_openai, 1) == [
        ("system", "Answer in French."),
        ("user", "I like green tea."),
        ("assistant", "fake answer to: I like green tea."),
        ("user", "What do I like?"),
    ]
    assert sent_messages(fake_openai, 2) == [
        ("user", "I like green tea."),
        ("assistant", "fake answer to: I like green tea."),
        ("user", "What do I like?"),
        ("assistant", "fake answer to: What do I like?"),
        ("user", "Thanks."),
    ]
    assert third.output_text == "fake answer to: Thanks."
    # Usage counts the whole conversation the worker read.
    assert third.usage is not None and first.usage is not None
    assert third.usage.input_tokens > first.usage.input_tokens


async def test_retrieve_returns_what_the_client_received_and_delete_forgets_it(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as served,
        client_for(served.url) as client,
    ):
        raw = await client.responses.with_raw_response.create(
            model="alpha", input="keep me", metadata={"ticket": "42"}
        )
        created = raw.parse()
        again = await client.responses.retrieve(created.id)
        await client.responses.delete(created.id)
        with pytest.raises(openai.NotFoundError) as gone:
            await client.responses.retrieve(created.id)
        with pytest.raises(openai.NotFoundError):
            await client.responses.delete(created.id)
        with pytest.raises(openai.BadRequestError) as continued:
            await client.responses.create(
                model="alpha", input="more", previous_response_id=created.id
            )
    assert again.model_dump() == created.model_dump()
    # The id names the request's trace: one id for the answer, its trace and its record.
    assert created.id == f"resp_{raw.headers['x-podium-trace-id']}"
    assert gone.value.message.endswith(f"Response with id '{created.id}' not found.")
    assert continued.value.body["code"] == "previous_response_not_found"  # type: ignore[index]
    assert continued.value.body["param"] == "previous_response_id"  # type: ignore[index]


async def test_a_streamed_answer_is_kept_before_its_last_event(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as served,
        client_for(served.url) as client,
    ):
        async with client.responses.stream(model="alpha", input="stream and keep") as stream:
            final = await stream.get_final_response()
        stored = await client.responses.retrieve(final.id)
        follow = await client.responses.create(
            model="alpha", input="and then?", previous_response_id=final.id, stream=True
        )
        events = [event async for event in follow]
    assert final.store is True and stored.output_text == "fake answer to: stream and keep"
    # The SDK's stream helper adds ``parsed`` to its parts; everything else is the same.
    assert stored.model_dump(exclude={"output"}) == final.model_dump(exclude={"output"})
    assert [item.id for item in stored.output] == [item.id for item in final.output]
    assert events[-1].type == "response.completed"
    assert events[-1].response.previous_response_id == final.id
    assert sent_messages(fake_openai)[-3:] == [
        ("user", "stream and keep"),
        ("assistant", "fake answer to: stream and keep"),
        ("user", "and then?"),
    ]


async def test_a_tool_result_continues_the_response_that_called_the_tool(gateway: Any) -> None:
    behaviour = Behaviour(tool_call=("get_weather", '{"city": "Lyon"}'))
    async with (
        FakeOpenAI(behaviour) as fake,
        gateway([worker("alpha", "openai", fake.base_url, capabilities=TOOLS)]) as served,
        client_for(served.url) as client,
    ):
        first = await client.responses.create(
            model="alpha", input="Weather in Lyon?", tools=[WEATHER]
        )
        [call] = first.output
        assert call.type == "function_call"
        fake.behaviour.tool_call = None
        fake.behaviour.reply = "Sunny in Lyon."
        # Only the tool's output: the call itself is in the stored response.
        second = await client.responses.create(
            model="alpha",
            input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}],
            previous_response_id=first.id,
            tools=[WEATHER],
        )
    assert second.output_text == "Sunny in Lyon."
    messages = fake.received[-1].body["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool"]
    assert messages[1]["tool_calls"][0]["id"] == call.call_id
    assert messages[1]["tool_calls"][0]["function"]["arguments"] == '{"city": "Lyon"}'
    assert messages[2] == {"role": "tool", "content": "sunny", "tool_call_id": call.call_id}


async def test_input_items_list_the_whole_conversation_in_pages(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as served,
        client_for(served.url) as client,
    ):
        first = await client.responses.create(model="alpha", input="one")
        second = await client.responses.create(
            model="alpha",
            input=[{"role": "user", "content": [{"type": "input_text", "text": "two"}]}],
            previous_response_id=first.id,
        )
        newest_first = [item async for item in client.responses.input_items.list(second.id)]
        oldest_first = [
            item
            async for item in client.responses.input_items.list(second.id, order="asc", limit=1)
        ]
        page = await client.responses.input_items.list(second.id, order="asc", limit=2)
    texts = [item.content[0].text for item in oldest_first]  # type: ignore[union-attr]
    assert texts == ["one", "fake answer to: one", "two"]
    assert [item.id for item in newest_first] == [item.id for item in oldest_first][::-1]
    assert [item.role for item in oldest_first] == ["user", "assistant", "user"]  # type: ignore[union-attr]
    assert all(item.id.startswith("msg_") for item in oldest_first)
    assert page.has_more is True and page.first_id == oldest_first[0].id
    assert page.last_id == oldest_first[1].id


async def test_a_response_kept_with_store_false_is_not_kept_but_may_continue_one(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as served,
        client_for(served.url) as client,
    ):
        kept_one = await client.responses.create(model="alpha", input="remember this")
        passing = await client.responses.create(
            model="alpha", input="just asking", previous_response_id=kept_one.id, store=False
        )
        with pytest.raises(openai.NotFoundError):
            await client.responses.retrieve(passing.id)
        with pytest.raises(openai.BadRequestError):
            await client.responses.create(
                model="alpha", input="more", previous_response_id=passing.id
            )
    assert passing.store is False and passing.previous_response_id == kept_one.id
    assert ("user", "remember this") in sent_messages(fake_openai, 1)


async def test_responses_belong_to_the_owner_of_the_key_that_made_them(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with gateway(
        [worker("alpha", "openai", fake_openai.base_url)], access={"auth": {"required": True}}
    ) as served:
        keys = KeyStore(served.podium.store)
        _, alice = await keys.create(NewKey(owner="team-a"))
        _, alice_rotated = await keys.create(NewKey(owner="team-a"))
        _, bob = await keys.create(NewKey(owner="team-b"))
        sdk = {
            name: openai.AsyncOpenAI(base_url=f"{served.url}/v1", api_key=key, max_retries=0)
            for name, key in (("alice", alice), ("rotated", alice_rotated), ("bob", bob))
        }
        secret = await sdk["alice"].responses.create(model="alpha", input="our plans")
        with pytest.raises(openai.NotFoundError):
            await sdk["bob"].responses.retrieve(secret.id)
        with pytest.raises(openai.NotFoundError):
            await sdk["bob"].responses.delete(secret.id)
        with pytest.raises(openai.NotFoundError):
            await sdk["bob"].responses.input_items.list(secret.id)
        with pytest.raises(openai.BadRequestError) as continued:
            await sdk["bob"].responses.create(
                model="alpha", input="tell me", previous_response_id=secret.id
            )
        sdk["stranger"] = openai.AsyncOpenAI(
            base_url=f"{served.url}/v1", api_key="wrong", max_retries=0
        )
        with pytest.raises(openai.AuthenticationError):
            await sdk["stranger"].responses.retrieve(secret.id)
        # Another key of the same owner (a rotated one, say) reads and continues it.
        read = await sdk["rotated"].responses.retrieve(secret.id)
        await sdk["rotated"].responses.create(
            model="alpha", input="go on", previous_response_id=secret.id
        )
        for client in sdk.values():
            await client.close()
    assert read.id == secret.id
    assert "not found" in continued.value.message
    assert len(fake_openai.received) == 2  # bob's attempt reached no worker


async def test_responses_expire_after_their_retention_and_are_swept(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with (
        gateway(
            [worker("alpha", "openai", fake_openai.base_url)], responses={"retention_days": 1}
        ) as served,
        client_for(served.url) as client,
    ):
        store = kept(served)
        now = [1_000_000.0]
        store._clock = lambda: now[0]
        first = await client.responses.create(model="alpha", input="short-lived")
        now[0] += 10
        second = await client.responses.create(
            model="alpha", input="later", previous_response_id=first.id
        )
        now[0] += 86400 - 11
        assert (await client.responses.retrieve(first.id)).id == first.id
        now[0] += 2
        with pytest.raises(openai.NotFoundError):
            await client.responses.retrieve(first.id)
        # Its descendants cannot be continued either: their conversation lost its start.
        with pytest.raises(openai.BadRequestError) as broken:
            await client.responses.create(
                model="alpha", input="and?", previous_response_id=second.id
            )
        swept = await store.sweep()
        rows = await served.podium.store.execute("SELECT response_id FROM responses")
    assert "deleted or has expired" in broken.value.message
    assert swept == 1 and len(rows) == 1  # the second lives 10 s longer


async def test_a_conversation_longer_than_max_chain_is_refused(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with (
        gateway(
            [worker("alpha", "openai", fake_openai.base_url)], responses={"max_chain": 2}
        ) as served,
        client_for(served.url) as client,
    ):
        previous: str | None = None
        for turn in range(3):
            answer = await client.responses.create(
                model="alpha", input=f"turn {turn}", previous_response_id=previous or openai.omit
            )
            previous = answer.id
        with pytest.raises(openai.BadRequestError) as refused:
            await client.responses.create(
                model="alpha", input="one more", previous_response_id=previous
            )
    assert refused.value.body["code"] == "conversation_too_long"  # type: ignore[index]
    assert "responses.max_chain" in refused.value.message


async def test_the_stored_conversation_is_pseudonymised_again_for_each_worker(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    pool = [
        worker(
            "alpha",
            "openai",
            fake_openai.base_url,
            profile={"cleared": ["public"], "pseudonymised": ["confidential"]},
        )
    ]
    async with gateway(pool) as served, client_for(served.url) as client:
        first = await client.responses.create(model="alpha", input="Mail jane.doe@example.com")
        await client.responses.create(
            model="alpha", input="Did you write?", previous_response_id=first.id
        )
        stored = await client.responses.retrieve(first.id)
        items = [item async for item in client.responses.input_items.list(first.id)]
    upstream = json.dumps([received.body for received in fake_openai.received])
    assert "jane.doe@example.com" not in upstream and "<EMAIL_1>" in upstream
    # What is kept is what the client sent and received.
    assert stored.output_text == "fake answer to: Mail jane.doe@example.com"
    assert items[0].content[0].text == "Mail jane.doe@example.com"  # type: ignore[union-attr]


async def test_input_tokens_count_the_conversation_a_request_continues(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as served,
        client_for(served.url) as client,
        httpx.AsyncClient(base_url=served.url) as http,
    ):
        first = await client.responses.create(model="alpha", input="a long opening " * 50)
        alone = await http.post("/v1/responses/input_tokens", json={"input": "and?"})
        continued = await http.post(
            "/v1/responses/input_tokens",
            json={"input": "and?", "previous_response_id": first.id},
        )
    assert continued.json()["input_tokens"] > alone.json()["input_tokens"] + 100


async def test_an_answer_the_store_cannot_keep_is_still_sent_saying_so(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as served,
        client_for(served.url) as client,
    ):
        await served.podium.store.execute("DROP TABLE responses")
        answer = await client.responses.create(model="alpha", input="paid for")
        stream = await client.responses.create(model="alpha", input="streamed", stream=True)
        events = [event async for event in stream]
        async with httpx.AsyncClient(base_url=served.url) as http:
            metrics = (await http.get("/metrics")).text
    assert answer.output_text == "fake answer to: paid for" and answer.store is False
    assert events[-1].type == "response.completed" and events[-1].response.store is False
    assert "podium_responses_keep_failures_total 2" in metrics


async def test_cancel_and_streaming_again_are_refused_for_a_finished_response(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as served,
        client_for(served.url) as client,
        httpx.AsyncClient(base_url=served.url) as http,
    ):
        answer = await client.responses.create(model="alpha", input="done")
        with pytest.raises(openai.BadRequestError) as cancelled:
            await client.responses.cancel(answer.id)
        again = await http.get(f"/v1/responses/{answer.id}", params={"stream": "true"})
        with pytest.raises(openai.NotFoundError):
            await client.responses.cancel("resp_unknown")
    assert "background=true" in cancelled.value.message
    assert again.status_code == 400 and again.json()["error"]["param"] == "stream"


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"order": "sideways"}, "order"),
        ({"after": "msg_nope"}, "after"),
        ({"before": "' OR 1=1 --"}, "before"),
    ],
)
async def test_a_bad_page_of_input_items_names_its_parameter(
    gateway: Any, fake_openai: FakeOpenAI, query: dict[str, str], param: str
) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as served,
        client_for(served.url) as client,
        httpx.AsyncClient(base_url=served.url) as http,
    ):
        answer = await client.responses.create(model="alpha", input="page me")
        listed = await http.get(f"/v1/responses/{answer.id}/input_items", params=query)
    assert listed.status_code == 400
    assert listed.json()["error"]["param"] == param


async def test_hostile_ids_are_not_found_never_a_server_error(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    ids = [text[:200] for text in itertools.islice(corpus(), 20)]
    ids += ["' OR '1'='1", "resp_x'; DROP TABLE responses; --", "%00", "resp_" + "9" * 250]
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as served,
        httpx.AsyncClient(base_url=served.url) as http,
    ):
        kept_one = await http.post("/v1/responses", json={"model": "alpha", "input": "mine"})
        statuses: set[int] = set()
        for hostile in ids:
            path = httpx.URL("/v1/responses/").join(httpx.URL(path=hostile.replace("/", "%2F")))
            for method in ("GET", "DELETE"):
                statuses.add((await http.request(method, path)).status_code)
            continued = await http.post(
                "/v1/responses",
                json={"model": "alpha", "input": "x", "previous_response_id": hostile},
            )
            statuses.add(continued.status_code)
            assert continued.json()["error"]["param"] == "previous_response_id"
        still = await http.get(f"/v1/responses/{kept_one.json()['id']}")
    assert statuses <= {400, 404, 405}
    assert still.status_code == 200


async def test_an_admin_erases_everything_kept_for_one_owner(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with gateway(
        [worker("alpha", "openai", fake_openai.base_url)], access={"auth": {"required": True}}
    ) as served:
        alice, bob = await clients_of_two_owners(served)
        async with alice, bob, httpx.AsyncClient(base_url=served.url) as admin:
            first = await alice.responses.create(model="alpha", input="one")
            await alice.responses.create(model="alpha", input="two", previous_response_id=first.id)
            conversation = await alice.conversations.create(
                items=[{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
            )
            kept = await bob.responses.create(model="alpha", input="bob's")
            # Keys cannot erase; the admin API can (loopback here: no admin key is set).
            refused = await admin.delete(
                "/admin/stored/team-a", headers={"authorization": f"Bearer {alice.api_key}"}
            )
            erased = await admin.delete("/admin/stored/team-a")
            with pytest.raises(openai.NotFoundError):
                await alice.responses.retrieve(first.id)
            with pytest.raises(openai.NotFoundError):
                await alice.conversations.retrieve(conversation.id)
            still = await bob.responses.retrieve(kept.id)
        assert served.podium.audit is not None
        await served.podium.audit.flush()
        entries = [json.loads(line) for line in served.podium.audit.path.read_text().splitlines()]
    assert refused.status_code == 403
    assert erased.json() == {
        "owner": "team-a",
        "deleted": {"responses": 2, "conversations": 1, "items": 2},
    }
    assert still.id == kept.id
    assert next(e for e in entries if e["action"] == "stored.erase")["target"] == "owner:team-a"


async def test_with_a_master_key_what_is_kept_is_sealed_at_rest(
    gateway: Any, fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PODIUM_MASTER_KEY", "m" * 43)
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as served,
        client_for(served.url) as client,
    ):
        first = await client.responses.create(model="alpha", input="the launch code is 7")
        second = await client.responses.create(
            model="alpha", input="repeat it", previous_response_id=first.id
        )
        conversation = await client.conversations.create(
            items=[{"role": "user", "content": "the vault is blue"}]
        )
        items = [item async for item in client.conversations.items.list(conversation.id)]
        rows = await served.podium.store.execute(
            "SELECT input_items, response FROM responses UNION ALL "
            "SELECT item, item FROM conversation_items"
        )
    at_rest = json.dumps([list(row) for row in rows])
    assert "launch code" not in at_rest and "vault" not in at_rest
    assert ("user", "the launch code is 7") in sent_messages(fake_openai)
    assert second.previous_response_id == first.id
    assert items[0].content[0].text == "the vault is blue"  # type: ignore[union-attr]


async def test_an_input_item_names_a_stored_item_by_its_id(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    from tests.test_responses_background import finished  # that module imports this one

    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as served,
        client_for(served.url) as client,
    ):
        first = await client.responses.create(model="alpha", input="I like green tea.")
        asked = [item async for item in client.responses.input_items.list(first.id)]
        conversation = await client.conversations.create(
            items=[{"role": "user", "content": "the kettle is blue"}]
        )
        noted = [item async for item in client.conversations.items.list(conversation.id)]
        running = await client.responses.create(
            model="alpha", input="say one word", background=True
        )
        later = await finished(client, running.id)
        # Items of a stored response (its input and its answer), of a conversation, and of a
        # background response once done, each named by its id.
        answer = await client.responses.create(
            model="alpha",
            input=[
                {"type": "item_reference", "id": asked[0].id},
                {"type": "item_reference", "id": first.output[0].id},
                {"type": "item_reference", "id": noted[0].id},
                {"type": "item_reference", "id": later.output[0].id},
                {"role": "user", "content": "What do you know?"},
            ],
        )
        listed = [item async for item in client.responses.input_items.list(answer.id)]
    assert sent_messages(fake_openai) == [
        ("user", "I like green tea."),
        ("assistant", first.output_text),
        ("user", "the kettle is blue"),
        ("assistant", later.output_text),
        ("user", "What do you know?"),
    ]
    # The new response keeps the items themselves: it reads back, and continues, without them.
    assert [item.id for item in listed][::-1][:4] == [
        asked[0].id,
        first.output[0].id,
        noted[0].id,
        later.output[0].id,
    ]


async def test_an_item_reference_to_an_unknown_or_anothers_item_is_404(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with gateway([worker("alpha", "openai", fake_openai.base_url)]) as served:
        alice, bob = await clients_of_two_owners(served)
        async with alice, bob:
            mine = await alice.responses.create(model="alpha", input="a secret")
            refused = []
            for named in ("msg_nobody_made", mine.output[0].id):
                with pytest.raises(openai.NotFoundError) as caught:
                    await bob.responses.create(
                        model="alpha",
                        input=[
                            {"type": "item_reference", "id": named},
                            {"role": "user", "content": "What was it?"},
                        ],
                    )
                refused.append(caught.value)
            await alice.responses.delete(mine.id)
            with pytest.raises(openai.NotFoundError):  # its items went with it
                await alice.responses.create(
                    model="alpha",
                    input=[{"type": "item_reference", "id": mine.output[0].id}],
                )
    assert [error.code for error in refused] == ["item_not_found", "item_not_found"]
    assert refused[1].param == "input[0]" and "not found" in refused[1].message
    assert len(fake_openai.received) == 1  # nothing was sent for the refused requests


async def test_items_with_a_clients_own_id_or_copied_on_are_found_by_the_index(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as served,
        client_for(served.url) as client,
    ):
        # An id the client chose says nothing of its response: the index finds it.
        mine = {"type": "message", "id": "msg_my_own", "role": "user", "content": "tea, please"}
        first = await client.responses.create(model="alpha", input=[mine])  # type: ignore[list-item]
        await client.responses.create(
            model="alpha", input=[{"type": "item_reference", "id": "msg_my_own"}]
        )
        # The answer's id names the first response; named once, it is copied into the third,
        # and the index finds it there once the first is gone.
        answer = {"type": "item_reference", "id": first.output[0].id}
        await client.responses.create(model="alpha", input=[answer])
        await client.responses.delete(first.id)
        await client.responses.create(model="alpha", input=[answer])
    assert sent_messages(fake_openai, 1) == [("user", "tea, please")]
    assert sent_messages(fake_openai, 3) == [("assistant", first.output_text)]
