// Verifies one certificate the way an outside verifier would, with libraries independent of lms:
// jose checks the VC-JWT's signature against the served JWK set (the key its `kid` names), and
// the Digital Credentials Consortium's Bitstring Status List checker reads the certificate's
// revocation bit from the status list its credentialStatus names, fetched over HTTP (the list's
// own VC-JWT signature checked by jose first). Input (stdin, JSON): {jws, issuer, server}: the
// issuer's public base URL and where that service is reachable in the test. Output (stdout,
// JSON): {alg, kid, credentialId, statusVerified, statusError}; exit 1 when the signature fails.
import { checkStatus } from "@digitalcredentials/vc-bitstring-status-list";
import { createLocalJWKSet, jwtVerify } from "jose";

const ALGORITHMS = ["RS256", "ES256", "EdDSA"];
// Registered JWT claims beside the credential in an Open Badges 3.0 VC-JWT payload.
const JWT_CLAIMS = new Set(["iss", "jti", "sub", "nbf", "exp", "iat", "serialHash"]);

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const { jws, issuer, server } = JSON.parse(Buffer.concat(chunks).toString("utf8"));

// The issuer's URLs, reached at the test server's address.
const reach = (url) => (url.startsWith(issuer) ? server + url.slice(issuer.length) : url);
const credentialOf = (payload) =>
  Object.fromEntries(Object.entries(payload).filter(([name]) => !JWT_CLAIMS.has(name)));

const jwksAnswer = await fetch(reach(`${issuer}/.well-known/jwks.json`));
const keys = createLocalJWKSet(await jwksAnswer.json());

let verified;
try {
  verified = await jwtVerify(jws, keys, { algorithms: ALGORITHMS, issuer });
} catch (error) {
  process.stdout.write(JSON.stringify({ signatureError: String(error) }));
  process.exit(1);
}
const credential = credentialOf(verified.payload);

async function documentLoader(url) {
  const answer = await fetch(reach(url), { headers: { accept: "application/vc+jwt" } });
  if (!answer.ok) throw new Error(`${url}: HTTP ${answer.status}`);
  const list = await jwtVerify(await answer.text(), keys, { algorithms: ALGORITHMS, issuer });
  return { contextUrl: null, documentUrl: url, document: credentialOf(list.payload) };
}

// The list's proof is its JWS, checked by the loader: the checker's own proof check only knows
// Data Integrity proofs. It still checks the purpose and that both credentials have one issuer.
const status = await checkStatus({
  credential,
  documentLoader,
  verifyBitstringStatusListCredential: false,
  verifyMatchingIssuers: true,
});
process.stdout.write(
  JSON.stringify({
    alg: verified.protectedHeader.alg,
    kid: verified.protectedHeader.kid,
    credentialId: credential.id,
    statusVerified: status.verified,
    statusError: status.error ? String(status.error.message ?? status.error) : null,
  }),
);
