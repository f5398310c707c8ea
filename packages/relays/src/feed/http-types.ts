import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';

/**
 * A request as node:http hands it over, or node:http2's compatibility API (HTTP/2, cleartext h2c
 * or TLS): the feeds use only what both offer (method, url, headers, socket).
 */
export type FeedRequest = IncomingMessage | Http2ServerRequest;

/** A response of node:http or of node:http2's compatibility API. */
export type FeedResponse = ServerResponse | Http2ServerResponse;

/**
 * The feeds are written against node:http's objects; node:http2's compatibility objects offer every
 * member they use, except `destroyed` and `closed` (see `responseGone`).
 */
export function asHttp1(request: FeedRequest, response: FeedResponse): [IncomingMessage, ServerResponse] {
  return [request as IncomingMessage, response as ServerResponse];
}

/** Whether nothing more can be written: the response closed or its client is gone (an HTTP/2 response says so through its stream). */
export function responseGone(response: ServerResponse | Http2ServerResponse): boolean {
  if ('stream' in response && response.stream) return response.stream.destroyed || response.stream.closed;
  return (response as ServerResponse).destroyed || (response as ServerResponse).closed;
}
