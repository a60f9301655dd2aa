// What a dns-zone actor publishes and every node's DNS gateway answers from: one zone's
// complete record set. Names are lower case without a trailing dot; TTLs are in seconds.
// The schema is checked where a snapshot arrives from Valkey (protocol/channels.ts).
import { z } from 'zod';

const ttl = z.number().int().min(0).max(2_147_483_647);

export const RecordDataSchema = z.discriminatedUnion('type', [
  z.object({ type: z.enum(['A', 'AAAA']), ttl, data: z.string() }),
  z.object({ type: z.enum(['CNAME', 'NS']), ttl, data: z.string() }),
  z.object({ type: z.literal('TXT'), ttl, data: z.array(z.string()) }),
  z.object({ type: z.literal('CAA'), ttl, data: z.object({ flags: z.number().int(), tag: z.enum(['issue', 'issuewild', 'iodef']), value: z.string() }) }),
]);

export const ZoneDataSchema = z.object({
  zone: z.string(),
  serial: z.number().int().nonnegative(),
  soa: z.object({ mname: z.string(), rname: z.string(), refresh: ttl, retry: ttl, expire: ttl, minimum: ttl, ttl }),
  /** Owner name -> records (the apex's NS records included). */
  records: z.record(z.array(RecordDataSchema)),
});

export type RecordData = z.infer<typeof RecordDataSchema>;
export type ZoneData = z.infer<typeof ZoneDataSchema>;

/** How an org proved it controls a domain (delegation to the cluster's name servers, or the challenge TXT record). */
export type DomainProof = 'delegation' | 'txt';
