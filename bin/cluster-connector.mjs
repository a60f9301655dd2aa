#!/usr/bin/env node
// Entry point of the site connector (see bin/cluster.mjs for why tsx is registered here).
import { register } from 'tsx/esm/api';

register();
await import('../connector/main.ts');
