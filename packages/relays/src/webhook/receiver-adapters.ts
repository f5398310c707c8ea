import type { IncomingMessage, ServerResponse } from 'node:http';
import type { WebhookReceiver } from './receiver.ts';
import type { HeaderSource } from './verify.ts';

/**
 * An Express handler. Mount it without a JSON parser in front, or behind
 * `express.raw({ type: 'application/json' })`: the signature covers the raw bytes.
 *
 * @example
 * app.post('/webhooks', express.raw({ type: 'application/json' }), expressWebhookHandler(receiver));
 */
export function expressWebhookHandler(receiver: WebhookReceiver): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  return (req, res) => receiver.listener(req, res);
}

/** The parts of a Fastify request and reply the handler uses. */
export interface FastifyLikeRequest {
  readonly method: string;
  readonly headers: HeaderSource;
  readonly body: unknown;
}
export interface FastifyLikeReply {
  code(status: number): FastifyLikeReply;
  headers(values: Record<string, string>): FastifyLikeReply;
  send(payload: string): unknown;
}

/**
 * A Fastify route handler. Fastify parses JSON by default, so give the route's scope a parser
 * that keeps the raw bytes.
 *
 * @example
 * fastify.register(async (scope) => {
 *   scope.addContentTypeParser('application/json', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
 *   scope.post('/webhooks', fastifyWebhookHandler(receiver));
 * });
 */
export function fastifyWebhookHandler(receiver: WebhookReceiver): (request: FastifyLikeRequest, reply: FastifyLikeReply) => Promise<unknown> {
  return async (request, reply) => {
    const body = request.body;
    if (!(body instanceof Uint8Array) && typeof body !== 'string') {
      return reply
        .code(500)
        .headers({ 'content-type': 'application/json' })
        .send(JSON.stringify({ error: 'misconfigured receiver: the route must keep the raw body (addContentTypeParser with parseAs: buffer)' }));
    }
    const answer = await receiver.handle({ method: request.method, headers: request.headers, body });
    return reply.code(answer.status).headers({ ...answer.headers }).send(answer.body);
  };
}
