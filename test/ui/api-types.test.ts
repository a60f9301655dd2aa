// The dashboard's API types are generated from the admin API's OpenAPI document: the committed
// file must be exactly what the current routes generate (run `npm run ui:types` after changing
// a route's schema), so the client cannot drift from the API unseen.
import { readFileSync } from 'node:fs';
import t from 'tap';
import { apiTypes, openApiDocument, TYPES_FILE, tsType } from '../../bin/ui-types.ts';

t.test('ui/src/api-types.ts is what the current routes generate', async (t) => {
  const generated = apiTypes(await openApiDocument());
  t.ok(generated === readFileSync(TYPES_FILE, 'utf8'), 'up to date (else: npm run ui:types)');
  t.match(generated, /'GET \/api\/v1\/cluster\/placement': \{/, 'the routes the dashboard reads are in it');
});

t.test('JSON schemas become TypeScript types', async (t) => {
  t.equal(tsType({ type: 'object', properties: { a: { type: 'string' }, b: { type: 'integer' } }, required: ['a'] }), '{\n  a: string;\n  b?: number;\n}');
  t.equal(tsType({ anyOf: [{ type: 'string', enum: ['x'] }, { type: 'null' }] }), '"x" | null');
  t.equal(tsType({ type: 'array', items: { type: 'boolean' } }), 'Array<boolean>');
  t.equal(tsType({ type: 'object', additionalProperties: { type: 'integer' } }), 'Record<string, number>');
});
