// Proxied requests by resource: a count per status and a latency histogram, kept in plain
// maps and arrays as requests end and turned into Prometheus samples only when scraped.
// prom-client hashes a labels object on every inc() and observe() (and makes a closure per
// observe); on the tunnel node that was about 3 % of its CPU per request. The samples are the
// same a prom-client Counter and Histogram would give (test/node/request-metrics.test.ts).
import type { Registry } from 'prom-client';

interface PerResource {
  statuses: Map<number, number>;
  /** Observations per bucket, not cumulative (the last slot: above every bound). */
  buckets: Float64Array;
  sum: number;
  count: number;
}

type Sample = { labels: Record<string, string | number>; value: number; metricName?: string };

/** What prom-client's registry reads from a metric it did not make. */
interface CustomMetric {
  name: string;
  help: string;
  type: 'counter' | 'histogram';
  aggregator: 'sum';
  get(): Promise<{ name: string; help: string; type: string; aggregator: 'sum'; values: Sample[] }>;
  reset(): void;
}

export class RequestMetrics {
  readonly #byResource = new Map<string, PerResource>();
  readonly #bounds: readonly number[];

  constructor(registry: Registry, names: { requests: string; latency: string }, bounds: readonly number[]) {
    this.#bounds = bounds;
    const metric = (name: string, help: string, type: CustomMetric['type'], values: () => Sample[]): CustomMetric => ({
      name,
      help,
      type,
      aggregator: 'sum',
      get: async () => ({ name, help, type, aggregator: 'sum', values: values() }),
      reset: () => this.#byResource.clear(),
    });
    registry.registerMetric(metric(names.requests, 'HTTP requests proxied by this node, by resource and status', 'counter', () => this.#counts()) as never);
    registry.registerMetric(metric(names.latency, 'Time to the end of the response, by resource', 'histogram', () => this.#histogram(names.latency)) as never);
  }

  /** One proxied request ended: counted under its status, timed in `seconds`. */
  observe(resource: string, status: number, seconds: number) {
    let r = this.#byResource.get(resource);
    if (!r) this.#byResource.set(resource, (r = { statuses: new Map(), buckets: new Float64Array(this.#bounds.length + 1), sum: 0, count: 0 }));
    r.statuses.set(status, (r.statuses.get(status) ?? 0) + 1);
    const bounds = this.#bounds;
    let b = 0;
    while (b < bounds.length && seconds > bounds[b]!) b++;
    r.buckets[b]!++;
    r.sum += seconds;
    r.count++;
  }

  #counts(): Sample[] {
    const out: Sample[] = [];
    for (const [resource, r] of this.#byResource) for (const [status, n] of r.statuses) out.push({ labels: { resource, status: String(status) }, value: n });
    return out;
  }

  #histogram(name: string): Sample[] {
    const out: Sample[] = [];
    for (const [resource, r] of this.#byResource) {
      let cumulative = 0;
      this.#bounds.forEach((le, i) => {
        cumulative += r.buckets[i]!;
        out.push({ labels: { le, resource }, value: cumulative, metricName: `${name}_bucket` });
      });
      out.push({ labels: { le: '+Inf', resource }, value: r.count, metricName: `${name}_bucket` });
      out.push({ labels: { resource }, value: r.sum, metricName: `${name}_sum` });
      out.push({ labels: { resource }, value: r.count, metricName: `${name}_count` });
    }
    return out;
  }
}
