// The cl_load benchmark's baseline: a stateless Commerce Layer authorize endpoint in plain
// Node.js (node:http, node:crypto, nothing else), doing the least a gateway must do: check
// the X-CommerceLayer-Signature (base64 HMAC-SHA256 of the raw body, keyed with the shared
// secret's UTF-8 bytes), parse the JSON:API document, find the order among `included`, and
// answer with a token. No state is written and no PSP is called.
//
// node cl_endpoint.mjs   (CL_SHARED_SECRET in the environment; PORT, default 0 = any free
// port). Prints "listening PORT" once it accepts connections.
import { createServer } from 'node:http';
import { createHmac, timingSafeEqual } from 'node:crypto';

const secret = process.env.CL_SHARED_SECRET;
if (!secret) {
  console.error('CL_SHARED_SECRET is not set');
  process.exit(2);
}

function answer(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}

function authorize(body, signature) {
  const expected = createHmac('sha256', secret).update(body).digest();
  const given = Buffer.from(signature ?? '', 'base64');
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
    return [401, { success: false, error: { code: 'invalid_signature' } }];
  }
  let doc;
  try {
    doc = JSON.parse(body);
  } catch {
    return [400, { success: false, error: { code: 'invalid_json' } }];
  }
  const payment = doc?.data;
  const orderId = payment?.relationships?.order?.data?.id;
  const order = (doc?.included ?? []).find((r) => r?.type === 'orders' && r?.id === orderId);
  const amount = order?.attributes?.total_amount_with_taxes_cents;
  if (typeof payment?.id !== 'string' || !Number.isInteger(amount)) {
    return [422, { success: false, error: { code: 'invalid_request' } }];
  }
  return [200, { success: true, data: { transaction_token: `node_${payment.id}`, amount_cents: amount } }];
}

const server = createServer((req, res) => {
  const chunks = [];
  req.on('data', (chunk) => chunks.push(chunk));
  req.on('end', () => {
    if (req.method !== 'POST') {
      answer(res, 405, { success: false });
      return;
    }
    const [status, body] = authorize(Buffer.concat(chunks), req.headers['x-commercelayer-signature']);
    answer(res, status, body);
  });
});
server.keepAliveTimeout = 60_000;
server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => {
  console.log(`listening ${server.address().port}`);
});
