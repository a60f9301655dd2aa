// Configuration of one cluster node. Written by the operator as a YAML or JSON file plus
// `CLUSTER_*` environment variables (environment wins); compiled once at start by
// `compileConfig()`, which checks every field, turns durations into milliseconds and
// returns a frozen object. Every default lives in SPEC below, and only there.
//
// Environment names are derived from the field path: `postgres.url` -> CLUSTER_POSTGRES_URL,
// `lease.renewEvery` -> CLUSTER_LEASE_RENEW_EVERY. Lists are comma-separated.
import { readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { parse as parseYaml } from 'yaml';
import { ClusterError, type ConfigProblem } from './core/errors.ts';
import { Secret, redactUrl } from './core/secret.ts';
import {
  type Address,
  type Field,
  type PortRange,
  FieldProblem,
  address,
  addressList,
  boolean,
  describe,
  domainList,
  duration,
  integer,
  ipList,
  key256,
  oneOf,
  portRange,
  secretText,
  secretUrl,
  text,
  url,
} from './core/config-fields.ts';

export type { Address, PortRange } from './core/config-fields.ts';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** The compiled configuration. Durations are milliseconds. */
export interface ClusterConfig {
  /** Unique id of this node in the cluster (lowercase letters, digits, dashes). @default the machine's hostname */
  nodeId: string;
  /** Name of the cluster; prefixes every Valkey key and channel, so clusters can share a Valkey. @default "cluster" */
  clusterName: string;
  /** Shared secret that authenticates nodes to each other; at least 32 characters. Required. */
  clusterSecret: Secret;
  /** 32-byte key (hex or base64) that encrypts secrets at rest with AES-256-GCM. Required. */
  encryptionKey: Secret<Buffer>;
  postgres: {
    /** postgres:// URL. Required. */
    url: Secret;
    /** Connections per node. @default 10 */
    poolSize: number;
    /** Give up opening a connection after this long. @default "5s" */
    connectTimeout: number;
    /** Cancel a statement that runs longer than this. @default "10s" */
    statementTimeout: number;
    /**
     * End a session idle this long inside a transaction. Keeps a frozen node from holding
     * row locks (e.g. an actor's epoch row) that survivors need to take over. @default "1s"
     */
    idleInTransactionTimeout: number;
  };
  valkey: {
    /** redis:// or rediss:// URL. Required. */
    url: Secret;
    /** Give up opening a connection after this long. @default "3s" */
    connectTimeout: number;
    /** Fail a command once its connection has heard nothing from Valkey this long since it was sent (at most five times this in all). @default "2s" */
    commandTimeout: number;
    /**
     * Valkey Sentinels (host:port) watching a primary with replicas: the node asks them for the
     * current primary and follows a failover. With them, `url` gives only the password (and
     * database); its host is not used. @default []
     */
    sentinels: Address[];
    /** The name the Sentinels monitor the primary under. @default "cluster" */
    masterName: string;
  };
  admin: {
    /** Address of the admin API (REST, connector control, health). @default "0.0.0.0:8080" */
    bind: Address;
    /** Load balancer addresses whose X-Forwarded-For/-Proto are believed. @default [] */
    trustProxy: string[];
    /** Lifetime of a login session. @default "24h" */
    sessionTtl: number;
    /** Mark session cookies Secure (sent over HTTPS only); turn off only for a plain-HTTP lab setup. @default true */
    secureCookies: boolean;
    /**
     * The address admins reach the API at (the load balancer), e.g. `https://cluster.example.com`.
     * OpenID Connect providers send admins back to `<publicUrl>/api/v1/auth/oidc/callback`.
     * Unset: taken from each request (its Host, and X-Forwarded-Proto from a trusted proxy). @default unset
     */
    publicUrl: string | undefined;
  };
  ingress: {
    /** Plain HTTP listener. @default "0.0.0.0:80" */
    http: Address;
    /** TLS listener (SNI routing). @default "0.0.0.0:443" */
    https: Address;
    /** Addresses public clients reach this node at; published in DNS. @default [] */
    publicAddresses: string[];
    /**
     * Ports TCP/UDP resources may take. Must not hold any port the node listens on itself
     * (admin, HTTP, HTTPS, DNS, peer, WireGuard), so no tenant can take one. @default "20000-29999"
     */
    resourcePorts: PortRange;
    /** Longest a TLS client may take to send its whole ClientHello. @default "10s" */
    helloTimeout: number;
    /** Connections one client address (IPv6: one /56) may hold open on the HTTP port, and on the HTTPS port. @default 256 */
    maxConnectionsPerSource: number;
    /**
     * Addresses of TCP load balancers in front of :80/:443 that send a PROXY protocol v2
     * header (haproxy `send-proxy-v2`); their connections must start with one, and the client
     * it names is the one rules, rate limits and X-Forwarded-For see. @default []
     */
    proxyProtocolFrom: string[];
    /**
     * Where the ingress (its listeners, the tunnels' HTTP/2 sessions, the TCP/UDP resources)
     * runs: `worker`, a thread of its own beside the actors and the control plane (routes,
     * certificates, access decisions and the portal stay on the main thread, which it asks:
     * measured 2-6 us less CPU per proxied request), or `main`, the node's one thread.
     * `worker` needs the native module (npm run native:build); without it the node says so
     * and runs the ingress on `main`. @default "worker"
     */
    thread: 'worker' | 'main';
  };
  smtp: {
    /**
     * The operator's mail server for e-mail sign-in codes: `smtp://user:password@host:587`
     * (STARTTLS when the server offers it) or `smtps://...:465`. Unset: resources cannot use
     * e-mail codes. @default unset
     */
    url: Secret | undefined;
    /** Sender of the codes, e.g. `Cluster <no-reply@example.com>`. @default unset */
    from: string | undefined;
  };
  access: {
    /**
     * Public hostname of the auth portal, served by every node on :443 (point its DNS at the
     * nodes). Unset: no portal; browsers get 401 like other clients at protected resources. @default unset
     */
    portalHostname: string | undefined;
    /** PEM certificate chain of the portal hostname. Without it the cluster obtains one with ACME when the hostname lies under a verified domain (like a resource's), and serves a generated one (browsers warn) until then. @default unset */
    portalCert: string | undefined;
    /** PEM key of `portalCert`. @default unset */
    portalKey: string | undefined;
    /** Lifetime of a resource session (and of the portal's own sign-in). @default "24h" */
    sessionTtl: number;
    /** How long the access log keeps its rows. @default "30d" */
    logRetention: number;
  };
  dns: {
    /** Authoritative DNS listener (UDP and TCP). @default "0.0.0.0:53" */
    bind: Address;
    /** CA domains allowed to issue certificates for every zone (CAA "issue" records); none: no CAA record. @default [] */
    caaIssuers: string[];
    /** UDP responses per second per source address (floods beyond it are dropped); 0 disables. @default 1000 */
    rateLimit: number;
    /** TTL of resource records. @default "30s" */
    recordTtl: number;
    /**
     * Recursive resolvers (host:port) asked for the proof that an org controls a new domain
     * (delegation to the cluster, or its _cluster-challenge TXT record). Empty: domains are
     * verified only by a server admin. @default []
     */
    verifyResolvers: Address[];
    /** How often a pending domain's proof is looked for. @default "1m" */
    verifyEvery: number;
  };
  peer: {
    /** Node-to-node link listener. @default "0.0.0.0:7946" */
    bind: Address;
    /** Address other nodes dial. @default the bind address, or the first public address when bind is a wildcard */
    advertise: Address | undefined;
    /**
     * TLS for the peer port: PEM files of this node's certificate and key, and of the cluster
     * CA that signed every node's (all three, or none). Without them the peer link is signed
     * but not encrypted: keep the peer port on a private network. @default unset
     */
    tlsCert: string | undefined;
    /** @default unset */
    tlsKey: string | undefined;
    /** @default unset */
    tlsCa: string | undefined;
  };
  wireguard: {
    /**
     * Run this node's WireGuard device, so sites with `"transport": "wireguard"` tunnel over
     * it. Off, or where neither kernel WireGuard nor wireguard-go can run (the start-up log
     * says why), their connectors use websocket. @default true
     */
    enabled: boolean;
    /** UDP port of this node's WireGuard device. @default 51820 */
    listenPort: number;
    /**
     * host:port connectors send WireGuard to (this node's, not a load balancer's).
     * Unset: the first public address with listenPort. @default unset
     */
    endpoint: Address | undefined;
    /** Tunnel addresses: one per node and one per site, allocated in PostgreSQL. The same on every node. @default "100.89.0.0/16" */
    network: string;
    /** MTU of the tunnel interfaces (TCP's MSS follows it). @default 1280 */
    mtu: number;
    /** "netlink" (kernel), "uapi" (wireguard-go) or "auto" (kernel when present). @default "auto" */
    driver: 'auto' | 'netlink' | 'uapi';
    /** Interface name; must be unique on the machine. @default "wg-cluster" */
    interfaceName: string;
  };
  acme: {
    /** ACME directory URL. @default Let's Encrypt production */
    directoryUrl: string;
    /** Contact e-mail for the ACME account. @default unset */
    contact: string | undefined;
    /** How often the cert-issuer looks for certificates to obtain or renew. @default "10m" */
    checkEvery: number;
    /** Renew when this share of the certificate's lifetime (percent) remains. @default 33 */
    renewRemainingPercent: number;
    /** Longest an API request to obtain a certificate waits for the order. @default "2m" */
    obtainTimeout: number;
  };
  connector: {
    /** Lifetime of the token a connector gets for its site id and secret. @default "1h" */
    tokenTtl: number;
    /** How often a connected site's last-seen time is written. @default "15s" */
    seenEvery: number;
    /** A connector that sends nothing for this long (its WebSocket pings come every second) is taken for gone and its connection closed. @default "30s" */
    silentAfter: number;
  };
  changes: {
    /** How often the audit log is read for change announcements that never arrived: how long a lost one leaves actors stale. @default "10s" */
    replayEvery: number;
    /** How far back that read looks (audit ids are taken at insert and commit out of order). @default "60s" */
    replayWindow: number;
  };
  lease: {
    /** Membership lease TTL: a node that has not renewed for this long is dead. @default "3s" */
    ttl: number;
    /** How often a node renews its lease; must be well under ttl. @default "1s" */
    renewEvery: number;
  };
  failover: {
    /** Longest a planned handoff (SIGTERM) may take, and how long a message to an actor in motion is retried. @default "5s" */
    handoffTimeout: number;
    /** How often placement is recomputed even when no event arrives (repairs lost pub/sub). @default "5s" */
    reconcileEvery: number;
    /**
     * Silence on a peer link after which the peer is probed through two others and then
     * suspected: DNS answers and ingress leave it out until it answers again. Traffic only;
     * actors move on the lease alone. Shorter routes around a frozen node sooner; too short
     * suspects nodes that are merely busy (count them in cluster_peer_suspicions_total). @default "700ms"
     */
    suspectAfter: number;
    /** How often peer links are pinged for suspicion. @default "100ms" */
    probeEvery: number;
  };
  supervision: {
    /** Restarts of one actor allowed within `window` before escalating. @default 5 */
    maxRestarts: number;
    /** @default "30s" */
    window: number;
    /** First restart delay; doubles per restart, with jitter. @default "100ms" */
    backoffMin: number;
    /** @default "10s" */
    backoffMax: number;
  };
  health: {
    /** How often readiness probes PostgreSQL and Valkey. @default "1s" */
    probeInterval: number;
    /** A probe with no answer in this long counts as down. @default "1s" */
    probeTimeout: number;
  };
  shutdown: {
    /** After SIGTERM, answer /readyz 503 this long before closing, so load balancers move away. @default "2s" */
    drainDelay: number;
    /** Graceful shutdown ends in a forced exit after this long. @default "15s" */
    timeout: number;
  };
  metrics: {
    /** Prometheus metrics listener (GET /metrics). Keep it off public networks: metrics name tenants' hostnames. @default "127.0.0.1:9464" */
    bind: Address;
    /** When set, a scrape must send `Authorization: Bearer <token>`. @default unset */
    token: Secret | undefined;
  };
  log: {
    /** pino log level. @default "info" */
    level: (typeof LOG_LEVELS)[number];
    /** Human-readable logs instead of JSON. @default false */
    pretty: boolean;
  };
}

type Spec<T> = { [K in keyof T]-?: T[K] extends Secret<any> | Address | PortRange | unknown[] | string | number | boolean | undefined ? Field<T[K]> : Spec<T[K]> };

const NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;

/** Every field: its parser and default. The single source of defaults. */
export const SPEC: Spec<ClusterConfig> = {
  nodeId: text({ pattern: NAME, expected: 'lowercase letters, digits and dashes, at most 63 characters' }),
  clusterName: text({ default: 'cluster', pattern: NAME, expected: 'lowercase letters, digits and dashes, at most 63 characters' }),
  clusterSecret: secretText(32),
  encryptionKey: key256(),
  postgres: {
    url: secretUrl(['postgres:', 'postgresql:']),
    poolSize: integer(10, 1, 1000),
    connectTimeout: duration('5s', { min: 100 }),
    statementTimeout: duration('10s', { min: 100 }),
    idleInTransactionTimeout: duration('1s', { min: 100 }),
  },
  valkey: {
    url: secretUrl(['redis:', 'rediss:', 'valkey:', 'valkeys:']),
    connectTimeout: duration('3s', { min: 100 }),
    commandTimeout: duration('2s', { min: 50 }),
    sentinels: addressList([]),
    masterName: text({ default: 'cluster', pattern: /^[A-Za-z0-9._-]{1,64}$/, expected: 'a name of letters, digits, dot, dash or underscore' }),
  },
  admin: { bind: address('0.0.0.0:8080'), trustProxy: ipList([]), sessionTtl: duration('24h', { min: 60_000 }), secureCookies: boolean(true), publicUrl: url({ protocols: ['https:', 'http:'], optional: true }) },
  ingress: { http: address('0.0.0.0:80'), https: address('0.0.0.0:443'), publicAddresses: ipList([]), resourcePorts: portRange('20000-29999'), helloTimeout: duration('10s', { min: 100 }), maxConnectionsPerSource: integer(256, 1, 1_000_000), proxyProtocolFrom: ipList([]), thread: oneOf(['main', 'worker'], 'worker') },
  smtp: {
    url: secretUrl(['smtp:', 'smtps:'], { optional: true }),
    from: text({ optional: true, pattern: /^[^\r\n]{3,200}$/, expected: 'a sender address such as "Cluster <no-reply@example.com>"' }),
  },
  access: {
    portalHostname: text({ optional: true, pattern: /^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/, expected: 'a lowercase DNS hostname' }),
    portalCert: text({ optional: true, pattern: /^\/.+/, expected: 'an absolute path to a PEM file' }),
    portalKey: text({ optional: true, pattern: /^\/.+/, expected: 'an absolute path to a PEM file' }),
    sessionTtl: duration('24h', { min: 60_000 }),
    logRetention: duration('30d', { min: 3_600_000 }),
  },
  dns: {
    bind: address('0.0.0.0:53'),
    caaIssuers: domainList([]),
    rateLimit: integer(1000, 0, 10_000_000),
    recordTtl: duration('30s', { min: 1000 }),
    verifyResolvers: addressList([]),
    verifyEvery: duration('1m', { min: 500 }),
  },
  peer: {
    bind: address('0.0.0.0:7946'),
    advertise: address(undefined, { optional: true }),
    tlsCert: text({ optional: true, pattern: /^\/.+/, expected: 'an absolute path to a PEM file' }),
    tlsKey: text({ optional: true, pattern: /^\/.+/, expected: 'an absolute path to a PEM file' }),
    tlsCa: text({ optional: true, pattern: /^\/.+/, expected: 'an absolute path to a PEM file' }),
  },
  wireguard: {
    enabled: boolean(true),
    listenPort: integer(51820, 1, 65535),
    endpoint: address(undefined, { optional: true }),
    network: text({ default: '100.89.0.0/16', pattern: /^(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\/(?:[89]|1\d|2[0-4])$/, expected: 'an IPv4 network with a prefix of /8 to /24, e.g. "100.89.0.0/16"' }),
    mtu: integer(1280, 1280, 9000),
    driver: oneOf(['auto', 'netlink', 'uapi'], 'auto'),
    interfaceName: text({ default: 'wg-cluster', pattern: /^[a-zA-Z0-9_=+.-]{1,15}$/, expected: 'an interface name of 1-15 characters' }),
  },
  acme: {
    directoryUrl: url({ protocols: ['https:', 'http:'], default: 'https://acme-v02.api.letsencrypt.org/directory' }),
    contact: text({ optional: true, pattern: /^[^@\s]+@[^@\s]+$/, expected: 'an e-mail address' }),
    checkEvery: duration('10m', { min: 500 }),
    renewRemainingPercent: integer(33, 1, 99),
    obtainTimeout: duration('2m', { min: 1000 }),
  },
  connector: { tokenTtl: duration('1h', { min: 60_000 }), seenEvery: duration('15s', { min: 1000 }), silentAfter: duration('30s', { min: 3000 }) },
  changes: { replayEvery: duration('10s', { min: 100 }), replayWindow: duration('60s', { min: 1000 }) },
  lease: { ttl: duration('3s', { min: 500 }), renewEvery: duration('1s', { min: 100 }) },
  failover: { handoffTimeout: duration('5s', { min: 100 }), reconcileEvery: duration('5s', { min: 100 }), suspectAfter: duration('700ms', { min: 100 }), probeEvery: duration('100ms', { min: 20 }) },
  supervision: { maxRestarts: integer(5, 0, 1000), window: duration('30s', { min: 100 }), backoffMin: duration('100ms'), backoffMax: duration('10s') },
  health: { probeInterval: duration('1s', { min: 100 }), probeTimeout: duration('1s', { min: 50 }) },
  shutdown: { drainDelay: duration('2s'), timeout: duration('15s', { min: 1000 }) },
  metrics: { bind: address('127.0.0.1:9464'), token: secretText(16, { optional: true }) },
  log: { level: oneOf(LOG_LEVELS, 'info'), pretty: boolean(false) },
};

function isField(node: unknown): node is Field<unknown> {
  return typeof node === 'object' && node !== null && typeof (node as Field<unknown>).parse === 'function';
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** `lease.renewEvery` -> `CLUSTER_LEASE_RENEW_EVERY`. */
export function envName(path: string): string {
  return `CLUSTER_${path.split('.').map((p) => p.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase()).join('_')}`;
}

function leaves(spec: object, prefix = ''): Array<[string, Field<unknown>]> {
  return Object.entries(spec).flatMap(([k, node]) => {
    const path = prefix ? `${prefix}.${k}` : k;
    return isField(node) ? [[path, node] as [string, Field<unknown>]] : leaves(node as object, path);
  });
}

function defaultNodeId(): string {
  return hostname().toLowerCase().replace(/[^a-z0-9-]/g, '-').replace(/^-+/, '').slice(0, 63) || 'node';
}

/** Reports keys in the input that no field describes (typos must not pass silently). */
function unknownKeys(input: Record<string, unknown>, spec: object, prefix: string, problems: ConfigProblem[]) {
  for (const [k, v] of Object.entries(input)) {
    const path = prefix ? `${prefix}.${k}` : k;
    const node = (spec as Record<string, unknown>)[k];
    if (node === undefined) problems.push({ field: path, problem: 'is not a known field', expected: 'remove it or fix its spelling (see cluster.config.ts)' });
    else if (!isField(node)) {
      if (isPlainObject(v)) unknownKeys(v, node as object, path, problems);
      else problems.push({ field: path, problem: `${describe(v)} is not a section`, expected: 'a mapping of fields' });
    }
  }
}

function isWildcard(host: string): boolean {
  return host === '0.0.0.0' || host === '::';
}

/** Every port the node listens on itself: resources may never take one. */
export function ownPorts(config: ClusterConfig): Array<{ what: string; port: number }> {
  return [
    { what: 'admin', port: config.admin.bind.port },
    { what: 'HTTP', port: config.ingress.http.port },
    { what: 'HTTPS', port: config.ingress.https.port },
    { what: 'DNS', port: config.dns.bind.port },
    { what: 'peer', port: config.peer.bind.port },
    { what: 'WireGuard', port: config.wireguard.listenPort },
    { what: 'metrics', port: config.metrics.bind.port },
  ];
}

/** Where clients reach this node: the configured public addresses, else a specific ingress bind address. */
export function publicAddresses(config: ClusterConfig): string[] {
  if (config.ingress.publicAddresses.length) return config.ingress.publicAddresses;
  const host = config.ingress.https.host;
  return host === '0.0.0.0' || host === '::' ? [] : [host];
}

/** Where connectors send this node's WireGuard traffic: wireguard.endpoint, else the first public address. */
export function wireguardEndpoint(config: ClusterConfig): string | undefined {
  const e = config.wireguard.endpoint ?? (publicAddresses(config)[0] ? { host: publicAddresses(config)[0]!, port: config.wireguard.listenPort } : undefined);
  if (!e) return undefined;
  return e.host.includes(':') ? `[${e.host}]:${e.port}` : `${e.host}:${e.port}`;
}

/** The address other nodes dial for this node's peer link. */
export function peerAdvertise(config: ClusterConfig): string {
  const a = config.peer.advertise ?? config.peer.bind;
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !(value instanceof Secret) && !Buffer.isBuffer(value)) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

/**
 * Validates raw configuration (file contents merged with the environment) and returns the
 * frozen, compiled config. Throws CLUSTER_ERR_CONFIG_INVALID listing every bad field.
 */
export function compileConfig(input: unknown, source = 'config'): ClusterConfig {
  const problems: ConfigProblem[] = [];
  const raw = input ?? {};
  if (!isPlainObject(raw)) {
    throw new ClusterError('CLUSTER_ERR_CONFIG_INVALID', `invalid configuration (${source}): the top level must be a mapping of fields`, {
      problems: [{ field: '(top level)', problem: `${describe(raw)} is not a mapping`, expected: 'a YAML or JSON object' }],
      source,
    });
  }
  unknownKeys(raw, SPEC, '', problems);
  const out: Record<string, any> = {};
  for (const [path, field] of leaves(SPEC)) {
    const parts = path.split('.');
    let value: unknown = raw;
    for (const p of parts) value = isPlainObject(value) ? value[p] : undefined;
    if (value === undefined) value = path === 'nodeId' ? defaultNodeId() : field.default;
    let compiled: unknown;
    if (value === undefined) {
      if (!field.optional) problems.push({ field: path, problem: 'is required', expected: `set it in the config file or ${envName(path)}` });
    } else {
      try {
        compiled = field.parse(value);
      } catch (err) {
        if (!(err instanceof FieldProblem)) throw err;
        problems.push({ field: path, problem: err.problem, expected: err.expected });
      }
    }
    let target = out;
    for (const p of parts.slice(0, -1)) target = target[p] ??= {};
    target[parts.at(-1)!] = compiled;
  }
  const config = out as ClusterConfig;
  if (problems.length === 0 && config.lease.renewEvery * 2 > config.lease.ttl) {
    problems.push({ field: 'lease.renewEvery', problem: `${config.lease.renewEvery}ms leaves no room to renew before the ${config.lease.ttl}ms lease runs out`, expected: 'at most half of lease.ttl' });
  }
  if (problems.length === 0) {
    const { min, max } = config.ingress.resourcePorts;
    const own = ownPorts(config).filter((p) => p.port >= min && p.port <= max);
    if (own.length) problems.push({ field: 'ingress.resourcePorts', problem: `${min}-${max} holds this node's own ${own.map((p) => `${p.what} port ${p.port}`).join(', ')}`, expected: 'a range that leaves out every port the node listens on' });
  }
  if (problems.length === 0) {
    const tls = [config.peer.tlsCert, config.peer.tlsKey, config.peer.tlsCa];
    if (tls.some((f) => f !== undefined) && !tls.every((f) => f !== undefined)) problems.push({ field: 'peer.tlsCert', problem: 'peer TLS needs all of peer.tlsCert, peer.tlsKey and peer.tlsCa', expected: 'all three PEM paths, or none' });
  }
  if (problems.length === 0 && (config.smtp.url === undefined) !== (config.smtp.from === undefined)) {
    problems.push({ field: 'smtp.from', problem: 'e-mail codes need both smtp.url and smtp.from', expected: 'both, or neither' });
  }
  if (problems.length === 0 && (config.access.portalCert === undefined) !== (config.access.portalKey === undefined)) {
    problems.push({ field: 'access.portalCert', problem: 'the portal certificate needs both access.portalCert and access.portalKey', expected: 'both PEM paths, or neither' });
  }
  if (problems.length === 0 && !config.peer.advertise && isWildcard(config.peer.bind.host)) {
    const pub = config.ingress.publicAddresses[0];
    if (pub) config.peer.advertise = { host: pub, port: config.peer.bind.port };
    else problems.push({ field: 'peer.advertise', problem: `is required when peer.bind listens on a wildcard address (${config.peer.bind.host}) and ingress.publicAddresses is empty`, expected: 'the host:port other nodes dial to reach this node' });
  }
  if (problems.length > 0) {
    const lines = problems.map((p) => `  - ${p.field}: ${p.problem}; expected ${p.expected}`);
    throw new ClusterError('CLUSTER_ERR_CONFIG_INVALID', `invalid configuration (${source}):\n${lines.join('\n')}`, { problems, source });
  }
  return deepFreeze(config);
}

/** Raw values from `CLUSTER_*` variables, nested by field path. Unknown names are problems. */
export function configFromEnv(env: NodeJS.ProcessEnv): { raw: Record<string, unknown>; problems: ConfigProblem[] } {
  const byName = new Map(leaves(SPEC).map(([path, field]) => [envName(path), { path, field }]));
  const raw: Record<string, any> = {};
  const problems: ConfigProblem[] = [];
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith('CLUSTER_') || value === undefined || name === 'CLUSTER_CONFIG') continue;
    const hit = byName.get(name);
    if (!hit) {
      problems.push({ field: name, problem: 'is not a known environment variable', expected: 'a CLUSTER_* name derived from a config field' });
      continue;
    }
    const parts = hit.path.split('.');
    let target = raw;
    for (const p of parts.slice(0, -1)) target = target[p] ??= {};
    target[parts.at(-1)!] = hit.field.fromEnv ? hit.field.fromEnv(value) : value;
  }
  return { raw, problems };
}

function merge(base: Record<string, any>, over: Record<string, any>): Record<string, any> {
  const out = { ...base };
  for (const [k, v] of Object.entries(over)) out[k] = isPlainObject(v) && isPlainObject(out[k]) ? merge(out[k], v) : v;
  return out;
}

/** Reads the file (YAML or JSON; `CLUSTER_CONFIG` when no path is given), applies the environment, compiles. */
export async function loadConfig(opts: { file?: string; env?: NodeJS.ProcessEnv } = {}): Promise<ClusterConfig> {
  const env = opts.env ?? process.env;
  const file = opts.file ?? env.CLUSTER_CONFIG;
  let fromFile: unknown = {};
  if (file) {
    let body: string;
    try {
      body = await readFile(file, 'utf8');
    } catch (err) {
      throw new ClusterError('CLUSTER_ERR_CONFIG_FILE_UNREADABLE', `cannot read config file ${file}: ${(err as Error).message}`, { path: file }, { cause: err });
    }
    try {
      fromFile = parseYaml(body) ?? {}; // YAML is a superset of JSON
    } catch (err) {
      throw new ClusterError('CLUSTER_ERR_CONFIG_FILE_UNREADABLE', `config file ${file} is not valid YAML or JSON: ${(err as Error).message}`, { path: file }, { cause: err });
    }
  }
  const source = file ? `${file} + environment` : 'environment';
  const fromEnv = configFromEnv(env);
  if (fromEnv.problems.length > 0) {
    const lines = fromEnv.problems.map((p) => `  - ${p.field}: ${p.problem}; expected ${p.expected}`);
    throw new ClusterError('CLUSTER_ERR_CONFIG_INVALID', `invalid configuration (${source}):\n${lines.join('\n')}`, { problems: fromEnv.problems, source });
  }
  if (!isPlainObject(fromFile)) return compileConfig(fromFile, source);
  return compileConfig(merge(fromFile, fromEnv.raw), source);
}

/** The config as safe-to-print plain data: secrets redacted, URLs without passwords. */
export function redactConfig(config: ClusterConfig): Record<string, unknown> {
  const out: Record<string, any> = {};
  for (const [path, field] of leaves(SPEC)) {
    const parts = path.split('.');
    let value: any = config;
    for (const p of parts) value = value?.[p];
    if (field.secret && value !== undefined) value = value instanceof Secret && typeof value.reveal() === 'string' && /^\w+:\/\//.test(value.reveal() as string) ? redactUrl(value.reveal() as string) : '[redacted]';
    let target = out;
    for (const p of parts.slice(0, -1)) target = target[p] ??= {};
    target[parts.at(-1)!] = value;
  }
  return out;
}
