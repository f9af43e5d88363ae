// One session over the 2024-11-05 HTTP+SSE transport with the TypeScript SDK's
// `SSEClientTransport`, doing what `sse_session.py` does (same JSON document): list tools;
// per upstream prefix call PREFIX__echo, PREFIX__progress with an `onprogress` callback,
// and a PREFIX__sleep aborted by the caller (the SDK sends notifications/cancelled),
// reading PREFIX__stats' cancellation count before and after; then, with the stream
// closed, POST once more to the session's endpoint and report the status (404 once the
// session ended).
//
// Usage: node sse_session.mjs --from FILE SSE_URL PREFIX...
//   FILE is a script inside a node_modules tree that holds @modelcontextprotocol/sdk (the
//   SDK is resolved from there, as that package would resolve it).

import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';

const argv = process.argv.slice(2);
if (argv[0] !== '--from' || argv.length < 4) {
  console.error('usage: sse_session.mjs --from FILE SSE_URL PREFIX...');
  process.exit(2);
}
const [, from, url, ...prefixes] = argv;
const require = createRequire(from);
const load = (path) => import(pathToFileURL(require.resolve(path)).href);
const { Client } = await load('@modelcontextprotocol/sdk/client/index.js');
const { SSEClientTransport } = await load('@modelcontextprotocol/sdk/client/sse.js');
const { CallToolResultSchema } = await load('@modelcontextprotocol/sdk/types.js');

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function cancelled(client, prefix) {
  const stats = await client.callTool({ name: `${prefix}__stats`, arguments: {} });
  return Number(stats.structuredContent?.cancelled ?? 0);
}

async function exercise(client, prefix) {
  const report = {};
  report.echo = await client.callTool({ name: `${prefix}__echo`, arguments: { text: 'over sse' } });
  const progress = [];
  report.progressResult = await client.callTool(
    { name: `${prefix}__progress`, arguments: { steps: 3, interval_ms: 20 } },
    CallToolResultSchema,
    { onprogress: (p) => progress.push(p.progress) },
  );
  report.progress = progress;

  const before = await cancelled(client, prefix);
  const abort = new AbortController();
  const slow = client
    .callTool({ name: `${prefix}__sleep`, arguments: { ms: 20000 } }, CallToolResultSchema, {
      signal: abort.signal,
    })
    .then(
      () => 'answered',
      () => 'aborted',
    );
  await sleep(1000);
  abort.abort('test cancels');
  report.slowOutcome = await slow;
  let after = before;
  for (let i = 0; i < 100; i++) {
    after = await cancelled(client, prefix);
    if (after > before) break;
    await sleep(100);
  }
  report.cancelledBefore = before;
  report.cancelledAfter = after;
  await client.ping();
  return report;
}

const timer = setTimeout(() => {
  console.error('timed out');
  process.exit(1);
}, 60000);

try {
  const transport = new SSEClientTransport(new URL(url));
  const client = new Client({ name: 'switchboard-interop-ts', version: '0' });
  await client.connect(transport);
  const document = { servers: {} };
  document.protocolVersion = transport.protocolVersion ?? null;
  document.tools = (await client.listTools()).tools.map((tool) => tool.name).sort();
  for (const prefix of prefixes) {
    document.servers[prefix] = await exercise(client, prefix);
  }
  const sessionId = transport._endpoint?.searchParams.get('sessionId');
  await client.close();
  let status = null;
  for (let i = 0; i < 100; i++) {
    const response = await fetch(new URL(`/messages?sessionId=${sessionId}`, url), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping' }),
    });
    status = response.status;
    if (status === 404) break;
    await sleep(50);
  }
  document.afterClose = status;
  clearTimeout(timer);
  console.log(JSON.stringify(document));
} catch (error) {
  console.error(`${error?.name ?? 'Error'}: ${error?.message ?? error}`);
  process.exit(1);
}
