// A real, certified OpenID Provider (the npm package oidc-provider) for the sign-in test:
// one confidential client with PKCE required, an RSA signing key made at start, and its
// development login form, where any login name signs in. `ada` is Ada Lovelace
// <ada@example.com> in the group `platform`; `mallory` is mallory@elsewhere.test in no group;
// any other name NAME is NAME@example.com. Prints the issuer when it listens.
//
// Usage: node provider.mjs PORT CLIENT_ID CLIENT_SECRET REDIRECT_URI

import { generateKeyPairSync } from "node:crypto";
import Provider from "oidc-provider";

const [port, clientId, clientSecret, redirectUri] = process.argv.slice(2);
if (!port || !clientId || !clientSecret || !redirectUri) {
  console.error("usage: node provider.mjs PORT CLIENT_ID CLIENT_SECRET REDIRECT_URI");
  process.exit(2);
}
const issuer = `http://127.0.0.1:${port}`;
const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: "jwk" }), kid: "test-rsa", use: "sig", alg: "RS256" };

const people = {
  ada: { email: "ada@example.com", name: "Ada Lovelace", groups: ["platform"] },
  mallory: { email: "mallory@elsewhere.test", name: "Mallory", groups: [] },
};

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: clientId,
      client_secret: clientSecret,
      redirect_uris: [redirectUri],
      response_types: ["code"],
      grant_types: ["authorization_code"],
      token_endpoint_auth_method: "client_secret_basic",
    },
  ],
  pkce: { required: () => true },
  claims: { openid: ["sub"], email: ["email", "email_verified"], profile: ["name", "groups"] },
  findAccount: async (_ctx, id) => ({
    accountId: id,
    async claims() {
      const p = people[id] || { email: `${id}@example.com`, name: id, groups: [] };
      return { sub: id, email: p.email, email_verified: true, name: p.name, groups: p.groups };
    },
  }),
  features: { devInteractions: { enabled: true } },
  jwks: { keys: [jwk] },
  cookies: { keys: ["a test provider's cookie key"] },
});
provider.listen(Number(port), "127.0.0.1", () => console.log(issuer));
