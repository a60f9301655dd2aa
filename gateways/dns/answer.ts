// Authoritative answers from a zone snapshot (pure: packet in, packet out). No recursion:
// names outside our zones are REFUSED. NXDOMAIN vs NODATA follows RFC 2308 (the SOA goes in
// the authority section of both); an empty non-terminal is NODATA. CNAMEs are followed
// within the zone. Names compare case-insensitively; the question is echoed as asked.
import type { Answer, Packet, Question } from 'dns-packet';
import type { RecordData, ZoneData } from '../../protocol/zone.ts';

/** The zone `name` falls in: the longest zone that is `name` or a parent of it. */
export function zoneOf(name: string, zones: ReadonlyMap<string, unknown>): string | undefined {
  for (let n = name; ; ) {
    if (zones.has(n)) return n;
    const dot = n.indexOf('.');
    if (dot < 0) return undefined;
    n = n.slice(dot + 1);
  }
}

export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;
const AA = 1 << 10;
const RD = 1 << 8;

function toAnswer(name: string, r: RecordData): Answer {
  switch (r.type) {
    case 'CAA':
      return { name, type: 'CAA', ttl: r.ttl, class: 'IN', data: { flags: r.data.flags, tag: r.data.tag, value: r.data.value, issuerCritical: (r.data.flags & 128) !== 0 } } as Answer;
    case 'TXT':
      // A copy: dns-packet's encoder turns the strings into Buffers in place, which would
      // rewrite the zone snapshot every node answers (and reports to its peers) from.
      return { name, type: 'TXT', ttl: r.ttl, class: 'IN', data: [...r.data] } as Answer;
    default:
      return { name, type: r.type, ttl: r.ttl, class: 'IN', data: r.data } as Answer;
  }
}

function soaAnswer(z: ZoneData): Answer {
  const { mname, rname, refresh, retry, expire, minimum, ttl } = z.soa;
  return { name: z.zone, type: 'SOA', ttl, class: 'IN', data: { mname, rname, serial: z.serial, refresh, retry, expire, minimum } } as Answer;
}

export interface Reply {
  rcode: number;
  answers: Answer[];
  authorities: Answer[];
  additionals: Answer[];
  aa: boolean;
}

/** Answers one question from the zones; `zones` maps zone name -> data. */
export function answerQuestion(q: Question, zones: ReadonlyMap<string, ZoneData>): Reply {
  const empty = { answers: [], authorities: [], additionals: [] };
  if (q.class !== 'IN' && (q.class as string) !== 'ANY') return { rcode: RCODE.REFUSED, aa: false, ...empty };
  const asked = q.name.toLowerCase().replace(/\.$/, '');
  const zoneName = zoneOf(asked, zones);
  if (zoneName === undefined) return { rcode: RCODE.REFUSED, aa: false, ...empty };
  const z = zones.get(zoneName)!;
  const qtype = q.type as string; // dns-packet's types omit the meta-type ANY
  const answers: Answer[] = [];
  let name = asked;
  let owner = q.name; // keep the asker's spelling for the first owner name (0x20 case)
  for (let hops = 0; hops < 8; hops++) {
    const rrs = z.records[name] ?? [];
    if (name === z.zone && (qtype === 'SOA' || qtype === 'ANY')) answers.push({ ...soaAnswer(z), name: owner } as Answer);
    const cname = rrs.find((r) => r.type === 'CNAME');
    if (cname && qtype !== 'CNAME' && qtype !== 'ANY') {
      answers.push(toAnswer(owner, cname));
      name = (cname.data as string).toLowerCase();
      owner = name;
      if (zoneOf(name, zones) !== zoneName) break; // out of zone: the resolver follows it
      continue;
    }
    const matching = rrs.filter((r) => qtype === 'ANY' || r.type === qtype);
    for (const r of matching) answers.push(toAnswer(owner, r));
    if (answers.length > 0) {
      const additionals: Answer[] = [];
      if (qtype === 'NS') for (const ns of matching) for (const glue of z.records[(ns.data as string).toLowerCase()] ?? []) if (glue.type === 'A' || glue.type === 'AAAA') additionals.push(toAnswer(ns.data as string, glue));
      return { rcode: RCODE.NOERROR, aa: true, answers, authorities: [], additionals };
    }
    const exists = rrs.length > 0 || name === z.zone || Object.keys(z.records).some((n) => n.endsWith(`.${name}`));
    return { rcode: exists ? RCODE.NOERROR : RCODE.NXDOMAIN, aa: true, answers, authorities: [{ ...soaAnswer(z), ttl: Math.min(z.soa.ttl, z.soa.minimum) } as Answer], additionals: [] };
  }
  return { rcode: RCODE.NOERROR, aa: true, answers, authorities: [], additionals: [] };
}

/** The response packet for a query (flags: QR set by the encoder, AA, RD echoed, rcode). */
export function responseFor(query: Packet, reply: Reply, opt: Answer | undefined): Packet {
  const flags = (reply.aa ? AA : 0) | ((query.flags ?? 0) & RD) | (reply.rcode & 0xf);
  return {
    id: query.id,
    type: 'response',
    flags,
    questions: query.questions,
    answers: reply.answers,
    authorities: reply.authorities,
    additionals: opt ? [...reply.additionals, opt] : reply.additionals,
  };
}
