// A local OAuth 2.1 authorization server for the interop tier: `oidc-provider` (a
// certified OpenID Provider from the npm registry, installed by scripts/install-interop)
// configured the way an MCP deployment would be:
//
//   - metadata at /.well-known/openid-configuration (RFC 8414 fields included);
//   - open dynamic client registration (RFC 7591) at /reg;
//   - the authorization-code grant with PKCE (S256 only; required for public clients);
//   - resource indicators (RFC 8707): the one resource it knows is the gateway's, and the
//     access tokens it issues for it are RS256 JWTs with `aud` = that resource, signed by
//     a key it generates at start and publishes at /jwks;
//   - RFC 9207 `iss` in the authorization response.
//
// The person at the browser is the only part played by a script: the interaction
// endpoint (where a login form and a consent screen would be) signs the user in as
// SUBJECT and grants what the client asked for, then redirects back into the flow. The
// client's redirect handler follows the redirects with a plain HTTP client.
//
// Usage: node oauth_server.mjs --modules DIR --resource URL [--subject S] [--tenant T]
//   DIR is a node_modules directory holding oidc-provider. Listens on 127.0.0.1, an
//   ephemeral port, and prints one JSON line {"issuer": …, "jwks_uri": …} once it
//   accepts connections. Each request is logged to stderr as `METHOD PATH STATUS`.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const { values: args } = parseArgs({
  options: {
    modules: { type: 'string' },
    resource: { type: 'string' },
    subject: { type: 'string', default: 'alice' },
    tenant: { type: 'string' },
  },
});
if (!args.modules || !args.resource) {
  console.error('usage: oauth_server.mjs --modules DIR --resource URL [--subject S] [--tenant T]');
  process.exit(2);
}

const require = createRequire(join(args.modules, 'noop.js'));
const { default: Provider, errors } = await import(
  pathToFileURL(require.resolve('oidc-provider')).href
);

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: 'interop-1', alg: 'RS256', use: 'sig' };

const server = createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: [],
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  features: {
    devInteractions: { enabled: false },
    registration: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // No default resource: a token for the gateway only when the client asks for it
      // (with the resource the gateway's metadata names).
      useGrantedResource: () => true,
      getResourceServerInfo: (_ctx, indicator) => {
        if (indicator !== args.resource) {
          throw new errors.InvalidTarget(`unknown resource ${indicator}`);
        }
        return {
          scope: 'mcp',
          audience: args.resource,
          accessTokenTTL: 600,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
  extraTokenClaims: () => (args.tenant ? { tenant: args.tenant } : undefined),
  findAccount: (_ctx, sub) => ({ accountId: sub, claims: () => ({ sub }) }),
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
});
provider.on('server_error', (_ctx, error) => console.error('server_error', error));

// The scripted person: signs in as SUBJECT, then consents to everything asked for.
async function interact(req, res) {
  const details = await provider.interactionDetails(req, res);
  const { prompt, params, session, grantId } = details;
  let result;
  if (prompt.name === 'login') {
    result = { login: { accountId: args.subject } };
  } else if (prompt.name === 'consent') {
    const grant = grantId
      ? await provider.Grant.find(grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    const missing = prompt.details;
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    result = { consent: { grantId: await grant.save() } };
  } else {
    throw new Error(`unexpected prompt ${prompt.name}`);
  }
  await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: true });
}

const callback = provider.callback();
server.on('request', (req, res) => {
  res.on('finish', () => console.error(`${req.method} ${req.url.split('?')[0]} ${res.statusCode}`));
  if (req.url.startsWith('/interaction/')) {
    interact(req, res).catch((error) => {
      console.error('interaction failed', error);
      res.statusCode = 500;
      res.end(String(error));
    });
    return;
  }
  callback(req, res);
});

console.log(JSON.stringify({ issuer, jwks_uri: `${issuer}/jwks` }));
