"""Python's gql against Unity: the schema fetched with gql's default introspection query, a query
and a subscription over graphql-transport-ws (gql fails on an unsolicited `pong`). Run by
tests/clients.rs with UNITY_URL and UNITY_TOKEN; prints one line per check, exits 1 on failure."""

import asyncio
import os
import sys

from gql import Client, gql
from gql.transport.websockets import WebsocketsTransport


def check(ok, what):
    if not ok:
        print(f"FAILED: {what}")
        sys.exit(1)
    print(f"ok: {what}")


async def main():
    url = os.environ["UNITY_URL"].replace("http", "ws", 1) + "/graphql"
    token = os.environ["UNITY_TOKEN"]
    transport = WebsocketsTransport(url=url, init_payload={"Authorization": f"Bearer {token}"}, ping_interval=0.2, pong_timeout=5)
    async with Client(transport=transport, fetch_schema_from_transport=True) as session:
        check(session.client.schema is not None and session.client.schema.query_type.name == "Query", "the schema is fetched with gql's defaults")
        me = await session.execute(gql("{ me { username } }"))
        check(me["me"]["username"] == "admin", "a query answers (validated against the fetched schema)")
        events = gql('subscription { events(filter: {eventTypes: ["ApiKeyIssued"]}) { eventType payload } }')
        made = gql('mutation { createApiKey(input: {name: "from gql", role: VIEWER}) { apiKey { id } } }')

        async def first_event():
            async for result in session.subscribe(events):
                return result

        waiting = asyncio.create_task(first_event())
        # Keep making keys until the running subscription delivers one (it sees only what comes after it starts).
        for _ in range(50):
            await session.execute(made)
            done, _ = await asyncio.wait({waiting}, timeout=0.2)
            if done:
                break
        result = await asyncio.wait_for(waiting, timeout=10)
        check(result["events"]["eventType"] == "ApiKeyIssued", "a subscription delivers, pings answered, no stray pong")
    print("gql: all checks passed")


asyncio.run(main())
