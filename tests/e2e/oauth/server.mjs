// A real OAuth 2.1 authorization server for the auth tests: oidc-provider (npm, pinned in
// install.sh) on loopback, with resource indicators (RFC 8707) on and JWT access tokens for any
// resource the client names, and one confidential client allowed the client_credentials grant.
// Env: PORT (0: pick one), CLIENT_ID, CLIENT_SECRET, SCOPE, TOKEN_TTL (seconds, default 600). Prints "listening <issuer>" when ready.
import { generateKeyPairSync } from "node:crypto";
import { createServer } from "node:http";
import Provider from "oidc-provider";

const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: "jwk" }), kid: "test-key", alg: "RS256", use: "sig" };
const scope = process.env.SCOPE || "mcp";

const server = createServer();
server.listen(Number(process.env.PORT || 0), "127.0.0.1", () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: process.env.CLIENT_ID,
        client_secret: process.env.CLIENT_SECRET,
        grant_types: ["client_credentials"],
        redirect_uris: [],
        response_types: [],
        scope,
      },
    ],
    jwks: { keys: [jwk] },
    scopes: [scope],
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => undefined,
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx, resourceIndicator) => ({
          scope,
          audience: resourceIndicator,
          accessTokenFormat: "jwt",
          accessTokenTTL: Number(process.env.TOKEN_TTL || 600),
          jwt: { sign: { alg: "RS256" } },
        }),
      },
    },
  });
  provider.on("server_error", (_ctx, err) => console.error("server_error", err));
  server.on("request", provider.callback());
  console.log(`listening ${issuer}`);
});
