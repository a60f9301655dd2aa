// WireGuard state in PostgreSQL: each node's key pair (private key sealed), tunnel addresses
// for nodes and sites from the configured range, and which site a connector key belongs to.
import { z } from 'zod';
import { ClusterError } from '../core/errors.ts';
import { generateKeyPair, isWireGuardKey, publicKeyOf, type KeyPair } from '../gateways/wireguard/keys.ts';
import { sql, type DatabasePool } from './db.ts';
import type { Sealer } from './sealed.ts';

const keyContext = (nodeId: string) => `wireguard-node:${nodeId}`;

/** This node's key pair: made once, kept sealed, the same after every restart. */
export async function nodeKeyPair(db: DatabasePool, sealer: Sealer, nodeId: string): Promise<KeyPair> {
  const read = () => db.maybeOne(sql.type(z.object({ private_key_sealed: z.instanceof(Buffer) }))`SELECT private_key_sealed FROM wireguard_nodes WHERE node_id = ${nodeId}`);
  let row = await read();
  if (!row) {
    const fresh = generateKeyPair();
    await db.query(sql.unsafe`
      INSERT INTO wireguard_nodes (node_id, private_key_sealed, public_key)
      VALUES (${nodeId}, ${sql.binary(sealer.seal(fresh.privateKey, keyContext(nodeId)))}, ${fresh.publicKey})
      ON CONFLICT (node_id) DO NOTHING`);
    row = await read(); // another process of this node id may have won the insert
  }
  const privateKey = sealer.open(row!.private_key_sealed, keyContext(nodeId)).toString('utf8');
  return { privateKey, publicKey: publicKeyOf(privateKey) };
}

/** An IPv4 network such as "100.89.0.0/16": its first and last usable host numbers. */
export function hostRange(cidr: string): { first: number; last: number } {
  const [ip, bits] = cidr.split('/');
  const prefix = Number(bits);
  const base = ip!.split('.').reduce((n, o) => n * 256 + Number(o), 0);
  const size = 2 ** (32 - prefix);
  const network = base - (base % size);
  return { first: network + 1, last: network + size - 2 };
}

export type AddressOwner = { nodeId: string } | { siteId: string };

const ownerColumn = (o: AddressOwner) => ('nodeId' in o ? sql.fragment`node_id` : sql.fragment`site_id`);
const ownerValue = (o: AddressOwner) => ('nodeId' in o ? o.nodeId : o.siteId);

/**
 * The owner's tunnel address, allocated on first use: the lowest free address of the range.
 * Two allocations racing for one address cannot both insert it (it is the primary key); the
 * loser tries the next free one. An address freed by a deleted site is handed out again.
 */
export async function tunnelAddress(db: DatabasePool, owner: AddressOwner, network: string): Promise<string> {
  const { first, last } = hostRange(network);
  const col = ownerColumn(owner);
  const value = ownerValue(owner);
  const existing = () => db.maybeOneFirst(sql.type(z.object({ a: z.string() }))`SELECT host(address) AS a FROM wireguard_addresses WHERE ${col} = ${value}`);
  for (let attempt = 0; attempt < 20; attempt++) {
    const have = await existing();
    if (have) return have;
    // generate_series yields in order, so LIMIT 1 stops at the first gap.
    const got = await db.maybeOneFirst(sql.type(z.object({ a: z.string() }))`
      INSERT INTO wireguard_addresses (address, ${col})
      SELECT '0.0.0.0'::inet + n, ${value}
        FROM generate_series(${first}::bigint, ${last}::bigint) AS n
       WHERE NOT EXISTS (SELECT 1 FROM wireguard_addresses w WHERE w.address = '0.0.0.0'::inet + n)
       LIMIT 1
      ON CONFLICT DO NOTHING
      RETURNING host(address) AS a`);
    if (got) return got;
    const free = await db.oneFirst(sql.type(z.object({ free: z.boolean() }))`
      SELECT EXISTS (SELECT 1 FROM generate_series(${first}::bigint, ${last}::bigint) AS n
                      WHERE NOT EXISTS (SELECT 1 FROM wireguard_addresses w WHERE w.address = '0.0.0.0'::inet + n)) AS free`);
    if (!free && !(await existing())) throw new ClusterError('CLUSTER_ERR_WIREGUARD_ADDRESSES_EXHAUSTED', `no free tunnel address left in ${network}`, { network });
  }
  throw new ClusterError('CLUSTER_ERR_WIREGUARD_ADDRESSES_EXHAUSTED', `could not allocate a tunnel address in ${network} after 20 attempts`, { network });
}

/**
 * Records the connector's public key as its site's. Refused, with a coded reason, when the key
 * is malformed or is already another site's.
 */
export async function claimConnectorKey(db: DatabasePool, siteId: string, publicKey: unknown): Promise<void> {
  if (!isWireGuardKey(publicKey)) throw new ClusterError('CLUSTER_ERR_WIREGUARD_BAD_KEY', 'the connector\'s WireGuard public key is not base64 of 32 bytes', { reason: 'malformed' });
  try {
    await db.query(sql.unsafe`UPDATE sites SET wg_public_key = ${publicKey} WHERE id = ${siteId} AND wg_public_key IS DISTINCT FROM ${publicKey}`);
  } catch (err) {
    const e = err as { code?: string; cause?: { code?: string } };
    if ((e.code ?? e.cause?.code) === '23505') throw new ClusterError('CLUSTER_ERR_WIREGUARD_KEY_IN_USE', 'this WireGuard public key belongs to another site', {});
    throw err;
  }
}
