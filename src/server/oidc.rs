//! OpenID Connect sign-in (authorization code flow with PKCE, OpenID Connect Core 1.0 §3.1 and
//! RFC 7636): `/signin/oidc` sends the visitor to the provider with a fresh `state`, `nonce` and
//! S256 code challenge, kept in a short-lived signed cookie; `/signin/oidc/callback` checks the
//! state, redeems the code with the client secret and the verifier, verifies the ID token
//! (signature against the provider's JWKS, issuer, audience, expiry, nonce), reads the address
//! (from the ID token, else from the userinfo endpoint for the same subject), checks who may
//! sign in (an allowed email domain or group) and starts a session that names the person.
//!
//! The provider's discovery document and keys are fetched when first needed and kept for an
//! hour (keys again at once for an unknown key id, at most once a minute). Every request to the
//! provider is bounded in time and size and follows no redirect.

use std::sync::Mutex;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, header};
use base64::Engine;
use serde::Deserialize;

use super::options::OidcOptions;
use super::session::{Keys, Person};
use crate::support::random::RandomUnavailable;

/// The flow's cookie: what the callback must match, for ten minutes.
pub const FLOW_COOKIE: &str = "ledgit_oidc";
const FLOW_LIFETIME: i64 = 600;
/// Where the provider sends the visitor back (under the server's public URL).
pub const CALLBACK: &str = "/signin/oidc/callback";
/// How long a request to the provider may take.
const TIMEOUT: Duration = Duration::from_secs(10);
/// The largest answer read from the provider.
const MAX_ANSWER: u64 = 256 * 1024;
/// How long the discovery document and keys are kept.
const KEEP: i64 = 3_600;

/// Why a sign-in did not happen, in words for the page (never a secret or a token).
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error("the identity provider said: {0}")]
    Provider(String),
    #[error("the sign-in expired or was started in another browser")]
    Flow,
    #[error("the identity provider cannot be reached: {0}")]
    Unreachable(String),
    #[error("the identity provider's answer is not valid: {0}")]
    Invalid(String),
    #[error("{0} may not sign in here")]
    NotAllowed(String),
    #[error(transparent)]
    Random(#[from] RandomUnavailable),
}

/// The provider's endpoints, from its discovery document.
#[derive(Debug, Clone, Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    #[serde(default)]
    userinfo_endpoint: Option<String>,
}

struct Known {
    discovery: Discovery,
    keys: jsonwebtoken::jwk::JwkSet,
    fetched: i64,
    keys_fetched: i64,
}

/// A client of one provider.
pub struct Client {
    options: OidcOptions,
    redirect_uri: String,
    known: Mutex<Option<Known>>,
    http: ureq::Agent,
}

/// What the flow's cookie holds.
struct Flow {
    state: String,
    nonce: String,
    verifier: String,
}

/// `bytes` from the system's random source, as base64url; no stand-in should the source fail.
fn random(bytes: usize) -> Result<String, RandomUnavailable> {
    let mut buf = vec![0u8; bytes];
    crate::support::random::fill(&mut buf)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf))
}

/// The S256 code challenge of a verifier (RFC 7636 §4.2).
pub fn challenge(verifier: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref())
}

/// The error codes of an authorization answer (RFC 6749, 4.1.2.1; OpenID Connect Core,
/// 3.1.2.6), as the sign-in page may name them; any other is "an unknown error".
const KNOWN_ERRORS: [&str; 16] = [
    "invalid_request",
    "unauthorized_client",
    "access_denied",
    "unsupported_response_type",
    "invalid_scope",
    "server_error",
    "temporarily_unavailable",
    "interaction_required",
    "login_required",
    "account_selection_required",
    "consent_required",
    "invalid_request_uri",
    "invalid_request_object",
    "request_not_supported",
    "request_uri_not_supported",
    "registration_not_supported",
];

/// `code` when it is one of [`KNOWN_ERRORS`].
fn known_error(code: &str) -> &'static str {
    KNOWN_ERRORS
        .iter()
        .find(|k| **k == code)
        .copied()
        .unwrap_or("an unknown error")
}

impl SignInError {
    /// Whether the failure is a wrong credential that a guesser could make (an ID token that
    /// does not verify), as opposed to a request that guessed nothing: only those count
    /// against the sign-in budget.
    pub fn is_guess(&self) -> bool {
        matches!(self, SignInError::Invalid(_))
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    id_token: Option<String>,
    access_token: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    nonce: Option<String>,
    #[serde(default)]
    azp: Option<String>,
    #[serde(flatten)]
    rest: serde_json::Map<String, serde_json::Value>,
}

impl Client {
    /// A client whose callback is under `public_url`.
    pub fn new(options: OidcOptions, public_url: &str) -> Client {
        Client {
            redirect_uri: format!("{}{CALLBACK}", public_url.trim_end_matches('/')),
            options,
            known: Mutex::new(None),
            http: ureq::Agent::config_builder()
                .timeout_global(Some(TIMEOUT))
                .max_redirects(0)
                .http_status_as_error(false)
                .user_agent(concat!("ledgit/", env!("CARGO_PKG_VERSION")))
                .build()
                .into(),
        }
    }

    /// The issuer, as the sign-in page names it.
    pub fn issuer(&self) -> &str {
        &self.options.issuer
    }

    fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        bearer: Option<&str>,
    ) -> Result<T, SignInError> {
        let mut request = self.http.get(url).header("Accept", "application/json");
        if let Some(token) = bearer {
            request = request.header("Authorization", &format!("Bearer {token}"));
        }
        let response = request
            .call()
            .map_err(|e| SignInError::Unreachable(format!("GET {url}: {e}")))?;
        read_json(url, response)
    }

    /// The discovery document and keys, fetched when missing, old, or (`refresh_keys`) when a
    /// token names a key not among them.
    fn known(
        &self,
        now: i64,
        refresh_keys: bool,
    ) -> Result<(Discovery, jsonwebtoken::jwk::JwkSet), SignInError> {
        let cached = self.known.lock().ok().and_then(|k| {
            k.as_ref().and_then(|k| {
                let fresh = now - k.fetched < KEEP;
                let keys_ok = !refresh_keys || now - k.keys_fetched < 60;
                (fresh && keys_ok).then(|| (k.discovery.clone(), k.keys.clone()))
            })
        });
        if let Some(k) = cached {
            return Ok(k);
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.options.issuer.trim_end_matches('/')
        );
        let discovery: Discovery = self.get_json(&url, None)?;
        // OpenID Connect Discovery §4.3: the document's issuer is the one configured, exactly.
        if discovery.issuer != self.options.issuer {
            return Err(SignInError::Invalid(format!(
                "its discovery document names the issuer `{}`, not `{}`",
                discovery.issuer, self.options.issuer
            )));
        }
        let keys: jsonwebtoken::jwk::JwkSet = self.get_json(&discovery.jwks_uri, None)?;
        if let Ok(mut k) = self.known.lock() {
            *k = Some(Known {
                discovery: discovery.clone(),
                keys: keys.clone(),
                fetched: now,
                keys_fetched: now,
            });
        }
        Ok((discovery, keys))
    }

    /// Where to send the visitor, and the flow cookie to set.
    pub fn start(
        &self,
        keys: &Keys,
        secure: bool,
        now: i64,
    ) -> Result<(String, HeaderValue), SignInError> {
        let (discovery, _) = self.known(now, false)?;
        let flow = Flow {
            state: random(16)?,
            nonce: random(16)?,
            verifier: random(32)?,
        };
        let query = serde_urlencoded::to_string([
            ("response_type", "code"),
            ("client_id", self.options.client_id.as_str()),
            ("redirect_uri", self.redirect_uri.as_str()),
            ("scope", "openid email profile"),
            ("state", flow.state.as_str()),
            ("nonce", flow.nonce.as_str()),
            ("code_challenge", challenge(&flow.verifier).as_str()),
            ("code_challenge_method", "S256"),
        ])
        .unwrap_or_default();
        let sep = if discovery.authorization_endpoint.contains('?') {
            '&'
        } else {
            '?'
        };
        let location = format!("{}{sep}{query}", discovery.authorization_endpoint);
        let body = format!(
            "{}.{}.{}.{}",
            now + FLOW_LIFETIME,
            flow.state,
            flow.nonce,
            flow.verifier
        );
        // Lax, not Strict: the provider's redirect back is a navigation from another site.
        let cookie = format!(
            "{FLOW_COOKIE}={body}.{}; Path=/signin/oidc; Max-Age={FLOW_LIFETIME}; HttpOnly; SameSite=Lax{}",
            keys.mac("ledgit-oidc-flow", body.as_bytes()),
            if secure { "; Secure" } else { "" }
        );
        let cookie = HeaderValue::from_str(&cookie)
            .map_err(|_| SignInError::Invalid("unusable flow cookie".into()))?;
        Ok((location, cookie))
    }

    /// The flow the request's cookie carries, if this server signed it and it has not expired.
    fn flow(keys: &Keys, headers: &HeaderMap, now: i64) -> Option<Flow> {
        let value = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|c| c.trim().strip_prefix(&format!("{FLOW_COOKIE}=")))?;
        let (body, mac) = value.rsplit_once('.')?;
        if !crate::support::hmac::same_secret(
            keys.mac("ledgit-oidc-flow", body.as_bytes()).as_bytes(),
            mac.as_bytes(),
        ) {
            return None;
        }
        let mut parts = body.split('.');
        let expires: i64 = parts.next()?.parse().ok()?;
        let flow = Flow {
            state: parts.next()?.to_string(),
            nonce: parts.next()?.to_string(),
            verifier: parts.next()?.to_string(),
        };
        (expires > now && parts.next().is_none()).then_some(flow)
    }

    /// The callback: the person the provider signed in, if they may sign in here.
    pub fn finish(
        &self,
        keys: &Keys,
        headers: &HeaderMap,
        query: &CallbackQuery,
        now: i64,
    ) -> Result<Person, SignInError> {
        // The answer's URL is anyone's to write (a link sent to a victim): its free text
        // (`error_description`) is never shown, and its code only when it is one OAuth 2.0 or
        // OpenID Connect defines.
        if let Some(error) = &query.error {
            return Err(SignInError::Provider(known_error(error).into()));
        }
        let flow = Client::flow(keys, headers, now).ok_or(SignInError::Flow)?;
        // RFC 9207: an answer that names another issuer is another provider's (mix-up).
        if query
            .iss
            .as_deref()
            .is_some_and(|i| i != self.options.issuer)
        {
            return Err(SignInError::Invalid(
                "the answer names another issuer (iss)".into(),
            ));
        }
        let state_ok = query.state.as_deref().is_some_and(|s| {
            crate::support::hmac::same_secret(s.as_bytes(), flow.state.as_bytes())
        });
        let code = query
            .code
            .as_deref()
            .filter(|_| state_ok)
            .ok_or(SignInError::Flow)?;
        let (discovery, _) = self.known(now, false)?;
        let answer = self.redeem(&discovery, code, &flow.verifier)?;
        let id_token = answer
            .id_token
            .ok_or_else(|| SignInError::Invalid("the token answer has no id_token".into()))?;
        let claims = self.verify(&id_token, &flow.nonce, now)?;
        // The address: in the ID token, else from userinfo for the same subject.
        let mut all = claims.rest.clone();
        if !all.contains_key("email")
            && let (Some(url), Some(access)) =
                (&discovery.userinfo_endpoint, answer.access_token.as_deref())
        {
            let info: serde_json::Map<String, serde_json::Value> =
                self.get_json(url, Some(access))?;
            if info.get("sub").and_then(|s| s.as_str()) != Some(claims.sub.as_str()) {
                return Err(SignInError::Invalid(
                    "userinfo names another subject than the ID token".into(),
                ));
            }
            for (k, v) in info {
                all.entry(k).or_insert(v);
            }
        }
        self.person(&all)
    }

    /// The code for tokens, with the client's secret (HTTP Basic) and the PKCE verifier.
    fn redeem(
        &self,
        discovery: &Discovery,
        code: &str,
        verifier: &str,
    ) -> Result<TokenAnswer, SignInError> {
        let form = serde_urlencoded::to_string([
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", self.redirect_uri.as_str()),
            ("code_verifier", verifier),
        ])
        .unwrap_or_default();
        // RFC 6749 §2.3.1: the id and secret are form-encoded before they are joined.
        let encode = |s: &[u8]| {
            serde_urlencoded::to_string([("", String::from_utf8_lossy(s).as_ref())])
                .unwrap_or_default()
                .trim_start_matches('=')
                .to_string()
        };
        let basic = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            encode(self.options.client_id.as_bytes()),
            encode(&self.options.client_secret)
        ));
        let url = &discovery.token_endpoint;
        let response = self
            .http
            .post(url)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("Accept", "application/json")
            .header("Authorization", &format!("Basic {basic}"))
            .send(form.as_bytes())
            .map_err(|e| SignInError::Unreachable(format!("POST {url}: {e}")))?;
        let answer: TokenAnswer = read_json(url, response)?;
        if let Some(e) = &answer.error {
            let said = answer.error_description.as_deref().unwrap_or(e);
            return Err(SignInError::Provider(said.chars().take(200).collect()));
        }
        Ok(answer)
    }

    /// The ID token's claims, when its signature verifies with one of the provider's keys and
    /// it was issued by the provider, to this client, for this sign-in, and has not expired.
    fn verify(&self, token: &str, nonce: &str, now: i64) -> Result<Claims, SignInError> {
        use jsonwebtoken::{Algorithm, DecodingKey, Validation};
        let invalid = |why: String| SignInError::Invalid(format!("ID token: {why}"));
        let head = jsonwebtoken::decode_header(token).map_err(|e| invalid(e.to_string()))?;
        if !matches!(
            head.alg,
            Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::ES256
                | Algorithm::ES384
                | Algorithm::EdDSA
        ) {
            return Err(invalid(format!(
                "{:?} signatures are not accepted",
                head.alg
            )));
        }
        let find = |set: &jsonwebtoken::jwk::JwkSet| match &head.kid {
            Some(kid) => set.find(kid).cloned(),
            None if set.keys.len() == 1 => set.keys.first().cloned(),
            None => None,
        };
        let (_, keys) = self.known(now, false)?;
        let jwk = match find(&keys) {
            Some(k) => k,
            None => find(&self.known(now, true)?.1)
                .ok_or_else(|| invalid("signed with a key the provider does not list".into()))?,
        };
        let key = DecodingKey::from_jwk(&jwk).map_err(|e| invalid(e.to_string()))?;
        let mut validation = Validation::new(head.alg);
        validation.set_issuer(&[&self.options.issuer]);
        validation.set_audience(&[&self.options.client_id]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 60;
        let data = jsonwebtoken::decode::<Claims>(token, &key, &validation)
            .map_err(|e| invalid(e.to_string()))?;
        let claims = data.claims;
        if claims.nonce.as_deref() != Some(nonce) {
            return Err(invalid("its nonce is not this sign-in's".into()));
        }
        if claims
            .azp
            .as_deref()
            .is_some_and(|a| a != self.options.client_id)
        {
            return Err(invalid("it was issued to another client (azp)".into()));
        }
        Ok(claims)
    }

    /// The person the claims name, if they may sign in.
    fn person(
        &self,
        claims: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Person, SignInError> {
        let email = claims
            .get("email")
            .and_then(|e| e.as_str())
            .ok_or_else(|| {
                SignInError::Invalid("no email address (ask for the email scope)".into())
            })?;
        // Present, the claim must be JSON `true`: a string "false" (or "true", or 0) is not a
        // verified address, whatever a lenient reader would make of it.
        if let Some(v) = claims.get("email_verified")
            && v != &serde_json::Value::Bool(true)
        {
            return Err(SignInError::NotAllowed(format!(
                "{email} (the provider has not verified the address: email_verified is {v})"
            )));
        }
        let name = claims.get("name").and_then(|n| n.as_str());
        let person = Person::new(name, email)
            .ok_or_else(|| SignInError::Invalid(format!("`{email}` is not an address")))?;
        let groups: Vec<&str> = claims
            .get(&self.options.groups_claim)
            .and_then(|g| g.as_array())
            .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        if allowed(&self.options, &person, &groups) {
            Ok(person)
        } else {
            Err(SignInError::NotAllowed(person.email))
        }
    }
}

/// Whether `person` (in `groups`) may sign in: their address is in an allowed domain, or they
/// are in an allowed group.
pub fn allowed(options: &OidcOptions, person: &Person, groups: &[&str]) -> bool {
    let domain = person.domain();
    options
        .allowed_domains
        .iter()
        .any(|d| d.trim_start_matches('@').eq_ignore_ascii_case(&domain))
        || options
            .allowed_groups
            .iter()
            .any(|g| groups.contains(&g.as_str()))
}

/// The query the provider sends the visitor back with.
#[derive(Debug, Default, Deserialize)]
pub struct CallbackQuery {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
    /// The issuer of the answer (RFC 9207), where the provider says it.
    pub iss: Option<String>,
}

fn read_json<T: serde::de::DeserializeOwned>(
    url: &str,
    response: ureq::http::Response<ureq::Body>,
) -> Result<T, SignInError> {
    use std::io::Read;
    let status = response.status().as_u16();
    let mut body = Vec::new();
    response
        .into_body()
        .into_reader()
        .take(MAX_ANSWER)
        .read_to_end(&mut body)
        .map_err(|e| SignInError::Unreachable(format!("{url}: {e}")))?;
    let parsed = serde_json::from_slice::<T>(&body);
    match (status, parsed) {
        (200..=299, Ok(v)) => Ok(v),
        // The token endpoint answers its errors as JSON with 400.
        (400..=401, Ok(v)) => Ok(v),
        (200..=299, Err(e)) => Err(SignInError::Invalid(format!("{url}: {e}"))),
        (s, _) => Err(SignInError::Unreachable(format!("{url} answered {s}"))),
    }
}

/// The cookie that ends the flow.
pub fn end_flow() -> HeaderValue {
    HeaderValue::from_static("ledgit_oidc=; Path=/signin/oidc; Max-Age=0; HttpOnly; SameSite=Lax")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> OidcOptions {
        OidcOptions {
            issuer: "https://id.example.com".into(),
            client_id: "ledgit".into(),
            client_secret: b"s3cret-s3cret-s3cret".to_vec(),
            allowed_domains: vec!["example.com".into()],
            allowed_groups: vec!["platform".into()],
            groups_claim: "groups".into(),
        }
    }

    #[test]
    fn the_code_challenge_is_rfc_7636s() {
        // RFC 7636 Appendix B.
        assert_eq!(
            challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn who_may_sign_in_is_a_domain_or_a_group() {
        let o = options();
        let ada = Person::new(Some("Ada"), "ada@Example.com").unwrap();
        let eve = Person::new(None, "eve@example.com.evil.test").unwrap();
        assert!(allowed(&o, &ada, &[]));
        assert!(!allowed(&o, &eve, &[]));
        assert!(!allowed(&o, &eve, &["platforms", "Platform"]));
        assert!(allowed(&o, &eve, &["platform"]));
        let claims = |v: serde_json::Value| v.as_object().unwrap().clone();
        let client = Client::new(o, "http://127.0.0.1:1");
        let unverified =
            claims(serde_json::json!({"email": "ada@example.com", "email_verified": false}));
        assert!(matches!(
            client.person(&unverified),
            Err(SignInError::NotAllowed(_))
        ));
        // Only a JSON `true` is verified: the strings, a number or null are not.
        for not_true in [
            serde_json::json!("false"),
            serde_json::json!("true"),
            serde_json::json!(1),
            serde_json::Value::Null,
        ] {
            let c =
                claims(serde_json::json!({"email": "ada@example.com", "email_verified": not_true}));
            assert!(
                matches!(client.person(&c), Err(SignInError::NotAllowed(_))),
                "email_verified: {not_true}"
            );
        }
        let verified =
            claims(serde_json::json!({"email": "ada@example.com", "email_verified": true}));
        assert_eq!(client.person(&verified).unwrap().email, "ada@example.com");
        let ok = claims(serde_json::json!({"email": "ada@example.com", "name": "Ada Lovelace"}));
        assert_eq!(client.person(&ok).unwrap().name, "Ada Lovelace");
        let grouped =
            claims(serde_json::json!({"email": "eve@other.test", "groups": ["platform"]}));
        assert_eq!(client.person(&grouped).unwrap().name, "eve");
        let none = claims(serde_json::json!({"sub": "x"}));
        assert!(matches!(client.person(&none), Err(SignInError::Invalid(_))));
    }

    #[test]
    fn a_flow_cookie_is_this_servers_and_expires() {
        let keys = Keys::new(b"0123456789abcdef0123".to_vec(), false);
        let client = Client::new(options(), "http://127.0.0.1:1");
        // No provider: start fails without sending anyone anywhere.
        assert!(client.start(&keys, false, 1_000).is_err());
        let body = format!("{}.st.no.ve", 1_000 + FLOW_LIFETIME);
        let cookie = format!(
            "{FLOW_COOKIE}={body}.{}",
            keys.mac("ledgit-oidc-flow", body.as_bytes())
        );
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_str(&cookie).unwrap());
        let flow = Client::flow(&keys, &h, 1_001).unwrap();
        assert_eq!(
            (
                flow.state.as_str(),
                flow.nonce.as_str(),
                flow.verifier.as_str()
            ),
            ("st", "no", "ve")
        );
        assert!(Client::flow(&keys, &h, 1_000 + FLOW_LIFETIME).is_none());
        let other = Keys::new(b"another-secret-entirely".to_vec(), false);
        assert!(Client::flow(&other, &h, 1_001).is_none());
        let forged = cookie.replace(".st.", ".sT.");
        h.insert(header::COOKIE, HeaderValue::from_str(&forged).unwrap());
        assert!(Client::flow(&keys, &h, 1_001).is_none());
    }

    /// An Ed25519 signer and the provider's key set listing it as `kid`.
    struct Signer {
        pkcs8: Vec<u8>,
        jwk: serde_json::Value,
    }

    fn signer(kid: &str) -> Signer {
        use ring::signature::KeyPair;
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let pair = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(pair.public_key());
        Signer {
            pkcs8: pkcs8.as_ref().to_vec(),
            jwk: serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "alg": "EdDSA", "use": "sig"}),
        }
    }

    /// An ID token signed by `by`, naming `kid` (or none), with `claims` over good defaults.
    fn id_token(by: &Signer, kid: Option<&str>, claims: serde_json::Value) -> String {
        let now = chrono::Utc::now().timestamp();
        let mut all = serde_json::json!({
            "iss": "http://127.0.0.1:1", "aud": "ledgit", "sub": "ada-1",
            "exp": now + 300, "iat": now, "nonce": "n-1",
        });
        for (k, v) in claims.as_object().unwrap() {
            if v.is_null() {
                all.as_object_mut().unwrap().remove(k);
            } else {
                all[k] = v.clone();
            }
        }
        let mut head = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        head.kid = kid.map(String::from);
        let key = jsonwebtoken::EncodingKey::from_ed_der(&by.pkcs8);
        jsonwebtoken::encode(&head, &all, &key).unwrap()
    }

    /// A client of a provider at a closed port whose discovery document and `keys` are
    /// already known (fetched at `fetched`, keys at `keys_fetched`): anything that would ask
    /// the provider again fails as unreachable.
    fn known_client(keys: &[&Signer], fetched: i64, keys_fetched: i64) -> Client {
        let provider = "http://127.0.0.1:1";
        let client = Client::new(
            OidcOptions {
                issuer: provider.into(),
                ..options()
            },
            "http://127.0.0.1:2",
        );
        let set =
            serde_json::json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()});
        *client.known.lock().unwrap() = Some(Known {
            discovery: Discovery {
                issuer: provider.into(),
                authorization_endpoint: format!("{provider}/auth"),
                token_endpoint: format!("{provider}/token"),
                jwks_uri: format!("{provider}/jwks"),
                userinfo_endpoint: None,
            },
            keys: serde_json::from_value(set).unwrap(),
            fetched,
            keys_fetched,
        });
        client
    }

    #[test]
    fn an_id_token_is_the_providers_for_this_client_and_this_sign_in() {
        let now = chrono::Utc::now().timestamp();
        let (one, two) = (signer("one"), signer("two"));
        let client = known_client(&[&one, &two], now, now);
        let verify = |token: &str| client.verify(token, "n-1", now);
        let claims = verify(&id_token(&two, Some("two"), serde_json::json!({}))).unwrap();
        assert_eq!(claims.sub, "ada-1");
        let same_client = serde_json::json!({"azp": "ledgit"});
        assert!(verify(&id_token(&one, Some("one"), same_client)).is_ok());
        for (why, claims) in [
            ("another nonce", serde_json::json!({"nonce": "n-2"})),
            ("no nonce", serde_json::json!({"nonce": null})),
            ("another client (azp)", serde_json::json!({"azp": "other"})),
            ("another audience", serde_json::json!({"aud": "other"})),
            (
                "another issuer",
                serde_json::json!({"iss": "http://127.0.0.1:3"}),
            ),
            ("expired", serde_json::json!({"exp": now - 120})),
            ("no subject", serde_json::json!({"sub": null})),
        ] {
            let answer = verify(&id_token(&one, Some("one"), claims));
            assert!(
                matches!(answer, Err(SignInError::Invalid(_))),
                "{why}: {answer:?}",
                answer = answer.map(|c| c.sub)
            );
        }
        // Signed by a key listed under another name, or by no listed key at all.
        assert!(verify(&id_token(&one, Some("two"), serde_json::json!({}))).is_err());
        let stranger = signer("one");
        assert!(verify(&id_token(&stranger, Some("one"), serde_json::json!({}))).is_err());
        let unlisted = verify(&id_token(&one, Some("three"), serde_json::json!({})));
        assert!(
            matches!(&unlisted, Err(SignInError::Invalid(m)) if m.contains("does not list")),
            "{:?}",
            unlisted.map(|c| c.sub)
        );
        // No key id: only a provider with a single key says which key that is.
        assert!(verify(&id_token(&one, None, serde_json::json!({}))).is_err());
        let single = known_client(&[&one], now, now);
        assert!(
            single
                .verify(&id_token(&one, None, serde_json::json!({})), "n-1", now)
                .is_ok()
        );
        // A shared-secret signature is not the provider's, whatever its claims.
        let hs = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &serde_json::json!({"iss": "http://127.0.0.1:1", "aud": "ledgit", "sub": "x", "exp": now + 300, "nonce": "n-1"}),
            &jsonwebtoken::EncodingKey::from_secret(b"s3cret-s3cret-s3cret").unwrap(),
        )
        .unwrap();
        let answer = verify(&hs);
        assert!(
            matches!(&answer, Err(SignInError::Invalid(m)) if m.contains("not accepted")),
            "{:?}",
            answer.map(|c| c.sub)
        );
    }

    #[test]
    fn the_discovery_document_and_keys_are_kept_an_hour_and_keys_refetched_after_a_minute() {
        let one = signer("one");
        let at = 1_000_000;
        let unreachable = |r: Result<(Discovery, jsonwebtoken::jwk::JwkSet), SignInError>| {
            matches!(r, Err(SignInError::Unreachable(_)))
        };
        // Within the hour, kept; keys too, unless a token names a key not among them.
        let kept = known_client(&[&one], at, at - 1_000);
        assert!(kept.known(at + KEEP - 1, false).is_ok());
        assert!(unreachable(kept.known(at + 1, true)));
        // At the hour, asked again.
        assert!(unreachable(kept.known(at + KEEP, false)));
        // Keys fetched within the last minute are not fetched again, even for an unknown key.
        let fresh_keys = known_client(&[&one], at, at);
        assert!(fresh_keys.known(at + 59, true).is_ok());
        assert!(unreachable(fresh_keys.known(at + 60, true)));
    }

    #[test]
    fn a_sign_in_starts_at_the_providers_endpoint_with_pkce_and_a_fresh_state_and_nonce() {
        let keys = Keys::new(b"0123456789abcdef0123".to_vec(), false);
        let now = chrono::Utc::now().timestamp();
        let client = known_client(&[&signer("one")], now, now);
        assert_eq!(client.issuer(), "http://127.0.0.1:1");
        let (location, cookie) = client.start(&keys, true, now).unwrap();
        let (endpoint, query) = location.split_once('?').unwrap();
        assert_eq!(endpoint, "http://127.0.0.1:1/auth");
        let q: std::collections::HashMap<String, String> =
            serde_urlencoded::from_str(query).unwrap();
        for (k, v) in [
            ("response_type", "code"),
            ("client_id", "ledgit"),
            ("redirect_uri", "http://127.0.0.1:2/signin/oidc/callback"),
            ("scope", "openid email profile"),
            ("code_challenge_method", "S256"),
        ] {
            assert_eq!(q[k], v, "{k}");
        }
        // The cookie carries what the callback must match; the provider sees only the challenge.
        let cookie = cookie.to_str().unwrap();
        assert!(cookie.ends_with("; Secure") && cookie.contains("HttpOnly"));
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(cookie.split(';').next().unwrap()).unwrap(),
        );
        let flow = Client::flow(&keys, &h, now).unwrap();
        assert_eq!((&q["state"], &q["nonce"]), (&flow.state, &flow.nonce));
        assert_eq!(q["code_challenge"], challenge(&flow.verifier));
        assert!(!query.contains(&flow.verifier));
        // 16 and 32 random bytes, base64url: and never the same twice.
        assert_eq!((flow.state.len(), flow.verifier.len()), (22, 43));
        let (again, _) = client.start(&keys, true, now).unwrap();
        let q2: std::collections::HashMap<String, String> =
            serde_urlencoded::from_str(again.split_once('?').unwrap().1).unwrap();
        assert_ne!(q["state"], q2["state"]);
        assert_ne!(q["nonce"], q2["nonce"]);
        assert_ne!(q["code_challenge"], q2["code_challenge"]);
    }

    #[test]
    fn a_callback_must_be_this_flows_and_this_issuers_before_the_code_is_redeemed() {
        let keys = Keys::new(b"0123456789abcdef0123".to_vec(), false);
        let now = chrono::Utc::now().timestamp();
        let client = known_client(&[&signer("one")], now, now);
        let body = format!("{}.st.no.ve", now + FLOW_LIFETIME);
        let cookie = format!(
            "{FLOW_COOKIE}={body}.{}",
            keys.mac("ledgit-oidc-flow", body.as_bytes())
        );
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_str(&cookie).unwrap());
        let query = |state: &str, iss: Option<&str>| CallbackQuery {
            code: Some("c0de".into()),
            state: Some(state.into()),
            iss: iss.map(String::from),
            ..CallbackQuery::default()
        };
        let kind = |r: Result<Person, SignInError>| match r {
            Ok(p) => format!("signed in {}", p.email),
            Err(SignInError::Invalid(m)) => format!("invalid: {m}"),
            Err(SignInError::Flow) => "flow".into(),
            Err(SignInError::Unreachable(_)) => "unreachable".into(),
            Err(e) => e.to_string(),
        };
        // This flow's state and issuer: on to the token endpoint (here, nobody answers).
        assert_eq!(
            kind(client.finish(&keys, &h, &query("st", None), now)),
            "unreachable"
        );
        let same = query("st", Some("http://127.0.0.1:1"));
        assert_eq!(kind(client.finish(&keys, &h, &same, now)), "unreachable");
        let mixed_up = query("st", Some("http://127.0.0.1:3"));
        assert!(kind(client.finish(&keys, &h, &mixed_up, now)).contains("another issuer"));
        assert_eq!(
            kind(client.finish(&keys, &h, &query("sT", None), now)),
            "flow"
        );
        let no_state = CallbackQuery {
            code: Some("c0de".into()),
            ..CallbackQuery::default()
        };
        assert_eq!(kind(client.finish(&keys, &h, &no_state, now)), "flow");
        assert_eq!(
            kind(client.finish(&keys, &HeaderMap::new(), &query("st", None), now)),
            "flow"
        );
        let refused = CallbackQuery {
            error: Some("access_denied".into()),
            error_description: Some("the person said no".into()),
            ..CallbackQuery::default()
        };
        assert_eq!(
            kind(client.finish(&keys, &h, &refused, now)),
            "the identity provider said: access_denied"
        );
        // Free text in the URL is never shown; an unknown code is not repeated either.
        let forged = CallbackQuery {
            error: Some("<b>call 555-0100</b>".into()),
            error_description: Some("Your account is locked: call 555-0100".into()),
            ..CallbackQuery::default()
        };
        let said = kind(client.finish(&keys, &h, &forged, now));
        assert_eq!(said, "the identity provider said: an unknown error");
        assert!(
            !client
                .finish(&keys, &h, &forged, now)
                .unwrap_err()
                .is_guess()
        );
        assert!(SignInError::Invalid("x".into()).is_guess());
        for not_guesses in [
            SignInError::Flow,
            SignInError::Provider("access_denied".into()),
            SignInError::NotAllowed("eve".into()),
            SignInError::Unreachable("x".into()),
        ] {
            assert!(!not_guesses.is_guess(), "{not_guesses}");
        }
    }
}
