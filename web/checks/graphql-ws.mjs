// The reference graphql-ws client against Unity: subscribe, complete, ping/pong, and the close
// codes a server of graphql-transport-ws owes it. Run by tests/clients.rs with UNITY_URL (http://host:port)
// and UNITY_TOKEN (an ADMIN session); prints one line per check and exits non-zero on the first failure.
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';
import { check, deadline, graphql } from './lib.mjs';

const http = process.env.UNITY_URL;
const url = http.replace(/^http/, 'ws') + '/graphql';
const token = process.env.UNITY_TOKEN;

// Subscribe, see our own mutation's event, complete; with keep-alive pings answered by pongs.
{
  let pongs = 0;
  const client = createClient({
    url,
    webSocketImpl: WebSocket,
    connectionParams: { Authorization: `Bearer ${token}` },
    keepAlive: 100,
    on: { pong: (received) => { if (received) pongs += 1; } },
    retryAttempts: 0,
  });
  const seen = [];
  let resolveSeen;
  const created = new Promise((resolve) => { resolveSeen = resolve; });
  const dispose = client.subscribe(
    { query: 'subscription { events(filter: {eventTypes: ["ApiKeyIssued"]}) { eventType streamType payload } }' },
    {
      next: (value) => { seen.push(value); if (value.data?.events?.payload?.name === 'from graphql-ws') resolveSeen(); },
      error: (e) => { console.error('subscription error', e); process.exit(1); },
      complete: () => {},
    },
  );
  // The subscription runs once an event made after it is delivered: create keys until one is.
  const made = (async () => {
    for (let i = 0; i < 50 && seen.length === 0; i++) {
      await graphql(http, token, 'mutation { createApiKey(input: {name: "from graphql-ws", role: VIEWER}) { apiKey { id } } }');
      await Promise.race([created, new Promise((r) => setTimeout(r, 200))]);
    }
  })();
  await deadline(created, 20000, 'the subscription delivers the mutation\'s event');
  await made;
  check(seen.every((v) => v.data.events.eventType === 'ApiKeyIssued' && !v.errors), 'each event matches the filter, no errors');
  // While the subscription keeps the socket open, the client's pings are answered.
  await deadline(new Promise((resolve) => { const t = setInterval(() => { if (pongs >= 2) { clearInterval(t); resolve(); } }, 20); }), 10000, 'pings are answered with pongs');
  check(true, `pongs answered the client's pings (${pongs})`);
  dispose();
  // A query on the same client: a `next` then `complete`.
  const me = await new Promise((resolve, reject) => {
    let result;
    client.subscribe({ query: '{ me { username } }' }, { next: (v) => { result = v; }, error: reject, complete: () => resolve(result) });
  });
  check(me.data.me.username === 'admin', 'a query over the socket answers and completes');
  await client.dispose();
}

// An invalid token: the client sees the socket closed with 4403.
{
  const closed = new Promise((resolve) => {
    const client = createClient({
      url, webSocketImpl: WebSocket, connectionParams: { token: 'unity_session_invalid' }, retryAttempts: 0, lazy: false,
      on: { closed: (event) => resolve(event.code) },
      onNonLazyError: () => {},
    });
    void client;
  });
  check(await deadline(closed, 10000, 'an invalid token is refused') === 4403, 'an invalid token closes with 4403');
}

// The close codes the client relies on, on a raw socket of the same library: a second
// connection_init (4429), no connection_init in time (4408).
const raw = (onOpen) => new Promise((resolve) => {
  const socket = new WebSocket(url, 'graphql-transport-ws');
  socket.on('open', () => onOpen(socket));
  socket.on('close', (code, reason) => resolve({ code, reason: reason.toString() }));
});
{
  const { code, reason } = await deadline(raw((s) => {
    s.send(JSON.stringify({ type: 'connection_init', payload: { token } }));
    s.send(JSON.stringify({ type: 'connection_init', payload: { token } }));
  }), 10000, 'a second connection_init closes the socket');
  check(code === 4429, `a second connection_init closes with 4429 (${code} ${reason})`);
}
{
  const { code } = await deadline(raw(() => {}), 20000, 'a socket without connection_init is closed');
  check(code === 4408, `no connection_init in time closes with 4408 (${code})`);
}

// After logout the client's socket closes with 4403 and nothing more arrives.
{
  const session = await graphql(http, null, 'mutation($p: String!) { login(username: "admin", password: $p) { token } }', { p: process.env.UNITY_ADMIN_PASSWORD });
  const mine = session.data.login.token;
  let closedCode;
  const closed = new Promise((resolve) => {
    const client = createClient({
      url, webSocketImpl: WebSocket, connectionParams: { token: mine }, retryAttempts: 0,
      on: { closed: (event) => { closedCode = event.code; resolve(); } },
    });
    client.subscribe({ query: 'subscription { events { eventType } }' }, { next: () => {}, error: () => {}, complete: () => {} });
  });
  // Let the socket open (the subscription is lazy), then end the session.
  await new Promise((r) => setTimeout(r, 300));
  await graphql(http, mine, 'mutation { logout }');
  await deadline(closed, 10000, 'the socket closes after logout');
  check(closedCode === 4403, `logout closes the socket with 4403 (${closedCode})`);
}
console.log('graphql-ws: all checks passed');
