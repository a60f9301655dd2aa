// A node as the main job of its process (`cluster node`): started, and stopped on SIGTERM or
// SIGINT within the shutdown timeout; a second signal, or the timeout, ends it at once.
import { ClusterError, isClusterError } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import type { ClusterNode } from './node.ts';

/**
 * Runs a node as the main job of this process: start, stop on SIGTERM/SIGINT within the
 * shutdown timeout (a second signal forces exit), exit 0 when stopped cleanly.
 */
export async function runNodeProcess(node: ClusterNode, logger: Logger): Promise<void> {
  let signals = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    signals++;
    if (signals > 1) {
      logger.warn({ signal: sig }, 'second signal: exiting now');
      process.exit(130);
    }
    const timer = setTimeout(() => {
      const err = new ClusterError('CLUSTER_ERR_NODE_SHUTDOWN_TIMEOUT', 'graceful shutdown timed out', { timeoutMs: node.config.shutdown.timeout });
      logger.fatal({ code: err.code, timeoutMs: node.config.shutdown.timeout }, err.message);
      process.exit(1);
    }, node.config.shutdown.timeout);
    timer.unref();
    node.stop(sig).then(
      () => {
        logger.info('node stopped');
        logger.flush?.();
        process.exit(0);
      },
      (err) => {
        logger.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  try {
    await node.start();
  } catch (err) {
    logger.fatal({ err: isClusterError(err) ? err.toJSON() : err }, 'node failed to start');
    node.lifecycle.to('failed');
    await node.stop('start failed').catch(() => {});
    process.exit(1);
  }
}
