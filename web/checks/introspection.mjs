// graphql-js's standard introspection query, as GraphiQL, Apollo, codegen tools, Postman and
// Insomnia send it, in its default form and with every option on; the answer must build a client
// schema, and every root field and argument must have a description (what GraphiQL's docs show).
import { buildClientSchema, getIntrospectionQuery, printSchema } from 'graphql';
import { check, graphql } from './lib.mjs';

const url = process.env.UNITY_URL;
const variants = {
  default: {},
  'every option': { descriptions: true, specifiedByUrl: true, directiveIsRepeatable: true, schemaDescription: true, inputValueDeprecation: true },
};
let schema;
for (const [name, options] of Object.entries(variants)) {
  const answer = await graphql(url, null, getIntrospectionQuery(options));
  check(!answer.errors, `the introspection query (${name}) is answered: ${JSON.stringify(answer.errors ?? [])}`);
  schema = buildClientSchema(answer.data);
  check(schema.getQueryType().name === 'Query', `buildClientSchema accepts it (${name})`);
}
check(printSchema(schema).includes('type Subscription'), 'the schema prints with its subscription type');

const undocumented = [];
for (const root of [schema.getQueryType(), schema.getMutationType(), schema.getSubscriptionType()]) {
  for (const field of Object.values(root.getFields())) {
    if (!field.description) undocumented.push(`${root.name}.${field.name}`);
    for (const arg of field.args) {
      if (!arg.description) undocumented.push(`${root.name}.${field.name}(${arg.name})`);
    }
  }
}
check(undocumented.length === 0, `every root field and argument has a description; missing: ${undocumented.join(', ')}`);

// The limits still stop abusive documents: introspection's lists nested in one another.
const nested = '{ __schema { types { fields { type { fields { type { fields { name } } } } } } } }';
const refused = await graphql(url, null, nested);
check(refused.errors?.[0]?.extensions?.code === 'BAD_USER_INPUT', `nested introspection lists are refused: ${JSON.stringify(refused.errors)}`);
console.log('introspection: all checks passed');
