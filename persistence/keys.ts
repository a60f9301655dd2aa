// Every Valkey key and pub/sub channel is built here, under the cluster's prefix, so two
// clusters (or two tests) sharing one Valkey never see each other's data. Nothing else in
// the code writes a key by hand.
export class Keyspace {
  readonly prefix: string;

  constructor(clusterName: string) {
    if (!/^[A-Za-z0-9][A-Za-z0-9_-]*$/.test(clusterName)) throw new Error(`invalid key prefix ${JSON.stringify(clusterName)}`);
    this.prefix = `${clusterName}:`;
  }

  #key(...parts: string[]): string {
    for (const p of parts) if (p.length === 0) throw new Error('empty key part');
    return this.prefix + parts.join(':');
  }

  /** Pattern that matches exactly this keyspace, for SCAN. */
  get pattern(): string {
    return `${this.prefix.replace(/[*?[\]\\]/g, '\\$&')}*`;
  }

  /** A node's membership record (id, incarnation, addresses, started-at). */
  nodeRecord(nodeId: string): string {
    return this.#key('node', nodeId);
  }

  /** A node's liveness lease; its TTL is the node's life. */
  lease(nodeId: string): string {
    return this.#key('lease', nodeId);
  }

  /** Prefix of every lease key (Lua scripts append a node id). */
  get leasePrefix(): string {
    return `${this.prefix}lease:`;
  }

  /** Set of all node ids that ever joined (reconciled against leases). */
  get members(): string {
    return this.#key('members');
  }

  /** Ownership entry of one actor. */
  owner(kind: string, id: string): string {
    return this.#key('owner', kind, id);
  }

  /** Published snapshot (routes, zones, certificates). */
  snapshot(name: string): string {
    return this.#key('snapshot', name);
  }

  /** Reported health of a site's targets (hash: target id -> "1" | "0"). */
  targetHealth(siteId: string): string {
    return this.#key('health', siteId);
  }

  /** ACME challenge TXT values of a zone (hash: owner name -> JSON array of values). */
  acmeTxt(zone: string): string {
    return this.#key('acme-txt', zone);
  }

  /** A connected site's session: {node, since} (deleted when it disconnects). */
  siteSession(siteId: string): string {
    return this.#key('site-session', siteId);
  }

  /** The node holding a site's standby tunnel: {node, session} (deleted when it closes). */
  siteStandby(siteId: string): string {
    return this.#key('site-standby', siteId);
  }

  /** Why nodes could not listen on a resource's port (hash: node id -> problem). */
  listenProblems(resourceId: string): string {
    return this.#key('listen', resourceId);
  }

  /** Sliding-window counter of a rate limit. */
  rateLimit(scope: string, subject: string): string {
    return this.#key('ratelimit', scope, subject);
  }

  /** Cached session by token hash. */
  session(tokenHash: string): string {
    return this.#key('session', tokenHash);
  }

  /** A portal's one-time exchange token (by hash): the resource session cookie it becomes, for a minute. */
  accessExchange(tokenHash: string): string {
    return this.#key('access-exchange', tokenHash);
  }

  /** The e-mail code sent for a resource to an address (by hash): its hash and wrong attempts, ten minutes. */
  emailCode(resourceId: string, addressHash: string): string {
    return this.#key('email-code', resourceId, addressHash);
  }

  /** An OpenID Connect sign-in between the redirect and the callback (by the state's hash), ten minutes. */
  oidcState(stateHash: string): string {
    return this.#key('oidc-state', stateHash);
  }

  /** A login ticket (by hash): a sign-in between its password step and its second factor, five minutes. */
  loginTicket(tokenHash: string): string {
    return this.#key('login-ticket', tokenHash);
  }

  /** Hash of the one-time setup token (exists only until the first admin is created). */
  get setupToken(): string {
    return this.#key('setup-token');
  }

  /** Pub/sub channel. Channels are prefixed like keys: PUBLISH is global across databases. */
  channel(name: string): string {
    return this.#key('ch', name);
  }

  /** Free-form key for tests and one-off tools; product code uses a named builder. */
  custom(...parts: string[]): string {
    return this.#key('x', ...parts);
  }
}
