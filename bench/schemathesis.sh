#!/usr/bin/env bash
# Runs schemathesis (property-based API testing from the OpenAPI document) against `ledgit
# serve` on the example repository, with every check and a fixed seed. Usage:
#   bash bench/schemathesis.sh [MAX_EXAMPLES]   (default 100 per operation)
# Installs schemathesis from PyPI into bench/.venv the first time. Exits non-zero on any finding.
set -euo pipefail
cd "$(dirname "$0")/.."
examples=${1:-100}
if [[ ! -x bench/.venv/bin/schemathesis ]]; then
  python3 -m venv bench/.venv
  bench/.venv/bin/pip install -q --disable-pip-version-check schemathesis
fi
cargo build --quiet
bin=$PWD/target/debug/ledgit
work=$(mktemp -d)
server=
cleanup() { [[ -n $server ]] && kill "$server" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
export GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_NOSYSTEM=1 NO_COLOR=1
export GIT_AUTHOR_NAME=ledgit GIT_AUTHOR_EMAIL=ledgit@example.com
export GIT_COMMITTER_NAME=ledgit GIT_COMMITTER_EMAIL=ledgit@example.com
"$bin" init --example "$work/repo" >/dev/null 2>&1
"$bin" -C "$work/repo" keys generate --out "$work/key.pem" --add >/dev/null 2>&1
git -C "$work/repo" commit -qam "Add a signing key"
token=$("$bin" -C "$work/repo" token issue support-bot production --key "$work/key.pem" 2>/dev/null)
LEDGIT_HOOK_SECRET=hook-secret-for-schemathesis LEDGIT_GITLAB_TOKEN=gitlab-token-for-schemathesis \
  LEDGIT_INTROSPECTION_SECRET=introspection-for-schemathesis LEDGIT_UI_SECRET=operator-for-schemathesis \
  "$bin" -C "$work/repo" serve --quiet --proposals --listen 127.0.0.1:0 2>"$work/serve.log" &
server=$!
for _ in $(seq 1 100); do
  grep -q "listening on" "$work/serve.log" 2>/dev/null && break
  sleep 0.1
done
base=$(sed -n 's/.*listening on \(http[^,]*\),.*/\1/p' "$work/serve.log")
[[ -n $base ]] || { cat "$work/serve.log" >&2; echo "the server did not start" >&2; exit 2; }
echo "schemathesis against $base/openapi.json ($examples examples per operation)"
# One worker: with more, the generator's own code has failed with internal errors.
bench/.venv/bin/schemathesis --config-file bench/schemathesis.toml run "$base/openapi.json" --checks all --max-examples "$examples" \
  --workers 1 --seed 20261202 -H "Authorization: Bearer $token" --no-color
