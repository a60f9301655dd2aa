#!/usr/bin/env node
// Entry point: registers tsx's loader in this process (no child process, so a signal sent
// to this pid reaches the node), then runs the TypeScript CLI.
import { register } from 'tsx/esm/api';

register();
await import('./cluster.ts');
