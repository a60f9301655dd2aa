// WireGuard state in PostgreSQL: a node's sealed key survives restarts, concurrent address
// allocations never hand out one address twice, a deleted site's address is reused, and a
// connector key belongs to one site.
import t from 'tap';
import { createLogger } from '../../core/log.ts';
import { Secret } from '../../core/secret.ts';
import { createDb, sql } from '../../persistence/db.ts';
import { migrate } from '../../persistence/migrate.ts';
import { Sealer } from '../../persistence/sealed.ts';
import { claimConnectorKey, hostRange, nodeKeyPair, tunnelAddress } from '../../persistence/wireguard.ts';
import { generateKeyPair } from '../../gateways/wireguard/keys.ts';
import { freshDatabase } from '../harness/services.ts';
import { randomBytes } from 'node:crypto';

const logger = createLogger({ level: 'silent' });

async function database(t: { teardown(fn: () => unknown): void }) {
  const url = await freshDatabase(t);
  await migrate({ url: new Secret(url), connectTimeout: 2000, logger });
  const db = await createDb({ url: new Secret(url), poolSize: 8, connectTimeout: 2000, statementTimeout: 5000, logger });
  t.teardown(() => db.end());
  const org = await db.oneFirst(sql.unsafe`INSERT INTO orgs (name, slug) VALUES ('o', ${`o-${randomBytes(4).toString('hex')}`}) RETURNING id`);
  const site = async (name: string) => String(await db.oneFirst(sql.unsafe`INSERT INTO sites (org_id, name, transport) VALUES (${org}, ${name}, 'wireguard') RETURNING id`));
  return { db, site };
}

t.test('host ranges', async (t) => {
  t.same(hostRange('100.89.0.0/16'), { first: 0x64590001, last: 0x6459fffe });
  t.same(hostRange('10.1.2.77/24'), { first: 0x0a010201, last: 0x0a0102fe }, 'host bits ignored');
});

t.test('a node keeps its key; addresses are unique under concurrency and reused after a site goes', async (t) => {
  const { db, site } = await database(t);
  const sealer = new Sealer(new Secret(randomBytes(32)));
  const [k1, k2] = await Promise.all([nodeKeyPair(db, sealer, 'node-a'), nodeKeyPair(db, sealer, 'node-a')]);
  t.same(k1, k2, 'two starts racing get one key');
  t.same(await nodeKeyPair(db, sealer, 'node-a'), k1, 'a restart reads the same key');
  const stored = await db.oneFirst(sql.unsafe`SELECT private_key_sealed FROM wireguard_nodes WHERE node_id = 'node-a'`);
  t.notOk(Buffer.from(stored as Buffer).includes(Buffer.from(k1.privateKey)), 'the private key is sealed at rest');
  t.not((await nodeKeyPair(db, sealer, 'node-b')).publicKey, k1.publicKey, 'another node, another key');

  const sites = await Promise.all(Array.from({ length: 12 }, (_, i) => site(`s${i}`)));
  const net = '10.50.0.0/28'; // 14 hosts: 2 nodes + 12 sites fill it
  const got = await Promise.all([
    tunnelAddress(db, { nodeId: 'node-a' }, net),
    tunnelAddress(db, { nodeId: 'node-b' }, net),
    ...sites.map((s) => tunnelAddress(db, { siteId: s }, net)),
    ...sites.map((s) => tunnelAddress(db, { siteId: s }, net)), // each site asked twice at once
  ]);
  const distinct = new Set(got.slice(0, 14));
  t.equal(distinct.size, 14, 'fourteen owners, fourteen addresses');
  t.same(got.slice(14), got.slice(2, 14), 'asking twice gives the same address');
  t.ok([...distinct].every((a) => /^10\.50\.0\.(\d+)$/.test(a) && Number(a.split('.')[3]) >= 1 && Number(a.split('.')[3]) <= 14), 'all inside the range, no network or broadcast address');
  const extra = await site('extra');
  await t.rejects(tunnelAddress(db, { siteId: extra }, net), { code: 'CLUSTER_ERR_WIREGUARD_ADDRESSES_EXHAUSTED' }, 'a full range says so');
  const freed = got[5]!;
  await db.query(sql.unsafe`DELETE FROM sites WHERE id = ${sites[3]!}`);
  t.equal(await tunnelAddress(db, { siteId: extra }, net), freed, 'a deleted site\'s address is handed out again');
});

t.test('a connector key belongs to one site; malformed keys are refused', async (t) => {
  const { db, site } = await database(t);
  const [a, b] = [await site('a'), await site('b')];
  const key = generateKeyPair().publicKey;
  await claimConnectorKey(db, a, key);
  await claimConnectorKey(db, a, key); // the same site again: fine
  await t.rejects(claimConnectorKey(db, b, key), { code: 'CLUSTER_ERR_WIREGUARD_KEY_IN_USE' });
  await t.rejects(claimConnectorKey(db, b, 'not-a-key'), { code: 'CLUSTER_ERR_WIREGUARD_BAD_KEY' });
  t.equal(await db.oneFirst(sql.unsafe`SELECT wg_public_key FROM sites WHERE id = ${b}`), null, 'the refused site records nothing');
  await claimConnectorKey(db, a, generateKeyPair().publicKey); // a restarted connector's new key
  await claimConnectorKey(db, b, key); // the old one is free again
  t.pass('a key given up is free for another site');
});
