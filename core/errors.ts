// The one registry of coded errors. Every error that leaves a module boundary is a
// ClusterError with a code from this table. Codes are `CLUSTER_ERR_<AREA>_<PROBLEM>`;
// a retired code stays listed (marked retired) so it is never reused. docs/errors.md lists
// them for operators (test/config/error-reference.test.ts keeps it in step).

export interface ConfigProblem {
  /** Dotted path of the field, e.g. `lease.ttl`. */
  field: string;
  /** What is wrong with the value. */
  problem: string;
  /** The expected form, e.g. `a duration such as "3s"`. */
  expected: string;
}

/** Typed fields carried by each code. */
export interface ErrorFields {
  CLUSTER_ERR_CONFIG_INVALID: { problems: ConfigProblem[]; source: string };
  CLUSTER_ERR_CONFIG_FILE_UNREADABLE: { path: string };
  CLUSTER_ERR_DB_UNAVAILABLE: Record<string, never>;
  CLUSTER_ERR_DB_QUERY_FAILED: Record<string, never>;
  CLUSTER_ERR_MIGRATION_FAILED: { migration: string };
  CLUSTER_ERR_MIGRATION_EDITED: { migration: string };
  CLUSTER_ERR_MIGRATION_BAD_NAME: { file: string };
  CLUSTER_ERR_VALKEY_UNAVAILABLE: Record<string, never>;
  CLUSTER_ERR_CRYPTO_MALFORMED: { reason: string };
  CLUSTER_ERR_CRYPTO_WRONG_KEY: { keyId: string; expectedKeyId: string };
  CLUSTER_ERR_CRYPTO_TAMPERED: Record<string, never>;
  CLUSTER_ERR_NODE_NOT_READY: { state: string };
  CLUSTER_ERR_UI_NOT_BUILT: Record<string, never>;
  CLUSTER_ERR_NODE_SHUTDOWN_TIMEOUT: { timeoutMs: number };
  CLUSTER_ERR_NODE_INGRESS_THREAD: { exitCode: number | null };
  CLUSTER_ERR_CONFIG_CHANGED: { source: string };
  CLUSTER_ERR_LOCAL_SERVICE_FAILED: { service: string };
  CLUSTER_ERR_LOCAL_DATA_DIR_BUSY: { dataDir: string; pid: number };
  CLUSTER_ERR_LOCAL_ADDRESS_IN_USE: { addresses: string[] };
  CLUSTER_ERR_NETNS_UNAVAILABLE: { reason: string };
  CLUSTER_ERR_CONTROL_BAD_REQUEST: Record<string, never>;
  CLUSTER_ERR_CONTROL_FAILED: { op: string };
  CLUSTER_ERR_ACTOR_NOT_HERE: { kind: string; id: string };
  CLUSTER_ERR_ACTOR_ALREADY_RUNNING: { kind: string; id: string };
  CLUSTER_ERR_ACTOR_ASK_TIMEOUT: { kind: string; id: string; timeoutMs: number };
  CLUSTER_ERR_ACTOR_UNREACHABLE: { kind: string; id: string; attempts: number };
  CLUSTER_ERR_ACTOR_UNKNOWN_KIND: { kind: string };
  CLUSTER_ERR_ACTOR_FENCED: { kind: string; id: string; epoch: number; currentEpoch: number | null };
  CLUSTER_ERR_NODE_FENCED: { nodeId: string };
  CLUSTER_ERR_PEER_AUTH_FAILED: { reason: string };
  CLUSTER_ERR_PEER_BAD_MESSAGE: { reason: string };
  CLUSTER_ERR_PEER_UNKNOWN_ERROR: { remoteCode: string };
  CLUSTER_ERR_ACTOR_BAD_MESSAGE: { kind: string; id: string; reason: string };
  CLUSTER_ERR_CONNECTOR_BAD_MESSAGE: Record<string, never>;
  CLUSTER_ERR_CONNECTOR_MESSAGE_TOO_LARGE: { limit: number };
  CLUSTER_ERR_CONNECTOR_UNAUTHENTICATED: Record<string, never>;
  CLUSTER_ERR_CONNECTOR_SUPERSEDED: { siteId: string };
  CLUSTER_ERR_NODE_DRAINING: { nodeId: string };
  CLUSTER_ERR_NODE_OVERLOADED: Record<string, never>;
  CLUSTER_ERR_CONNECTOR_REGISTERING: Record<string, never>;
  CLUSTER_ERR_TUNNEL_DOWN: { siteId: string };
  CLUSTER_ERR_WIREGUARD_BAD_KEY: { reason: string };
  CLUSTER_ERR_WIREGUARD_KEY_IN_USE: Record<string, never>;
  CLUSTER_ERR_WIREGUARD_UNAVAILABLE: { reason: string };
  CLUSTER_ERR_WIREGUARD_ADDRESSES_EXHAUSTED: { network: string };
  CLUSTER_ERR_TUNNEL_TARGET_TIMEOUT: { siteId: string; targetId: string };
  CLUSTER_ERR_TUNNEL_TARGET_REFUSED: { siteId: string; targetId: string; status: number };
  CLUSTER_ERR_INGRESS_NO_TARGET: { resourceId: string };
  CLUSTER_ERR_INGRESS_BAD_UPSTREAM: { reason: string };
  CLUSTER_ERR_INGRESS_BAD_REQUEST: { reason: string };
  CLUSTER_ERR_ACCESS_UNAUTHENTICATED: { resourceId: string };
  CLUSTER_ERR_ACCESS_DENIED: { resourceId: string; reason: string };
  CLUSTER_ERR_ACCESS_BAD_CREDENTIALS: Record<string, never>;
  CLUSTER_ERR_ACCESS_BAD_FORM: { reason: string };
  CLUSTER_ERR_ACCESS_NOT_HTTP: Record<string, never>;
  CLUSTER_ERR_OIDC_PROVIDER_UNAVAILABLE: { providerId: string };
  CLUSTER_ERR_OIDC_BAD_STATE: Record<string, never>;
  CLUSTER_ERR_OIDC_REJECTED: Record<string, never>;
  CLUSTER_ERR_OIDC_BAD_CLAIMS: Record<string, never>;
  CLUSTER_ERR_OIDC_UNKNOWN_USER: Record<string, never>;
  CLUSTER_ERR_OIDC_NOT_ALLOWED: Record<string, never>;
  CLUSTER_ERR_ACCESS_NO_SMTP: Record<string, never>;
  CLUSTER_ERR_API_BAD_REQUEST: { reason: string };
  CLUSTER_ERR_API_VALIDATION: { field: string; problem: string };
  CLUSTER_ERR_API_UNAUTHENTICATED: Record<string, never>;
  CLUSTER_ERR_API_FORBIDDEN: { needed: string };
  CLUSTER_ERR_API_CROSS_ORIGIN: { origin: string };
  CLUSTER_ERR_API_CONFLICT: { field: string };
  CLUSTER_ERR_API_VERSION_CONFLICT: { currentVersion: number };
  CLUSTER_ERR_API_RATE_LIMITED: { retryAfterMs: number };
  CLUSTER_ERR_API_TRANSPORT_UNAVAILABLE: { transport: string; available: string[] };
  CLUSTER_ERR_AUTH_SETUP_DONE: Record<string, never>;
  CLUSTER_ERR_AUTH_BAD_SETUP_TOKEN: Record<string, never>;
  CLUSTER_ERR_AUTH_BAD_CREDENTIALS: Record<string, never>;
  CLUSTER_ERR_AUTH_BAD_SECOND_FACTOR: Record<string, never>;
  CLUSTER_ERR_AUTH_BAD_TICKET: Record<string, never>;
  CLUSTER_ERR_AUTH_TOTP_ALREADY_ENABLED: Record<string, never>;
  CLUSTER_ERR_AUTH_TOTP_NOT_STARTED: Record<string, never>;
  CLUSTER_ERR_AUTH_SECOND_FACTOR_NEEDED: Record<string, never>;
  CLUSTER_ERR_API_NOT_FOUND: Record<string, never>;
  CLUSTER_ERR_API_INTERNAL: Record<string, never>;
}

export type ErrorCode = keyof ErrorFields;

interface ErrorSpec {
  /** HTTP status where the error reaches an API; undefined where it never does. */
  status?: number;
  /** One-line description (docs/errors.md says more, with what an operator can do). */
  summary: string;
}

export const ERROR_CODES: { readonly [C in ErrorCode]: ErrorSpec } = {
  CLUSTER_ERR_CONFIG_INVALID: { summary: 'the configuration has invalid or missing fields' },
  CLUSTER_ERR_CONFIG_FILE_UNREADABLE: { summary: 'the configuration file cannot be read or parsed' },
  CLUSTER_ERR_DB_UNAVAILABLE: { status: 503, summary: 'PostgreSQL cannot be reached' },
  CLUSTER_ERR_DB_QUERY_FAILED: { status: 500, summary: 'a PostgreSQL query failed' },
  CLUSTER_ERR_MIGRATION_FAILED: { summary: 'a schema migration failed; nothing of the run was applied' },
  CLUSTER_ERR_MIGRATION_EDITED: { summary: 'an applied migration file was changed after it ran' },
  CLUSTER_ERR_MIGRATION_BAD_NAME: { summary: 'a migration file is not named NNNN_name.sql' },
  CLUSTER_ERR_VALKEY_UNAVAILABLE: { status: 503, summary: 'Valkey cannot be reached' },
  CLUSTER_ERR_CRYPTO_MALFORMED: { status: 500, summary: 'an encrypted value is not in a known envelope format' },
  CLUSTER_ERR_CRYPTO_WRONG_KEY: { status: 500, summary: 'an encrypted value was sealed under another cluster key' },
  CLUSTER_ERR_CRYPTO_TAMPERED: { status: 500, summary: 'an encrypted value failed authentication (tampered)' },
  CLUSTER_ERR_NODE_NOT_READY: { status: 503, summary: 'the node is starting, draining or lost a dependency' },
  CLUSTER_ERR_UI_NOT_BUILT: { status: 503, summary: 'the dashboard is not built on this node (the API works)' },
  CLUSTER_ERR_NODE_SHUTDOWN_TIMEOUT: { summary: 'graceful shutdown did not finish in time; the node was stopped' },
  CLUSTER_ERR_NODE_INGRESS_THREAD: { summary: 'the node\'s ingress thread failed or exited; the node stopped' },
  CLUSTER_ERR_CONFIG_CHANGED: { summary: 'the config the ingress thread loaded differs from the node\'s (changed during start)' },
  CLUSTER_ERR_LOCAL_SERVICE_FAILED: { summary: 'a local service (PostgreSQL, Valkey, Pebble) failed to start' },
  CLUSTER_ERR_LOCAL_DATA_DIR_BUSY: { summary: 'another `cluster up` is running with this data directory' },
  CLUSTER_ERR_LOCAL_ADDRESS_IN_USE: { summary: 'an address `cluster up` listens on is held by another process' },
  CLUSTER_ERR_NETNS_UNAVAILABLE: { summary: '`cluster up --netns` cannot make network namespaces here (not root, or ip/nft missing)' },
  CLUSTER_ERR_CONTROL_BAD_REQUEST: { summary: '`cluster up`\'s control socket got a request it does not understand' },
  CLUSTER_ERR_CONTROL_FAILED: { summary: '`cluster up` could not carry out a control request (unknown node, start failed)' },
  CLUSTER_ERR_ACTOR_NOT_HERE: { status: 503, summary: 'the actor is not (or no longer) running on this node' },
  CLUSTER_ERR_ACTOR_ALREADY_RUNNING: { summary: 'an actor with this kind and id already runs on this node' },
  CLUSTER_ERR_ACTOR_ASK_TIMEOUT: { status: 504, summary: 'the actor did not answer in time' },
  CLUSTER_ERR_ACTOR_UNREACHABLE: { status: 503, summary: 'no owner of the actor could be reached within the retry bound (it is moving or its node died)' },
  CLUSTER_ERR_ACTOR_UNKNOWN_KIND: { status: 400, summary: 'no actor kind of that name is registered' },
  CLUSTER_ERR_ACTOR_FENCED: { status: 409, summary: 'a write carried a stale epoch: a newer owner of the actor exists' },
  CLUSTER_ERR_NODE_FENCED: { status: 503, summary: 'this node lost its membership lease and stopped its actors; it is rejoining' },
  CLUSTER_ERR_PEER_AUTH_FAILED: { summary: 'a peer link or peer request failed cluster-secret authentication' },
  CLUSTER_ERR_PEER_BAD_MESSAGE: { summary: 'a peer link message was malformed' },
  CLUSTER_ERR_PEER_UNKNOWN_ERROR: { status: 502, summary: 'another node answered with an error code this node does not know (a newer release)' },
  CLUSTER_ERR_ACTOR_BAD_MESSAGE: { status: 400, summary: 'a message does not match its actor kind\'s schema; it was not delivered' },
  CLUSTER_ERR_CONNECTOR_BAD_MESSAGE: { summary: 'a connector sent a control message that does not parse, or none in time (WebSocket close 4400)' },
  CLUSTER_ERR_CONNECTOR_MESSAGE_TOO_LARGE: { summary: 'a connector sent a control message over the size limit (WebSocket close 1009)' },
  CLUSTER_ERR_CONNECTOR_UNAUTHENTICATED: { status: 401, summary: 'a connector\'s token is missing, invalid or expired (HTTP 401 on the upgrade, close 4401)' },
  CLUSTER_ERR_CONNECTOR_SUPERSEDED: { summary: 'a newer connection of the same site replaced this one (WebSocket close 4409)' },
  CLUSTER_ERR_NODE_DRAINING: { status: 503, summary: 'the node is starting or draining and takes no connectors (HTTP 503 on the upgrade, close 4503)' },
  CLUSTER_ERR_NODE_OVERLOADED: { status: 503, summary: 'the node has as many connector registrations in progress as it takes at once, or its event loop is running late; it takes no new ones for now (HTTP 503 on the upgrade)' },
  CLUSTER_ERR_CONNECTOR_REGISTERING: { status: 429, summary: 'this site already has as many registrations in progress on this node as one site may (4: upgraded, not yet registered); other sites\' registrations are still taken (HTTP 429 on the upgrade)' },
  CLUSTER_ERR_API_VALIDATION: { status: 400, summary: 'a body, parameter or query field is missing, unknown or of the wrong form (the field is named)' },
  CLUSTER_ERR_API_UNAUTHENTICATED: { status: 401, summary: 'no valid session or API key' },
  CLUSTER_ERR_API_FORBIDDEN: { status: 403, summary: 'authenticated, but not allowed to do this' },
  CLUSTER_ERR_API_CROSS_ORIGIN: { status: 403, summary: 'a cookie-authenticated change came from another origin (cross-site request forgery)' },
  CLUSTER_ERR_API_CONFLICT: { status: 409, summary: 'the value is already taken (the field is named)' },
  CLUSTER_ERR_API_VERSION_CONFLICT: { status: 409, summary: 'the object changed since the version the write was based on' },
  CLUSTER_ERR_API_RATE_LIMITED: { status: 429, summary: 'too many attempts; retry later' },
  CLUSTER_ERR_API_TRANSPORT_UNAVAILABLE: { status: 422, summary: 'retired: the tunnel transport asked for was not built into the release (wireguard, before it was)' },
  CLUSTER_ERR_AUTH_SETUP_DONE: { status: 409, summary: 'the first administrator exists already' },
  CLUSTER_ERR_AUTH_BAD_SETUP_TOKEN: { status: 401, summary: 'the setup token is wrong or used' },
  CLUSTER_ERR_AUTH_BAD_CREDENTIALS: { status: 401, summary: 'wrong e-mail or password' },
  CLUSTER_ERR_AUTH_BAD_SECOND_FACTOR: { status: 401, summary: 'wrong, used or expired two-factor code or recovery code' },
  CLUSTER_ERR_AUTH_BAD_TICKET: { status: 401, summary: 'the login ticket is unknown, expired, for another step, or spent by too many wrong codes' },
  CLUSTER_ERR_AUTH_TOTP_ALREADY_ENABLED: { status: 409, summary: 'two-factor sign-in is on already' },
  CLUSTER_ERR_AUTH_TOTP_NOT_STARTED: { status: 409, summary: 'no two-factor enrolment is waiting for confirmation' },
  CLUSTER_ERR_AUTH_SECOND_FACTOR_NEEDED: { status: 403, summary: 'this account must use two-factor sign-in, and this way of signing in cannot ask for it' },
  CLUSTER_ERR_TUNNEL_DOWN: { status: 502, summary: 'no working tunnel to the site on this node' },
  CLUSTER_ERR_WIREGUARD_BAD_KEY: { summary: 'a connector offered a WireGuard public key that is not base64 of 32 bytes' },
  CLUSTER_ERR_WIREGUARD_KEY_IN_USE: { summary: 'a connector offered a WireGuard public key that belongs to another site' },
  CLUSTER_ERR_WIREGUARD_UNAVAILABLE: { summary: 'this node runs no WireGuard device (no kernel WireGuard and no wireguard-go, or not root)' },
  CLUSTER_ERR_WIREGUARD_ADDRESSES_EXHAUSTED: { summary: 'every address of wireguard.network is taken' },
  CLUSTER_ERR_TUNNEL_TARGET_TIMEOUT: { status: 504, summary: 'the connector could not reach the target in time' },
  CLUSTER_ERR_TUNNEL_TARGET_REFUSED: { status: 502, summary: 'the connector refused or could not connect to the target' },
  CLUSTER_ERR_INGRESS_NO_TARGET: { status: 503, summary: 'the resource has no enabled target on an online site' },
  CLUSTER_ERR_INGRESS_BAD_UPSTREAM: { status: 502, summary: 'the target sent a malformed or ambiguous HTTP response' },
  CLUSTER_ERR_ACCESS_UNAUTHENTICATED: { status: 401, summary: 'the resource needs a sign-in, a share link or basic auth' },
  CLUSTER_ERR_ACCESS_DENIED: { status: 403, summary: 'a rule or the resource\'s settings deny this request' },
  CLUSTER_ERR_ACCESS_BAD_CREDENTIALS: { status: 401, summary: 'wrong password, PIN, account or token for this resource' },
  CLUSTER_ERR_ACCESS_BAD_FORM: { status: 400, summary: 'a sign-in form was malformed, stale or sent from another site' },
  CLUSTER_ERR_ACCESS_NOT_HTTP: { status: 400, summary: 'access control applies to HTTP resources only' },
  CLUSTER_ERR_OIDC_PROVIDER_UNAVAILABLE: { status: 503, summary: 'the identity provider cannot be reached (discovery, keys or token endpoint)' },
  CLUSTER_ERR_OIDC_BAD_STATE: { status: 400, summary: 'an OpenID Connect callback with an unknown, expired or used state' },
  CLUSTER_ERR_OIDC_REJECTED: { status: 401, summary: 'the provider refused the sign-in, or its answer failed validation (code, signature, issuer, audience, expiry, nonce)' },
  CLUSTER_ERR_OIDC_BAD_CLAIMS: { status: 400, summary: 'the ID token lacks a usable subject or user claim, or its claims are too large' },
  CLUSTER_ERR_OIDC_UNKNOWN_USER: { status: 403, summary: 'no account is linked to this identity, and the provider does not create accounts' },
  CLUSTER_ERR_OIDC_NOT_ALLOWED: { status: 403, summary: 'the account is disabled, or the provider gives it no role in the org' },
  CLUSTER_ERR_ACCESS_NO_SMTP: { status: 409, summary: 'e-mail codes need an SMTP server in the cluster config' },
  CLUSTER_ERR_INGRESS_BAD_REQUEST: { status: 400, summary: 'a request through ingress is malformed or ambiguously framed (refused before any target sees it)' },
  CLUSTER_ERR_API_BAD_REQUEST: { status: 400, summary: 'the request is malformed (body, parameters, size)' },
  CLUSTER_ERR_API_NOT_FOUND: { status: 404, summary: 'no such route or object' },
  CLUSTER_ERR_API_INTERNAL: { status: 500, summary: 'an unexpected error; details are in the node log' },
};

export class ClusterError<C extends ErrorCode = ErrorCode> extends Error {
  override readonly name = 'ClusterError';
  readonly code: C;
  readonly status: number | undefined;
  readonly fields: ErrorFields[C];

  constructor(code: C, message: string, fields: ErrorFields[C], options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.status = ERROR_CODES[code].status;
    this.fields = fields;
  }

  /** Shape sent to API clients and logs: never the cause's stack or internals. */
  toJSON(): { code: C; message: string } & ErrorFields[C] {
    return { ...this.fields, code: this.code, message: this.message };
  }
}

export function isClusterError<C extends ErrorCode>(err: unknown, code?: C): err is ClusterError<C> {
  return err instanceof ClusterError && (code === undefined || err.code === code);
}
