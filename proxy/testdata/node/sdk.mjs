// Drives allot proxy with the official OpenAI Node SDK, as a user's code
// would: proxy/node_test.go runs it. argv[2] is a JSON spec:
//   {"calls": [{"stream": true, "include_usage": false, "max_tokens": 50}],
//    "maxRetries": 2, "concurrent": false}
// The SDK's baseURL is $ALLOT_PROXY_URL/v1 and its apiKey $OPENAI_API_KEY
// (the proxy's client token, if any). One JSON line per call on stdout.
import OpenAI from 'openai';

const spec = JSON.parse(process.argv[2] ?? '{}');
const openai = new OpenAI({
  baseURL: `${process.env.ALLOT_PROXY_URL}/v1`,
  apiKey: process.env.OPENAI_API_KEY || 'unused',
  maxRetries: spec.maxRetries ?? 2,
  timeout: 30_000,
});

async function one(c) {
  const started = Date.now();
  const out = { ok: false, text: '', usage: null, chunks: 0, empty_choices: 0 };
  const params = {
    model: 'fake',
    messages: [{ role: 'user', content: 'Say hello' }],
    max_tokens: c.max_tokens ?? 50,
  };
  try {
    if (!c.stream) {
      const r = await openai.chat.completions.create(params);
      out.text = r.choices[0].message.content;
      out.usage = r.usage ?? null;
    } else {
      params.stream = true;
      if (c.include_usage) params.stream_options = { include_usage: true };
      const stream = await openai.chat.completions.create(params);
      for await (const chunk of stream) {
        out.chunks++;
        if (chunk.choices.length === 0) out.empty_choices++;
        if (c.include_usage) {
          // A caller that asked for usage expects its chunk, choices: [].
          if (chunk.usage) out.usage = chunk.usage;
          if (chunk.choices.length === 0) continue;
        }
        // The common loop: it throws a TypeError on a chunk with no choices.
        out.text += chunk.choices[0].delta.content ?? '';
      }
    }
    out.ok = true;
  } catch (e) {
    out.error_name = e?.constructor?.name;
    out.message = String(e?.message ?? e);
    out.status = e?.status;
    out.type = e?.type;
    out.code = e?.code;
  }
  out.elapsed_ms = Date.now() - started;
  return out;
}

const calls = spec.calls ?? [{}];
const results = spec.concurrent
  ? await Promise.all(calls.map(one))
  : await calls.reduce(async (acc, c) => [...(await acc), await one(c)], Promise.resolve([]));
for (const r of results) console.log(JSON.stringify(r));
