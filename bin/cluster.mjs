#!/usr/bin/env node
// Entry point: runs the CLI in this process (no child process, so a signal sent to this pid
// reaches the node), from the bundle of its TypeScript sources (bin/build.mjs, rebuilt when a
// source changed). CLUSTER_TSX=1 runs the sources through tsx's loader instead.
if (process.env.CLUSTER_TSX === '1') {
  const { register } = await import('tsx/esm/api');
  register();
  await import('./cluster.ts');
} else {
  const { freshBundle } = await import('./build.mjs');
  await import(await freshBundle());
}
