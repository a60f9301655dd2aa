// When the cert issuer orders: what is due, and how long failures back off.
import t from 'tap';
import { backoffMs, due, dueOrders } from '../../actors/cert-issuer.ts';

const now = new Date('2026-12-04T12:00:00Z');
const later = new Date('2026-12-20T00:00:00Z');

t.test('a certificate is due when missing, failed, past its renewal time, or with an order in flight', async (t) => {
  t.ok(due({ status: null, renew_after: null, pending_order_url: null }, now), 'never issued');
  t.ok(due({ status: 'failed', renew_after: null, pending_order_url: null }, now), 'failed');
  t.notOk(due({ status: 'valid', renew_after: later, pending_order_url: null }, now), 'valid and not yet at renewal');
  t.ok(due({ status: 'valid', renew_after: now, pending_order_url: null }, now), 'renewal time reached');
  t.ok(due({ status: 'valid', renew_after: later, pending_order_url: 'https://ca/order/1' }, now), 'an order in flight is taken up');
});

t.test('failures back off exponentially from 30 s, capped at 6 h; a rate limit waits at least an hour', async (t) => {
  t.same([0, 1, 2, 3].map((f) => backoffMs(f, false)), [30_000, 60_000, 120_000, 240_000]);
  t.equal(backoffMs(20, false), 6 * 3600_000, 'capped');
  t.equal(backoffMs(0, true), 3600_000, 'rate limited');
  t.equal(backoffMs(12, true), 6 * 3600_000);
});

t.test('one check orders fresh hostnames first and at most two per org, so a failing org cannot starve the rest', async (t) => {
  const row = (hostname: string, org_id: string, failures: number | null, next: Date | null = null) => ({ hostname, org_id, status: failures ? 'failed' : null, renew_after: null, pending_order_url: null, failures, next_attempt_at: next });
  const rows = [
    row('a1.broken.test', 'broken', 5), row('a2.broken.test', 'broken', 4), row('a3.broken.test', 'broken', 3), row('a4.broken.test', 'broken', 6),
    row('b.good.test', 'good', null), row('c.other.test', 'other', 1),
    row('d.waiting.test', 'waiting', 2, later), // still backing off
    { ...row('e.valid.test', 'good', null), status: 'valid', renew_after: later }, // not due
  ];
  t.same(dueOrders(rows, now).map((r) => r.hostname), ['b.good.test', 'c.other.test', 'a3.broken.test', 'a2.broken.test']);
});
