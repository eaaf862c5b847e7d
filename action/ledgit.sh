#!/usr/bin/env bash
# The shell steps of ledgit's GitHub Action (action.yml), kept in one file so that they can be
# run and tested outside GitHub. Usage: ledgit.sh key|install|run
#   key      prints the cache key of the ledgit build (a digest of the action's sources)
#   install  builds ledgit from the action's checkout into $LEDGIT_ROOT (skipped when cached)
#   run      runs the checks named in $INPUT_CHECKS against $INPUT_BASE and exits with
#            ledgit's own exit code: 0 clean, 1 findings, 2 could not run
set -uo pipefail
action=${GITHUB_ACTION_PATH:-$(cd "$(dirname "$0")/.." && pwd)}
root=${LEDGIT_ROOT:-${RUNNER_TEMP:-/tmp}/ledgit}
summary=${GITHUB_STEP_SUMMARY:-/dev/null}

case ${1:-} in
key)
  digest=$(cd "$action" && find Cargo.toml Cargo.lock src schema -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
  echo "key=ledgit-bin-$(uname -s)-$(uname -m)-$digest"
  ;;
install)
  if [[ ! -x $root/bin/ledgit ]]; then
    cargo install --locked --quiet --path "$action" --root "$root" || exit 2
  fi
  [[ -n ${GITHUB_PATH:-} ]] && echo "$root/bin" >> "$GITHUB_PATH"
  "$root/bin/ledgit" --version
  ;;
run)
  ledgit=$(command -v ledgit || echo "$root/bin/ledgit")
  base=${INPUT_BASE:-}
  if [[ -z $base ]]; then
    if [[ -z ${GITHUB_BASE_REF:-} ]]; then
      echo "::error title=ledgit::no base revision: set the action's 'base' input, or run it on pull_request"
      exit 2
    fi
    base=origin/$GITHUB_BASE_REF
  fi
  worst=0
  note() { (( $1 > worst )) && worst=$1; return 0; }
  # Index base's history once (it is restored from the Actions cache when there is one), so the
  # checks below read no history again.
  "$ledgit" history --rev "$base" > /dev/null || note $?
  IFS=', ' read -r -a checks <<< "${INPUT_CHECKS:-check,diff}"
  for c in "${checks[@]}"; do
    case $c in
    validate)
      "$ledgit" validate --format github; note $?
      ;;
    diff)
      { echo "## Deployments changed by this pull request"; echo
        "$ledgit" diff "$base..HEAD" --format markdown; } >> "$summary"
      note $?
      ;;
    check)
      "$ledgit" check --base "$base" --format github; code=$?
      note $code
      if (( code < 2 )); then
        "$ledgit" check --base "$base" --format markdown >> "$summary"
      fi
      ;;
    "") ;;
    *)
      echo "::error title=ledgit::unknown check '$c' in the 'checks' input (validate, diff, check)"
      note 2
      ;;
    esac
  done
  exit "$worst"
  ;;
*)
  echo "usage: ledgit.sh key|install|run" >&2
  exit 2
  ;;
esac
