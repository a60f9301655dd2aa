// The proxied requests' counter and histogram and the DNS query counter are kept by hand (prom-client's per-call label
// hashing was a measurable share of the tunnel and DNS CPU): a scrape must read exactly what
// prom-client's own Counter and Histogram would have said for the same requests.
import { Counter, Histogram, Registry } from 'prom-client';
import t from 'tap';
import { RequestMetrics } from '../../supervisors/request-metrics.ts';
import { createDnsMetrics, REQUEST_SECONDS_BUCKETS } from '../../supervisors/metrics.ts';

const names = { requests: 'cluster_ingress_requests_total', latency: 'cluster_ingress_request_seconds' };

t.test('the same samples as prom-client for the same requests', async (t) => {
  const ours = new Registry();
  const theirs = new Registry();
  const metrics = new RequestMetrics(ours, names, REQUEST_SECONDS_BUCKETS);
  const counter = new Counter({ name: names.requests, help: 'HTTP requests proxied by this node, by resource and status', labelNames: ['resource', 'status'], registers: [theirs] });
  const histogram = new Histogram({ name: names.latency, help: 'Time to the end of the response, by resource', labelNames: ['resource'], buckets: REQUEST_SECONDS_BUCKETS, registers: [theirs] });
  // Values on, between and above the bounds, two resources, several statuses.
  const requests: Array<[string, number, number]> = [
    ['r1', 200, 0.001], ['r1', 200, 0.005], ['r1', 502, 0.0051], ['r2', 200, 0.3],
    ['r1', 200, 10], ['r2', 404, 12.5], ['r1', 200, 0.25], ['r2', 200, 0],
  ];
  for (const [resource, status, seconds] of requests) {
    metrics.observe(resource, status, seconds);
    counter.inc({ resource, status: String(status) });
    histogram.observe({ resource }, seconds);
  }
  const sorted = async (r: Registry) => (await r.metrics()).split('\n').sort().join('\n');
  t.equal(await sorted(ours), await sorted(theirs), 'same text exposition, line for line');
  t.match(await ours.metrics(), /cluster_ingress_request_seconds_bucket\{le="0\.005",resource="r1"\} 2\n/, 'a value on a bound counts in that bucket');
  const json = await ours.getMetricsAsJSON();
  t.same(json.map((m) => m.type), ['counter', 'histogram'], 'typed for the registry');
  ours.resetMetrics();
  t.notMatch(await ours.metrics(), /resource=/, 'reset forgets every resource');
});

t.test('DNS queries counted by hand: each scrape reads every query answered so far', async (t) => {
  const registry = new Registry();
  const edge = createDnsMetrics(registry, { zoneSnapshotAgeMs: () => 0 });
  const a = edge.queryCounter('A', 'NOERROR');
  t.equal(edge.queryCounter('A', 'NOERROR'), a, 'one counter per type and response code, kept by the cached answers');
  const nx = edge.queryCounter('A', 'NXDOMAIN');
  for (let i = 0; i < 3; i++) a.inc();
  nx.inc();
  const read = async () => (await registry.getSingleMetric('cluster_dns_queries_total')!.get()).values.map((v) => `${v.labels.type} ${v.labels.rcode} ${v.value}`).sort();
  t.same(await read(), ['A NOERROR 3', 'A NXDOMAIN 1']);
  t.same(await read(), ['A NOERROR 3', 'A NXDOMAIN 1'], 'a second scrape counts nothing twice');
  a.inc();
  a.inc();
  t.same(await read(), ['A NOERROR 5', 'A NXDOMAIN 1'], 'queries after a scrape are added to it');
});
