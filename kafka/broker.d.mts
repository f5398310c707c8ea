/** Types of broker.mjs, for the TypeScript tests that import it. */
export interface KafkaHandle {
  /** `host:port` of the broker. */
  readonly brokers: string;
  /** True when this call started the broker (and `stop` stops it). */
  readonly started: boolean;
  readonly logFile?: string;
  readonly pid?: number;
  readonly exited?: Promise<number | string | null>;
  stop(): Promise<void>;
}

export function ensureKafka(options?: {
  brokers?: string;
  log?: (line: string) => void;
  timeoutMs?: number;
}): Promise<KafkaHandle>;
