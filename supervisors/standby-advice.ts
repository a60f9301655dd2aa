// Which node a site's connector should hold its standby tunnel to (advised in its register reply).
import { createHash } from 'node:crypto';

/**
 * The node a site's connector should hold its standby tunnel to: among the live nodes this
 * node does not suspect, other than itself, the one that ranks highest for the site by
 * rendezvous hashing (so standbys spread over the nodes, and the choice is stable). Its admin
 * address, as connectors dial it (a wildcard bind is replaced by its first public address).
 */
export function standbyAdvice(siteId: string, self: string, members: Array<{ id: string; admin: string; addresses: string[] }>): { node: string; endpoint: string } | undefined {
  const score = (id: string) => createHash('sha256').update(`${siteId}/${id}`).digest().readUInt32BE(0);
  const best = members.filter((m) => m.id !== self).sort((a, b) => score(b.id) - score(a.id))[0];
  if (!best) return undefined;
  const endpoint = adminEndpoint(best.admin, best.addresses);
  return endpoint ? { node: best.id, endpoint } : undefined;
}

/** A node's admin address as connectors dial it: a wildcard bind is replaced by its first public address. */
export function adminEndpoint(admin: string, addresses: string[]): string | undefined {
  const port = admin.slice(admin.lastIndexOf(':') + 1);
  let host = admin.slice(0, admin.lastIndexOf(':'));
  if (host === '0.0.0.0' || host === '::' || host === '[::]') host = addresses[0] ?? '';
  if (!host) return undefined;
  return `http://${host.includes(':') && !host.startsWith('[') ? `[${host}]` : host}:${port}`;
}
