import { cleanup, cleanupSettings, type CleanupOptions, type CleanupResult } from './admin.ts';
import { ConfigError } from './errors.ts';
import type { Executor } from './executor.ts';
import { observer } from './observer.ts';
import { wholeOption } from './options.ts';
import { asError, pause } from './waits.ts';

export interface RetentionScheduleOptions extends Omit<CleanupOptions, 'signal' | 'onProgress'> {
  /** Time between the end of one cleanup and the start of the next, ±10 % jitter. Default 15 minutes; at least 100 ms. */
  readonly intervalMs?: number;
  /** Hears each run's result. What it throws is ignored. */
  readonly onRun?: (result: CleanupResult) => void;
  /** Hears a failed run (the database was unreachable, say); the schedule goes on. What it throws is ignored. */
  readonly onError?: (error: Error) => void;
}

export interface RetentionSchedule {
  /** Stops the schedule: a run under way ends after its current batch. Resolves when it has. */
  stop(): Promise<void>;
}

/**
 * Runs `cleanup()` on a schedule until stopped: the first run comes after a random part of the
 * first 30 seconds (so that processes started together do not clean together), each next one
 * an interval after the previous one ended. Every option is checked now, before anything runs.
 * Several processes may run schedules on one outbox: concurrent cleanups skip each other's
 * partitions.
 *
 * @example
 * const retention = scheduleRetention(db, { retentionMs: 3 * 86_400_000, onError: (e) => log.warn(e) });
 * // on shutdown:
 * await retention.stop();
 */
export function scheduleRetention(db: Executor, options: RetentionScheduleOptions = {}): RetentionSchedule {
  if (options === null || typeof options !== 'object') throw new ConfigError('options', 'pass an object of retention options, or nothing for the defaults');
  cleanupSettings(options);
  const intervalMs = wholeOption('intervalMs', options.intervalMs, 15 * 60_000, 100);
  for (const hook of ['onRun', 'onError'] as const) {
    if (options[hook] !== undefined && typeof options[hook] !== 'function') throw new ConfigError(hook, `pass a function, or leave ${hook} out`);
  }
  const onRun = observer(options.onRun);
  const onError = observer(options.onError);
  const { intervalMs: _interval, onRun: _run, onError: _error, ...cleanupOptions } = options;
  const stopping = new AbortController();
  const jittered = (ms: number) => Math.round(ms * (0.9 + Math.random() * 0.2));
  const running = (async () => {
    let wait = Math.round(Math.random() * Math.min(intervalMs, 30_000));
    while (!stopping.signal.aborted) {
      await pause(wait, stopping.signal);
      if (stopping.signal.aborted) return;
      try {
        onRun(await cleanup(db, { ...cleanupOptions, signal: stopping.signal }));
      } catch (error) {
        onError(asError(error));
      }
      wait = jittered(intervalMs);
    }
  })();
  return {
    async stop() {
      stopping.abort();
      await running;
    },
  };
}
