#!/usr/bin/env node
// The `tidings` command of an installed @tidings/relays (runs the compiled CLI).
import { main } from '../dist/cli/main.js';

process.exitCode = await main(process.argv.slice(2));
