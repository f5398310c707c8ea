import { describeFeed, pollingReader, sseReader } from '../../../test/support/feed-conformance.ts';

describeFeed('SSE', sseReader);
describeFeed('polling', pollingReader);
