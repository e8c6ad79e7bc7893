// A real OpenID Connect provider for authnode's tests: panva's oidc-provider (pinned in
// package.json), with an interaction handler that signs in the account named by the
// authorization request's `login_hint` at once (no forms), and a small /test/ API through
// which a test declares accounts and their claims.
//
//   node server.mjs CONFIG.json   (CONFIG: {"port", "clients": [oidc-provider client metadata]})
//
// Prints "listening <issuer>" on stdout once it accepts connections.
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import Provider from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const issuer = `http://127.0.0.1:${config.port}`;
const accounts = new Map(); // account id -> claims ({email, email_verified, name})

function signingKey() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid: randomBytes(8).toString('hex'),
           alg: 'RS256', use: 'sig' };
}

const provider = new Provider(issuer, {
  clients: config.clients,
  jwks: { keys: [signingKey()] },
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
  // The scope's claims in the ID token itself (as Google does), not only at userinfo.
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  features: { devInteractions: { enabled: false } },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  async findAccount(ctx, id) {
    const claims = accounts.get(id);
    if (!claims) return undefined;
    return { accountId: id, async claims() { return { sub: id, ...claims }; } };
  },
});
provider.proxy = false;

async function interaction(req, res, uid) {
  const details = await provider.interactionDetails(req, res);
  const accountId = details.params.login_hint;
  if (!accounts.has(accountId)) {
    return provider.interactionFinished(req, res, {
      error: 'access_denied', error_description: 'unknown test account' });
  }
  const grant = new provider.Grant({ accountId, clientId: details.params.client_id });
  grant.addOIDCScope(details.params.scope);
  const grantId = await grant.save();
  return provider.interactionFinished(req, res, { login: { accountId }, consent: { grantId } },
                                      { mergeWithLastSubmission: false });
}

async function body(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
}

const callback = provider.callback();
const server = createServer(async (req, res) => {
  try {
    const url = new URL(req.url, issuer);
    if (req.method === 'PUT' && url.pathname.startsWith('/test/accounts/')) {
      accounts.set(decodeURIComponent(url.pathname.slice('/test/accounts/'.length)),
                   await body(req));
      res.writeHead(204).end();
      return;
    }
    const match = url.pathname.match(/^\/interaction\/([^/]+)$/);
    if (match) {
      await interaction(req, res, match[1]);
      return;
    }
    callback(req, res);
  } catch (error) {
    res.writeHead(500, { 'content-type': 'text/plain' }).end(String(error && error.stack));
  }
});
server.listen(config.port, '127.0.0.1', () => {
  process.stdout.write(`listening ${issuer}\n`);
});
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
