#!/usr/bin/env bash
# last-deployed.sh STACK
# last-deployed.sh STACK --at COMMIT...
# Prints the commit of main at which STACK's last successful deployment ran, or nothing if it never
# succeeded. With --at (the candidates `cdao stack-revision <next> --upstream-candidates` prints, oldest
# first), the first COMMIT at which STACK has a successful deployment, or nothing: each is looked up by
# commit (REST "List deployments" with the `sha` and `environment` filters,
# docs.github.com/en/rest/deployments/deployments), or, for more than 5 candidates, the environment's
# whole list (100 a call) is matched against them; only matching records are then checked (below),
# and the first trusted one ends the search. So no record falls out of a window however many
# deployments came since, and a lookup costs a few calls of the 1,000 an hour GITHUB_TOKEN gets per
# repository (docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api).
# deploy.yml's `register-<stack>` job runs in the GitHub environment
# `<stack>-workflows` and is the last job of a stack's deploy, so GitHub's deployment record of that
# environment (one per job, with the run's commit as `sha` and the job's result as its status;
# docs.github.com/en/rest/deployments/deployments and /rest/deployments/statuses) is the record of
# what the stack ran. The order of either list is not relied on: both are sorted here by created_at,
# then by id (numerically): two records of the same second are told apart by their ids, which GitHub
# assigns in creation order.
#
# Anyone with write access can create deployments and statuses through the REST API, so a record
# counts only if GitHub Actions wrote it for a real registration job of deploy.yml on main:
#   - the deployment's and its `success` status's `creator.login` is `github-actions[bot]` (the
#     GitHub App behind GITHUB_TOKEN; a person's token shows the person);
#   - that status's `log_url` (or `target_url`) is a run of this repository
#     (<server>/<owner>/<repo>/actions/runs/<run_id>[/job/<job_id>]);
#   - the run (REST "Get a workflow run", docs.github.com/en/rest/actions/workflow-runs) is of
#     `.github/workflows/deploy.yml`, on `main`, for the deployment's `sha`;
#   - its job `Register workflows/ to Flyte (<stack>, ...)` (REST "List jobs for a workflow run
#     attempt"/"... run", docs.github.com/en/rest/actions/workflow-jobs) concluded `success`.
# A record that fails any of these is skipped with a warning naming the deployment.
# Needs GH_TOKEN with `deployments: read` and `actions: read`, and GITHUB_REPOSITORY.
set -euo pipefail

usage="usage: last-deployed.sh STACK [--at COMMIT...]"
stack="${1:?${usage}}"
shift
at=()
if [ $# -gt 0 ]; then
  if [ "$1" != --at ]; then
    echo "last-deployed.sh: unknown argument '$1'; ${usage}" >&2
    exit 2
  fi
  shift
  for commit in "$@"; do
    if ! [[ "${commit}" =~ ^[0-9a-f]{40}$ ]]; then
      echo "last-deployed.sh: --at '${commit}': expected full commit SHAs; ${usage}" >&2
      exit 2
    fi
  done
  at=("$@")
  # No candidate: nothing can prove the values ran (and no API call is needed to say so).
  [ ${#at[@]} -gt 0 ] || exit 0
fi
: "${GITHUB_REPOSITORY:?GITHUB_REPOSITORY is required}"
server="${GITHUB_SERVER_URL:-https://github.com}"
bot="github-actions[bot]"

# The reasons a record is not trusted, or nothing: the checks listed above.
untrusted() {
  local id="$1" sha="$2" creator="$3" status="$4"
  local status_creator url run_id run
  if [ "${creator}" != "${bot}" ]; then
    echo "deployment ${id} was created by ${creator}, not ${bot}"
    return
  fi
  read -r status_creator url <<< "${status}"
  if [ "${status_creator}" != "${bot}" ]; then
    echo "the success status of deployment ${id} was created by ${status_creator}, not ${bot}"
    return
  fi
  if ! [[ "${url}" =~ ^${server}/${GITHUB_REPOSITORY}/actions/runs/([0-9]+)(/job/[0-9]+)?$ ]]; then
    echo "the success status of deployment ${id} points to '${url}', not a run of ${GITHUB_REPOSITORY}"
    return
  fi
  run_id="${BASH_REMATCH[1]}"
  run=$(gh api "repos/${GITHUB_REPOSITORY}/actions/runs/${run_id}" --jq '"\(.path) \(.head_branch) \(.head_sha)"')
  if ! [[ "${run}" =~ (^|/)\.github/workflows/deploy\.yml(@[^ ]*)?\ main\ ${sha}$ ]]; then
    echo "run ${run_id} of deployment ${id} is '${run}', not deploy.yml on main at ${sha}"
    return
  fi
  if ! gh api --paginate "repos/${GITHUB_REPOSITORY}/actions/runs/${run_id}/jobs?filter=all&per_page=100" \
    --jq '.jobs[] | "\(.conclusion) \(.name)"' | grep -qF "success Register workflows/ to Flyte (${stack}, "; then
    echo "run ${run_id} of deployment ${id} has no successful registration job of ${stack}"
  fi
}

list='.[] | "\(.created_at) \(.id) \(.sha) \(.creator.login)"'
if [ ${#at[@]} -gt 0 ] && [ ${#at[@]} -le 5 ]; then
  deployments=""
  for commit in "${at[@]}"; do
    deployments+=$(gh api --paginate -X GET "repos/${GITHUB_REPOSITORY}/deployments" \
      -f environment="${stack}-workflows" -f sha="${commit}" -f per_page=100 --jq "${list}")$'\n'
  done
else
  deployments=$(gh api --paginate -X GET "repos/${GITHUB_REPOSITORY}/deployments" \
    -f environment="${stack}-workflows" -f per_page=100 --jq "${list}")
fi
if [ ${#at[@]} -gt 0 ]; then
  # The candidates' order (oldest first: a stack is usually deployed where its pins were set), each
  # commit's records newest first; records of other commits dropped.
  ordered=""
  for commit in "${at[@]}"; do
    ordered+=$(awk -v sha="${commit}" '$3 == sha' <<< "${deployments}" | sort -k1,1r -k2,2nr)$'\n'
  done
else
  ordered=$(sort -k1,1r -k2,2nr <<< "${deployments}")
fi
# Read from a process substitution, not a pipe: leaving the loop early must not fail under pipefail.
while read -r _ id sha creator; do
  [ -n "${id:-}" ] || continue
  statuses=$(gh api --paginate -X GET "repos/${GITHUB_REPOSITORY}/deployments/${id}/statuses" -f per_page=100 \
    --jq '.[] | "\(.created_at) \(.id) \(.state) \(.creator.login) \(.log_url // .target_url // "")"' | sort -k1,1r -k2,2nr)
  # The newest status decides (awk reads all its input: no SIGPIPE upstream).
  state=$(awk 'NR == 1 { print $3 }' <<< "${statuses}")
  # `inactive` counts too: GitHub marks earlier deployments inactive once a newer status is created
  # (`auto_inactive`, true by default) and only ever adds it to a deployment that had succeeded
  # (docs.github.com/en/rest/deployments/statuses, "Create a deployment status"). Without it, --at
  # would not find a record of what a stack ran before it moved on.
  if [ "${state}" != success ] && [ "${state}" != inactive ]; then
    continue
  fi
  success=$(awk '$3 == "success" { print $4, $5; exit }' <<< "${statuses}")
  reason=$(untrusted "${id}" "${sha}" "${creator}" "${success}")
  if [ -n "${reason}" ]; then
    echo "::warning title=Deployment record of ${stack} not trusted::${reason}" >&2
    continue
  fi
  echo "${sha}"
  break
done < <(printf '%s\n' "${ordered}")
