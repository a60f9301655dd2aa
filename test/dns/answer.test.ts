// Authoritative answers from a zone snapshot, as a resolver would check them: answers with
// AA, NXDOMAIN vs NODATA with the SOA, names outside our zones refused, CNAMEs followed.
import type { Question } from 'dns-packet';
import t from 'tap';
import { RCODE, answerQuestion, zoneOf } from '../../gateways/dns/answer.ts';
import type { ZoneData } from '../../protocol/zone.ts';

const zone: ZoneData = {
  zone: 'example.com',
  serial: 7,
  soa: { mname: 'ns-a.example.com', rname: 'hostmaster.example.com', refresh: 3600, retry: 600, expire: 1209600, minimum: 30, ttl: 60 },
  records: {
    'example.com': [{ type: 'NS', ttl: 30, data: 'ns-a.example.com' }],
    'ns-a.example.com': [{ type: 'A', ttl: 30, data: '192.0.2.1' }],
    'app.example.com': [{ type: 'A', ttl: 30, data: '192.0.2.10' }, { type: 'AAAA', ttl: 30, data: '2001:db8::10' }],
    'www.example.com': [{ type: 'CNAME', ttl: 30, data: 'app.example.com' }],
    'x.deep.example.com': [{ type: 'TXT', ttl: 30, data: ['v'] }],
  },
};
const zones = new Map([['example.com', zone]]);
const ask = (name: string, type: string) => answerQuestion({ name, type, class: 'IN' } as Question, zones);

t.test('a name with records of the asked type is answered, authoritatively, in the asker\'s spelling', async (t) => {
  const r = ask('APP.Example.com', 'A');
  t.match(r, { rcode: RCODE.NOERROR, aa: true, answers: [{ name: 'APP.Example.com', type: 'A', data: '192.0.2.10' }] });
  t.equal(r.answers.length, 1);
});

t.test('NXDOMAIN and NODATA both carry the SOA; an empty non-terminal is NODATA', async (t) => {
  t.match(ask('nope.example.com', 'A'), { rcode: RCODE.NXDOMAIN, answers: [], authorities: [{ type: 'SOA', ttl: 30 }] });
  t.match(ask('app.example.com', 'TXT'), { rcode: RCODE.NOERROR, answers: [], authorities: [{ type: 'SOA' }] });
  t.match(ask('deep.example.com', 'A'), { rcode: RCODE.NOERROR, answers: [] }, 'deep.example.com has a name below it');
});

t.test('names outside our zones are refused; CNAMEs are followed inside the zone; NS comes with glue', async (t) => {
  t.match(ask('example.org', 'A'), { rcode: RCODE.REFUSED, aa: false });
  const c = ask('www.example.com', 'A');
  t.same(c.answers.map((a) => `${a.name} ${a.type}`), ['www.example.com CNAME', 'app.example.com A']);
  const ns = ask('example.com', 'NS');
  t.same(ns.additionals.map((a) => `${a.name} ${a.type}`), ['ns-a.example.com A']);
  t.match(ask('example.com', 'SOA'), { answers: [{ type: 'SOA', data: { serial: 7 } }] });
});

t.test('the longest zone wins', async (t) => {
  const both = new Map<string, unknown>([['example.com', 1], ['sub.example.com', 2]]);
  t.equal(zoneOf('a.sub.example.com', both), 'sub.example.com');
  t.equal(zoneOf('a.example.com', both), 'example.com');
  t.equal(zoneOf('example.net', both), undefined);
});
