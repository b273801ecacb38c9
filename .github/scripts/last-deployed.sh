#!/usr/bin/env bash
# last-deployed.sh STACK [all]
# Prints the commit of main at which STACK's last successful deployment ran, or nothing if it never
# succeeded; with `all`, the commits of its successful deployments, newest first (the newest 30
# deployments are looked at: each trusted record costs three REST calls, and GITHUB_TOKEN gets 1,000
# requests per hour per repository, docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api;
# a promotion pins the source's last deployment, so the record it needs is among the newest few). deploy.yml's `register-<stack>` job runs in the GitHub environment
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

stack="${1:?usage: last-deployed.sh STACK [all]}"
mode="${2:-last}"
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

deployments=$(gh api --paginate -X GET "repos/${GITHUB_REPOSITORY}/deployments" \
  -f environment="${stack}-workflows" -f per_page=100 --jq '.[] | "\(.created_at) \(.id) \(.sha) \(.creator.login)"')
looked=0
# Read from a process substitution, not a pipe: leaving the loop early must not fail under pipefail.
while read -r _ id sha creator; do
  [ -n "${id:-}" ] || continue
  looked=$((looked + 1))
  if [ "${looked}" -gt 30 ]; then
    break
  fi
  statuses=$(gh api --paginate -X GET "repos/${GITHUB_REPOSITORY}/deployments/${id}/statuses" -f per_page=100 \
    --jq '.[] | "\(.created_at) \(.id) \(.state) \(.creator.login) \(.log_url // .target_url // "")"' | sort -k1,1r -k2,2nr)
  # The newest status decides (awk reads all its input: no SIGPIPE upstream).
  state=$(awk 'NR == 1 { print $3 }' <<< "${statuses}")
  # `inactive` counts too: GitHub marks earlier deployments inactive once a newer status is created
  # (`auto_inactive`, true by default) and only ever adds it to a deployment that had succeeded
  # (docs.github.com/en/rest/deployments/statuses, "Create a deployment status"). Without it, `all`
  # would see only the newest success, and a stack that moved on would disown what it ran before.
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
  if [ "${mode}" != all ]; then
    break
  fi
done < <(sort -k1,1r -k2,2nr <<< "${deployments}")
