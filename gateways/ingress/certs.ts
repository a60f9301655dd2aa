// TLS certificates for the ingress, by hostname. `source` is where issued certificates come
// from (PostgreSQL, keys decrypted with the cluster key); until a hostname has one, a
// certificate generated for it (self-signed, P-256, 90 days) is served, and browsers will
// say so. Contexts are cached in memory; `reload` swaps one in when a new certificate lands
// (the old one serves until the new one is ready: no handshake waits on the database).
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSecureContext, type SecureContext } from 'node:tls';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface CertificateSource {
  /** The issued certificate chain and key for a hostname, if there is one. */
  get(hostname: string): Promise<{ cert: string; key: string } | undefined>;
}

async function generate(hostname: string): Promise<{ cert: string; key: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'cert-'));
  try {
    await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'),
      '-days', '90', '-subj', `/CN=${hostname}`, '-addext', `subjectAltName=DNS:${hostname}`]);
    return { cert: await readFile(join(dir, 'cert.pem'), 'utf8'), key: await readFile(join(dir, 'key.pem'), 'utf8') };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export class CertificateStore {
  readonly #source: CertificateSource | undefined;
  readonly #contexts = new Map<string, Promise<SecureContext>>();

  constructor(source?: CertificateSource) {
    this.#source = source;
  }

  contextFor(hostname: string): Promise<SecureContext> {
    let ctx = this.#contexts.get(hostname);
    if (!ctx) {
      ctx = (async () => createSecureContext((await this.#source?.get(hostname)) ?? (await generate(hostname))))();
      ctx.catch(() => this.#contexts.delete(hostname));
      this.#contexts.set(hostname, ctx);
    }
    return ctx;
  }

  /** Serves this certificate for the hostname from now on (the operator's own, e.g. the portal's). */
  pin(hostname: string, pem: { cert: string; key: string }) {
    this.#contexts.set(hostname, Promise.resolve(createSecureContext(pem)));
  }

  invalidate(hostname: string) {
    this.#contexts.delete(hostname);
  }

  /** Loads the hostname's issued certificate now and serves it from the next handshake on. */
  async reload(hostname: string): Promise<boolean> {
    const issued = await this.#source?.get(hostname);
    if (!issued) return false;
    this.#contexts.set(hostname, Promise.resolve(createSecureContext(issued)));
    return true;
  }

  /** For tls options: resolves the context of the requested server name. */
  readonly sniCallback = (servername: string, cb: (err: Error | null, ctx?: SecureContext) => void) => {
    this.contextFor(servername.toLowerCase()).then((ctx) => cb(null, ctx), (err) => cb(err as Error));
  };
}
