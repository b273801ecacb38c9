#!/usr/bin/env bash
# last-deployed.sh STACK [all]
# Prints the commit of main at which STACK's last successful deployment ran, or nothing if it never
# succeeded; with `all`, the commits of its successful deployments, newest first (the newest 100
# deployments are looked at). deploy.yml's `register-<stack>` job runs in the GitHub environment
# `<stack>-workflows` and is the last job of a stack's deploy, so GitHub's deployment record of that
# environment (one per job, with the run's commit as `sha` and the job's result as its status;
# docs.github.com/en/rest/deployments/deployments and /rest/deployments/statuses) is the record of
# what the stack ran. The order of either list is not relied on: both are sorted here by created_at,
# then by id (numerically): two records of the same second are told apart by their ids, which GitHub
# assigns in creation order.
# Needs GH_TOKEN with `deployments: read`, and GITHUB_REPOSITORY.
set -euo pipefail

stack="${1:?usage: last-deployed.sh STACK [all]}"
mode="${2:-last}"
: "${GITHUB_REPOSITORY:?GITHUB_REPOSITORY is required}"

deployments=$(gh api --paginate -X GET "repos/${GITHUB_REPOSITORY}/deployments" \
  -f environment="${stack}-workflows" -f per_page=100 --jq '.[] | "\(.created_at) \(.id) \(.sha)"')
looked=0
# Read from a process substitution, not a pipe: leaving the loop early must not fail under pipefail.
while read -r _ id sha; do
  [ -n "${id:-}" ] || continue
  looked=$((looked + 1))
  if [ "${looked}" -gt 100 ]; then
    break
  fi
  # awk reads all of its input (no SIGPIPE upstream) and keeps the newest status.
  state=$(gh api --paginate -X GET "repos/${GITHUB_REPOSITORY}/deployments/${id}/statuses" -f per_page=100 \
    --jq '.[] | "\(.created_at) \(.id) \(.state)"' | sort -k1,1r -k2,2nr | awk 'NR == 1 { print $3 }')
  # `inactive` counts too: GitHub marks earlier deployments inactive once a newer status is created
  # (`auto_inactive`, true by default) and only ever adds it to a deployment that had succeeded
  # (docs.github.com/en/rest/deployments/statuses, "Create a deployment status"). Without it, `all`
  # would see only the newest success, and a stack that moved on would disown what it ran before.
  if [ "${state}" = success ] || [ "${state}" = inactive ]; then
    echo "${sha}"
    if [ "${mode}" != all ]; then
      break
    fi
  fi
done < <(sort -k1,1r -k2,2nr <<< "${deployments}")
