import * as real from '../../src/relay/options.ts';
import { quoteIdent } from '../../src/sql.ts';

export * from '../../src/relay/options.ts';

/**
 * Mutant `ack-before-send`: the relay's cursor moves past a batch before the transport is asked to
 * send it, so a batch whose send a crash or a lost lease cut short is never sent again.
 */
export const resolveRelayOptions: typeof real.resolveRelayOptions = (options) => {
  const resolved = real.resolveRelayOptions(options);
  const { database, name, workerId, transport } = resolved;
  const moveCursor = `UPDATE ${quoteIdent(resolved.schema)}.relay_partitions SET cursor_seq = $4, cursor_id = $5
    WHERE relay = $1 AND partition = $2 AND owner = $3 AND (cursor_seq, cursor_id) < ($4::bigint, $5::bigint)`;
  return {
    ...resolved,
    transport: {
      name: transport.name,
      capabilities: transport.capabilities,
      async send(batch, signal) {
        const last = batch.at(-1)!;
        await database.query(moveCursor, [name, last.partition, workerId, last.position.seq, last.position.id]);
        return transport.send(batch, signal);
      },
      close: () => transport.close(),
    },
  };
};
