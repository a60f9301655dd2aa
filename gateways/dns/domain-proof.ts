// Proof that an org controls a domain before the cluster serves it: asked of the operator's
// recursive resolvers (config dns.verifyResolvers), never of our own name servers. Either the
// domain is delegated to the cluster's name servers (its NS records name them), or
// `_cluster-challenge.<domain>` holds the token the API showed, as a TXT record.
import { createSocket } from 'node:dgram';
import { randomInt } from 'node:crypto';
import { isIPv6 } from 'node:net';
import dnsPacket, { type Answer } from 'dns-packet';
import type { Address } from '../../core/config-fields.ts';
import type { DomainProof } from '../../protocol/zone.ts';

export const CHALLENGE_LABEL = '_cluster-challenge';

/** One query to one resolver over UDP; undefined when it does not answer in time. */
export function query(resolver: Address, name: string, type: 'TXT' | 'NS', timeoutMs: number): Promise<{ answers: Answer[]; authorities: Answer[] } | undefined> {
  return new Promise((resolve) => {
    const sock = createSocket(isIPv6(resolver.host) ? 'udp6' : 'udp4');
    const id = randomInt(0, 65_536);
    const done = (v: { answers: Answer[]; authorities: Answer[] } | undefined) => {
      clearTimeout(timer);
      sock.close();
      resolve(v);
    };
    const timer = setTimeout(() => done(undefined), timeoutMs);
    sock.on('error', () => done(undefined));
    sock.on('message', (msg) => {
      try {
        const p = dnsPacket.decode(msg);
        if (p.id !== id || p.type !== 'response') return; // not ours: keep waiting
        done({ answers: p.answers ?? [], authorities: p.authorities ?? [] });
      } catch {
        // malformed: keep waiting for a real answer until the deadline
      }
    });
    sock.send(dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type, name }] }), resolver.port, resolver.host);
  });
}

/**
 * Which proof the resolvers show, if any. `nameServers` are the names the cluster serves as
 * the domain's NS records; one of them among the domain's NS records (an answer from a
 * resolver, or a referral from the parent's server) proves the delegation.
 */
export async function findProof(o: { domain: string; token: string; resolvers: readonly Address[]; nameServers: readonly string[]; timeoutMs: number }): Promise<DomainProof | undefined> {
  const ours = new Set(o.nameServers.map((n) => n.toLowerCase()));
  const data = (a: Answer) => (a as Answer & { data: unknown }).data;
  for (const resolver of o.resolvers) {
    const [txt, ns] = await Promise.all([
      query(resolver, `${CHALLENGE_LABEL}.${o.domain}`, 'TXT', o.timeoutMs),
      query(resolver, o.domain, 'NS', o.timeoutMs),
    ]);
    const values = (txt?.answers ?? []).filter((a) => a.type === 'TXT').flatMap((a) => ([] as Array<Buffer | string>).concat(data(a) as Buffer | string).map((v) => v.toString()));
    if (values.includes(o.token)) return 'txt';
    const named = [...(ns?.answers ?? []), ...(ns?.authorities ?? [])]
      .filter((a) => a.type === 'NS' && a.name.toLowerCase() === o.domain)
      .map((a) => String(data(a)).toLowerCase().replace(/\.$/, ''));
    if (named.some((n) => ours.has(n))) return 'delegation';
  }
  return undefined;
}
