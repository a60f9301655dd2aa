// Benchmark sizes: full by default; BENCH_SMOKE=1 shrinks every benchmark to a few actors,
// a second of load and one round, so the suite runs each one and checks its JSON line (a
// benchmark nobody runs breaks unseen). BENCH_<NAME> overrides either.
export const SMOKE = process.env.BENCH_SMOKE === '1';

export function size(name: string, full: number, smoke: number): number {
  const set = process.env[`BENCH_${name}`];
  return set !== undefined && set !== '' ? Number(set) : SMOKE ? smoke : full;
}

/**
 * Concurrency of load generators: full runs saturate the machine on purpose; smoke runs share
 * it with the rest of the suite, so they send a trickle that still exercises every path.
 */
export function concurrency(full: number): number {
  return SMOKE ? Math.min(2, full) : full;
}

/** The fields each benchmark's JSON line promises (all numbers), checked by the suite's smoke runs. */
export const BENCH_FIELDS = {
  failover: ['actors', 'rounds', 'detect_ms_p50', 'respawn_all_ms_p50', 'respawn_all_ms_p99', 'respawn_all_ms_max', 'sigstop_respawn_ms', 'duplicates'],
  api: ['read_rps', 'read_p99_ms', 'write_rps', 'write_p99_ms', 'direct_read_rps', 'direct_read_p99_ms', 'non_2xx'],
  tunnel: ['direct_rps', 'haproxy_rps', 'tunnel_rps', 'tunnel_p99_ms', 'haproxy_cpu_us_per_req', 'tunnel_node_cpu_us_per_req', 'tunnel_connector_cpu_us_per_req', 'floor_rps', 'floor_node_cpu_us_per_req', 'floor_connector_cpu_us_per_req', 'haproxy_p50_ms_at_100', 'haproxy_p99_ms_at_100', 'tunnel_p50_ms_at_100', 'tunnel_p99_ms_at_100', 'direct_mbps', 'tunnel_mbps', 'failover_gap_ms_p50', 'failover_gap_ms_p99'],
  ingress: ['rounds', 'ingress_rps', 'ingress_cpu_us_per_req', 'floor_rps', 'floor_cpu_us_per_req', 'node_main_rps', 'node_main_cpu_us_per_req', 'node_worker_rps', 'node_worker_cpu_us_per_req', 'connector_cpu_us_per_req'],
  dns: ['qps', 'nsd_qps', 'p99_ms', 'nsd_p99_ms', 'cpu_us_per_query', 'nsd_cpu_us_per_query', 'follow_ms_p99'],
  auth: ['open_rps', 'session_rps', 'token_rps', 'session_p99_ms', 'open_p99_ms', 'revoke_ms'],
  quiet: ['seconds', 'requests', 'dns_queries', 'failed', 'suspicions', 'loop_lag_max_ms'],
  chaos: ['duration_s', 'kills', 'requests', 'failed', 'longest_outage_ms', 'p99_ms', 'longest_actor_down_ms', 'writes_acked', 'writes_failed', 'lost_writes', 'duplicates', 'longest_duplicate_ms', 'stale_writes', 'faults', 'dns_follow_ms_p99', 'unfenced', 'not_rejoined', 'seed'],
  scale: ['sites', 'zones', 'online_all_ms', 'routed_all_ms', 'dns_all_ms', 'online_all_ms_1k', 'valkey_ops_per_s_1k', 'valkey_ops_per_s_10k', 'pg_stmts_per_s_1k', 'pg_stmts_per_s_10k', 'published_bytes_per_s_1k', 'published_bytes_per_s_10k', 'rss_mb_max_1k', 'rss_mb_max', 'loop_delay_p99_ms_1k', 'loop_delay_p99_ms', 'node_cpu_pct_max_1k', 'node_cpu_pct_max', 'connectors_cpu_pct_1k', 'connectors_cpu_pct', 'storm_sites', 'storm_recover_all_ms', 'storm_observed_all_ms', 'storm_recover_p50_ms', 'storm_recover_p99_ms', 'storm_recover_max_ms', 'storm_rate_limited', 'storm_refused_primaries', 'storm_refused_standbys', 'storm_requests', 'storm_failed', 'steady_survivor_cpu_pct', 'storm_survivor_cpu_s', 'storm_survivor_cpu_to_routed_s', 'storm_survivor_work_s', 'storm_core_each_est_ms', 'storm_core_each_est_p99_ms', 'storm_loop_each_est_ms', 'storm_loop_each_est_p99_ms', 'storm_connectors_cpu_s', 'storm_machine_busy_s', 'storm_machine_idle_s', 'storm_noticed_p50_ms', 'storm_noticed_p99_ms', 'storm_reattach_p50_ms', 'storm_reattach_p99_ms', 'storm_promote_node_p50_ms', 'storm_promote_node_p99_ms', 'edit_propagation_ms'],
  partition: ['faults', 'lost_writes', 'duplicates', 'stale_writes', 'longest_outage_ms', 'dns_follow_ms_p99', 'requests', 'failed', 'p99_ms', 'longest_actor_down_ms', 'longest_duplicate_ms', 'unfenced', 'not_rejoined', 'writes_acked', 'seed'],
} as const;
