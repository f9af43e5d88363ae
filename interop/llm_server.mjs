// llm_server.mjs: a small OpenAI-compatible chat-completions server around
// node-llama-cpp, for the router agent's real-model tier (test infrastructure).
//
//   node llm_server.mjs --modules DIR/node_modules --model FILE.gguf
//   → prints "listening on http://127.0.0.1:PORT/v1"
//
// POST /v1/chat/completions with `tools`: when the conversation does not yet end with
// tool results, the model writes one tool call, its output constrained by a JSON-schema
// grammar built from the offered tools (so it is well-formed; which tool it picks is up
// to a base model, close to chance); after tool results it writes a short answer in
// words. Answers carry real token counts. One request at a time (one context sequence).
// CPU only, one thread (faster than two on 2 shared cores), 4,096-token context.

import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const { values: args } = parseArgs({
  options: {
    modules: { type: 'string' },
    model: { type: 'string' },
    'max-tokens': { type: 'string', default: '32' },
  },
});
if (!args.modules || !args.model) {
  console.error('usage: llm_server.mjs --modules DIR --model FILE.gguf');
  process.exit(2);
}

// node-llama-cpp is ESM: import its entry point by path (it is not beside this script).
const packageDir = join(args.modules, 'node-llama-cpp');
const manifest = JSON.parse(readFileSync(join(packageDir, 'package.json'), 'utf8'));
const exported = manifest.exports?.['.'];
const entry =
  (typeof exported === 'string' ? exported : exported?.import?.default ?? exported?.import ?? exported?.default) ??
  manifest.main;
const { getLlama, LlamaCompletion } = await import(pathToFileURL(join(packageDir, entry)).href);

const llama = await getLlama({ gpu: false, build: 'never' });
const model = await llama.loadModel({ modelPath: args.model });
const context = await model.createContext({ contextSize: 4096, threads: 1 });
const completion = new LlamaCompletion({ contextSequence: context.getSequence() });
const maxTokens = Number(args['max-tokens']);

/// A property schema the grammar supports: the scalar type, else a string.
function simple(property) {
  const type = Array.isArray(property?.type) ? property.type.find((t) => t !== 'null') : property?.type;
  if (['string', 'number', 'integer', 'boolean'].includes(type)) return { type };
  return { type: 'string' };
}

/// One tool call's schema: the tool's name as a constant and its arguments.
function callSchema(tool) {
  const parameters = tool.function.parameters ?? {};
  const properties = {};
  for (const [name, property] of Object.entries(parameters.properties ?? {})) {
    properties[name] = simple(property);
  }
  return {
    type: 'object',
    properties: {
      name: { const: tool.function.name },
      arguments: { type: 'object', properties, required: Object.keys(properties) },
    },
    required: ['name', 'arguments'],
  };
}

function text(content) {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) return content.map((part) => part?.text ?? '').join('');
  return '';
}

function prompt(messages, tools) {
  const lines = ['An assistant answers requests, calling tools when they help.'];
  if (tools.length > 0) {
    lines.push('Tools:');
    for (const tool of tools) {
      lines.push(`- ${tool.function.name}: ${tool.function.description ?? ''}`);
    }
  }
  for (const message of messages) {
    if (message.role === 'system') continue;
    if (message.role === 'user') lines.push(`User: ${text(message.content)}`);
    if (message.role === 'tool') lines.push(`Tool result: ${text(message.content)}`);
    if (message.role === 'assistant') {
      for (const call of message.tool_calls ?? []) {
        lines.push(`Tool call: ${call.function.name} ${call.function.arguments}`);
      }
      if (message.content) lines.push(`Assistant: ${text(message.content)}`);
    }
  }
  return lines.join('\n');
}

async function answer(request) {
  const messages = request.messages ?? [];
  const tools = request.tools ?? [];
  const afterTools = messages.length > 0 && messages[messages.length - 1].role === 'tool';
  let body = prompt(messages, tools);
  let message;
  let generated;
  if (tools.length > 0 && !afterTools) {
    body += '\nTool call (JSON):';
    const schemas = tools.map(callSchema);
    const grammar = await llama.createGrammarForJsonSchema(
      schemas.length === 1 ? schemas[0] : { oneOf: schemas },
    );
    generated = await completion.generateCompletion(body, { grammar, maxTokens: 128, temperature: 0 });
    const call = grammar.parse(generated);
    message = {
      role: 'assistant',
      content: null,
      tool_calls: [
        {
          id: `call_${Date.now()}`,
          type: 'function',
          function: { name: call.name, arguments: JSON.stringify(call.arguments ?? {}) },
        },
      ],
    };
  } else {
    body += '\nAssistant:';
    // One line of words: a base model would go on writing the transcript.
    generated = await completion.generateCompletion(body, {
      maxTokens,
      temperature: 0,
      customStopTriggers: ['\n'],
    });
    message = { role: 'assistant', content: generated.split('\n')[0].trim() || '(no words)' };
  }
  return {
    id: `chatcmpl-${Date.now()}`,
    object: 'chat.completion',
    model: request.model ?? 'gemma-3-270m',
    choices: [{ index: 0, message, finish_reason: message.tool_calls ? 'tool_calls' : 'stop' }],
    usage: {
      prompt_tokens: model.tokenize(body).length,
      completion_tokens: model.tokenize(generated).length,
    },
  };
}

// One generation at a time: requests wait their turn.
let queue = Promise.resolve();

const server = createServer((req, res) => {
  if (req.method !== 'POST' || req.url !== '/v1/chat/completions') {
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: { message: 'not found' } }));
    return;
  }
  const chunks = [];
  req.on('data', (chunk) => chunks.push(chunk));
  req.on('end', () => {
    queue = queue.then(async () => {
      try {
        const request = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        const reply = await answer(request);
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(reply));
      } catch (error) {
        res.writeHead(500, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: { message: String(error?.message ?? error) } }));
      }
    });
  });
});

server.listen(0, '127.0.0.1', () => {
  console.log(`listening on http://127.0.0.1:${server.address().port}/v1`);
});
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => process.exit(0));
}
