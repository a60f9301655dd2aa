// protocol/fast-parse.ts against zod itself: for real messages and thousands of damaged copies
// of them, the fast path accepts exactly what zod accepts unchanged, and every other value gets
// zod's own answer (its error, its stripped keys, its defaults).
import { isDeepStrictEqual } from 'node:util';
import t from 'tap';
import type { z } from 'zod';
import { CHANNELS } from '../../protocol/channels.ts';
import { ConnectorMessage, NodeMessage, PROTOCOL_VERSION } from '../../protocol/connector.ts';
import { RouteSchema } from '../../protocol/route.ts';
import { ZoneDataSchema } from '../../protocol/zone.ts';
import { checkerOf, fastParse, fastSafeParse } from '../../protocol/fast-parse.ts';

const site = '6bbea578-aeb2-47b5-8f81-dbe6c79a15e5';
const route = {
  resourceId: 'r-1',
  orgId: 'o-1',
  protocol: 'http',
  hostname: 'app.example.com',
  port: null,
  tls: true,
  enabled: true,
  targets: [
    { id: 't-1', siteId: site, host: '10.0.0.5', port: 8080, scheme: 'http', enabled: true, weight: 1, healthy: true },
    { id: 't-2', siteId: 's-2', host: 'db.local', port: 5432, scheme: 'https', enabled: false, weight: 0.5, healthy: false },
  ],
  owners: { [site]: 'node-1', 's-2': 'node-2' },
  standbys: { [site]: 'node-3' },
  access: {
    blockAccess: false,
    sso: { roles: ['admin'], userIds: ['u-1'], providerId: null },
    password: true,
    pin: false,
    email: { allowed: ['*@example.com', 'ann@example.org'] },
    basicAuth: false,
    links: [{ id: 'l-1', tokenHash: 'a'.repeat(64), pathPrefix: '/share', expiresAt: null, makesSession: true }],
    secretsChangedAt: 1_700_000_000_000,
    rules: [{ id: 'x-1', priority: 10, match: 'cidr', value: '10.0.0.0/8', action: 'allow' }],
  },
};
const ttl = 60;
const zone = {
  zone: 'example.com',
  serial: 2026120601,
  soa: { mname: 'ns-node-1.example.com', rname: 'hostmaster.example.com', refresh: 3600, retry: 600, expire: 86400, minimum: 60, ttl },
  records: {
    'example.com': [{ type: 'NS', ttl, data: 'ns-node-1.example.com' }, { type: 'CAA', ttl, data: { flags: 0, tag: 'issue', value: 'letsencrypt.org' } }],
    'app.example.com': [{ type: 'A', ttl, data: '127.0.0.1' }, { type: 'AAAA', ttl, data: '::1' }],
    '_acme-challenge.app.example.com': [{ type: 'TXT', ttl, data: ['token-1', 'token-2'] }],
  },
};

const cases: Array<[string, z.ZodTypeAny, unknown]> = [
  ['route', RouteSchema, route],
  ['public route (no access, no standbys)', RouteSchema, { ...route, access: undefined, standbys: undefined }],
  ['routes channel', CHANNELS.routes, { id: 'r-1', version: { epoch: 3, seq: 7 }, data: route }],
  ['routes tombstone', CHANNELS.routes, { id: 'r-1', version: { epoch: 3, seq: 8 } }],
  ['zone', ZoneDataSchema, zone],
  ['zones channel', CHANNELS.zones, { id: 'example.com', version: { epoch: 1, seq: 2 }, data: zone }],
  ['sites channel', CHANNELS.sites, { siteId: site, node: null }],
  ['health channel', CHANNELS.health, { siteId: site, targets: [{ id: 't-1', healthy: false }] }],
  ['ownership claimed', CHANNELS.ownership, { type: 'claimed', kind: 'site', ids: [site], node: 'node-1', incarnation: 'i-1', epochs: [4] }],
  ['ownership released', CHANNELS.ownership, { type: 'released', kind: 'site', ids: [site], node: 'node-1', incarnation: 'i-1' }],
  ['changes', CHANNELS.changes, { kind: 'resource', id: 'r-1', orgId: 'o-1', action: 'updated', auditId: 12, touches: { resourceIds: ['r-1'], names: ['app.example.com'] } }],
  ['membership', CHANNELS.membership, { type: 'dead', member: { id: 'node-3', incarnation: 'i-3', admin: '127.0.0.3:8080', peer: '127.0.0.3:7946', addresses: ['127.0.0.3'], startedAt: 1 } }],
  ['connector register', ConnectorMessage, { v: PROTOCOL_VERSION, type: 'register', connectorVersion: '0.1.0', transports: ['websocket'], role: 'standby' }],
  ['node registered', NodeMessage, { v: PROTOCOL_VERSION, type: 'registered', siteId: site, node: 'node-1', epoch: 3, role: 'primary', standby: { node: 'node-2', endpoint: 'http://127.0.0.2:8080' } }],
];

/** Drops keys whose value is undefined, as a message that crossed JSON would have none. */
const viaJson = (v: unknown) => JSON.parse(JSON.stringify(v));

t.test('fast-parse: real messages take the fast path and come back as zod returns them', async (t) => {
  for (const [name, schema, sample] of cases) {
    const value = viaJson(sample);
    t.ok(checkerOf(schema)(value), `${name}: taken fast`);
    const fast = fastParse(schema, value);
    t.equal(fast, value, `${name}: the value itself, no copy`);
    t.same(fast, schema.parse(viaJson(sample)), `${name}: equal to zod's result`);
  }
});

/** Seeded (mulberry32): a failure names the seed and repeats. */
function random(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let x = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

const REPLACEMENTS: unknown[] = [null, '', 'bogus', 'x'.repeat(300), -1, 0, 1.5, 70_000, 1e21, true, false, [], {}, ['a'], { a: 1 }];

/** Every place in a JSON value: the parent and the key of each node below the root. */
function places(v: unknown, out: Array<[Record<string, unknown> | unknown[], string | number]> = []) {
  if (Array.isArray(v)) v.forEach((x, i) => (out.push([v, i]), places(x, out)));
  else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) (out.push([v as Record<string, unknown>, k]), places(x, out));
  return out;
}

/** One random damage to a copy of `sample`: a value replaced, a key removed or added, an array emptied or grown. */
function damaged(sample: unknown, rnd: () => number): unknown {
  const copy = viaJson(sample);
  const all = places(copy);
  const [parent, key] = all[Math.floor(rnd() * all.length)]!;
  const pick = rnd();
  if (pick < 0.55) (parent as Record<string | number, unknown>)[key] = viaJson(REPLACEMENTS[Math.floor(rnd() * REPLACEMENTS.length)]);
  else if (pick < 0.7 && !Array.isArray(parent)) delete (parent as Record<string, unknown>)[key as string];
  else if (pick < 0.8 && !Array.isArray(parent)) (parent as Record<string, unknown>)[`extra${Math.floor(rnd() * 3)}`] = 'surplus';
  else if (pick < 0.87 && !Array.isArray(parent)) {
    // An own `__proto__` key, as JSON.parse makes one (zod leaves it out of what it returns).
    (parent as Record<string, unknown>)['\u0000proto'] = viaJson((parent as Record<string, unknown>)[key as string]);
    return JSON.parse(JSON.stringify(copy).replace('"\\u0000proto"', '"__proto__"'));
  }
  else if (pick < 0.94 && Array.isArray(parent)) parent.push(viaJson(parent[0]));
  else if (Array.isArray(parent)) parent.length = 0;
  else (parent as Record<string, unknown>)[key as string] = String((parent as Record<string, unknown>)[key as string]);
  return copy;
}

t.test('fast-parse: damaged messages get the answer zod gives (differential, 6,000 cases)', async (t) => {
  const seed = 20261206;
  const rnd = random(seed);
  let fastTaken = 0;
  let zodAccepted = 0;
  let refused = 0;
  let mismatches = 0;
  for (const [name, schema, sample] of cases) {
    for (let i = 0; i < 6000 / cases.length; i++) {
      const value = damaged(sample, rnd);
      const expected = schema.safeParse(viaJson(value));
      const fast = checkerOf(schema)(value);
      const got = fastSafeParse(schema, value);
      if (fast) fastTaken++;
      if (expected.success) zodAccepted++;
      else refused++;
      const same = got.success === expected.success && (!got.success || isDeepStrictEqual(got.data, expected.data));
      // A fast yes must be a zod yes with an equal result.
      if (!same || (fast && !expected.success)) {
        mismatches++;
        if (mismatches <= 3) t.fail(`${name} (seed ${seed}, case ${i}): fast ${fast}, zod ${expected.success}: ${JSON.stringify(value).slice(0, 300)}`);
      }
    }
  }
  t.equal(mismatches, 0, 'no case where the fast path and zod disagree');
  t.comment(`${fastTaken} taken fast, ${zodAccepted} accepted by zod, ${refused} refused`);
  t.ok(fastTaken > 500 && refused > 1000 && zodAccepted > fastTaken, 'the damage exercised all three: fast yes, zod-only yes (stripped or defaulted), no');
});

t.test('fast-parse: what zod changes is zod’s to do', async (t) => {
  const policy = viaJson(route.access);
  delete policy.sso.providerId;
  const r = fastParse(RouteSchema, { ...viaJson(route), access: policy });
  t.equal(r.access?.sso?.providerId, null, 'a missing field with a default gets the default');
  const extra = fastParse(CHANNELS.sites, { siteId: site, node: 'node-1', surplus: 1 });
  t.same(extra, { siteId: site, node: 'node-1' }, 'unknown keys are stripped');
  t.throws(() => fastParse(CHANNELS.sites, { siteId: '', node: 'node-1' }), { name: 'ZodError' }, 'a refusal is zod’s error');
  t.throws(() => fastParse(ConnectorMessage, { v: PROTOCOL_VERSION, type: 'register', connectorVersion: '0.1.0', transports: ['websocket'], extra: true }), { name: 'ZodError' }, 'a strict object refuses an unknown key');
});
