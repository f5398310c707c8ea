import { pino, type Logger } from 'pino';

/** JSON lines for machines; readable lines when a person watches a terminal. */
export function createLogger(level = process.env.TIDINGS_LOG_LEVEL ?? 'info'): Logger {
  if (process.stdout.isTTY) {
    return pino({ level, transport: { target: 'pino-pretty', options: { colorize: true, translateTime: 'HH:MM:ss.l', ignore: 'pid,hostname' } } });
  }
  return pino({ level });
}
