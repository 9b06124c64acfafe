// urql with its default settings: queries go out as GET (preferGetMethod 'within-url-limit'),
// mutations as POST; paginating auditLog to its end neither skips nor repeats an entry.
import { Client, cacheExchange, fetchExchange, gql } from '@urql/core';
import { check } from './lib.mjs';

const url = `${process.env.UNITY_URL}/graphql`;
const methods = [];
const client = new Client({
  url,
  exchanges: [cacheExchange, fetchExchange],
  fetchOptions: () => ({ headers: { authorization: `Bearer ${process.env.UNITY_TOKEN}` } }),
  fetch: (input, init) => { methods.push(init?.method ?? 'GET'); return fetch(input, init); },
  requestPolicy: 'network-only',
});

const me = await client.query(gql`{ me { username role } }`, {}).toPromise();
check(!me.error && me.data.me.username === 'admin', `a query answers: ${me.error?.message ?? ''}`);
check(methods.at(-1) === 'GET', `urql sent the query with GET (${methods.at(-1)})`);

const created = await client.mutation(gql`mutation($n: String!) { createApiKey(input: {name: $n, role: VIEWER}) { apiKey { id } } }`, { n: 'from urql' }).toPromise();
check(!created.error && created.data.createApiKey.apiKey.id, `a mutation answers: ${created.error?.message ?? ''}`);
check(methods.at(-1) === 'POST', `urql sent the mutation with POST (${methods.at(-1)})`);

const page = gql`query($after: String) { auditLog(first: 7, after: $after) { edges { cursor node { position eventType } } pageInfo { hasNextPage endCursor } } }`;
const positions = [];
let after = null;
for (;;) {
  const result = await client.query(page, { after }).toPromise();
  check(!result.error, `a page of auditLog answers: ${result.error?.message ?? ''}`);
  const { edges, pageInfo } = result.data.auditLog;
  positions.push(...edges.map((e) => BigInt(e.node.position)));
  if (!pageInfo.hasNextPage) break;
  after = pageInfo.endCursor;
}
const distinct = new Set(positions.map(String));
check(distinct.size === positions.length, 'no audit entry repeats');
check(positions.every((p, i) => i === 0 || p > positions[i - 1]), 'entries come in log order');
console.log(`entries: ${positions.length}`);
console.log('urql: all checks passed');
