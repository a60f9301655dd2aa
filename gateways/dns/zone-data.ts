// What a dns-zone actor publishes and every node's DNS gateway answers from: one zone's
// complete record set. Names are lower case without a trailing dot; TTLs are in seconds.
export type RecordData =
  | { type: 'A' | 'AAAA'; ttl: number; data: string }
  | { type: 'CNAME' | 'NS'; ttl: number; data: string }
  | { type: 'TXT'; ttl: number; data: string[] }
  | { type: 'CAA'; ttl: number; data: { flags: number; tag: 'issue' | 'issuewild' | 'iodef'; value: string } };

export interface ZoneData {
  zone: string;
  serial: number;
  soa: { mname: string; rname: string; refresh: number; retry: number; expire: number; minimum: number; ttl: number };
  /** Owner name -> records (the apex's NS records included). */
  records: Record<string, RecordData[]>;
}

/** The zone `name` falls in: the longest zone that is `name` or a parent of it. */
export function zoneOf(name: string, zones: ReadonlyMap<string, unknown>): string | undefined {
  for (let n = name; ; ) {
    if (zones.has(n)) return n;
    const dot = n.indexOf('.');
    if (dot < 0) return undefined;
    n = n.slice(dot + 1);
  }
}
