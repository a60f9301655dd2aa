// Issued certificates as every node's ingress reads them: chain from PostgreSQL, private key
// opened with the cluster key (a wrong key fails loudly with CLUSTER_ERR_CRYPTO_WRONG_KEY).
import { z } from 'zod';
import { sql, type DatabasePool } from '../../persistence/db.ts';
import type { Sealer } from '../../persistence/sealed.ts';
import type { CertificateSource } from './certs.ts';

const row = z.object({ hostname: z.string(), cert_pem: z.string(), key_sealed: z.instanceof(Buffer) });

export interface IssuedCertificates extends CertificateSource {
  hostnames(): Promise<string[]>;
  checkKey(): Promise<void>;
  /** Seconds until each valid certificate expires (metrics). */
  expiries(): Promise<Array<{ hostname: string; seconds: number }>>;
}

export function issuedCertificates(db: DatabasePool, sealer: Sealer): IssuedCertificates {
  const open = (r: z.infer<typeof row>) => ({ cert: r.cert_pem, key: sealer.open(r.key_sealed, `certificate:${r.hostname}`).toString('utf8') });
  return {
    async get(hostname) {
      const r = await db.maybeOne(sql.type(row)`SELECT hostname, cert_pem, key_sealed FROM certificates WHERE hostname = ${hostname} AND status = 'valid'`);
      return r ? open(r) : undefined;
    },
    async hostnames() {
      return [...(await db.anyFirst(sql.type(z.object({ hostname: z.string() }))`SELECT hostname FROM certificates WHERE status = 'valid' ORDER BY hostname`))];
    },
    async expiries() {
      return [...(await db.any(sql.type(z.object({ hostname: z.string(), seconds: z.coerce.number() }))`
        SELECT hostname, extract(epoch FROM not_after - now()) AS seconds FROM certificates WHERE status = 'valid'`))];
    },
    /** Opens one stored key (if any): a node started with the wrong cluster key must not run. */
    async checkKey() {
      const r = await db.maybeOne(sql.type(row)`SELECT hostname, cert_pem, key_sealed FROM certificates WHERE status = 'valid' LIMIT 1`);
      if (r) open(r);
    },
  };
}
